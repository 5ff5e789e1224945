"""RingBuilder: placement invariants, balance, movement limits, API errors."""

from __future__ import annotations

import time

import pytest

from swiftlite.ring.builder import (
    DuplicateDeviceError,
    EmptyRingError,
    RingBuilder,
    RingValidationError,
)
from tests.unit.ring.builder_helpers import (
    make_builder,
    moved_replicas,
    part_devs,
    parts_per_dev,
    snapshot,
    zoned_layout,
)


def assert_fully_assigned(b: RingBuilder) -> None:
    rows = b._replica2part2dev
    assert rows is not None
    whole = int(b.replicas)
    assert [len(r) for r in rows[:whole]] == [b.parts] * whole
    if b.replicas != whole:
        assert len(rows) == whole + 1
        assert len(rows[-1]) == int(b.parts * (b.replicas - whole))
    live = {d["id"] for d in b.devs if d is not None}
    for row in rows:
        assert set(row) <= live
    for part in range(b.parts):
        devs = part_devs(snapshot(b), part)
        assert len(devs) == len(set(devs)), f"part {part} has a device twice: {devs}"
    # parts counters agree with the table
    counts = parts_per_dev(b)
    for dev in b.devs:
        if dev is not None:
            assert dev["parts"] == counts.get(dev["id"], 0)
    b.validate()


def test_initial_rebalance_assigns_everything_and_balances():
    b = make_builder(10, 3, zoned_layout(4, 2, 3))
    changed, balance, removed = b.rebalance(seed=1)
    assert changed == 3 * 1024
    assert removed == 0
    assert_fully_assigned(b)
    assert balance < 1.0
    assert b.dispersion == 0
    assert b.devs_changed is False
    assert b.get_balance() == balance


@pytest.mark.parametrize("replicas,part_power", [(1, 12), (2, 11), (3, 10), (4, 10)])
def test_equal_weights_balance_within_one_percent(replicas, part_power):
    # 20 devices: at least ~150 part-replicas each, so whole-part rounding stays < 1%.
    b = make_builder(part_power, replicas, zoned_layout(5, 2, 2))
    _, balance, _ = b.rebalance(seed=3)
    assert_fully_assigned(b)
    assert balance < 1.0
    assert b.dispersion == 0


def test_unequal_weights_are_respected():
    # Three zones, one server each; replicas 1 so dispersion never fights weight.
    layout = [(1, 1, "a", 100), (1, 2, "b", 200), (1, 3, "c", 300), (1, 3, "c", 400)]
    b = make_builder(12, 1, layout)
    _, balance, _ = b.rebalance(seed=2)
    assert_fully_assigned(b)
    assert balance < 1.0
    counts = parts_per_dev(b)
    total = 4096
    for dev in b.devs:
        assert dev is not None
        share = total * dev["weight"] / 1000
        assert abs(counts[dev["id"]] - share) <= share * 0.01 + 1


def test_unequal_weights_three_replicas_balanced_with_enough_zones():
    layout = [(1, z, f"h{z}", 100.0 * (1 + z % 3)) for z in range(1, 9)] * 2
    b = make_builder(11, 3, layout)
    _, balance, _ = b.rebalance(seed=9)
    assert_fully_assigned(b)
    assert balance < 2.0
    assert b.dispersion == 0


def test_adding_devices_moves_about_their_share_one_replica_per_part():
    # One new device per zone keeps zones even, so the minimum movement is
    # exactly what the new devices should end up holding.
    b = make_builder(12, 3, zoned_layout(4, 2, 2))
    b.rebalance(seed=4)
    before = snapshot(b)
    for z in range(1, 5):
        b.add_dev(
            {"region": 1, "zone": z, "ip": f"10.0.{z}.9", "port": 1, "device": "n", "weight": 100}
        )
    b.pretend_min_part_hours_passed()
    changed, balance, _ = b.rebalance(seed=5)
    moved = moved_replicas(before, snapshot(b))
    assert max(moved.values()) == 1, "a partition moved two replicas in one rebalance"
    assert sum(moved.values()) == changed
    share = 3 * 4096 / 20
    counts = parts_per_dev(b)
    for new_id in range(16, 20):
        assert abs(counts[new_id] - share) <= share * 0.01 + 1
    minimum = 4 * share
    assert minimum <= changed <= minimum * 1.05
    assert balance < 1.0
    assert b.dispersion == 0
    assert_fully_assigned(b)


