"""Ring lookups: API behaviour, caching, handoff invariants and reloading."""

from __future__ import annotations

import array
import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import pytest

from swiftlite.common import hashing
from swiftlite.ring import ring as ring_mod
from swiftlite.ring.ring import Ring
from swiftlite.ring.ring_io import RingData


def _dev(i: int, region: int, zone: int, ip: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": i,
        "region": region,
        "zone": zone,
        "ip": ip,
        "port": 6200 + i,
        "device": f"sd{i}",
        "weight": 100.0,
        "meta": "",
        **extra,
    }


# Eight devices: region 1 (zones 1, 2; two ips) and region 2 (zone 1).
DEVS: list[dict[str, Any] | None] = [
    _dev(0, 1, 1, "10.0.0.1"),
    _dev(1, 1, 1, "10.0.0.1"),
    _dev(2, 1, 1, "10.0.0.2"),
    _dev(3, 1, 2, "10.0.1.1"),
    _dev(4, 1, 2, "10.0.1.1"),
    _dev(5, 2, 1, "10.1.0.1"),
    _dev(6, 2, 1, "10.1.0.2"),
    _dev(7, 2, 1, "10.1.0.2", weight=0.0),  # holds nothing: never a handoff
]


def _rows(part_power: int, replicas: int = 3) -> list[array.array]:
    parts = 1 << part_power
    # Deterministic spread over devices 0-6, distinct within a partition.
    return [array.array("H", [(p * 3 + r * 2) % 7 for p in range(parts)]) for r in range(replicas)]


def _write(
    path: Path, rows: list[array.array], devs: list | None = None, part_power: int = 6
) -> Path:
    RingData(rows, [None if d is None else dict(d) for d in (devs or DEVS)], 32 - part_power).save(
        str(path)
    )
    return path


@pytest.fixture
def secrets():
    old = hashing.get_hash_path_secrets()
    hashing.set_hash_path_secrets("pre", "suf")
    yield
    hashing.set_hash_path_secrets(*old)


@pytest.fixture
def ring_path(tmp_path: Path) -> Path:
    return _write(tmp_path / "object.ring.gz", _rows(6))


def test_basic_properties(ring_path, secrets):
    ring = Ring(str(ring_path))
    assert ring.partition_count == 64
    assert ring.part_power == 6
    assert ring.replica_count == 3
    assert ring.device_count == 8
    assert ring.assigned_device_count == 7
    assert ring.weighted_device_count == 7
    assert ring.dev_id_bytes == 2
    assert ring.next_part_power is None
    assert len(ring.devs) == 8


def test_ring_name_form(ring_path, secrets):
    ring = Ring(str(ring_path.parent), ring_name="object")
    assert ring.serialized_path == str(ring_path)
    with pytest.raises(FileNotFoundError):
        Ring(str(ring_path.parent), ring_name="container")


def test_get_nodes_partition_and_node_dicts(ring_path, secrets):
    ring = Ring(str(ring_path))
    part, nodes = ring.get_nodes("AUTH_a", "c", "o/with/slashes")
    digest = hashing.hash_path_digest("AUTH_a", "c", "o/with/slashes")
    assert part == hashing.partition_for_digest(digest, 26)
    assert part == ring.get_part("AUTH_a", "c", "o/with/slashes")
    assert [n["index"] for n in nodes] == [0, 1, 2]
    expected_ids = [(part * 3 + r * 2) % 7 for r in range(3)]
    assert [n["id"] for n in nodes] == expected_ids
    for node in nodes:
        assert node["replication_ip"] == node["ip"]
        assert node["replication_port"] == node["port"]
    # Bytes names hash like their UTF-8 text.
    assert ring.get_nodes(b"AUTH_\xc3\xa9", b"c") == ring.get_nodes("AUTH_\u00e9", "c")
    with pytest.raises(ValueError):
        ring.get_nodes("a", None, "o")


def test_returned_nodes_are_copies(ring_path, secrets):
    ring = Ring(str(ring_path))
    part, nodes = ring.get_nodes("a", "c", "o")
    nodes[0]["ip"] = "mutated"
    nodes[0]["extra"] = 1
    assert ring.get_nodes("a", "c", "o")[1][0]["ip"] != "mutated"
    assert "extra" not in ring.get_part_nodes(part)[0]
    handoff = next(ring.get_more_nodes(part))
    handoff["ip"] = "mutated"
    assert "mutated" not in {d["ip"] for d in ring.devs if d}


