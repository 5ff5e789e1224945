"""RingBuilder against OpenStack Swift's builder as the oracle, and
hypothesis properties over random topologies."""

from __future__ import annotations

import math
from array import array

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from swift.common.ring.builder import RingBuilder as SwiftBuilder
from swift.common.ring.utils import dispersion_report as swift_dispersion_report

from swiftlite.ring.builder import RingBuilder, dispersion_report
from swiftlite.ring.builder_plan import parts_by_tier, replica_plan
from tests.unit.ring.builder_helpers import (
    make_builder,
    moved_replicas,
    parts_per_dev,
    snapshot,
    zoned_layout,
)

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)


@st.composite
def topologies(draw):
    """(replicas, layout) with at least ceil(replicas) weighted devices."""
    layout = []
    for region in range(1, draw(st.integers(1, 2)) + 1):
        for zone in range(1, draw(st.integers(1, 3)) + 1):
            for server in range(draw(st.integers(1, 3))):
                for _ in range(draw(st.integers(1, 3))):
                    weight = draw(st.sampled_from([50.0, 100.0, 100.0, 100.0, 150.0, 300.0]))
                    layout.append((region, zone, f"10.{region}.{zone}.{server}", weight))
    replicas = draw(st.sampled_from([1, 2, 3, 3, 2.5, 4]))
    assume(len(layout) >= math.ceil(replicas))
    return replicas, layout


def as_swift(b: RingBuilder) -> SwiftBuilder:
    """Swift's builder holding swiftlite's state, to measure it with Swift's code."""
    d = b.to_dict()
    d = dict(d)
    d["devs"] = [None if x is None else dict(x) for x in d["devs"]]
    d["_replica2part2dev"] = [array("H", r) for r in d["_replica2part2dev"]]
    d["_last_part_moves"] = array("B", d["_last_part_moves"])
    d["_remove_devs"] = []
    return SwiftBuilder.from_dict(d)


def feasible(b: RingBuilder) -> bool:
    """Whether any placement can put no tier above Swift's max_allowed."""
    allowed = b._build_max_replicas_by_tier()
    kids: dict = {}
    for tier in allowed:
        if tier:
            kids.setdefault(tier[:-1], []).append(tier)

    def cap(tier):
        if len(tier) == 4:
            return min(1, allowed[tier])
        return min(allowed[tier], sum(cap(k) for k in kids.get(tier, [])))

    return sum(cap(k) for k in kids[()]) >= math.ceil(b.replicas)


# -- the plan is Swift's ---------------------------------------------------


@SETTINGS
@given(topologies(), st.sampled_from([0.0, 0.1, 1.0]))
def test_replica_plan_and_parts_wanted_match_swift(topo, overload):
    replicas, layout = topo
    ours = make_builder(6, replicas, layout, overload=overload)
    theirs = make_builder(6, replicas, layout, overload=overload, cls=SwiftBuilder)
    live = [d for d in ours.devs if d is not None]
    plan = replica_plan(live, replicas, overload, ours.parts)
    swift_plan = theirs._build_replica_plan()
    assert set(plan) == set(swift_plan)
    for tier, (lo, target, hi) in plan.items():
        sp = swift_plan[tier]
        assert (lo, hi) == (sp["min"], sp["max"]), tier
        assert target == pytest.approx(sp["target"], abs=1e-9)
    assert ours.get_required_overload() == pytest.approx(theirs.get_required_overload(), abs=1e-9)
    theirs._set_parts_wanted(swift_plan)
    wanted = parts_by_tier(live, plan, replicas, ours.parts)
    for dev in theirs.devs:
        tier = (dev["region"], dev["zone"], dev["ip"], dev["id"])
        assert wanted[tier] == dev["parts_wanted"]


# -- Swift measures swiftlite's rings the same way ---------------------------


@pytest.mark.parametrize(
    "replicas,layout,overload",
    [
        (3, zoned_layout(4, 2, 2), 0.0),
        (3, [(1, 1, "a", 100), (1, 2, "b", 100), (1, 2, "c", 100), (1, 3, "d", 300)], 0.0),
        (3, [(1, 1, "a", 100), (1, 2, "b", 100), (1, 2, "c", 100), (1, 3, "d", 300)], 0.3),
        (2, [(1, 1, "h", 1)] * 4, 0.0),
        (4, [(r, z, f"h{r}{z}", 100) for r in (1, 2) for z in (1, 2, 3)], 0.0),
    ],
)
@pytest.mark.parametrize("drain", [False, True])
def test_swift_agrees_on_validity_balance_and_dispersion(replicas, layout, overload, drain):
    b = make_builder(9, replicas, layout, overload=overload, min_part_hours=1)
    b.rebalance(seed=7)
    b.remove_dev(0)
    b.pretend_min_part_hours_passed()
    b.rebalance(seed=8)
    if drain and len(layout) - 2 < replicas:
        pytest.skip("not enough devices left to zero one more")
    if drain:
        # A zero-weight device still holding parts (min_part_hours) is at risk.
        b.set_dev_weight(1, 0)
        b.rebalance(seed=9)
        assert b.devs[1]["parts"] > 0 and b.dispersion > 0
    sb = as_swift(b)
    sb.validate()
    assert sb.get_balance() == pytest.approx(b.get_balance())
    assert sb.get_required_overload() == pytest.approx(b.get_required_overload())
    sb._build_dispersion_graph()
    assert sb.dispersion == pytest.approx(b.dispersion)
    assert sb._dispersion_graph == b._dispersion_graph
    for verbose in (False, True):
        for search in (None, "r1z1"):
            ours = dispersion_report(b, search, verbose=verbose)
            theirs = swift_dispersion_report(sb, search, verbose=verbose)
            assert ours == theirs


