"""The fit: may a model start now, and if not, which resident models to stop for it.

A pure function of the devices' budgets, the resident models (planned needs, last use,
requests in flight, when each was loaded, pin) and the wanted model's need. No clocks,
no processes: the fleet calls it with `now` and acts on the answer.

Rules (docs/gateway.md, "Eviction"):
- a model fits when, on every device, the needs of the resident models (those still
  stopping included: their memory is not free yet) plus its own stay within the budget;
- it can never fit when its need alone, or with the pinned models, exceeds a budget;
- otherwise victims are chosen among resident models that are idle (nothing in flight),
  not pinned, evictable and resident for at least their `min_resident`: least recently
  used first, and only ones that free memory on a device still short;
- when even every such victim would not make room, the start waits (busy or young
  models, or models already stopping, will free memory later).
"""

from __future__ import annotations

from dataclasses import dataclass, field

START = "start"
EVICT = "evict"
WAIT = "wait"
NEVER = "never"


@dataclass(frozen=True)
class Resident:
    name: str
    need: dict[str, int]
    last_used: float = 0.0
    loaded_at: float = 0.0
    in_flight: int = 0
    pin: bool = False
    evictable: bool = True
    stopping: bool = False
    min_resident: float = 0.0

    def eligible(self, now: float) -> bool:
        return (
            not self.pin
            and self.evictable
            and not self.stopping
            and self.in_flight == 0
            and now - self.loaded_at >= self.min_resident
        )


@dataclass(frozen=True)
class Decision:
    kind: str
    victims: tuple[str, ...] = ()
    reason: str = ""
    short: dict[str, int] = field(default_factory=dict)  # device -> bytes missing now


def used(resident: list[Resident] | tuple[Resident, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in resident:
        for dev, b in r.need.items():
            out[dev] = out.get(dev, 0) + b
    return out


def shortfall(budgets: dict[str, int], in_use: dict[str, int], need: dict[str, int]) -> dict:
    """Bytes missing per device for `need` on top of `in_use` (empty when it fits)."""
    out = {}
    for dev, b in need.items():
        if b <= 0:
            continue
        missing = in_use.get(dev, 0) + b - budgets.get(dev, 0)
        if missing > 0:
            out[dev] = missing
    return out


def _gib(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB"


def decide(
    budgets: dict[str, int],
    resident: list[Resident] | tuple[Resident, ...],
    need: dict[str, int],
    now: float,
) -> Decision:
    """Start, evict these, wait, or never: see the module docstring."""
    for dev, b in need.items():
        if b > 0 and dev not in budgets:
            return Decision(NEVER, reason=f"it needs {_gib(b)} on {dev}, which has no budget")
    alone = shortfall(budgets, {}, need)
    if alone:
        dev, miss = next(iter(alone.items()))
        return Decision(
            NEVER,
            reason=f"it needs {_gib(need[dev])} on {dev}, whose budget is {_gib(budgets[dev])}",
        )
    pinned = used([r for r in resident if r.pin or not r.evictable])
    locked = shortfall(budgets, pinned, need)
    if locked:
        dev = next(iter(locked))
        return Decision(
            NEVER,
            reason=f"with the pinned and self-managed models on {dev} "
            f"({_gib(pinned.get(dev, 0))}) it needs {_gib(locked[dev])} more than the budget",
        )
    short = shortfall(budgets, used(resident), need)
    if not short:
        return Decision(START)
    candidates = sorted(
        (r for r in resident if r.eligible(now)), key=lambda r: (r.last_used, r.name)
    )
    victims: list[Resident] = []
    remaining = dict(short)
    for r in candidates:
        if not remaining:
            break
        if not any(r.need.get(dev, 0) > 0 for dev in remaining):
            continue
        victims.append(r)
        for dev in list(remaining):
            remaining[dev] -= r.need.get(dev, 0)
            if remaining[dev] <= 0:
                del remaining[dev]
    if remaining:
        busy = [r.name for r in resident if not r.eligible(now) and not r.pin and r.evictable]
        return Decision(
            WAIT,
            reason="waiting for "
            + (", ".join(sorted(busy)) if busy else "memory")
            + " to become idle or stop",
            short=short,
        )
    return Decision(
        EVICT,
        tuple(v.name for v in victims),
        reason="least recently used idle models, to free "
        + ", ".join(f"{_gib(b)} on {d}" for d, b in short.items()),
        short=short,
    )


def co_resident(budgets: dict[str, int], needs: dict[str, dict[str, int]]) -> list[list[str]]:
    """The largest sets of models that fit together (for `gateway validate`): every maximal
    set, by brute force over at most 12 models, else a greedy packing."""
    names = sorted(needs)
    if len(names) > 12:
        cur, in_use = [], {}
        for n in names:
            if not shortfall(budgets, in_use, needs[n]):
                cur.append(n)
                in_use = used([Resident(x, needs[x]) for x in cur])
        return [cur]
    fitting: list[frozenset] = []
    for mask in range(1, 1 << len(names)):
        group = [names[i] for i in range(len(names)) if mask >> i & 1]
        total = used([Resident(n, needs[n]) for n in group])
        if all(total.get(d, 0) <= budgets.get(d, 0) for d in total if total[d] > 0):
            fitting.append(frozenset(group))
    maximal = [s for s in fitting if not any(s < t for t in fitting)]
    return sorted((sorted(s) for s in maximal), key=lambda g: (-len(g), g))
