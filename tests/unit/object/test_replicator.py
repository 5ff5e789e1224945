"""The object replicator against in-process object servers speaking REPCONN."""

from __future__ import annotations

import asyncio
import json
import os
import shutil

import pytest

from swiftlite.common.config import load_config
from swiftlite.common.hashing import hash_path
from swiftlite.object.replicator import TokenBucket
from swiftlite.object.replicator_config import ObjectReplicatorConfig
from tests.unit.object import test_replicator_support as support
from tests.unit.object.test_replicator_support import ts

make_cluster = support.make_cluster
python_http_parser = support.python_http_parser

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


def names_in_distinct_suffixes(count: int) -> list[str]:
    """Object names whose hashes fall in ``count`` different suffixes."""
    out: list[str] = []
    seen: set[str] = set()
    i = 0
    while len(out) < count:
        name = f"a/c/o{i}"
        suffix = str(hash_path(*name.split("/")))[-3:]
        if suffix not in seen:
            seen.add(suffix)
            out.append(name)
        i += 1
    return out


async def test_primary_sync_sends_only_differing_suffixes(make_cluster) -> None:
    cluster = await make_cluster(count=3, primaries=3)
    a, b, c = cluster.nodes
    same, missing = names_in_distinct_suffixes(2)
    t1, t2 = ts(-5), ts()
    for node in (a, b, c):
        node.put(same, b"same everywhere", t1)
    a.put(missing, b"only on a", t2)
    c.put(missing, b"only on a", t2)
    repl = await cluster.run_pass(a)
    s = repl.stats
    assert s.partitions_total == s.partitions_done == 1
    assert s.primary_partitions == 1 and s.errors == 0
    # Only b lacked anything, and only in one suffix: one file offered, sent.
    assert s.files_offered == 1 and s.files_sent == 1
    assert s.bytes_sent == len(b"only on a")
    assert b.read(missing) == b"only on a"
    # A second pass finds every suffix equal and sends nothing.
    repl = await cluster.run_pass(a)
    assert repl.stats.files_offered == 0 and repl.stats.files_sent == 0
    stats = json.load(open(os.path.join(cluster.root, "recon0", "object-replicator.json")))
    assert stats["version"] == 1 and stats["in_progress"] is False
    assert stats["partitions_done"] == 1 and stats["files_sent"] == 0
    assert stats["last_pass_duration"] is not None


async def test_lost_replica_comes_back_with_meta(make_cluster) -> None:
    cluster = await make_cluster(count=3, primaries=3)
    a, b, c = cluster.nodes
    names = [f"a/c/obj{i}" for i in range(20)]
    t1, t2 = ts(-5), ts()
    for name in names:
        for node in (a, b, c):
            node.put(name, name.encode() * 3, t1)
    a.post(names[0], t2, **{"X-Object-Meta-Color": "red"})
    shutil.rmtree(os.path.join(b.device_path, "objects"))
    repl = await cluster.run_pass(a)
    assert repl.stats.errors == 0
    for name in names:
        assert b.read(name) == name.encode() * 3
    assert b.files(names[0]) == [f"{t1}.data", f"{t2}.meta"]
    # c lacked only the .meta: it got just that.
    assert c.files(names[0]) == [f"{t1}.data", f"{t2}.meta"]
    assert repl.stats.files_sent == len(names) + 2


async def test_handoff_drains_only_once_every_primary_has_it(make_cluster) -> None:
    cluster = await make_cluster(count=4, primaries=3)
    a, b, c, handoff = cluster.nodes
    names = [f"a/c/h{i}" for i in range(5)]
    t1 = ts()
    for name in names:
        handoff.put(name, b"handed off " + name.encode(), t1)
    a.put(names[0], b"handed off " + names[0].encode(), t1)  # a already has one
    # c is unmounted: the handoff may push to a and b but must keep its copies.
    shutil.move(c.device_path, c.device_path + ".away")
    repl = await cluster.run_pass(handoff)
    assert repl.stats.handoff_partitions == 1
    assert repl.stats.peers_unavailable == 1
    assert repl.stats.handoff_files_removed == 0
    for name in names:
        assert b.read(name) == b"handed off " + name.encode()
        assert handoff.files(name) == [f"{t1}.data"]
    shutil.move(c.device_path + ".away", c.device_path)
    repl = await cluster.run_pass(handoff)
    assert repl.stats.handoff_files_removed == len(names)
    assert repl.stats.handoff_partitions_removed == 1
    for name in names:
        assert c.read(name) == b"handed off " + name.encode()
        assert handoff.files(name) == []
    assert not os.path.exists(os.path.join(handoff.device_path, "objects", "0"))


async def test_handoff_tombstone_drains_and_older_data_is_not_resurrected(make_cluster) -> None:
    cluster = await make_cluster(count=4, primaries=3)
    a, b, c, handoff = cluster.nodes
    name = "a/c/deleted"
    t1, t2 = ts(-10), ts()
    for node in (a, b, c):
        node.put(name, b"old", t1)
    handoff.delete(name, t2)
    await cluster.run_pass(handoff)
    for node in (a, b, c):
        assert node.files(name) == [f"{t2}.ts"]
    assert handoff.files(name) == []