def test_quality_close_to_swift_after_growth():
    """Same workload through both builders: balance and movement are comparable."""
    results = []
    for cls in (SwiftBuilder, RingBuilder):
        b = make_builder(11, 3, zoned_layout(5, 2, 2), cls=cls)
        b.rebalance(seed=1)
        for z in range(1, 6):
            b.add_dev(
                {
                    "region": 1,
                    "zone": z,
                    "ip": f"10.0.{z}.5",
                    "port": 1,
                    "device": "x",
                    "weight": 100,
                }
            )
        b.pretend_min_part_hours_passed()
        changed, balance, _ = b.rebalance(seed=2)
        results.append((changed, balance, b.dispersion))
    (s_changed, s_balance, s_disp), (changed, balance, disp) = results
    assert disp == s_disp == 0
    assert changed <= s_changed * 1.05
    assert balance <= max(s_balance * 1.5, 1.0)


# -- properties over random topologies -------------------------------------


@SETTINGS
@given(topologies(), st.integers(0, 2**16))
def test_rebalance_properties(topo, seed):
    replicas, layout = topo
    b = make_builder(7, replicas, layout)
    b.rebalance(seed=seed)
    b.validate()
    rows = snapshot(b)
    assert all(len(r) == b.parts for r in rows[: int(replicas)])
    for part in range(b.parts):
        devs = [r[part] for r in rows if part < len(r)]
        assert (
            len(devs)
            == len(set(devs))
            == (math.ceil(replicas) if part < len(rows[-1]) else int(replicas))
        )
    # Where the topology allows full dispersion and overload permits it,
    # the ring is fully dispersed.
    if feasible(b):
        full = make_builder(7, replicas, layout, overload=b.get_required_overload() + 1e-6)
        full.rebalance(seed=seed)
        assert full.dispersion == 0

    # Growing: at most one replica of a partition moves.
    region, zone, _ip, weight = layout[seed % len(layout)]
    b.add_dev(
        {"region": region, "zone": zone, "ip": "new", "port": 1, "device": "n", "weight": weight}
    )
    b.pretend_min_part_hours_passed()
    b.rebalance(seed=seed + 1)
    b.validate()
    moved = moved_replicas(rows, snapshot(b))
    assert not moved or max(moved.values()) == 1

    # Removing: the device ends with nothing, whatever min_part_hours says.
    victim = seed % len(layout)
    live = sum(1 for d in b.devs if d is not None and d["weight"] > 0)
    if live - 1 >= math.ceil(replicas):
        b.remove_dev(victim)
        b.rebalance(seed=seed + 2)
        b.validate()
        assert victim not in parts_per_dev(b)
        assert victim >= len(b.devs) or b.devs[victim] is None


@SETTINGS
@given(st.integers(1, 4), st.integers(1, 3), st.integers(0, 1000))
def test_equal_weights_balance_within_one_percent(zones, per_zone, seed):
    # Equal zones of equal devices: dispersion never fights weight; ~100+
    # part-replicas per device keep whole-part rounding under 1%.
    devices = zones * per_zone
    replicas = min(3, devices)
    part_power = 10
    while 2**part_power * replicas / devices < 120:
        part_power += 1
    b = make_builder(part_power, replicas, zoned_layout(zones, per_zone, 1))
    _, balance, _ = b.rebalance(seed=seed)
    assert balance < 1.0
    assert b.dispersion == 0


@pytest.mark.parametrize("layout", [zoned_layout(3, 2, 2), [(1, 1, "h", 100)] * 5])
def test_dispersion_graph_with_duplicate_replicas_matches_swift(layout):
    """Rings from old tools may hold two replicas of a part on one device."""
    b = make_builder(8, 3, layout)
    b.rebalance(seed=1)
    rows = b._replica2part2dev
    for part in (0, 5, 77):
        rows[1][part] = rows[0][part]
    rows[2][9] = rows[1][9] = rows[0][9]
    b._build_dispersion_graph()
    sb = as_swift(b)
    sb._build_dispersion_graph()
    assert b.dispersion > 0
    assert sb.dispersion == pytest.approx(b.dispersion)
    assert sb._dispersion_graph == b._dispersion_graph


@pytest.mark.parametrize("replicas", [3, 2.5])
def test_partition_power_increase_matches_swift(replicas):
    b = make_builder(8, replicas, zoned_layout(3, 2, 1))
    b.rebalance(seed=1)
    sb = as_swift(b)
    for x in (b, sb):
        assert x.increase_partition_power() is False
        assert x.finish_increase_partition_power() is False
        assert x.prepare_increase_partition_power() is True
        assert x.prepare_increase_partition_power() is False
        assert x.increase_partition_power() is True
        assert x.part_power == 9 and x.parts == 512
        assert x.next_part_power == 9
    assert snapshot(b) == [list(r) for r in sb._replica2part2dev]
    assert list(b._last_part_moves) == list(sb._last_part_moves)
    assert [d["parts"] for d in b.devs] == [d["parts"] for d in sb.devs]
    assert b.version == sb.version
    b.validate()
    for x in (b, sb):
        assert x.cancel_increase_partition_power() is False
        assert x.finish_increase_partition_power() is True
        assert x.next_part_power is None
    # Cancel path.
    assert b.prepare_increase_partition_power()
    assert b.cancel_increase_partition_power()
    assert b.next_part_power == b.part_power
    assert b.finish_increase_partition_power()
    b.pretend_min_part_hours_passed()
    b.rebalance(seed=2)
    b.validate()
