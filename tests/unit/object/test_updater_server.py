"""The updater delivers exactly what the real object server left in async_pending."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict

from swiftlite.object.daemon_config import ObjectUpdaterConfig
from swiftlite.object.server import ObjectServer
from swiftlite.object.updater import ObjectUpdater
from tests.unit.object import objsrv_helpers as helpers
from tests.unit.object.test_updater import write_ring

Clock = helpers.Clock
clock = helpers.clock
devices = helpers.devices
make_client = helpers.make_client
server = helpers.server

Server = tuple[ObjectServer, TestClient[Any, Any]]


class Container:
    def __init__(self) -> None:
        self.status = 503
        self.requests: list[tuple[str, str, CIMultiDict[str]]] = []
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.server = TestServer(app, host="127.0.0.1")

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.raw_path, CIMultiDict(request.headers)))
        return web.Response(status=self.status)

    def headers(self) -> dict[str, str]:
        return {
            "X-Container-Host": f"127.0.0.1:{self.server.port}",
            "X-Container-Device": "sda",
            "X-Container-Partition": "0",
        }


@pytest.fixture
async def container() -> AsyncIterator[Container]:
    fake = Container()
    await fake.server.start_server()
    yield fake
    await fake.server.close()


def updater(devices: str, tmp_path: Path, port: int) -> ObjectUpdater:
    swift_dir = tmp_path / "etc"
    swift_dir.mkdir(exist_ok=True)
    write_ring(swift_dir, [port])  # one replica: the fake container server
    conf = ObjectUpdaterConfig(
        devices=devices,
        mount_check=False,
        swift_dir=str(swift_dir),
        recon_cache_path=str(tmp_path / "recon"),
        objects_per_second=0,
    )
    return ObjectUpdater(conf, helpers.cluster_config())


def async_files(devices: str) -> list[str]:
    root = os.path.join(devices, "sda", "async_pending")
    return sorted(f for _r, _d, fs in os.walk(root) for f in fs)


async def test_put_post_then_updater(
    server: Server, clock: Clock, devices: str, tmp_path: Path, container: Container
) -> None:
    srv, client = server
    t_put = clock()
    delete_at = str(int(float(t_put)) + 1000)
    resp = await client.put(
        "/sda/1/a/c/o",
        data=b"hello",
        headers={
            "X-Timestamp": t_put,
            "Content-Type": "text/plain",
            "X-Delete-At": delete_at,
            "X-Trans-Id": "tx-put",
            **container.headers(),
        },
    )
    assert resp.status == 201
    t_post = clock()
    resp = await client.post(
        "/sda/1/a/c/o",
        headers={"X-Timestamp": t_post, "Content-Type": "a/b", **container.headers()},
    )
    assert resp.status == 202
    await srv.updater.close()
    failed = list(container.requests)
    assert len(failed) == 2 and len(async_files(devices)) == 2

    container.status = 201
    upd = updater(devices, tmp_path, container.server.port or 0)
    try:
        stats = await upd.update_pass()
    finally:
        await upd.close()
    assert stats.successes == 1 and stats.outdated_unlinks == 1
    assert async_files(devices) == []
    method, path, hdrs = container.requests[-1]
    assert (method, path) == ("PUT", "/sda/0/a/c/o")
    # Everything the object server's own (failed) POST update said, again.
    original = failed[-1][2]
    for key in (
        "X-Timestamp",
        "X-Meta-Timestamp",
        "X-Content-Type",
        "X-Content-Type-Timestamp",
        "X-Size",
        "X-Etag",
        "X-Delete-At",
        "X-Backend-Storage-Policy-Index",
    ):
        assert hdrs.get(key) == original.get(key), key
    assert hdrs["X-Timestamp"] == t_put and hdrs["X-Meta-Timestamp"] == t_post
    assert hdrs["User-Agent"].startswith("object-updater ")


async def test_delete_then_updater(
    server: Server, clock: Clock, devices: str, tmp_path: Path, container: Container
) -> None:
    srv, client = server
    t_del = clock()
    resp = await client.delete(
        "/sda/1/a/c/o", headers={"X-Timestamp": t_del, **container.headers()}
    )
    assert resp.status == 404  # no object, but a tombstone and an update all the same
    await srv.updater.close()
    assert len(async_files(devices)) == 1
    container.status = 204
    upd = updater(devices, tmp_path, container.server.port or 0)
    try:
        stats = await upd.update_pass()
    finally:
        await upd.close()
    assert stats.successes == 1
    method, path, hdrs = container.requests[-1]
    assert (method, path, hdrs["X-Timestamp"]) == ("DELETE", "/sda/0/a/c/o", t_del)
    assert async_files(devices) == []