def test_hash_secrets_per_ring(ring_path, secrets):
    default = Ring(str(ring_path))
    own = Ring(str(ring_path), hash_prefix="other", hash_suffix=b"x")
    digest = hashing.hash_path_digest("a", "c", "o", prefix=b"other", suffix=b"x")
    assert own.get_part("a", "c", "o") == hashing.partition_for_digest(digest, 26)
    parts = {
        (default.get_part("a", "c", f"o{i}"), own.get_part("a", "c", f"o{i}")) for i in range(50)
    }
    assert any(a != b for a, b in parts)
    # One given, the other process-wide ("suf" from the fixture).
    half = Ring(str(ring_path), hash_prefix="other")
    for names in (("a", "c", "o\udcff"), ("a", "c", "o"), ("a", "c"), ("a",), (b"a", "c", "o")):
        digest = hashing.hash_path_digest(*names, prefix=b"other", suffix=b"suf")
        assert half.get_part(*names) == hashing.partition_for_digest(digest, 26)
        digest = hashing.hash_path_digest(*names)
        assert default.get_part(*names) == hashing.partition_for_digest(digest, 26)
    with pytest.raises(ValueError):
        default.get_part("a", "", "o")


def test_duplicate_device_listed_once(tmp_path, secrets):
    rows = [array.array("H", [p % 7 for p in range(64)]) for _ in range(2)]
    rows.append(array.array("H", [(p + 1) % 7 for p in range(64)]))
    ring = Ring(str(_write(tmp_path / "d.ring.gz", rows)))
    nodes = ring.get_part_nodes(5)
    assert [n["id"] for n in nodes] == [5, 6]
    assert [n["index"] for n in nodes] == [0, 1]


def test_fractional_replicas(tmp_path, secrets):
    rows = _rows(6)
    rows.append(array.array("H", [(p * 3 + 6) % 7 for p in range(16)]))
    ring = Ring(str(_write(tmp_path / "f.ring.gz", rows)))
    assert ring.replica_count == 3.25
    assert len(ring.get_part_nodes(3)) == 4
    assert len(ring.get_part_nodes(40)) == 3
    assert ring.get_part_nodes(64) == []  # past the end, as Swift


def test_handoff_invariants(ring_path, secrets):
    ring = Ring(str(ring_path))
    for part in range(ring.partition_count):
        primaries = ring.get_part_nodes(part)
        handoffs = list(ring.get_more_nodes(part))
        ids = [n["id"] for n in primaries + handoffs]
        # Every device holding partitions shows up exactly once, the empty
        # one never.
        assert sorted(ids) == list(range(7))
        assert [n["handoff_index"] for n in handoffs] == list(range(len(handoffs)))
        assert all("index" not in n for n in handoffs)
        # Tier preference: the first handoff is in a region not yet used
        # when there is one.
        regions = {n["region"] for n in primaries}
        if regions != {1, 2}:
            assert handoffs[0]["region"] not in regions
        # Deterministic.
        assert handoffs == list(ring.get_more_nodes(part))


def test_handoff_generator_is_lazy_and_snapshots_the_ring(tmp_path, secrets):
    path = _write(tmp_path / "s.ring.gz", _rows(6))
    ring = Ring(str(path), reload_time=0)
    expected = list(ring.get_more_nodes(9))
    gen = ring.get_more_nodes(9)
    first = next(gen)
    # A new ring lands mid-iteration; the walk keeps using the old one.
    _write(path, [array.array("H", [0] * 64) for _ in range(3)])
    assert ring.reload()
    assert [first, *gen] == expected