def test_adding_one_device_never_moves_two_replicas_of_a_part():
    # An uneven add (its zone gets heavier) takes several rebalances to settle,
    # as in Swift, and none of them moves two replicas of a partition.
    b = make_builder(11, 3, zoned_layout(4, 2, 2))
    b.rebalance(seed=4)
    b.add_dev({"region": 1, "zone": 2, "ip": "10.0.2.9", "port": 1, "device": "new", "weight": 100})
    balances = []
    for i in range(4):
        before = snapshot(b)
        b.pretend_min_part_hours_passed()
        _, balance, _ = b.rebalance(seed=10 + i)
        balances.append(balance)
        moved = moved_replicas(before, snapshot(b))
        assert not moved or max(moved.values()) == 1
        assert_fully_assigned(b)
    assert balances[-1] < balances[0]
    assert balances[-1] < balances[0] / 2


def test_adding_a_zone_moves_at_most_one_replica_per_part():
    b = make_builder(10, 3, zoned_layout(3, 2, 2))
    b.rebalance(seed=1)
    before = snapshot(b)
    for i in range(4):
        b.add_dev(
            {
                "region": 1,
                "zone": 4,
                "ip": f"10.0.4.{i % 2}",
                "port": 1,
                "device": f"n{i}",
                "weight": 100,
            }
        )
    b.pretend_min_part_hours_passed()
    b.rebalance(seed=2)
    moved = moved_replicas(before, snapshot(b))
    assert max(moved.values()) == 1
    assert_fully_assigned(b)


def test_min_part_hours_freezes_recent_moves():
    b = make_builder(10, 3, zoned_layout(4, 2, 2), min_part_hours=24)
    b.rebalance(seed=1)
    assert b.min_part_seconds_left > 23 * 3600
    b.add_dev({"region": 1, "zone": 1, "ip": "10.0.1.7", "port": 1, "device": "x", "weight": 100})
    before = snapshot(b)
    changed, _, _ = b.rebalance(seed=2)
    assert changed == 0 and snapshot(b) == before

    # 25 hours later everything may move once.
    b._last_part_moves_epoch -= 25 * 3600
    assert b.min_part_seconds_left == 0
    changed2, _, _ = b.rebalance(seed=3)
    after2 = snapshot(b)
    moved2 = set(moved_replicas(before, after2))
    assert changed2 > 0

    # One hour after that, a new device may only get parts that did not just move.
    b.add_dev({"region": 1, "zone": 2, "ip": "10.0.2.7", "port": 1, "device": "y", "weight": 100})
    b._last_part_moves_epoch -= 3600
    b.rebalance(seed=4)
    moved3 = set(moved_replicas(after2, snapshot(b)))
    assert moved3, "nothing moved at all"
    assert not moved3 & moved2
    assert_fully_assigned(b)


def test_removed_device_drains_even_within_min_part_hours():
    b = make_builder(10, 3, zoned_layout(4, 2, 2), min_part_hours=24)
    b.rebalance(seed=1)
    b.remove_dev(5)
    changed, _, removed = b.rebalance(seed=2)
    assert removed == 1
    assert b.devs[5] is None
    assert 5 not in parts_per_dev(b)
    assert changed > 0
    assert_fully_assigned(b)
    # The next add reuses the hole.
    assert (
        b.add_dev({"region": 1, "zone": 1, "ip": "x", "port": 1, "device": "z", "weight": 1}) == 5
    )


def test_removing_last_device_trims_devs():
    b = make_builder(8, 2, zoned_layout(3, 1, 1))
    b.rebalance(seed=1)
    b.remove_dev(2)
    b.rebalance(seed=1)
    assert len(b.devs) == 2
    assert_fully_assigned(b)


