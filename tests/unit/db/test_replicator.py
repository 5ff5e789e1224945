"""DB replication end to end: in-process servers, real HTTP, real brokers."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from swiftlite.container.backend import ContainerBroker
from swiftlite.db.replicator import DBReplicator
from tests.unit.db import test_replicator_support as support
from tests.unit.db.test_replicator_support import (
    BASE,
    HASH,
    Factory,
    Node,
    add_rows,
    info_of,
    names_in,
    ts,
)

make_nodes = support.make_nodes
python_http_parser = support.python_http_parser


async def run(node: Node, tmp_path: Path, **conf: Any) -> DBReplicator:
    rep = node.replicator(str(tmp_path), **conf)
    try:
        await rep.run_once()
    finally:
        rep.close()
    return rep


@pytest.mark.parametrize("role", ["container", "account"])
async def test_replicas_converge_both_ways_and_a_missing_one_is_recreated(
    make_nodes: Factory, tmp_path: Path, role: str
) -> None:
    nodes = await make_nodes(role, count=3, primaries=3)
    a, b, c = nodes
    with a.create() as broker:
        add_rows(broker, ["x1", "x2", "shared"], 1)
        broker.update_metadata({f"X-{role.title()}-Meta-A": ["1", ts(1)]})
    with b.create() as broker:
        add_rows(broker, ["y1", "shared"], 2)
        broker.update_metadata({f"X-{role.title()}-Meta-B": ["2", ts(2)]})
    assert not c.exists()
    rep = await run(a, tmp_path)
    assert rep.stats.rsync == 1 and rep.stats.diff == 1 and rep.stats.failure == 0
    assert c.exists() and names_in(c) == ["shared", "x1", "x2"]
    assert names_in(b) == ["shared", "x1", "x2", "y1"]
    # a learnt b's metadata on the way (merged both ways), not its rows.
    with a.broker() as broker:
        assert f"X-{role.title()}-Meta-B" in broker.metadata
    assert names_in(a) == ["shared", "x1", "x2"]
    await run(b, tmp_path)
    for node in nodes:
        assert names_in(node) == ["shared", "x1", "x2", "y1"]
    hashes = {info_of(n)["hash"] for n in nodes}
    assert len(hashes) == 1
    ids = {info_of(n)["id"] for n in nodes}
    assert len(ids) == 3  # the copy got an id of its own
    # Another pass changes nothing and sends nothing.
    rep = await run(c, tmp_path)
    assert rep.stats.diff == 0 and rep.stats.rsync == 0
    assert rep.stats.no_change + rep.stats.hashmatch == 2
    stats = json.loads((tmp_path / "recon2" / f"{role}-replicator.json").read_text())
    assert stats["attempted"] == 1 and stats["success"] == 2


async def test_newest_row_wins_and_deletes_replicate(make_nodes: Factory, tmp_path: Path) -> None:
    a, b = await make_nodes("container", count=2, primaries=2)
    with a.create() as broker:
        broker.put_object("o", ts(5), 5, "text/plain", "new")
        broker.put_object("gone", ts(1), 1, "text/plain", "e")
    with b.create() as broker:
        broker.put_object("o", ts(1), 1, "text/plain", "old")
        broker.delete_object("gone", ts(6))
        broker.update_put_timestamp(ts(9))
    await run(a, tmp_path)
    # Timestamps flow back to the sender too (a learnt b's newer put).
    assert info_of(a)["put_timestamp"] == ts(9)
    await run(b, tmp_path)
    for node in (a, b):
        with node.broker() as broker:
            assert isinstance(broker, ContainerBroker)
            rows = broker.list_objects_iter(10, None, None, None, None)
            assert [(r[0], r[4]) for r in rows] == [("o", "new")]
    assert info_of(a)["hash"] == info_of(b)["hash"]


async def test_handoff_is_pushed_to_every_primary_then_removed(
    make_nodes: Factory, tmp_path: Path
) -> None:
    nodes = await make_nodes("container", count=4, primaries=3)
    handoff = nodes[3]
    with handoff.create() as broker:
        add_rows(broker, ["h1", "h2"], 1)
    with nodes[0].create() as broker:
        add_rows(broker, ["p1"], 1)
    rep = await run(handoff, tmp_path)
    assert rep.stats.remove == 1
    assert not handoff.exists()
    assert names_in(nodes[0]) == ["h1", "h2", "p1"]
    for node in nodes[1:3]:
        assert names_in(node) == ["h1", "h2"]


async def test_handoff_kept_when_a_primary_is_down(make_nodes: Factory, tmp_path: Path) -> None:
    nodes = await make_nodes("account", count=4, primaries=3)
    await nodes[2].http.close()
    with nodes[3].create() as broker:
        add_rows(broker, ["c1"], 1)
    rep = await run(nodes[3], tmp_path, conn_timeout=0.5, node_timeout=2)
    assert rep.stats.failure == 1 and rep.stats.success == 2 and rep.stats.remove == 0
    assert nodes[3].exists()
    assert names_in(nodes[0]) == ["c1"]


async def test_big_diff_in_batches_capped_per_pass(make_nodes: Factory, tmp_path: Path) -> None:
    a, b = await make_nodes("container", count=2, primaries=2)
    with a.create() as broker:
        add_rows(broker, [f"o{i:02d}" for i in range(25)], 1)
    with b.create() as broker:
        add_rows(broker, ["z"], 1)
    rep = await run(a, tmp_path, per_diff=4, max_diffs=3)
    assert rep.stats.diff_capped == 1 and rep.stats.remote_merge == 3
    assert len(names_in(b)) == 1 + 12
    passes = 0
    while len(names_in(b)) < 26:
        await run(a, tmp_path, per_diff=4, max_diffs=3)
        passes += 1
        assert passes < 5
    assert names_in(b)[:25] == [f"o{i:02d}" for i in range(25)]
    rep = await run(a, tmp_path, per_diff=4, max_diffs=3)
    assert rep.stats.diff == 0


async def test_corrupt_db_is_quarantined(make_nodes: Factory, tmp_path: Path) -> None:
    a, b = await make_nodes("container", count=2, primaries=2)
    a.create().close()
    with open(a.db_file(), "r+b") as fp:
        fp.seek(0)
        fp.write(b"garbage" * 200)
    rep = await run(a, tmp_path)
    assert rep.stats.quarantined == 1
    assert not a.exists()
    assert os.path.isdir(os.path.join(a.devices, a.device, "quarantined", "containers", HASH))
    assert not b.exists()


async def test_long_deleted_empty_container_db_is_reclaimed(
    make_nodes: Factory, tmp_path: Path
) -> None:
    a, b = await make_nodes("container", count=2, primaries=2)
    with a.create(put_ts=ts(0)) as broker:
        broker.put_object("o", ts(1), 1, "text/plain", "e")
        broker.delete_object("o", ts(2))
        broker.delete_db(ts(3))
    # reclaim_age shorter than the age of those timestamps.
    age = int(time.time() - BASE) - 100
    rep = await run(a, tmp_path, reclaim_age=age)
    assert rep.stats.reclaimed == 1 and not a.exists() and not b.exists()


async def test_server_routes_replicate_without_shadowing_other_verbs(
    make_nodes: Factory,
) -> None:
    import aiohttp

    (a,) = await make_nodes("container", count=1, primaries=1)
    base = f"http://127.0.0.1:{a.port}"
    async with aiohttp.ClientSession() as session:
        url = f"{base}/sda/0/{HASH}"
        async with session.request(
            "REPLICATE", url, data=b'["sync",1,"h","i","0","0","0",""]'
        ) as r:
            assert r.status == 404
        a.create().close()
        args = ["sync", 1, "h", "i", ts(0), ts(0), "0", ""]
        async with session.request("REPLICATE", url, data=json.dumps(args).encode()) as r:
            assert r.status == 200
            assert (await r.json())["point"] == -1
        async with session.request("REPLICATE", f"{base}/sdz/0/{HASH}", data=b"[]") as r:
            assert r.status == 507
        async with session.get(f"{base}/sda/0/a/c") as r:
            assert r.status == 404  # the normal handler, not the REPLICATE route
        async with session.request("OPTIONS", f"{base}/sda/0/a/c") as r:
            assert r.status == 200


async def test_unmounted_primary_gets_a_handoff_copy_instead(
    make_nodes: Factory, tmp_path: Path
) -> None:
    nodes = await make_nodes("container", count=4, primaries=3)
    with nodes[0].create() as broker:
        add_rows(broker, ["o1"], 1)
    os.rename(
        os.path.join(nodes[2].devices, nodes[2].device),
        os.path.join(nodes[2].devices, "unplugged"),
    )
    rep = await run(nodes[0], tmp_path)
    assert rep.stats.success == 2 and rep.stats.failure == 1
    assert names_in(nodes[1]) == ["o1"] and names_in(nodes[3]) == ["o1"]
    # The disk comes back: the handoff drains home and goes away.
    os.rename(
        os.path.join(nodes[2].devices, "unplugged"),
        os.path.join(nodes[2].devices, nodes[2].device),
    )
    rep = await run(nodes[3], tmp_path)
    assert rep.stats.remove == 1 and not nodes[3].exists()
    assert names_in(nodes[2]) == ["o1"]


async def test_forever_mode_passes_until_stopped_and_old_temp_files_go(
    make_nodes: Factory, tmp_path: Path
) -> None:
    a, b = await make_nodes("account", count=2, primaries=2)
    with a.create() as broker:
        add_rows(broker, ["c1"], 1)
    db_dir = os.path.dirname(a.db_file())
    old, new = os.path.join(db_dir, "old.tmp"), os.path.join(db_dir, "new.tmp")
    for path in (old, new):
        with open(path, "wb") as fp:
            fp.write(b"half")
    dev_tmp = os.path.join(a.devices, a.device, "tmp")
    os.makedirs(dev_tmp)
    stale_copy = os.path.join(dev_tmp, "dead.db-copy")
    with open(stale_copy, "wb") as fp:
        fp.write(b"snapshot of a pass that died")
    for path in (old, stale_copy):
        os.utime(path, (time.time() - 30 * 86400,) * 2)
    rep = a.replicator(str(tmp_path), interval=0.01)
    stats_file = tmp_path / "recon0" / "account-replicator.json"
    task = asyncio.create_task(rep.run_forever())
    try:
        for _ in range(1000):
            if b.exists() and stats_file.exists():
                break
            await asyncio.sleep(0.01)
        rep.stopping.set()
        await asyncio.wait_for(task, 30)
    finally:
        rep.close()
    assert names_in(b) == ["c1"]
    assert not os.path.exists(old) and os.path.exists(new)
    assert os.listdir(dev_tmp) == []  # the stale snapshot, and this pass's own


async def test_whole_copy_of_a_db_larger_than_the_request_size_limit(
    make_nodes: Factory, tmp_path: Path
) -> None:
    a, b = await make_nodes("container", count=2, primaries=2)
    with a.create() as broker:
        assert isinstance(broker, ContainerBroker)
        broker.put_records(
            [
                broker.make_record(f"obj-{i:05d}-" + "x" * 200, ts(1), i, "text/plain", "e")
                for i in range(6000)
            ]
        )
        broker.get_info()  # flush the pending file
    assert os.path.getsize(a.db_file()) > 2 * 1024**2  # over client_max_size (1 MiB)
    rep = await run(a, tmp_path)
    assert rep.stats.rsync == 1 and rep.stats.failure == 0
    assert info_of(b)["hash"] == info_of(a)["hash"]
    assert len(names_in(b)) == 6000


def test_handoff_not_removed_when_a_row_arrived_after_the_offer(tmp_path: Path) -> None:
    from swiftlite.db.replicator import _remove_handoff

    db_dir = tmp_path / "sda" / "containers" / "0" / HASH[-3:] / HASH
    broker = ContainerBroker(str(db_dir / f"{HASH}.db"), account="a", container="c")
    broker.initialize(ts(0), storage_policy_index=0)
    broker.put_object("o1", ts(1), 1, "text/plain", "e")
    offered = broker.get_replication_info()["max_row"]
    broker.put_object("o2", ts(2), 1, "text/plain", "e")  # still in the pending file
    assert not _remove_handoff(broker.db_file, offered, "object")
    broker.get_info()  # now merged: a higher ROWID than offered
    assert not _remove_handoff(broker.db_file, offered, "object")
    broker.close()
    assert db_dir.is_dir()
    assert _remove_handoff(broker.db_file, offered + 1, "object")
    assert not db_dir.exists()
    assert os.listdir(db_dir.parent) == []
