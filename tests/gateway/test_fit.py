"""The fit, exhaustively: every property it promises, over generated fleets (no processes)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from llmdeploy_cli.gateway.fit import (
    EVICT,
    NEVER,
    START,
    WAIT,
    Resident,
    co_resident,
    decide,
    shortfall,
    used,
)

DEVICES = ["host", "gpu:0", "gpu:1"]
G = 1024**3

sizes = st.integers(min_value=0, max_value=8).map(lambda n: n * G // 2)
needs = st.dictionaries(st.sampled_from(DEVICES), sizes, min_size=1, max_size=2)
budgets = st.fixed_dictionaries({d: st.integers(0, 16).map(lambda n: n * G // 2) for d in DEVICES})


@st.composite
def fleets(draw):
    n = draw(st.integers(0, 6))
    out = []
    for i in range(n):
        out.append(
            Resident(
                name=f"m{i}",
                need=draw(needs),
                last_used=draw(st.integers(0, 100)),
                loaded_at=draw(st.integers(0, 100)),
                in_flight=draw(st.integers(0, 2)),
                pin=draw(st.booleans()),
                evictable=draw(st.booleans().map(lambda b: b or draw(st.booleans()))),
                stopping=draw(st.integers(0, 5).map(lambda x: x == 0)),
                min_resident=draw(st.sampled_from([0, 10, 50])),
            )
        )
    return out


def fits(b, resident, need) -> bool:
    return not shortfall(b, used(resident), need)


@settings(max_examples=600, deadline=None)
@given(budgets, fleets(), needs, st.integers(0, 200))
def test_every_decision_keeps_its_promise(b, resident, need, now):
    d = decide(b, resident, need, now)
    by_name = {r.name: r for r in resident}
    fixed = [r for r in resident if r.pin or not r.evictable]
    if d.kind == START:
        assert fits(b, resident, need)
        assert d.victims == ()
    elif d.kind == EVICT:
        assert not fits(b, resident, need)
        victims = [by_name[v] for v in d.victims]
        assert victims and len(set(d.victims)) == len(victims)
        for v in victims:  # only idle, unpinned, evictable, old enough, not already stopping
            assert v.eligible(now)
        rest = [r for r in resident if r.name not in d.victims]
        assert fits(b, rest, need)
        for v in victims:  # each victim frees memory on a device that was short
            assert any(v.need.get(dev, 0) > 0 for dev in d.short)
    elif d.kind == WAIT:
        assert not fits(b, resident, need)
        eligible = [r for r in resident if r.eligible(now)]
        rest = [r for r in resident if r not in eligible]
        assert not fits(b, rest, need)  # evicting every eligible model is not enough
        assert fits(b, fixed, need)  # but it can fit once the others are gone
    else:
        assert d.kind == NEVER
        assert not fits(b, fixed, need)
        assert d.reason


@settings(max_examples=300, deadline=None)
@given(budgets, needs)
def test_alone_on_an_empty_fleet_it_starts_or_never_fits(b, need):
    d = decide(b, [], need, 0)
    assert d.kind == (START if fits(b, [], need) else NEVER)


@settings(max_examples=300, deadline=None)
@given(budgets, fleets(), needs)
def test_busy_and_pinned_models_are_never_victims(b, resident, need):
    d = decide(b, resident, need, 1000)
    for v in d.victims:
        r = next(x for x in resident if x.name == v)
        assert not r.pin and r.in_flight == 0 and r.evictable and not r.stopping


@settings(max_examples=400, deadline=None)
@given(fleets(), st.integers(0, 16), st.integers(1, 8), st.integers(0, 200))
def test_one_device_victims_are_the_least_recently_used(resident, budget, want, now):
    """On one device the victims are exactly a prefix of the eligible models by last use."""
    resident = [
        Resident(
            r.name,
            {"host": r.need.get("host", G)},
            r.last_used,
            r.loaded_at,
            r.in_flight,
            r.pin,
            r.evictable,
            r.stopping,
            r.min_resident,
        )
        for r in resident
    ]
    d = decide({"host": budget * G}, resident, {"host": want * G}, now)
    if d.kind != EVICT:
        return
    order = sorted((r for r in resident if r.eligible(now)), key=lambda r: (r.last_used, r.name))
    helpful = [r.name for r in order if r.need["host"] > 0]
    assert list(d.victims) == helpful[: len(d.victims)]


def test_lru_picks_the_oldest_idle_model():
    b = {"host": 10 * G}
    resident = [
        Resident("a", {"host": 4 * G}, last_used=5),
        Resident("b", {"host": 4 * G}, last_used=1),
    ]
    d = decide(b, resident, {"host": 4 * G}, now=100)
    assert d.kind == EVICT and d.victims == ("b",)


def test_a_young_model_is_not_evicted_then_is():
    """min_resident: two models alternating cannot thrash."""
    b = {"host": 5 * G}
    r = [Resident("a", {"host": 4 * G}, loaded_at=100, min_resident=30)]
    assert decide(b, r, {"host": 4 * G}, now=110).kind == WAIT
    assert decide(b, r, {"host": 4 * G}, now=131).victims == ("a",)


def test_a_busy_model_makes_the_start_wait():
    b = {"host": 5 * G}
    r = [Resident("a", {"host": 4 * G}, in_flight=1)]
    assert decide(b, r, {"host": 4 * G}, now=1000).kind == WAIT


def test_pinned_models_can_make_a_model_never_fit():
    b = {"gpu:0": 24 * G}
    r = [Resident("big", {"gpu:0": 20 * G}, pin=True)]
    d = decide(b, r, {"gpu:0": 8 * G}, now=0)
    assert d.kind == NEVER and "pinned" in d.reason


def test_a_device_without_budget_never_fits():
    assert decide({"host": G}, [], {"gpu:0": G}, 0).kind == NEVER


def test_co_resident_lists_maximal_groups():
    b = {"host": 10 * G}
    groups = co_resident(b, {"a": {"host": 6 * G}, "b": {"host": 6 * G}, "c": {"host": 3 * G}})
    assert groups == [["a", "c"], ["b", "c"]]