async def test_deletes_spread_and_are_never_undone(make_cluster) -> None:
    cluster = await make_cluster(count=3, primaries=3)
    a, b, c = cluster.nodes
    name = "a/c/gone"
    t1, t2 = ts(-10), ts()
    for node in (a, b, c):
        node.put(name, b"v1", t1)
    a.delete(name, t2)  # b and c missed the delete
    # b replicates first: its old .data meets a's newer tombstone and goes.
    repl = await cluster.run_pass(b)
    assert repl.stats.files_superseded == 1
    assert b.files(name) == []
    assert a.files(name) == [f"{t2}.ts"]
    # a pushes the tombstone to b and c.
    await cluster.run_pass(a)
    for node in (a, b, c):
        assert node.files(name) == [f"{t2}.ts"]
    # Passes from anyone leave it deleted.
    for node in (b, c, a):
        await cluster.run_pass(node)
    for node in (a, b, c):
        assert node.files(name) == [f"{t2}.ts"]


async def test_old_tombstones_are_reclaimed(make_cluster) -> None:
    cluster = await make_cluster(count=2, primaries=2)
    a, b = cluster.nodes
    name = "a/c/ancient"
    t_old = ts(-1000)
    a.delete(name, t_old)
    repl = await cluster.run_pass(a, reclaim_age=100)
    assert repl.stats.files_sent == 0
    assert a.files(name) == [] and b.files(name) == []


async def test_corrupt_file_is_quarantined_and_restored(make_cluster) -> None:
    cluster = await make_cluster(count=2, primaries=2)
    a, b = cluster.nodes
    short, flipped = names_in_distinct_suffixes(2)
    t1 = ts()
    for node in (a, b):
        node.put(short, b"0123456789", t1)
    a.put(flipped, b"abcdefghij", t1)
    # A .data shorter than its Content-Length fails the sender's mini-audit.
    data_short = os.path.join(
        a.mgr.get_diskfile(a.device, 0, *short.split("/")).datadir, f"{t1}.data"
    )
    os.truncate(data_short, 4)
    # ...then make a a suffix-difference away from b, so it offers `short`.
    a.post(short, ts(1), **{"X-Object-Meta-X": "y"})
    # A same-size bit flip passes the mini-audit but not the receiver's md5.
    data_flipped = os.path.join(
        a.mgr.get_diskfile(a.device, 0, *flipped.split("/")).datadir, f"{t1}.data"
    )
    with open(data_flipped, "r+b") as fh:
        fh.write(b"X")
    repl = await cluster.run_pass(a)
    assert repl.stats.quarantined == 2
    assert b.files(flipped) == []  # never linked on b
    assert a.files(short) == [] and a.files(flipped) == []
    quarantined = os.listdir(os.path.join(a.device_path, "quarantined", "objects"))
    assert len(quarantined) == 2
    # b holds a good `short`: its pass restores it on a.
    await cluster.run_pass(b)
    assert a.read(short) == b"0123456789"


async def test_newer_data_is_not_overwritten_by_older(make_cluster) -> None:
    cluster = await make_cluster(count=2, primaries=2)
    a, b = cluster.nodes
    name = "a/c/race"
    t1, t2 = ts(-5), ts()
    a.put(name, b"older", t1)
    b.put(name, b"newer", t2)
    await cluster.run_pass(a)
    assert b.read(name) == b"newer"
    assert a.files(name) == []  # superseded remotely, removed here
    await cluster.run_pass(b)
    assert a.read(name) == b"newer"


async def test_unmounted_primary_is_replaced_by_a_handoff(make_cluster) -> None:
    cluster = await make_cluster(count=4, primaries=3)
    a, b, c, spare = cluster.nodes
    name = "a/c/x"
    a.put(name, b"payload", ts())
    shutil.rmtree(c.device_path)
    repl = await cluster.run_pass(a)
    assert repl.stats.peers_unavailable == 1
    assert b.read(name) == b"payload"
    assert spare.read(name) == b"payload"