def test_reload_when_file_changes(tmp_path, secrets, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(ring_mod.time, "monotonic", lambda: clock[0])
    path = _write(tmp_path / "r.ring.gz", _rows(6))
    ring = Ring(str(path), reload_time=15)
    before = ring.get_part_nodes(0)
    assert not ring.has_changed()
    new_rows = [array.array("H", [6 - r] * 64) for r in range(3)]
    _write(path, new_rows)
    assert ring.has_changed()
    # Not yet: checked at most every reload_time seconds.
    clock[0] += 10
    assert ring.get_part_nodes(0) == before
    clock[0] += 6
    assert [n["id"] for n in ring.get_part_nodes(0)] == [6, 5, 4]
    part, nodes = ring.get_nodes("a", "c", "o")
    assert [n["id"] for n in nodes] == [6, 5, 4]
    assert not ring.has_changed()
    # An unchanged file is not re-read.
    loads = []
    monkeypatch.setattr(ring_mod.RingData, "load", lambda *a, **k: loads.append(a))
    clock[0] += 100
    ring.get_part_nodes(1)
    assert loads == []
    assert ring.reload() is False


def test_reload_picks_up_new_devices(tmp_path, secrets):
    path = _write(tmp_path / "n.ring.gz", _rows(6))
    ring = Ring(str(path), reload_time=0)
    devs = [*DEVS, _dev(8, 3, 1, "10.2.0.1")]
    rows = _rows(6)
    rows[2] = array.array("H", [8] * 64)
    _write(path, rows, devs)
    os.utime(path, ns=(1, 1))  # even with an old mtime: the inode changed
    assert ring.get_part_nodes(0)[2]["id"] == 8
    assert len(ring.devs) == 9
    assert ring.assigned_device_count == 8
    handoffs = list(ring.get_more_nodes(0))
    assert 8 not in {n["id"] for n in handoffs}


def test_holes_in_devs(tmp_path, secrets):
    devs = list(DEVS)
    devs[7] = None
    ring = Ring(str(_write(tmp_path / "h.ring.gz", _rows(6), devs)))
    assert ring.devs[7] is None
    assert ring.device_count == 7
    assert len(list(ring.get_more_nodes(3))) == 4


async def _until(predicate, what: str) -> None:
    """Wait for the watcher to act; the bound only stops a hung test."""
    for _ in range(2000):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_watch_reloads_off_the_loop(tmp_path, secrets, caplog):
    from blockbuster import blockbuster_ctx

    path = _write(tmp_path / "w.ring.gz", _rows(6))
    # reload_time=0 would stat on every lookup; the watcher turns that off.
    ring = Ring(str(path), reload_time=0)
    task = asyncio.create_task(ring.watch(interval=0.01))
    try:
        await asyncio.sleep(0)
        with blockbuster_ctx("swiftlite"):
            for i in range(200):
                ring.get_nodes("a", "c", f"o{i}")
                ring.get_part_nodes(i % 64)
                list(ring.get_more_nodes(i % 64))
                assert ring.devs
        # A new file is picked up by the watcher.
        _write(path, [array.array("H", [6 - r] * 64) for r in range(3)])
        await _until(lambda: ring.get_part_nodes(0)[0]["id"] == 6, "reload")
        # A broken file is logged and the loaded ring kept.
        path.write_bytes(b"garbage")
        with caplog.at_level("ERROR", logger="swiftlite.ring.ring"):
            await _until(lambda: "could not reload ring" in caplog.text, "error log")
        assert [n["id"] for n in ring.get_part_nodes(0)] == [6, 5, 4]
        _write(path, _rows(6))
        await _until(lambda: ring.get_part_nodes(0)[0]["id"] == 0, "recovery")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    # Without a watcher, lookups check the file themselves again.
    _write(path, [array.array("H", [5] * 64) for _ in range(3)])
    assert ring.get_part_nodes(1)[0]["id"] == 5


async def test_reload_async(tmp_path, secrets):
    path = _write(tmp_path / "a.ring.gz", _rows(6))
    ring = Ring(str(path))
    assert await ring.reload_async() is False
    _write(path, [array.array("H", [3] * 64) for _ in range(3)])
    assert await ring.reload_async() is True
    assert ring.get_part_nodes(0)[0]["id"] == 3
    assert await ring.reload_async(force=True) is True


async def test_load_or_refresh_loads_once_then_refreshes(tmp_path) -> None:
    import array

    from swiftlite.ring.ring import load_or_refresh
    from swiftlite.ring.ring_io import RingData

    devs = [{"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1", "port": 6200,
             "device": "sda", "weight": 1.0}]
    RingData([array.array("H", [0] * 4)], devs, 30).save(str(tmp_path / "object.ring.gz"))
    first = await load_or_refresh(None, str(tmp_path), "object")
    assert first.partition_count == 4
    assert await load_or_refresh(first, str(tmp_path), "object") is first