def test_zero_weight_device_drains_when_parts_may_move():
    b = make_builder(10, 2, zoned_layout(3, 2, 1))
    b.rebalance(seed=1)
    b.set_dev_weight(0, 0)
    b.pretend_min_part_hours_passed()
    b.rebalance(seed=2)
    assert parts_per_dev(b)[0] == 0
    assert b.devs[0] is not None and b.devs[0]["parts"] == 0
    assert_fully_assigned(b)


def test_same_seed_same_ring():
    def build():
        b = make_builder(10, 3, zoned_layout(3, 3, 2))
        b.rebalance(seed=77)
        b.add_dev({"region": 1, "zone": 3, "ip": "9.9.9.9", "port": 1, "device": "n", "weight": 50})
        b.remove_dev(0)
        b.pretend_min_part_hours_passed()
        b.rebalance(seed=78)
        return snapshot(b)

    assert build() == build()
    other = make_builder(10, 3, zoned_layout(3, 3, 2))
    other.rebalance(seed=1)
    first = make_builder(10, 3, zoned_layout(3, 3, 2))
    first.rebalance(seed=77)
    assert snapshot(first) != snapshot(other)


def test_seed_does_not_touch_global_random_state():
    import random

    random.seed(5)
    expected = random.random()
    random.seed(5)
    make_builder(6, 3, zoned_layout(3, 1, 1)).rebalance(seed=1)
    assert random.random() == expected


@pytest.mark.parametrize("replicas", [2.5, 1.25, 3.75])
def test_fractional_replicas(replicas):
    b = make_builder(10, replicas, zoned_layout(4, 2, 2))
    b.rebalance(seed=1)
    assert_fully_assigned(b)
    assert b.get_balance() < 2.0
    assert b.dispersion == 0


def test_changing_replica_count_up_and_down():
    b = make_builder(10, 3, zoned_layout(4, 2, 2))
    b.rebalance(seed=1)
    before = snapshot(b)
    b.set_replicas(3.5)
    assert b.devs_changed
    b.pretend_min_part_hours_passed()
    b.rebalance(seed=2)
    assert_fully_assigned(b)
    # Existing replicas stay put (min_part_hours was waived, but nothing needs to move much).
    assert sum(moved_replicas(before, snapshot(b)).values()) < 0.2 * 3 * 1024
    b.set_replicas(2)
    b.pretend_min_part_hours_passed()
    b.rebalance(seed=3)
    assert len(b._replica2part2dev) == 2
    assert_fully_assigned(b)
    b.pretend_min_part_hours_passed()
    b.rebalance(seed=4)
    assert b.get_balance() < 1.0


def test_overload_trades_balance_for_dispersion():
    # Zone 1 has a single small device; full dispersion needs it overloaded.
    layout = [
        (1, 1, "a", 50),
        (1, 2, "b", 100),
        (1, 2, "b", 100),
        (1, 3, "c", 100),
        (1, 3, "c", 100),
    ]
    plain = make_builder(10, 3, layout)
    plain.rebalance(seed=1)
    required = plain.get_required_overload()
    assert required > 0
    assert plain.dispersion > 0
    loaded = make_builder(10, 3, layout, overload=required + 0.01)
    loaded.rebalance(seed=1)
    assert loaded.dispersion == 0
    assert_fully_assigned(loaded)


def test_regions_spread_first():
    layout = [(r, z, f"h{r}{z}{s}", 100) for r in (1, 2) for z in (1, 2) for s in range(2)]
    b = make_builder(10, 2, layout)
    b.rebalance(seed=1)
    rows = snapshot(b)
    for part in range(b.parts):
        regions = {b.devs[d]["region"] for d in part_devs(rows, part)}
        assert regions == {1, 2}


def test_too_few_devices():
    b = make_builder(8, 3, zoned_layout(2, 1, 1))
    with pytest.raises(RingValidationError, match="requires more than 2 devices"):
        b.rebalance()


def test_empty_ring():
    b = RingBuilder(8, 3, 1)
    with pytest.raises(EmptyRingError):
        b.weight_of_one_part()


