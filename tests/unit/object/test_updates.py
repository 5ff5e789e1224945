"""Container updates from the object server, against a fake container server."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from swiftlite.common.devices import DeviceManager
from swiftlite.common.hashing import hash_path
from swiftlite.object import updates


class FakeContainerServer:
    def __init__(self, status: int = 201) -> None:
        self.status = status
        self.requests: list[tuple[str, str, CIMultiDict[str]]] = []
        self.release = asyncio.Event()
        self.hang = False
        self.headers: dict[str, str] = {}
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.server = TestServer(app, host="127.0.0.1")

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.raw_path, CIMultiDict(request.headers)))
        if self.hang:
            await self.release.wait()
        return web.Response(status=self.status, headers=self.headers)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.port}"


@pytest.fixture
async def fake() -> AsyncIterator[FakeContainerServer]:
    srv = FakeContainerServer()
    await srv.server.start_server()
    try:
        yield srv
    finally:
        srv.release.set()
        await srv.server.close()


@pytest.fixture
def devices(tmp_path: Any) -> str:
    os.makedirs(tmp_path / "sda")
    return str(tmp_path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_updater(devices: str, **kw: Any) -> updates.ContainerUpdater:
    dm = DeviceManager(devices, mount_check=False)
    args: dict[str, Any] = {
        "conn_timeout": 0.5,
        "node_timeout": 3.0,
        "update_timeout": 1.0,
        "logger": logging.getLogger("test-updates"),
    }
    args.update(kw)
    return updates.ContainerUpdater(dm, **args)


def req_headers(*hosts: str, partition: str = "7") -> dict[str, str]:
    return {
        "X-Container-Host": ",".join(hosts),
        "X-Container-Device": ",".join(f"cd{i}" for i in range(len(hosts))),
        "X-Container-Partition": partition,
        "X-Trans-Id": "tx123",
    }


def pending_files(devices: str, policy: int = 0) -> list[str]:
    root = os.path.join(devices, "sda", updates.policy_dir("async_pending", policy))
    out = []
    for dirpath, _dirs, files in os.walk(root):
        out.extend(os.path.join(dirpath, f) for f in files)
    return out


async def test_success_sends_to_every_replica(fake: FakeContainerServer, devices: str) -> None:
    upd = make_updater(devices)
    out = {"x-size": "3", "x-content-type": "text/plain", "x-etag": "e", "x-timestamp": "1.00000"}
    await upd.update(
        "PUT", "a", "c", "o/with space", req_headers(fake.host, fake.host), out, "sda", 0,
        referer="PUT http://x/sda/1/a/c/o",
    )  # fmt: skip
    await upd.close()
    assert len(fake.requests) == 2
    paths = sorted(p for _m, p, _h in fake.requests)
    assert paths == ["/cd0/7/a/c/o/with%20space", "/cd1/7/a/c/o/with%20space"]
    method, _path, hdrs = fake.requests[0]
    assert method == "PUT"
    assert hdrs["X-Size"] == "3"
    assert hdrs["X-Etag"] == "e"
    assert hdrs["X-Timestamp"] == "1.00000"
    assert hdrs["X-Backend-Storage-Policy-Index"] == "0"
    assert hdrs["X-Trans-Id"] == "tx123"
    assert hdrs["User-Agent"].startswith("object-server ")
    assert pending_files(devices) == []


async def test_failure_writes_async_pending(fake: FakeContainerServer, devices: str) -> None:
    fake.status = 503
    upd = make_updater(devices)
    out = {"x-timestamp": "1700000000.12345"}
    await upd.update("DELETE", "a", "c", "o", req_headers(fake.host), out, "sda", 2)
    await upd.close()
    files = pending_files(devices, 2)
    ohash = str(hash_path("a", "c", "o"))
    assert files == [
        os.path.join(devices, "sda", "async_pending-2", ohash[-3:], f"{ohash}-1700000000.12345")
    ]
    record = updates.read_async_pending(files[0])
    assert record["version"] == 1
    assert record["op"] == "DELETE"
    assert (record["account"], record["container"], record["obj"]) == ("a", "c", "o")
    assert record["headers"]["x-timestamp"] == "1700000000.12345"
    assert record["headers"]["x-backend-storage-policy-index"] == "2"
    # nothing left in tmp
    assert os.listdir(os.path.join(devices, "sda", "tmp-2")) == []


async def test_connection_refused_writes_async_pending(devices: str) -> None:
    upd = make_updater(devices)
    hdrs = req_headers(f"127.0.0.1:{free_port()}")
    out = {"x-timestamp": "1.00000", "x-meta-timestamp": "2.00000"}
    await upd.update("PUT", "a", "c", "o", hdrs, out, "sda", 0)
    await upd.close()
    files = pending_files(devices)
    assert len(files) == 1 and files[0].endswith("-2.00000")


async def test_slow_container_server_is_bounded(fake: FakeContainerServer, devices: str) -> None:
    """update() returns while the container server still holds the request;
    the update then times out in the background and leaves a record."""
    fake.hang = True
    upd = make_updater(devices, update_timeout=0.05, node_timeout=0.3)
    await upd.update("PUT", "a", "c", "o", req_headers(fake.host), {"x-timestamp": "3.00000"}, "sda", 0)
    assert not fake.release.is_set()
    assert len(fake.requests) == 1
    assert upd.in_flight == 1
    await upd.close(wait=10)
    assert len(pending_files(devices)) == 1


async def test_mismatched_hosts_and_devices_sends_nothing(
    fake: FakeContainerServer, devices: str
) -> None:
    upd = make_updater(devices)
    hdrs = req_headers(fake.host)
    hdrs["X-Container-Device"] = "d1,d2"
    await upd.update("PUT", "a", "c", "o", hdrs, {"x-timestamp": "1.00000"}, "sda", 0)
    await upd.close()
    assert fake.requests == []
    assert pending_files(devices) == []


async def test_shard_path_override(fake: FakeContainerServer, devices: str) -> None:
    upd = make_updater(devices)
    hdrs = req_headers(fake.host)
    hdrs["X-Backend-Quoted-Container-Path"] = ".shards_a/c-1"
    await upd.update("PUT", "a", "c", "o", hdrs, {"x-timestamp": "1.00000"}, "sda", 0)
    await upd.close()
    assert [p for _m, p, _h in fake.requests] == ["/cd0/7/.shards_a/c-1/o"]


def test_container_targets_parsing() -> None:
    assert updates.container_targets({}) == []
    assert updates.container_targets({"X-Container-Host": "h:1", "X-Container-Device": ""}) == []
    assert updates.container_targets(
        {"X-Container-Host": "h:1, h:2", "X-Container-Device": "a,b", "X-Container-Partition": "3"}
    ) == [updates.UpdateTarget("h:1", "a", "3"), updates.UpdateTarget("h:2", "b", "3")]
    assert updates.container_targets({"X-Container-Host": "h:1,h:2", "X-Container-Device": "a"}) is None


async def test_shard_redirect_is_not_followed(devices: str) -> None:
    shard = FakeContainerServer()
    root = FakeContainerServer(status=301)
    await shard.server.start_server()
    await root.server.start_server()
    root.headers = {"Location": f"http://{shard.host}/sd/1/.shards_a/c-shard/o"}
    try:
        upd = make_updater(devices)
        out = {"x-timestamp": "1.00000"}
        await upd.update("PUT", "a", "c", "o", req_headers(root.host), out, "sda", 0)
        await upd.close()
    finally:
        await shard.server.close()
        await root.server.close()
    assert len(root.requests) == 1
    # The redirect is left to the updater: nothing reached the shard, and the
    # update waits in async_pending.
    assert shard.requests == []
    assert len(pending_files(devices)) == 1
