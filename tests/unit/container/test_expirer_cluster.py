"""The expirer in a small real cluster: a swiftlite object server and a
swiftlite container server (three devices each). The container rows get
their ``expires`` from the object server's own container updates; the
expirer, beside the container server, deletes what expired, and every
container replica ends up with the tombstone."""

from __future__ import annotations

import array
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from swiftlite.common.config import ClusterConfig, StoragePolicy
from swiftlite.common.hashing import get_hash_path_secrets, set_hash_path_secrets
from swiftlite.common.timestamp import Timestamp
from swiftlite.container.backend import ContainerBroker
from swiftlite.container.config import ContainerServerConfig
from swiftlite.container.daemon_config import ObjectExpirerConfig
from swiftlite.container.expirer import ObjectExpirer
from swiftlite.container.server import make_app as container_app
from swiftlite.object.config import ObjectServerConfig
from swiftlite.object.server import ObjectServer
from swiftlite.ring.ring_io import RingData

DEVS = ("sda", "sdb", "sdc")


def cluster() -> ClusterConfig:
    return ClusterConfig(
        hash_path_suffix="endcap",
        policies=[StoragePolicy(index=0, name="gold", default=True)],
    )


def write_ring(path: Path, port: int) -> None:
    devs: list[dict[str, Any] | None] = [
        {
            "id": i,
            "region": 1,
            "zone": i + 1,
            "ip": "127.0.0.1",
            "port": port,
            "device": dev,
            "weight": 100.0,
            "meta": "",
        }
        for i, dev in enumerate(DEVS)
    ]
    RingData([array.array("H", [i]) for i in range(3)], devs, 32).save(str(path))


@pytest.fixture(autouse=True)
def secrets() -> Iterator[None]:
    old = get_hash_path_secrets()
    set_hash_path_secrets("", "endcap")
    yield
    set_hash_path_secrets(*old)


class Servers:
    def __init__(self, tmp: Path, obj: TestServer, cont: TestServer) -> None:
        self.tmp = tmp
        self.obj_port = obj.port or 0
        self.cont_port = cont.port or 0
        self.session = ClientSession()

    def rows(self, dev: str, name: str) -> tuple[Any, ...]:
        path = ContainerBroker.db_path(str(self.tmp / "contnode"), dev, "0", "AUTH_a", "c")
        b = ContainerBroker(path)
        try:
            b.get_info()  # fold in pending updates
            with b.get() as conn:
                r = conn.execute(
                    "SELECT created_at, deleted, expires FROM object WHERE name = ?", (name,)
                ).fetchone()
            return tuple(r)
        finally:
            b.close()


@pytest.fixture
async def servers(tmp_path: Path) -> AsyncIterator[Servers]:
    for dev in DEVS:
        (tmp_path / "objnode" / dev).mkdir(parents=True)
        (tmp_path / "contnode" / dev).mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    obj = TestServer(
        ObjectServer(
            ObjectServerConfig(
                devices=str(tmp_path / "objnode"), mount_check=False, log_requests=False
            ),
            cluster(),
        ).make_app(),
        host="127.0.0.1",
    )
    cont = TestServer(
        container_app(
            ContainerServerConfig(
                devices=str(tmp_path / "contnode"), mount_check=False, log_requests=False
            ),
            cluster(),
        ),
        host="127.0.0.1",
    )
    await obj.start_server()
    await cont.start_server()
    write_ring(tmp_path / "etc" / "object.ring.gz", obj.port or 0)
    write_ring(tmp_path / "etc" / "container.ring.gz", cont.port or 0)
    s = Servers(tmp_path, obj, cont)
    try:
        yield s
    finally:
        await s.session.close()
        await obj.close()
        await cont.close()


async def test_expired_object_gone_everywhere(servers: Servers, tmp_path: Path) -> None:
    s = servers
    for dev in DEVS:
        url = f"http://127.0.0.1:{s.cont_port}/{dev}/0/AUTH_a/c"
        async with s.session.put(url, headers={"X-Timestamp": Timestamp(1).internal}) as resp:
            assert resp.status == 201, await resp.text()
    now = int(time.time())
    for name, delete_at in (("old", now - 50), ("later", now + 3600)):
        for i, dev in enumerate(DEVS):
            headers = {
                "X-Timestamp": Timestamp(now - 100).internal,
                "X-Delete-At": str(delete_at),
                "Content-Type": "text/plain",
                "Content-Length": "4",
                # As the proxy: object server i updates container replica i.
                "X-Container-Host": f"127.0.0.1:{s.cont_port}",
                "X-Container-Device": DEVS[i],
                "X-Container-Partition": "0",
            }
            url = f"http://127.0.0.1:{s.obj_port}/{dev}/0/AUTH_a/c/{name}"
            async with s.session.put(url, headers=headers, data=b"data") as resp:
                assert resp.status == 201, await resp.text()
    # The object server's updates put X-Delete-At into every replica's row.
    for dev in DEVS:
        assert s.rows(dev, "old")[1:] == (0, now - 50)
        assert s.rows(dev, "later")[1:] == (0, now + 3600)
    conf = ObjectExpirerConfig(
        devices=str(tmp_path / "contnode"),
        mount_check=False,
        swift_dir=str(tmp_path / "etc"),
        recon_cache_path=str(tmp_path / "recon"),
        bind_ip="127.0.0.1",
        bind_port=s.cont_port,
        tasks_per_second=0,
    )
    exp = ObjectExpirer(conf, cluster())
    stats = await exp.expire_pass()
    # Three replicas on this node; only the first primary's (sda) is expired.
    assert (stats.containers, stats.containers_skipped, stats.expired) == (1, 2, 1)
    tomb = Timestamp(now - 50).internal
    for dev in DEVS:
        assert s.rows(dev, "old")[:2] == (tomb, 1)
        assert s.rows(dev, "later")[1] == 0
        files = [p.name for p in (tmp_path / "objnode" / dev).rglob("*.ts")]
        assert files == [tomb + ".ts"]
    # A second pass, from any replica, has nothing left to do.
    stats = await exp.expire_pass()
    assert stats.objects == 0
    await exp.close()