async def test_bandwidth_limit_sleeps_off_the_debt(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def fake_sleep(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    bucket = TokenBucket(1000)
    await bucket.consume(500)
    assert slept == []
    await bucket.consume(2500)
    assert slept and slept[-1] == pytest.approx(2.0, abs=0.05)
    await TokenBucket(0).consume(10**9)  # unlimited: never sleeps
    assert len(slept) == 1


def test_sample_config_loads_with_swift_names() -> None:
    conf = load_config(os.path.join(REPO, "etc", "object-replicator.yaml"), ObjectReplicatorConfig)
    assert conf.concurrency == 1
    assert conf.reclaim_age == 604800
    assert conf.interval == 30
    assert conf.handoffs_first is False
    with pytest.raises(ValueError):
        ObjectReplicatorConfig(concurrency=0)


async def test_event_loop_never_blocks_during_a_pass(make_cluster) -> None:
    """Sender and receivers share this loop here; blockbuster fails on any
    blocking call made on it (file work must go through the device threads)."""
    from blockbuster import blockbuster_ctx

    cluster = await make_cluster(count=4, primaries=3)
    a, b, c, handoff = cluster.nodes
    t1, t2 = ts(-5), ts()
    names = [f"a/c/bb{i}" for i in range(10)]
    for name in names:
        a.put(name, os.urandom(2000), t1)
        handoff.put(name + "h", b"h", t1)
    a.put("a/c/large", os.urandom(3 * 1024 * 1024), t1)
    a.delete(names[0], t2)
    a.post(names[1], t2, **{"X-Object-Meta-A": "b"})
    repl_a = cluster.replicator(a, concurrency=2)
    repl_h = cluster.replicator(handoff)
    try:
        with blockbuster_ctx():
            await repl_a.run_once()
            await repl_h.run_once()
    finally:
        repl_a.close()
        repl_h.close()
    assert repl_a.stats.errors == 0 and repl_h.stats.errors == 0
    assert b.files(names[0]) == [f"{t2}.ts"]
    assert len(c.read("a/c/large")) == 3 * 1024 * 1024
    assert repl_h.stats.handoff_files_removed == len(names)


async def test_forever_mode_repeats_passes_until_stopped(make_cluster) -> None:
    cluster = await make_cluster(count=2, primaries=2)
    a, b = cluster.nodes
    a.put("a/c/first", b"1", ts(-1))
    repl = cluster.replicator(a, interval=0.01)
    passes: list[int] = []
    real_run_once = repl.run_once

    async def counting_run_once() -> None:
        await real_run_once()
        passes.append(repl.stats.files_sent)
        if len(passes) == 1:
            a.put("a/c/second", b"2", ts())  # arrives between passes
        if len(passes) == 3:
            repl.stopping.set()

    repl.run_once = counting_run_once  # type: ignore[method-assign]
    try:
        await asyncio.wait_for(repl.run_forever(), 30)
    finally:
        repl.close()
    assert passes == [1, 1, 0]
    assert b.read("a/c/second") == b"2"


async def test_busy_peer_is_retried_not_skipped(make_cluster) -> None:
    """Two partitions at once against a peer taking one session per device:
    the second session is refused (503) at first and retried until it gets in."""
    cluster = await make_cluster(count=2, primaries=2)
    a, b = cluster.nodes
    b.server.conf.replication_concurrency_per_device = 1  # type: ignore[attr-defined]
    a.put("a/c/p0", b"zero", ts(), part=0)
    a.put("a/c/p1", b"one", ts(), part=1)
    refused: list[int] = []
    real = b.server.dm.slot

    def counting_slot(device: str, kind: str = "read", limit: int | None = None):  # type: ignore[no-untyped-def]
        if kind == "replication" and limit == 1 and b.server.dm.usage().get(device, 0) >= 1:
            refused.append(1)
        return real(device, kind, limit)

    b.server.dm.slot = counting_slot  # type: ignore[method-assign]
    repl = await cluster.run_pass(a, concurrency=2)
    assert repl.stats.peers_unavailable == 0 and repl.stats.files_sent == 2
    assert refused  # the race did happen
    assert b.read("a/c/p0", part=0) == b"zero"
    assert b.read("a/c/p1", part=1) == b"one"


async def test_job_selection(make_cluster) -> None:
    cluster = await make_cluster(count=4, primaries=3)
    node = cluster.nodes[3]  # a handoff for partition 0, a primary for partition 1
    node.put("a/c/x", b"x", ts(), part=0)
    node.put("a/c/y", b"y", ts(), part=1)
    repl = cluster.replicator(node, handoffs_first=True)
    try:
        jobs = await repl.collect_jobs()
        assert [(j.partition, j.handoff) for j in jobs] == [(0, True), (1, False)]
        assert sorted(p["id"] for p in jobs[0].peers) == [0, 1, 2]
        assert sorted(p["id"] for p in jobs[1].peers) == [0, 1]
    finally:
        repl.close()
    repl = cluster.replicator(node, partitions_only=[1])
    try:
        assert [j.partition for j in await repl.collect_jobs()] == [1]
    finally:
        repl.close()
    # A local device that fails its mount check is skipped and counted.
    repl = cluster.replicator(node, mount_check=True)
    try:
        assert await repl.collect_jobs() == []
        assert repl.stats.errors == 1
    finally:
        repl.close()
    # Another node's devices are not this one's.
    repl = cluster.replicator(node, devices_only=["sda"])
    try:
        assert await repl.collect_jobs() == []
    finally:
        repl.close()


async def test_each_policy_replicates_in_its_own_dirs(make_cluster) -> None:
    cluster = await make_cluster(count=2, primaries=2)
    a, b = cluster.nodes
    a.put("a/c/gold", b"policy 0", ts(), policy=0)
    a.put("a/c/silver", b"policy 1", ts(), policy=1)
    repl = await cluster.run_pass(a)
    assert repl.stats.partitions_total == 2 and repl.stats.files_sent == 2
    assert b.read("a/c/gold", policy=0) == b"policy 0"
    assert b.read("a/c/silver", policy=1) == b"policy 1"
    assert os.path.isdir(os.path.join(b.device_path, "objects-1", "0"))
