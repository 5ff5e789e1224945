"""Container updater against three real swiftlite account servers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from swiftlite.account.config import AccountServerConfig
from swiftlite.account.server import make_app
from swiftlite.common.config import ClusterConfig, StoragePolicy
from swiftlite.common.hashing import get_hash_path_secrets, set_hash_path_secrets
from swiftlite.common.timestamp import Timestamp
from swiftlite.container.backend import ContainerBroker
from swiftlite.container.daemon_config import ContainerUpdaterConfig
from swiftlite.container.updater import ContainerUpdater
from swiftlite.ring.ring_io import RingData

DEVS = ("sda", "sdb", "sdc")


def cluster() -> ClusterConfig:
    return ClusterConfig(
        hash_path_suffix="endcap",
        policies=[StoragePolicy(index=0, name="gold", default=True)],
    )


def write_ring(path: Path, ports: list[int]) -> None:
    import array

    devs: list[dict[str, Any] | None] = [
        {
            "id": i,
            "region": 1,
            "zone": i + 1,
            "ip": "127.0.0.1",
            "port": port,
            "device": DEVS[i],
            "weight": 100.0,
            "meta": "",
        }
        for i, port in enumerate(ports)
    ]
    RingData([array.array("H", [i]) for i in range(3)], devs, 32).save(str(path))


@pytest.fixture(autouse=True)
def secrets() -> Iterator[None]:
    old = get_hash_path_secrets()
    set_hash_path_secrets("", "endcap")
    yield
    set_hash_path_secrets(*old)


class Cluster:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.servers: list[TestServer] = []
        self.session = ClientSession()

    def url(self, i: int, path: str) -> str:
        return f"http://127.0.0.1:{self.servers[i].port}/{DEVS[i]}/0{path}"

    async def listing(self, i: int) -> tuple[dict[str, str], list[dict[str, Any]]]:
        async with self.session.get(self.url(i, "/AUTH_a?format=json")) as resp:
            assert resp.status in (200, 204), await resp.text()
            body = await resp.json() if resp.status == 200 else []
            return dict(resp.headers), body


@pytest.fixture
async def accounts(tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path)
    for i, dev in enumerate(DEVS):
        root = tmp_path / f"acct{i}"
        (root / dev).mkdir(parents=True)
        conf = AccountServerConfig(devices=str(root), mount_check=False, log_requests=False)
        server = TestServer(make_app(conf, cluster()), host="127.0.0.1")
        await server.start_server()
        c.servers.append(server)
    (tmp_path / "etc").mkdir()
    write_ring(tmp_path / "etc" / "account.ring.gz", [s.port or 0 for s in c.servers])
    for i in range(3):
        headers = {"X-Timestamp": Timestamp(1).internal}
        async with c.session.put(c.url(i, "/AUTH_a"), headers=headers) as resp:
            assert resp.status == 201, await resp.text()
    try:
        yield c
    finally:
        await c.session.close()
        for s in c.servers:
            await s.close()


async def test_listings_follow_container_stats(accounts: Cluster, tmp_path: Path) -> None:
    (tmp_path / "node" / "sda").mkdir(parents=True)
    path = ContainerBroker.db_path(str(tmp_path / "node"), "sda", "0", "AUTH_a", "photos")
    b = ContainerBroker(path, account="AUTH_a", container="photos")
    b.initialize(Timestamp(2).internal, storage_policy_index=0)
    now = int(time.time())
    b.put_object("a", Timestamp(3).internal, 100, "image/png", "etag")
    b.put_object("b", Timestamp(4).internal, 50, "image/png", "etag")
    b.put_object("gone", Timestamp(5).internal, 7, "image/png", "etag", expires=now - 5)
    conf = ContainerUpdaterConfig(
        devices=str(tmp_path / "node"),
        mount_check=False,
        swift_dir=str(tmp_path / "etc"),
        recon_cache_path=str(tmp_path / "recon"),
        containers_per_second=0,
    )
    upd = ContainerUpdater(conf, cluster())
    stats = await upd.update_pass()
    assert stats.successes == 1
    for i in range(3):
        headers, listing = await accounts.listing(i)
        # The expired row is already left out of the count and bytes.
        assert [(r["name"], r["count"], r["bytes"]) for r in listing] == [("photos", 2, 150)]
        assert headers["X-Account-Object-Count"] == "2"
        assert headers["X-Account-Bytes-Used"] == "150"
        assert headers["X-Account-Container-Count"] == "1"
    # One account replica down: a majority still records the report.
    await accounts.servers[2].close()
    b.delete_object("a", Timestamp(6).internal)
    stats = await upd.update_pass()
    assert stats.successes == 1
    for i in range(2):
        _, listing = await accounts.listing(i)
        assert [(r["name"], r["count"], r["bytes"]) for r in listing] == [("photos", 1, 50)]
    # The container is deleted: the accounts drop it.
    b.delete_object("b", Timestamp(7).internal)
    b.delete_db(Timestamp(8).internal)
    stats = await upd.update_pass()
    assert stats.successes == 1
    for i in range(2):
        headers, listing = await accounts.listing(i)
        assert listing == []
        assert headers["X-Account-Container-Count"] == "0"
    await upd.close()
