"""Account server behaviour beyond Swift's answers: per-disk limits, parallel
container reports, corrupt DBs, and an event loop that never blocks on disk."""

from __future__ import annotations

import asyncio
import glob
import os
from typing import Any

import pytest
from blockbuster import blockbuster_ctx

from swiftlite.account.config import AccountServerConfig
from swiftlite.account.server import make_app
from swiftlite.common.config import ClusterConfig, StoragePolicy, config_from_dict
from swiftlite.common.hashing import get_hash_path_secrets, set_hash_path_secrets


def ts(n: float) -> str:
    return f"{n:016.05f}"


@pytest.fixture
async def server(tmp_path: Any, aiohttp_client: Any) -> Any:
    old = get_hash_path_secrets()
    (tmp_path / "sda1").mkdir()
    cluster = ClusterConfig(
        hash_path_prefix="p",
        hash_path_suffix="s",
        policies=[StoragePolicy(0, "gold", default=True), StoragePolicy(1, "silver")],
    )
    set_hash_path_secrets("p", "s")
    conf = config_from_dict(
        AccountServerConfig,
        {"devices": str(tmp_path), "mount_check": False, "log_requests": False, "disk_limit": 64},
    )
    app = make_app(conf, cluster)
    client = await aiohttp_client(app)
    client.root = str(tmp_path)
    client.account_server = app["account_server"]
    yield client
    set_hash_path_secrets(*old)


def report(put: float, count: int, nbytes: int, policy: int = 0, delete: float = 0) -> dict:
    return {
        "X-Put-Timestamp": ts(put),
        "X-Delete-Timestamp": ts(delete),
        "X-Object-Count": str(count),
        "X-Bytes-Used": str(nbytes),
        "X-Backend-Storage-Policy-Index": str(policy),
        "X-Trans-Id": "tx-test",
    }


async def test_parallel_container_reports_lose_none(server: Any) -> None:
    resp = await server.put("/sda1/0/acct", headers={"X-Timestamp": ts(1)})
    assert resp.status == 201
    n = 300

    async def one(i: int) -> int:
        # More requests than disk_limit: some get 503 at once, and are re-sent
        # as the container updater would.
        while True:
            async with server.put(
                f"/sda1/0/acct/c{i:04d}", headers=report(2 + i, i % 5, i, i % 2)
            ) as r:
                if r.status != 503:
                    return r.status
            await asyncio.sleep(0.01)

    with blockbuster_ctx("swiftlite"):
        statuses = await asyncio.gather(*(one(i) for i in range(n)))
        assert statuses == [201] * n
        async with server.get("/sda1/0/acct?format=json") as r:
            listing = await r.json()
            headers = r.headers
    assert [c["name"] for c in listing] == [f"c{i:04d}" for i in range(n)]
    assert headers["X-Account-Container-Count"] == str(n)
    assert headers["X-Account-Object-Count"] == str(sum(i % 5 for i in range(n)))
    assert headers["X-Account-Bytes-Used"] == str(sum(range(n)))
    assert headers["X-Account-Storage-Policy-Gold-Container-Count"] == str(n // 2)
    assert headers["X-Account-Storage-Policy-Silver-Container-Count"] == str(n // 2)


async def test_busy_device_answers_503_at_once(server: Any) -> None:
    await server.put("/sda1/0/acct", headers={"X-Timestamp": ts(1)})
    devices = server.account_server.devices
    slots = [devices.slot("sda1", kind="write") for _ in range(devices.disk_limit)]
    for slot in slots:
        await slot.__aenter__()
    try:
        async with server.head("/sda1/0/acct") as r:
            assert r.status == 503
            assert r.headers["X-Disk-Usage"] == str(devices.disk_limit)
    finally:
        for slot in slots:
            await slot.__aexit__(None, None, None)
    async with server.head("/sda1/0/acct") as r:
        assert r.status == 204


async def test_corrupt_db_is_quarantined_not_served(server: Any) -> None:
    await server.put("/sda1/0/acct", headers={"X-Timestamp": ts(1)})
    await server.put("/sda1/0/acct/c", headers=report(2, 1, 1))
    (db_path,) = glob.glob(os.path.join(server.root, "sda1/accounts/0/*/*/*.db"))
    # A garbage file lands where the DB was (a new inode: connections kept
    # open by the device threads notice and reopen). Corruption in place is
    # the DB auditor's to find: a kept connection may serve its cached pages.
    with open(db_path + ".bad", "wb") as fp:
        fp.write(b"this is not an sqlite database" * 100)
    os.replace(db_path + ".bad", db_path)
    async with server.get("/sda1/0/acct") as r:
        assert r.status == 500
        assert await r.read() == b"Database quarantined"
    assert not os.path.exists(db_path)
    quarantined = glob.glob(os.path.join(server.root, "sda1/quarantined/accounts/*/*.db"))
    assert len(quarantined) == 1
    async with server.head("/sda1/0/acct") as r:
        assert r.status == 404


async def test_unknown_policy_has_no_policy_headers(server: Any) -> None:
    await server.put("/sda1/0/acct", headers={"X-Timestamp": ts(1)})
    await server.put("/sda1/0/acct/c", headers=report(2, 1, 1, policy=9))
    async with server.get("/sda1/0/acct?format=json") as r:
        assert "storage_policy" not in (await r.json())[0]
        assert not [h for h in r.headers if h.startswith("X-Account-Storage-Policy")]


async def test_malformed_container_report_is_400(server: Any) -> None:
    await server.put("/sda1/0/acct", headers={"X-Timestamp": ts(1)})
    bad = report(2, 1, 1) | {"X-Object-Count": "many"}
    async with server.put("/sda1/0/acct/c", headers=bad) as r:
        assert r.status == 400
    headers = report(2, 1, 1)
    del headers["X-Put-Timestamp"]
    async with server.put("/sda1/0/acct/c", headers=headers) as r:
        assert r.status == 400


async def test_mount_check_refuses_a_plain_directory(tmp_path: Any, aiohttp_client: Any) -> None:
    (tmp_path / "sda1").mkdir()
    cluster = ClusterConfig(hash_path_prefix="p", hash_path_suffix="s")
    conf = config_from_dict(AccountServerConfig, {"devices": str(tmp_path), "mount_check": True})
    client = await aiohttp_client(make_app(conf, cluster))
    async with client.put("/sda1/0/a", headers={"X-Timestamp": ts(1)}) as r:
        assert r.status == 507
        assert b"Drive: sda1" in await r.read()


async def test_unexpected_error_is_a_plain_500(
    server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from swiftlite.account.backend import AccountBroker

    await server.put("/sda1/0/acct", headers={"X-Timestamp": ts(1)})

    def boom(self: Any) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(AccountBroker, "get_info", boom)
    async with server.get("/sda1/0/acct") as r:
        assert r.status == 500
        body = await r.read()
    assert b"secret" not in body and b"Traceback" not in body
