"""Node iteration order and error limiting."""

from __future__ import annotations

import random
from itertools import islice
from pathlib import Path

import pytest

from swiftlite.common.hashing import set_hash_path_secrets
from swiftlite.proxy.error_limiter import ErrorLimiter
from swiftlite.proxy.node_iter import NodeIter, NodeTimings
from swiftlite.ring.builder import RingBuilder
from swiftlite.ring.ring import Ring


@pytest.fixture
def ring(tmp_path: Path) -> Ring:
    set_hash_path_secrets("pre", "suf")
    builder = RingBuilder(6, 3, 0)
    for i in range(8):
        builder.add_dev(
            {"region": 1, "zone": i % 4, "ip": f"10.0.0.{i}", "port": 6200, "device": f"d{i}",
             "weight": 100}
        )
    builder.rebalance()
    path = tmp_path / "object.ring.gz"
    builder.get_ring().save(str(path))
    return Ring(str(path))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_primaries_then_handoffs_up_to_node_count(ring: Ring) -> None:
    limiter = ErrorLimiter()
    part = 7
    primaries = ring.get_part_nodes(part)
    handoffs = list(islice(ring.get_more_nodes(part), 3))
    it = NodeIter(ring, part, limiter, node_count=6, rng=random.Random(1))
    got = list(it)
    assert len(got) == 6
    assert {n["id"] for n in got[:3]} == {n["id"] for n in primaries}
    assert [n["id"] for n in got[3:]] == [n["id"] for n in handoffs]
    assert it.handoffs_used == 3


def test_shuffle_spreads_first_node(ring: Ring) -> None:
    firsts = {next(NodeIter(ring, 3, ErrorLimiter()))["id"] for _ in range(60)}
    assert len(firsts) == 3
    ordered = [next(NodeIter(ring, 3, ErrorLimiter(), sorting_method="affinity"))["id"]
               for _ in range(5)]
    assert len(set(ordered)) == 1


def test_limited_nodes_are_skipped_without_using_the_count(ring: Ring) -> None:
    limiter = ErrorLimiter()
    part = 11
    primaries = ring.get_part_nodes(part)
    limiter.limit(primaries[0])
    got = list(NodeIter(ring, part, limiter, node_count=4, sorting_method="timing"))
    ids = [n["id"] for n in got]
    assert primaries[0]["id"] not in ids
    assert ids[:2] == [primaries[1]["id"], primaries[2]["id"]]
    assert len(got) == 4


def test_error_limiter_threshold_and_expiry() -> None:
    clock = Clock()
    limiter = ErrorLimiter(suppression_interval=60, suppression_limit=2, clock=clock)
    node = {"ip": "1.2.3.4", "port": 6200, "device": "sda"}
    other = {"ip": "1.2.3.4", "port": 6200, "device": "sdb"}
    assert not limiter.increment(node)
    assert not limiter.increment(node)
    assert not limiter.is_limited(node)
    assert limiter.increment(node)  # the third error exceeds a limit of 2
    assert limiter.is_limited(node)
    assert not limiter.is_limited(other)
    clock.now += 59
    assert limiter.is_limited(node)
    clock.now += 2
    assert not limiter.is_limited(node)
    assert limiter.count(node) == 0
    limiter.limit(other)  # a 507: at once
    assert limiter.is_limited(other)


def test_timing_sort_puts_slow_nodes_last_until_expiry(ring: Ring) -> None:
    clock = Clock()
    timings = NodeTimings(expiry=300, clock=clock)
    part = 5
    primaries = ring.get_part_nodes(part)
    timings.record(primaries[0], 2.5)
    timings.record(primaries[1], 0.01)
    for _ in range(10):
        got = [n["id"] for n in NodeIter(ring, part, ErrorLimiter(), node_count=3,
                                         sorting_method="timing", timings=timings)]
        # Unknown first, then fast, then slow.
        assert got == [primaries[2]["id"], primaries[1]["id"], primaries[0]["id"]]
    clock.now += 301
    assert timings.get(primaries[0]) == -1.0