def test_add_dev_errors_and_defaults():
    b = RingBuilder(8, 3, 1)
    dev = {"region": 1, "zone": 1, "ip": "1.2.3.4", "port": 6200, "device": "sda", "weight": "10"}
    assert b.add_dev(dev) == 0
    assert b.devs[0]["weight"] == 10.0
    assert b.devs[0]["meta"] == ""
    assert b.devs[0]["replication_ip"] == "1.2.3.4"
    assert b.devs[0]["replication_port"] == 6200
    assert b.version == 1 and b.devs_changed
    with pytest.raises(DuplicateDeviceError):
        b.add_dev(
            {"id": 0, "region": 1, "zone": 1, "ip": "x", "port": 1, "device": "d", "weight": 1}
        )
    with pytest.raises(ValueError, match="missing required key"):
        b.add_dev({"region": 1, "zone": 1, "ip": "x", "port": 1, "weight": 1})
    assert (
        b.add_dev(
            {"id": 4, "region": 1, "zone": 2, "ip": "x", "port": 1, "device": "d", "weight": 1}
        )
        == 4
    )
    assert b.devs[1:4] == [None, None, None]
    assert (
        b.add_dev({"region": 1, "zone": 2, "ip": "y", "port": 1, "device": "d", "weight": 1}) == 1
    )


def test_setters_refuse_devices_marked_for_removal():
    b = make_builder(6, 1, zoned_layout(2, 1, 1))
    b.remove_dev(0)
    for setter in (b.set_dev_weight, b.set_dev_region, b.set_dev_zone):
        with pytest.raises(ValueError, match="marked for removal"):
            setter(0, 1)
    v = b.version
    b.set_dev_zone(1, 7)
    assert b.devs[1]["zone"] == 7 and b.version == v + 1


def test_part_power_and_replica_limits():
    with pytest.raises(ValueError):
        RingBuilder(33, 3, 1)
    with pytest.raises(ValueError):
        RingBuilder(-1, 3, 1)
    with pytest.raises(ValueError):
        RingBuilder(8, 0.5, 1)
    with pytest.raises(ValueError):
        RingBuilder(8, 3, -1)


def test_validate_catches_bad_tables():
    b = make_builder(6, 3, zoned_layout(3, 1, 2))
    with pytest.raises(RingValidationError, match="forget to rebalance"):
        b.validate()
    b.rebalance(seed=1)
    usage, worst = b.validate(stats=True)
    assert sum(usage) == 3 * 64 and worst < 5

    rows = b._replica2part2dev
    a, c = rows[0][3], rows[1][3]
    rows[1][3] = a  # same device twice for part 3
    b.devs[a]["parts"] += 1
    b.devs[c]["parts"] -= 1
    with pytest.raises(RingValidationError, match="duplicate devices"):
        b.validate()
    rows[1][3] = c
    b.devs[a]["parts"] -= 1
    b.devs[c]["parts"] += 1
    b.validate()

    b.devs[0]["port"] = "6200"
    with pytest.raises(RingValidationError, match="not an integer"):
        b.validate()
    b.devs[0]["port"] = 6200
    b.devs[0]["parts"] += 1
    with pytest.raises(RingValidationError, match="double accounted"):
        b.validate()


def test_rebalance_fixes_duplicate_replicas_from_old_tools():
    b = make_builder(6, 3, zoned_layout(3, 1, 2))
    b.rebalance(seed=1)
    rows = b._replica2part2dev
    rows[1][5] = rows[0][5]
    b.pretend_min_part_hours_passed()
    b.rebalance(seed=2)
    assert_fully_assigned(b)


def test_search_and_find_parts():
    b = make_builder(6, 3, zoned_layout(3, 2, 1))
    b.devs[1]["meta"] = "rack-7 spare"
    b.devs[2]["ip"] = "FE80::1"
    assert [d["id"] for d in b.search_devs({"zone": 2})] == [2, 3]
    assert [d["id"] for d in b.search_devs({"meta": "rack-7"})] == [1]
    assert [d["id"] for d in b.search_devs({"ip": "fe80::1"})] == [2]
    assert [d["id"] for d in b.search_devs({"zone": 1, "device": "sd1"})] == [1]
    assert b.search_devs({"id": 9}) == []
    assert len(b.search_devs({})) == 6
    assert b.find_parts({"id": 0}) == []  # not rebalanced yet
    b.rebalance(seed=1)
    found = b.find_parts([{"id": 0}, {"id": 2}])
    counts = [c for _, c in found]
    assert counts == sorted(counts, reverse=True)
    expected = {}
    for row in b._replica2part2dev:
        for part, dev in enumerate(row):
            if dev in (0, 2):
                expected[part] = expected.get(part, 0) + 1
    assert dict(found) == expected
    devs = b.get_part_devices(found[0][0])
    assert len(devs) == 3 and {0, 2} <= {d["id"] for d in devs}


