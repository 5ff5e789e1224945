"""Object PUT/GET cluster logic against fake object servers whose answers we
script: handoffs for refusing nodes, 409 → 202, mismatched ETags → 500,
mid-stream GET resume, X-Newest."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from swiftlite.common.config import config_from_dict, load_cluster_config
from swiftlite.common.hashing import set_hash_path_secrets
from swiftlite.proxy.config import ProxyServerConfig
from swiftlite.proxy.server import PROXY_KEY, make_app
from swiftlite.ring.builder import RingBuilder
from swiftlite.ring.ring import Ring

OBJ_PATH = "/v1/AUTH_a/c/o"


class FakeNode:
    """An object server that answers as told (``mode``) and keeps what it gets."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.stored: dict[str, tuple[bytes, str]] = {}  # path -> (body, timestamp)
        self.puts = 0
        self.gets = 0
        self.headers_seen: list[dict[str, str]] = []
        self.broken = 0

    async def expect(self, request: web.Request) -> web.StreamResponse | None:
        if self.mode in ("507", "503", "409"):
            return web.Response(status=int(self.mode))
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        key = "/".join(request.path.split("/")[3:])
        self.headers_seen.append(dict(request.headers))
        if request.method == "PUT":
            self.puts += 1
            try:
                body = await request.read()
            except BaseException:  # a reset, or the handler cancelled on disconnect
                self.broken += 1
                raise
            self.stored[key] = (body, request.headers["X-Timestamp"])
            etag = "bad" if self.mode == "badetag" else hashlib.md5(body).hexdigest()
            return web.Response(status=201, headers={"Etag": etag})
        if request.method == "POST":
            return web.Response(status=202 if key in self.stored else 404)
        if request.method in ("GET", "HEAD"):
            self.gets += 1
            if self.mode == "slow":
                await asyncio.sleep(0.2)
            if key not in self.stored:
                return web.Response(status=404)
            body, ts = self.stored[key]
            headers = {"Etag": f'"{hashlib.md5(body).hexdigest()}"', "X-Timestamp": ts,
                       "X-Backend-Timestamp": ts, "Content-Type": "application/octet-stream"}
            status = 200
            if self.mode in ("304", "416"):
                return web.Response(status=int(self.mode), headers=headers)
            rng = request.headers.get("Range")
            if rng:
                start = int(rng.split("=")[1].rstrip("-"))
                headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
                body, status = body[start:], 206
            resp = web.StreamResponse(status=status, headers=headers)
            resp.content_length = len(body)
            await resp.prepare(request)
            if request.method == "HEAD":
                await resp.write_eof()
                return resp
            if self.mode == "die":
                await resp.write(body[: len(body) // 2])
                assert request.transport is not None
                request.transport.close()
                return resp
            await resp.write(body)
            await resp.write_eof()
            return resp
        return web.Response(status=405)


class FakeContainer:
    """Container (and account) server: everything exists, with owner-only headers."""

    def __init__(self) -> None:
        self.headers_seen: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.headers_seen.append(dict(request.headers))
        if request.method in ("PUT", "POST"):
            return web.Response(status=201 if request.method == "PUT" else 204)
        return web.Response(
            status=204,
            headers={
                "X-Backend-Storage-Policy-Index": "0",
                "X-Container-Read": ".r:*",
                "X-Container-Meta-Color": "red",
                "X-Account-Sysmeta-Core-Access-Control": '{"read-only":["bob"],"admin":[]}',
            },
        )


def build_ring(path: Path, ports: list[int], replicas: int) -> None:
    builder = RingBuilder(2, replicas, 0)
    for i, port in enumerate(ports):
        builder.add_dev({"region": 1, "zone": i, "ip": "127.0.0.1", "port": port,
                         "device": f"d{i}", "weight": 1})
    builder.rebalance()
    builder.get_ring().save(str(path))


class Env:
    def __init__(self, client: TestClient, nodes: dict[int, FakeNode], ring: Ring) -> None:
        self.client = client
        self.nodes = nodes
        _part, primaries = ring.get_nodes("AUTH_a", "c", "o")
        self.primaries = [nodes[n["port"]] for n in primaries]
        self.others = [n for n in nodes.values() if n not in self.primaries]
        self.container = FakeContainer()


@pytest.fixture
async def env(tmp_path: Path, aiohttp_client: Any) -> Env:
    (tmp_path / "swiftlite.yaml").write_text("hash_path_prefix: p\nhash_path_suffix: s\n")
    nodes: dict[int, FakeNode] = {}
    for _ in range(5):
        node = FakeNode()
        # As the real object server: the stored bytes are never inflated.
        app = web.Application(handler_args={"auto_decompress": False})
        app.router.add_route("*", "/{tail:.*}", node.handle, expect_handler=node.expect)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        assert server.port is not None
        nodes[server.port] = node
    capp = web.Application()
    fake_container = FakeContainer()
    capp.router.add_route("*", "/{tail:.*}", fake_container.handle)
    cserver = TestServer(capp, host="127.0.0.1")
    await cserver.start_server()
    assert cserver.port is not None
    build_ring(tmp_path / "object.ring.gz", list(nodes), 3)
    build_ring(tmp_path / "container.ring.gz", [cserver.port], 1)
    build_ring(tmp_path / "account.ring.gz", [cserver.port], 1)
    conf = config_from_dict(
        ProxyServerConfig,
        {"swift_dir": str(tmp_path), "node_timeout": 5, "pipeline": ["proxy_server"]},
    )
    app = make_app(conf, load_cluster_config(str(tmp_path)))
    client = await aiohttp_client(app)
    set_hash_path_secrets("p", "s")
    env = Env(client, nodes, Ring(str(tmp_path / "object.ring.gz")))
    env.container = fake_container
    yield env
    await cserver.close()


async def test_put_replaces_refusing_primary_with_handoff(env: Env) -> None:
    env.primaries[0].mode = "507"
    resp = await env.client.put(OBJ_PATH, data=b"payload", headers={"Content-Type": "a/b"})
    assert resp.status == 201
    assert resp.headers["Etag"] == hashlib.md5(b"payload").hexdigest()
    assert env.primaries[0].puts == 0
    assert sum(n.puts for n in env.others) == 1
    assert all(n.puts == 1 for n in env.primaries[1:])
    # One container replica, three object writes with a quorum of two:
    # Swift's formula asks for max(1 + 3 - 2, 1) = 2 container updates.
    hosts = [h.get("X-Container-Host") for n in env.nodes.values() for h in n.headers_seen]
    assert len([h for h in hosts if h]) == 2


async def test_put_conflict_gives_202(env: Env) -> None:
    env.primaries[1].mode = "409"
    resp = await env.client.put(OBJ_PATH, data=b"x")
    assert resp.status == 202


async def test_put_without_quorum_gives_503(env: Env) -> None:
    for node in env.nodes.values():
        node.mode = "503"
    env.others[0].mode = "ok"
    resp = await env.client.put(OBJ_PATH, data=b"x")
    assert resp.status == 503


async def test_put_mismatched_etags_gives_500(env: Env) -> None:
    env.primaries[2].mode = "badetag"
    resp = await env.client.put(OBJ_PATH, data=b"x")
    assert resp.status == 500


async def test_chunked_put(env: Env) -> None:
    async def gen() -> Any:
        for _ in range(10):
            yield b"z" * 10000

    resp = await env.client.put(OBJ_PATH, data=gen())
    assert resp.status == 201
    assert all(n.stored["AUTH_a/c/o"][0] == b"z" * 100000 for n in env.primaries)


async def test_get_resumes_mid_stream(env: Env) -> None:
    payload = bytes(range(256)) * 2000
    assert (await env.client.put(OBJ_PATH, data=payload)).status == 201
    for node in env.primaries:
        node.mode = "die"
    env.primaries[0].mode = "ok"
    # Whichever node is read first, the body arrives whole, through resumes.
    for _ in range(6):
        resp = await env.client.get(OBJ_PATH)
        assert resp.status == 200
        assert await resp.read() == payload


async def test_get_all_dying_cuts_the_body(env: Env) -> None:
    payload = b"q" * 500000
    assert (await env.client.put(OBJ_PATH, data=payload)).status == 201
    for node in env.nodes.values():
        node.mode = "die"
    resp = await env.client.get(OBJ_PATH)
    with pytest.raises(Exception):  # noqa: B017 - any payload error will do
        body = await resp.read()
        assert len(body) == len(payload)


async def test_x_newest_picks_newest(env: Env) -> None:
    assert (await env.client.put(OBJ_PATH, data=b"old")).status == 201
    newest = env.primaries[2]
    newest.stored["AUTH_a/c/o"] = (b"new", "9999999999.00000")
    for _ in range(3):
        resp = await env.client.get(OBJ_PATH, headers={"X-Newest": "true"})
        assert await resp.read() == b"new"
    resp = await env.client.head(OBJ_PATH, headers={"X-Newest": "true"})
    assert resp.headers["X-Timestamp"] == "9999999999.00000"


async def test_get_missing_is_404_after_trying_handoffs(env: Env) -> None:
    resp = await env.client.get(OBJ_PATH)
    assert resp.status == 404
    assert sum(n.gets for n in env.nodes.values()) == 5


async def _raw_put(port: int, declared: int, sent: bytes) -> tuple[asyncio.StreamReader, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"PUT {OBJ_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n".encode()
        + sent
    )
    await writer.drain()
    return reader, writer


async def _until(predicate: Any) -> None:
    """Wait (bounded) for the backend side to notice; never asserts on time."""
    for _ in range(200):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition never became true")


async def test_client_timeout_gives_408_and_aborts_backends(env: Env) -> None:
    env.client.app[PROXY_KEY].conf.client_timeout = 0.3
    reader, writer = await _raw_put(env.client.port, 10, b"abc")
    status_line = await reader.readline()
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 408")
    await _until(lambda: sum(n.broken for n in env.primaries) == 3)
    assert not any(n.stored for n in env.nodes.values())


async def test_client_disconnect_aborts_backends(env: Env) -> None:
    _reader, writer = await _raw_put(env.client.port, 100000, b"abc")
    await _until(lambda: sum(n.puts for n in env.primaries) == 3)
    writer.close()
    await _until(lambda: sum(n.broken for n in env.primaries) == 3)
    assert not any(n.stored for n in env.nodes.values())


async def test_post_mixed_results_ask_handoffs(env: Env) -> None:
    record = (b"x", "0000000001.00000")
    env.primaries[0].stored["AUTH_a/c/o"] = record
    env.others[0].stored["AUTH_a/c/o"] = record
    resp = await env.client.post(OBJ_PATH, headers={"X-Object-Meta-A": "b"})
    assert resp.status == 202
    # With no handoff holding it, a 404 would deny what one node proved: 503.
    del env.others[0].stored["AUTH_a/c/o"]
    resp = await env.client.post(OBJ_PATH, headers={"X-Object-Meta-A": "b"})
    assert resp.status == 503
    env.primaries[0].stored.clear()
    resp = await env.client.post(OBJ_PATH, headers={"X-Object-Meta-A": "b"})
    assert resp.status == 404


async def test_timing_sort_avoids_a_slow_node(env: Env) -> None:
    env.client.app[PROXY_KEY].conf.sorting_method = "timing"
    assert (await env.client.put(OBJ_PATH, data=b"t")).status == 201
    slow = env.primaries[0]
    slow.mode = "slow"
    # Until every primary has a timing, unknown nodes go first; after that
    # the slow one is asked only if the others fail.
    for _ in range(4):
        assert await (await env.client.get(OBJ_PATH)).read() == b"t"
    before = slow.gets
    for _ in range(10):
        assert await (await env.client.get(OBJ_PATH)).read() == b"t"
    assert slow.gets == before


async def test_subrequest_puts_with_bytes_and_iterator_bodies(env: Env) -> None:
    """A middleware's PUT subrequest reaches the object servers with the body
    it supplied (copy, large objects and versioning rely on this)."""
    from aiohttp.test_utils import make_mocked_request

    from swiftlite.proxy.request_body import make_subrequest

    proxy = env.client.app[PROXY_KEY]
    parent = make_mocked_request("GET", "/v1/AUTH_a/c/src", headers={"X-Auth-Token": "t"})
    parent["swift.trans_id"] = "tx-parent"
    sub = make_subrequest(parent, "PUT", OBJ_PATH, headers={"Content-Type": "a/b"},
                          body=b"from bytes", swift_source="TEST")
    assert sub["swift.source"] == "TEST" and sub["swift.trans_id"] == "tx-parent"
    assert "X-Auth-Token" not in sub.headers
    resp = await proxy.handle(sub)
    assert resp.status == 201
    assert all(n.stored["AUTH_a/c/o"][0] == b"from bytes" for n in env.primaries)

    async def pieces() -> Any:
        yield b"from "
        yield b"an iterator"

    sub = make_subrequest(parent, "PUT", "/v1/AUTH_a/c/o%20two", body=pieces())
    resp = await proxy.handle(sub)
    assert resp.status == 201
    stored = [n.stored.get("AUTH_a/c/o two") for n in env.nodes.values()]
    assert [s[0] for s in stored if s] == [b"from an iterator"] * 3


@pytest.mark.parametrize("owner", [False, True])
async def test_owner_only_headers(env: Env, owner: bool) -> None:
    from aiohttp.test_utils import make_mocked_request

    proxy = env.client.app[PROXY_KEY]

    def req(method: str, path: str, headers: dict[str, str] | None = None) -> web.Request:
        r = make_mocked_request(method, path, headers=headers or {})
        if owner:
            r["swift_owner"] = True
        r["swift.clean_acl"] = lambda name, value: value.replace(" ", "")
        return r

    resp = await proxy.handle(req("HEAD", "/v1/AUTH_a/c"))
    assert resp.headers["X-Container-Meta-Color"] == "red"
    assert ("X-Container-Read" in resp.headers) is owner
    resp = await proxy.handle(req("HEAD", "/v1/AUTH_a"))
    if owner:
        assert resp.headers["X-Account-Access-Control"] == '{"admin":[],"read-only":["bob"]}'
    else:
        assert "X-Account-Access-Control" not in resp.headers
    env.container.headers_seen.clear()
    resp = await proxy.handle(req("POST", "/v1/AUTH_a/c", {"X-Container-Read": ".r:*, .rlistings"}))
    assert resp.status == 204
    sent = [h.get("X-Container-Read") for h in env.container.headers_seen if "X-Container-Read" in h]
    assert sent == ([".r:*,.rlistings"] if owner else [])


async def test_container_info_is_cached_in_swift_cache(env: Env) -> None:
    from aiohttp.test_utils import make_mocked_request

    from swiftlite.common.memcache import LocalCache

    proxy = env.client.app[PROXY_KEY]
    shared = LocalCache()

    def req(method: str, path: str) -> web.Request:
        r = make_mocked_request(method, path)
        r["swift.cache"] = shared
        return r

    def heads() -> int:
        return sum(1 for h in env.container.headers_seen if "X-Newest" not in h)

    env.container.headers_seen.clear()
    for _ in range(3):
        assert (await proxy.handle(req("HEAD", OBJ_PATH))).status == 404
    assert heads() == 1
    # Changing the container forgets what was cached.
    assert (await proxy.handle(req("POST", "/v1/AUTH_a/c"))).status == 204
    seen = len(env.container.headers_seen)
    assert (await proxy.handle(req("HEAD", OBJ_PATH))).status == 404
    assert len(env.container.headers_seen) == seen + 1


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("status", [304, 416])
async def test_not_modified_and_unsatisfiable_carry_accept_ranges(
    env: Env, method: str, status: int
) -> None:
    # Swift's proxy marks every answer of a good source, 304 and 416 too
    # (Swift's tests.py testIfNoneMatch, testRangedGets).
    resp = await env.client.put(OBJ_PATH, data=b"abc")
    assert resp.status == 201
    for node in env.nodes.values():
        node.mode = str(status)
    resp = await env.client.request(method, OBJ_PATH)
    assert resp.status == status
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert resp.headers["Etag"] == hashlib.md5(b"abc").hexdigest()


async def test_content_encoding_body_stored_as_sent(env: Env) -> None:
    # Content-Encoding describes the object, not the transfer: the proxy must
    # neither inflate it nor refuse a body that is not really gzip (Swift's
    # tests.py testCopy uploads random bytes with Content-Encoding: gzip).
    gz = gzip.compress(b"hello")
    for body in (b"not gzip at all", gz):
        resp = await env.client.put(OBJ_PATH, data=body, headers={"Content-Encoding": "gzip"})
        assert resp.status == 201, await resp.text()
        assert all(n.stored["AUTH_a/c/o"][0] == body for n in env.primaries)
