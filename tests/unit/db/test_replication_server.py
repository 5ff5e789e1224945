"""The REPLICATE receiver's operations, one by one, on real brokers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request

from swiftlite.account.backend import AccountBroker
from swiftlite.common.devices import DeviceManager
from swiftlite.container.backend import ContainerBroker
from swiftlite.db.replication_server import (
    ReplicationRpc,
    install_db,
    op_merge_items,
    op_merge_syncs,
    op_sync,
)
from swiftlite.db.replicator import _snapshot
from tests.unit.db.test_replicator_support import HASH, ts


def container(path: Path, name: str = "c.db") -> ContainerBroker:
    broker = ContainerBroker(
        str(path / "sda" / "containers" / "0" / "abc" / "h" / name), account="a", container="c"
    )
    broker.initialize(ts(0), storage_policy_index=0)
    return broker


def sync_args(broker: ContainerBroker | AccountBroker) -> list[object]:
    info = broker.get_replication_info()
    return [
        info["max_row"],
        info["hash"],
        info["id"],
        info["created_at"],
        info["put_timestamp"],
        info["delete_timestamp"],
        info["metadata"],
    ]


def test_sync_without_db_is_404(tmp_path: Path) -> None:
    broker = ContainerBroker(str(tmp_path / "none.db"))
    status, doc = op_sync(broker, [5, "x" * 32, "id", ts(0), ts(0), "0", ""])
    assert (status, doc) == (404, None)


def test_sync_answers_point_and_merges_metadata_and_timestamps(tmp_path: Path) -> None:
    local = container(tmp_path)
    remote = container(tmp_path, "r.db")
    remote.put_object("o1", ts(1), 1, "text/plain", "e")
    remote.update_metadata({"X-Container-Meta-Color": ["blue", ts(3)]})
    remote.update_put_timestamp(ts(4))
    args = sync_args(remote)
    status, info = op_sync(local, args)
    assert status == 200
    assert info["point"] == -1  # never heard of that replica: send all rows
    assert info["max_row"] == -1 and info["hash"] != args[1]
    assert local.metadata["X-Container-Meta-Color"] == ["blue", ts(3)]
    assert local.get_info()["put_timestamp"] == ts(4)


def test_sync_with_equal_hash_records_the_sync_point(tmp_path: Path) -> None:
    local = container(tmp_path)
    remote = container(tmp_path, "r.db")
    for broker in (local, remote):
        broker.put_object("o1", ts(1), 1, "text/plain", "e")
    args = sync_args(remote)
    assert args[1] == local.get_replication_info()["hash"]
    status, info = op_sync(local, args)
    assert status == 200 and info["point"] == args[0]
    assert local.get_sync(str(args[2])) == args[0]


def test_merge_items_then_merge_syncs(tmp_path: Path) -> None:
    local = container(tmp_path)
    remote = container(tmp_path, "r.db")
    for i in range(5):
        remote.put_object(f"o{i}", ts(1 + i), i, "text/plain", "e")
    rid = remote.get_replication_info()["id"]
    rows = json.loads(json.dumps(remote.get_items_since(-1, 3)))  # as on the wire
    assert op_merge_items(local, [rows, rid]) == (202, None)
    assert local.get_sync(rid) == rows[-1]["ROWID"]
    rows = json.loads(json.dumps(remote.get_items_since(rows[-1]["ROWID"], 3)))
    assert op_merge_items(local, [rows, rid]) == (202, None)
    assert local.get_replication_info()["hash"] == remote.get_replication_info()["hash"]
    assert op_merge_syncs(local, [[{"remote_id": "third", "sync_point": 7}]]) == (202, None)
    assert local.get_sync("third") == 7
    # Sync points never go backwards.
    op_merge_syncs(local, [[{"remote_id": "third", "sync_point": 2}]])
    assert local.get_sync("third") == 7
    with pytest.raises(ValueError):
        op_merge_items(local, ["not rows", rid])


def test_merge_items_account_rows(tmp_path: Path) -> None:
    paths = [str(tmp_path / "sda" / "accounts" / "0" / "abc" / "h" / n) for n in ("l.db", "r.db")]
    local, remote = (AccountBroker(p, account="a") for p in paths)
    for broker in (local, remote):
        broker.initialize(ts(0))
    remote.put_container("c1", ts(1), "0", 3, 30, 0)
    local.put_container("c1", ts(2), "0", 5, 50, 0)  # newer: must win
    remote.put_container("c2", ts(1), "0", 1, 10, 0)
    rid = remote.get_replication_info()["id"]
    op_merge_items(local, [json.loads(json.dumps(remote.get_items_since(-1, 10))), rid])
    rows = {r[0]: r for r in local.list_containers_iter(10, None, None, None, None)}
    assert set(rows) == {"c1", "c2"} and rows["c1"][1] == 5


def test_install_db_reids_and_refuses_to_overwrite(tmp_path: Path) -> None:
    remote = container(tmp_path, "r.db")
    remote.put_object("o1", ts(1), 1, "text/plain", "e")
    rinfo = remote.get_replication_info()
    db_dir = tmp_path / "sdb" / "containers" / "0" / "def" / HASH
    db_dir.mkdir(parents=True)
    tmp = str(db_dir / "x.tmp")
    _snapshot(remote.db_file, tmp)
    target = str(db_dir / f"{HASH}.db")
    assert install_db(ContainerBroker, tmp, target, rinfo["id"]) == 201
    copy = ContainerBroker(target)
    info = copy.get_replication_info()
    assert info["hash"] == rinfo["hash"] and info["id"] != rinfo["id"]
    assert info["id"].endswith("-sdb")
    assert copy.get_sync(rinfo["id"]) == rinfo["max_row"]
    _snapshot(remote.db_file, tmp)
    assert install_db(ContainerBroker, tmp, target, rinfo["id"]) == 409
    (db_dir / "bad.tmp").write_bytes(b"not a database" * 100)
    assert install_db(ContainerBroker, str(db_dir / "bad.tmp"), str(db_dir / "n.db"), "x") == 422
    assert not os.path.exists(db_dir / "n.db")


async def test_handler_errors(tmp_path: Path) -> None:
    (tmp_path / "sda").mkdir()
    dm = DeviceManager(str(tmp_path), mount_check=False)
    rpc = ReplicationRpc(dm, ContainerBroker, "containers")

    async def call(path: str, body: bytes) -> tuple[int, bytes]:
        dev, part, name_hash = path.strip("/").split("/")
        req = make_mocked_request(
            "REPLICATE",
            path,
            match_info={"device": dev, "partition": part, "hash": name_hash},
            payload=_Payload(body),
        )
        resp = await rpc.handle(req)
        return resp.status, resp.body  # type: ignore[return-value]

    try:
        assert (await call(f"/sda/x/{HASH}", b"[]"))[0] == 400
        assert (await call("/sda/0/nothex", b"[]"))[0] == 400
        assert (await call(f"/nodev/0/{HASH}", b'["sync"]'))[0] == 507
        assert (await call(f"/sda/0/{HASH}", b'["bogus"]'))[0] == 400
        assert (await call(f"/sda/0/{HASH}", b"{"))[0] == 400
        args = ["sync", 1, "h", "id", ts(0), ts(0), "0", ""]
        assert (await call(f"/sda/0/{HASH}", json.dumps(args).encode()))[0] == 404
    finally:
        dm.close()


class _Payload:
    """Just enough of a StreamReader for the handler's reads."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    async def read(self, n: int = -1) -> bytes:
        out, self.body = (self.body, b"") if n < 0 else (self.body[:n], self.body[n:])
        return out


async def test_replication_sessions_capped_per_device(tmp_path: Path) -> None:
    (tmp_path / "sda").mkdir()
    dm = DeviceManager(str(tmp_path), mount_check=False, disk_limit=4)
    rpc = ReplicationRpc(dm, ContainerBroker, "containers")
    assert rpc.max_sessions == 2
    body = json.dumps(["sync", 1, "h", "id", ts(0), ts(0), "0", ""]).encode()

    async def call() -> int:
        req = make_mocked_request(
            "REPLICATE",
            f"/sda/0/{HASH}",
            match_info={"device": "sda", "partition": "0", "hash": HASH},
            payload=_Payload(body),
        )
        return (await rpc.handle(req)).status

    try:
        async with dm.slot("sda", kind="replication"), dm.slot("sda", kind="replication"):
            assert await call() == 503  # two sessions already: refused at once
        async with dm.slot("sda", kind="read"), dm.slot("sda", kind="read"):
            assert await call() == 404  # client requests do not count against the cap
    finally:
        dm.close()