def test_pretend_and_seconds_left():
    b = make_builder(6, 1, zoned_layout(2, 1, 1), min_part_hours=2)
    b.rebalance(seed=1)
    assert 0 < b.min_part_seconds_left <= 7200
    b.pretend_min_part_hours_passed()
    assert b.min_part_seconds_left == 0
    assert set(b._last_part_moves) == {255}
    b.change_min_part_hours(0)
    assert b.min_part_hours == 0


def test_last_part_moves_age_with_time():
    b = make_builder(6, 1, zoned_layout(2, 1, 1), min_part_hours=2)
    b.rebalance(seed=1)
    b._last_part_moves_epoch = int(time.time()) - 3 * 3600 - 5
    b._last_part_moves[0] = 254
    b._update_last_part_moves()
    assert b._last_part_moves[0] == 255
    assert b._last_part_moves[1] == 3


def test_version_counts_changes():
    b = make_builder(6, 3, zoned_layout(3, 1, 1))
    assert b.version == 3
    b.rebalance(seed=1)
    assert b.version == 4


def test_id_only_after_save(tmp_path):
    b = make_builder(6, 3, zoned_layout(3, 1, 1))
    with pytest.raises(AttributeError):
        _ = b.id
    b.save(str(tmp_path / "x.builder"))
    assert len(b.id) == 32


_DETERMINISM_SCRIPT = """
import hashlib
from swiftlite.ring.builder import RingBuilder
b = RingBuilder(9, 2.5, 1)
for i in range(18):
    b.add_dev({'region': i % 2 + 1, 'zone': i % 3, 'ip': 'host-%d.example' % (i % 5),
               'port': 6200, 'device': 'd%d' % i, 'weight': 100 + (i % 4) * 37})
b.set_overload(0.05)
b.rebalance(seed=3)
b.remove_dev(4)
b.add_dev({'region': 2, 'zone': 9, 'ip': 'n', 'port': 1, 'device': 'x', 'weight': 300})
b.pretend_min_part_hours_passed()
b.rebalance(seed=4)
print(hashlib.md5(b''.join(r.tobytes() for r in b._replica2part2dev)).hexdigest())
"""


def test_same_seed_same_ring_across_processes():
    """No dependence on str hash randomization (set/dict order of tier names)."""
    import os
    import subprocess
    import sys

    outs = set()
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        res = subprocess.run(
            [sys.executable, "-c", _DETERMINISM_SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        outs.add(res.stdout.strip())
    assert len(outs) == 1


@pytest.mark.parametrize("path", [[3, 2.5, 2.25, 4, 1], [1.5, 3.25, 3]])
def test_replica_count_changes_keep_the_ring_valid(path):
    b = make_builder(10, path[0], zoned_layout(4, 2, 2))
    b.rebalance(seed=1)
    for replicas in path[1:]:
        b.set_replicas(replicas)
        b.pretend_min_part_hours_passed()
        b.rebalance(seed=2)
        assert_fully_assigned(b)
        assert b.dispersion == 0
    for _ in range(2):
        b.pretend_min_part_hours_passed()
        b.rebalance(seed=3)
    assert b.get_balance() < 1.0


def test_slots_on_vanished_devices_are_reassigned():
    b = make_builder(6, 3, zoned_layout(3, 2, 1))
    b.rebalance(seed=1)
    rows = b._replica2part2dev
    gone = rows[0][7]
    rows[0][7] = 500  # no such device
    b.devs[gone]["parts"] -= 1
    with pytest.raises(RingValidationError):
        b.validate()
    b._build_dispersion_graph()  # still measurable
    b.rebalance(seed=2)
    assert_fully_assigned(b)
