"""When each request is due: an absolute schedule computed before the run.

Open loop (`--request-rate R`): gaps drawn from a gamma distribution with shape
`burstiness` and scale 1/(R * burstiness), so the mean gap is 1/R; burstiness 1 is a
Poisson process, < 1 burstier, > 1 more even (vLLM's definition). Each request's due time
is an offset from the start, not a sleep after the previous send, so a slow send never
shifts the requests after it (the rate cannot drift). With `--num-prompts` the offsets
are rescaled so the last one lands at N/R exactly (as vLLM does), which keeps the achieved
rate stable across seeds.

Closed loop (`--concurrency N`) has every request due at once; the concurrency cap decides
when each is sent. Both together: due on the schedule, sent when a slot is free.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator


def _gap(rng: random.Random, rate: float, burstiness: float) -> float:
    if math.isinf(burstiness):
        return 1.0 / rate
    return rng.gammavariate(burstiness, 1.0 / (rate * burstiness))


def arrivals(rate: float, burstiness: float = 1.0, seed: int | None = 0) -> Iterator[float]:
    """Endless due offsets (seconds from the start, first one at 0) for an open loop."""
    if rate <= 0 or math.isnan(rate):
        raise ValueError("request rate must be > 0")
    if not burstiness > 0:
        raise ValueError("burstiness must be > 0")
    rng = random.Random(seed)
    t = 0.0
    yield 0.0
    if math.isinf(rate):
        while True:
            yield 0.0
    while True:
        t += _gap(rng, rate, burstiness)
        yield t


def schedule(
    n: int, rate: float, burstiness: float = 1.0, seed: int | None = 0, *, normalize=True
) -> list[float]:
    """Due offsets for n requests. rate=inf: all at 0.

    The first request is due at 0 and gap i follows request i, so n requests span n-1 gaps;
    with `normalize` the offsets are scaled so the span is (n-1)/rate exactly.
    """
    if n <= 0:
        return []
    if math.isinf(rate):
        return [0.0] * n
    it = arrivals(rate, burstiness, seed)
    out = [next(it) for _ in range(n)]
    if normalize and n > 1 and out[-1] > 0:
        k = ((n - 1) / rate) / out[-1]
        out = [t * k for t in out]
    return out


__all__ = ["arrivals", "schedule"]
