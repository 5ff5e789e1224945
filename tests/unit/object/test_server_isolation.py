"""Per-disk isolation in the object server, container updates from its
handlers, and a check that the event loop never blocks (blockbuster)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from blockbuster import blockbuster_ctx
from multidict import CIMultiDict

from swiftlite.common.hashing import hash_path
from swiftlite.object import updates
from swiftlite.object.server import ObjectServer
from tests.unit.object import objsrv_helpers as helpers

# The shared fixtures, made visible to pytest in this module.
Clock = helpers.Clock
clock = helpers.clock
devices = helpers.devices
make_client = helpers.make_client
server = helpers.server

Server = tuple[ObjectServer, TestClient[Any, Any]]
OBJ = "/sda/1/a/c/o"


async def put(client: TestClient[Any, Any], ts: str, path: str = OBJ, **headers: str) -> Any:
    hdrs = {"X-Timestamp": ts, "Content-Type": "text/plain"}
    hdrs.update(headers)
    return await client.put(path, data=b"hello", headers=hdrs)


async def test_disk_limit_answers_503_at_once(make_client: Any, clock: Clock) -> None:
    srv, client = await make_client(disk_limit=2)
    async with srv.dm.slot("sda", "read"), srv.dm.slot("sda", "write"):
        for method in ("GET", "HEAD", "DELETE", "POST"):
            resp = await client.request(method, OBJ, headers={"X-Timestamp": clock()})
            assert resp.status == 503, method
            assert resp.headers["X-Disk-Usage"] == "2"
        resp = await put(client, clock())
        assert resp.status == 503
        # the other device is unaffected
        assert (await put(client, clock(), path="/sdb/1/a/c/o")).status == 201
    assert (await put(client, clock())).status == 201


async def test_mount_check_507(make_client: Any, clock: Clock) -> None:
    _srv, client = await make_client(mount_check=True)
    resp = await put(client, clock())
    assert resp.status == 507
    assert (await client.get(OBJ)).status == 507
    assert (await client.delete(OBJ, headers={"X-Timestamp": clock()})).status == 507


async def test_missing_device_507(server: Server, clock: Clock) -> None:
    _srv, client = server
    assert (await put(client, clock(), path="/sdz/1/a/c/o")).status == 507


async def test_lock_device_503(server: Server, clock: Clock, devices: str) -> None:
    _srv, client = server
    open(os.path.join(devices, "sda", "lock_device"), "w").close()
    assert (await put(client, clock())).status == 503
    assert (await client.get(OBJ)).status == 503
    assert (await put(client, clock(), path="/sdb/1/a/c/o")).status == 201


async def test_fallocate_reserve_507(make_client: Any, clock: Clock, devices: str) -> None:
    _srv, client = await make_client(fallocate_reserve="100%")
    assert (await put(client, clock())).status == 507
    # a tombstone still goes through: DELETEs free space in the end
    assert (await client.delete(OBJ, headers={"X-Timestamp": clock()})).status == 404
    tmp = os.path.join(devices, "sda", "tmp")
    assert not os.path.exists(tmp) or os.listdir(tmp) == []


class FakeContainer:
    def __init__(self, status: int = 201) -> None:
        self.status = status
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
            "X-Container-Device": "cdev",
            "X-Container-Partition": "9",
        }


@pytest.fixture
async def container() -> AsyncIterator[FakeContainer]:
    fake = FakeContainer()
    await fake.server.start_server()
    yield fake
    await fake.server.close()


async def test_container_updates_from_handlers(
    server: Server, clock: Clock, container: FakeContainer
) -> None:
    srv, client = server
    t_put = clock()
    delete_at = str(int(float(t_put)) + 1000)
    resp = await put(client, t_put, **{"X-Delete-At": delete_at}, **container.headers())
    assert resp.status == 201
    method, path, hdrs = container.requests[-1]
    assert (method, path) == ("PUT", "/cdev/9/a/c/o")
    assert hdrs["X-Size"] == "5"
    assert hdrs["X-Content-Type"] == "text/plain"
    assert hdrs["X-Timestamp"] == t_put
    assert hdrs["X-Etag"] == "5d41402abc4b2a76b9719d911017c592"
    assert hdrs["X-Delete-At"] == delete_at
    assert hdrs["X-Backend-Storage-Policy-Index"] == "0"
    t_post = clock()
    resp = await client.post(
        OBJ, headers={"X-Timestamp": t_post, "Content-Type": "a/b", **container.headers()}
    )
    assert resp.status == 202
    method, path, hdrs = container.requests[-1]
    assert method == "PUT"
    assert hdrs["X-Timestamp"] == t_put
    assert hdrs["X-Meta-Timestamp"] == t_post
    assert hdrs["X-Content-Type"] == "a/b"
    assert hdrs["X-Content-Type-Timestamp"] == t_post
    t_del = clock()
    resp = await client.delete(OBJ, headers={"X-Timestamp": t_del, **container.headers()})
    assert resp.status == 204
    method, path, hdrs = container.requests[-1]
    assert (method, hdrs["X-Timestamp"]) == ("DELETE", t_del)
    # no tombstone written (older DELETE): no update
    count = len(container.requests)
    resp = await client.delete(OBJ, headers={"X-Timestamp": t_put, **container.headers()})
    assert resp.status == 404
    assert len(container.requests) == count
    await srv.updater.close()


async def test_failed_update_leaves_async_pending(
    server: Server, clock: Clock, container: FakeContainer, devices: str
) -> None:
    srv, client = server
    container.status = 500
    ts = clock()
    assert (await put(client, ts, **container.headers())).status == 201
    await srv.updater.close()
    ohash = str(hash_path("a", "c", "o"))
    path = os.path.join(devices, "sda", "async_pending", ohash[-3:], f"{ohash}-{ts}")
    record = updates.read_async_pending(path)
    assert record["op"] == "PUT"
    assert record["headers"]["x-size"] == "5"


async def test_event_loop_never_blocks(
    make_client: Any, clock: Clock, container: FakeContainer
) -> None:
    """Drive every verb (small and sendfile bodies, ranges, a failing container
    update that writes async_pending) with blockbuster watching the loop."""
    srv, client = await make_client(sendfile_min_size=4096)
    container.status = 503
    big = os.urandom(100_000)
    with blockbuster_ctx():
        for path, body in (("/sda/1/a/c/small", b"x" * 100), ("/sda/1/a/c/big", big)):
            ts = clock()
            resp = await client.put(
                path,
                data=body,
                headers={"X-Timestamp": ts, "Content-Type": "t/p", **container.headers()},
            )
            assert resp.status == 201
            resp = await client.get(path)
            assert resp.status == 200
            assert await resp.read() == body
            resp = await client.get(path, headers={"Range": "bytes=1-5,10-20"})
            assert resp.status == 206
            await resp.read()
            resp = await client.head(path)
            assert resp.status == 200
            resp = await client.post(path, headers={"X-Timestamp": clock(), "X-Object-Meta-A": "b"})
            assert resp.status == 202
            resp = await client.delete(path, headers={"X-Timestamp": clock()})
            assert resp.status == 204
            assert (await client.get(path)).status == 404
        await srv.updater.close()
        await asyncio.sleep(0)


async def test_stalled_disk_costs_only_its_own_requests(
    make_client: Any, clock: Clock, devices: str
) -> None:
    """A FIFO where a .data file should be makes open() block for real inside
    sda's threads. sda fills up to disk_limit and then answers 503 at once,
    while sdb keeps serving, all while the stalled requests are still stuck."""
    srv, client = await make_client(disk_limit=6, threads_per_disk=2)
    ohash = str(hash_path("a", "c", "stall"))
    hdir = os.path.join(devices, "sda", "objects", "1", ohash[-3:], ohash)
    os.makedirs(hdir)
    fifo = os.path.join(hdir, f"{clock()}.data")
    os.mkfifo(fifo)
    stuck = [asyncio.ensure_future(client.get("/sda/1/a/c/stall")) for _ in range(6)]
    writer_fd = None
    try:
        for _ in range(1000):
            if srv.dm.usage().get("sda") == 6:
                break
            await asyncio.sleep(0.01)
        assert srv.dm.usage().get("sda") == 6
        resp = await client.get("/sda/1/a/c/other")
        assert resp.status == 503
        assert resp.headers["X-Disk-Usage"] == "6"
        assert (await put(client, clock())).status == 503
        for i in range(5):
            path = f"/sdb/1/a/c/o{i}"
            assert (await put(client, clock(), path=path)).status == 201
            resp = await client.get(path)
            assert resp.status == 200
            assert await resp.read() == b"hello"
        assert (await client.get("/healthcheck")).status == 200
        assert not any(task.done() for task in stuck)
    finally:
        # Un-stall: a writer lets every pending and later open() through.
        writer_fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        try:
            await asyncio.wait(stuck, timeout=30)
        finally:
            os.close(writer_fd)
    for task in stuck:
        (await task).release()
    assert srv.dm.usage().get("sda") == 0


@pytest.mark.parametrize("where", ["begin", "write", "commit"])
async def test_no_space_is_507_and_leaves_nothing(
    server: Server, clock: Clock, devices: str, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """ENOSPC anywhere in a PUT (the diskfile raises DiskFileNoSpace; its own
    tests make real ENOSPC happen) answers 507 and leaves no temp file."""
    from swiftlite.object import diskfile
    from swiftlite.object.diskfile import DiskFileNoSpace

    _srv, client = server
    target = {"begin": "open", "write": "write", "commit": "put"}[where]
    original = getattr(diskfile.DiskFileWriter, target)

    def no_space(self: Any, *args: Any, **kwargs: Any) -> Any:
        if target == "open":
            original(self, *args, **kwargs)  # create the temp file, then fail
        self.abort()
        raise DiskFileNoSpace("test")

    monkeypatch.setattr(diskfile.DiskFileWriter, target, no_space)
    body = os.urandom(2 << 20)  # above SMALL_BODY: the streaming path, whole body read first
    resp = await client.put(
        OBJ, data=body, headers={"X-Timestamp": clock(), "Content-Type": "a/b"}, expect100=True
    )
    assert resp.status == 507
    tmp = os.path.join(devices, "sda", "tmp")
    assert not os.path.exists(tmp) or os.listdir(tmp) == []
    monkeypatch.undo()
    assert (await client.get(OBJ)).status == 404
