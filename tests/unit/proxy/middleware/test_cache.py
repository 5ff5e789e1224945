"""The cache middleware and the two cache clients (swiftlite.common.memcache):
the same behaviour from memcached and the in-process cache, and memcached
entries shared with Swift's own MemcacheRing."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from swiftlite.common import memcache as mc
from swiftlite.common.config import ConfigError
from swiftlite.common.memcache import (
    CacheClient,
    LocalCache,
    MemcacheConnectionError,
    MemcacheRing,
    parse_servers,
)

from .conftest import Build, free_port, make_ctx  # noqa: TID252


@pytest.fixture(params=["local", "memcached"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[CacheClient]:
    client: CacheClient
    if request.param == "local":
        client = LocalCache(max_entries=1000)
    else:
        client = MemcacheRing([request.getfixturevalue("memcached")])
    try:
        yield client
    finally:
        await client.close()


async def test_get_set_delete(cache: CacheClient) -> None:
    assert await cache.get("missing") is None
    await cache.set("k1", {"a": [1, 2], "b": "é"}, time=100)
    assert await cache.get("k1") == {"a": [1, 2], "b": "é"}
    # JSON both ways: a tuple comes back as a list, from either cache.
    await cache.set("k2", (1.5, "g1,g2"))
    assert await cache.get("k2") == [1.5, "g1,g2"]
    await cache.set("raw", b"\x00bytes", serialize=False)
    assert await cache.get("raw") == b"\x00bytes"
    await cache.delete("k1")
    assert await cache.get("k1") is None
    await cache.delete("k1")  # deleting what is gone is fine


async def test_expired_entries_are_gone(cache: CacheClient) -> None:
    # memcached takes a negative TTL as "already expired".
    await cache.set("gone", "x", time=-1)
    assert await cache.get("gone") is None
    # Past 30 days the TTL is turned into an absolute time, still in the future.
    await cache.set("far", "y", time=mc.EXPTIME_MAXDELTA + 100)
    assert await cache.get("far") == "y"


async def test_incr_decr(cache: CacheClient) -> None:
    assert await cache.incr("n", 5) == 5
    assert await cache.incr("n") == 6
    assert await cache.decr("n", 2) == 4
    assert await cache.decr("n", 10) == 0  # unsigned: stops at 0
    assert await cache.decr("fresh", 3) == 0  # a missing key starts at 0
    assert await cache.incr("n", -1) == 0
    await cache.set("text", "abc", serialize=False)
    with pytest.raises(MemcacheConnectionError):
        await cache.incr("text")


async def test_multi(cache: CacheClient) -> None:
    await cache.set_multi({"m1": 1, "m2": [2]}, server_key="x", time=50)
    assert await cache.get_multi(["m1", "m2", "m3"], server_key="x") == [1, [2], None]


async def test_local_cache_ttl_and_lru(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(mc.time, "time", lambda: now[0])
    cache = LocalCache(max_entries=2)
    await cache.set("a", 1, time=10)
    await cache.set("b", 2)
    now[0] += 9
    assert await cache.get("a") == 1
    now[0] += 2
    assert await cache.get("a") is None  # expired
    assert await cache.get("b") == 2  # no TTL: kept
    await cache.set("c", 3)
    await cache.get("b")
    await cache.set("d", 4)  # evicts the least recently used: c
    assert await cache.get("c") is None
    assert await cache.get("b") == 2 and await cache.get("d") == 4
    await cache.incr("cnt", 1, time=5)
    now[0] += 6
    assert await cache.get("cnt") is None


async def test_pickled_values_read_as_absent(memcached: str) -> None:
    """A value a pickling Swift stored (flag 1) is never unpickled."""
    host, port = memcached.split(":")
    key = mc.md5hash("pickled")
    data = b"\x80\x04K\x01."
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"set %s 1 0 %d\r\n%s\r\n" % (key, len(data), data))
        assert sock.recv(100) == b"STORED\r\n"
    ring = MemcacheRing([memcached])
    try:
        assert await ring.get("pickled") is None
    finally:
        await ring.close()


def _swift_ring(servers: list[str]) -> Any:
    from swift.common.memcached import MemcacheRing as SwiftRing
    from swift.common.utils import get_logger

    return SwiftRing(servers, logger=get_logger({}, log_route="h11-test"))


async def test_shared_with_swift(memcached: str) -> None:
    """Same key hashing, flags and JSON as Swift: each reads the other's."""
    swift = _swift_ring([memcached])
    ours = MemcacheRing([memcached])
    try:
        await asyncio.to_thread(swift.set, "from-swift", {"x": [1, "two"]}, time=100)
        assert await ours.get("from-swift") == {"x": [1, "two"]}
        await ours.set("from-us", [1700000000.5, "test,test:tester"], time=100)
        assert await asyncio.to_thread(swift.get, "from-us") == [1700000000.5, "test,test:tester"]
        await ours.incr("counter", 3)
        assert await asyncio.to_thread(swift.incr, "counter", 2) == 5
    finally:
        await ours.close()


def test_same_server_choice_as_swift() -> None:
    servers = ["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"]
    swift = _swift_ring(servers)
    ours = MemcacheRing(servers)
    from bisect import bisect

    for i in range(200):
        key = f"key-{i}"
        hkey = mc.md5hash(key)
        pos = (bisect(swift._sorted, hkey) + 1) % len(swift._sorted)
        assert ours._servers_for(hkey)[0] == swift._ring[swift._sorted[pos]]


async def test_dead_server() -> None:
    ring = MemcacheRing([f"127.0.0.1:{free_port()}"], connect_timeout=0.5)
    try:
        assert await ring.get("k") is None
        await ring.set("k", 1)  # errors are swallowed unless asked for
        await ring.delete("k")
        with pytest.raises(MemcacheConnectionError):
            await ring.set("k", 1, raise_on_error=True)
        with pytest.raises(MemcacheConnectionError):
            await ring.get("k", raise_on_error=True)
        with pytest.raises(MemcacheConnectionError):
            await ring.incr("k")
    finally:
        await ring.close()


async def test_failover_to_live_server(memcached: str) -> None:
    dead = f"127.0.0.1:{free_port()}"
    ring = MemcacheRing([dead, memcached], connect_timeout=0.5)
    try:
        for i in range(20):
            await ring.set(f"k{i}", i, raise_on_error=True)
            assert await ring.get(f"k{i}") == i
    finally:
        await ring.close()


async def test_error_limiting(monkeypatch: pytest.MonkeyPatch) -> None:
    dead = f"127.0.0.1:{free_port()}"
    ring = MemcacheRing([dead], connect_timeout=0.5)
    for _ in range(mc.ERROR_LIMIT_COUNT + 1):
        await ring.get("k")
    # Now skipped without trying: no server is left for the key.
    assert ring._servers_for(mc.md5hash("k")) == []


async def test_connections_are_reused_and_bounded(memcached: str) -> None:
    ring = MemcacheRing([memcached], max_conns=2)
    try:
        await asyncio.gather(*(ring.set(f"c{i}", i) for i in range(50)))
        values = await asyncio.gather(*(ring.get(f"c{i}") for i in range(50)))
        assert values == list(range(50))
        pool = ring._pools[memcached]
        assert 1 <= len(pool.idle) <= 2
    finally:
        await ring.close()


def test_parse_servers() -> None:
    assert parse_servers(None) == []
    assert parse_servers("") == []
    assert parse_servers("a:1, b") == ["a:1", "b:11211"]
    assert parse_servers(["h:2", " "]) == ["h:2"]
    assert parse_servers("[::1]:5") == ["[::1]:5"]


async def _seen_cache(build: Build, filters: dict[str, Any]) -> Any:
    seen: dict[str, Any] = {}

    async def inner(request: web.Request) -> web.StreamResponse:
        seen["cache"] = request.get("swift.cache")
        return web.Response(text="ok")

    client, _ctx = await build(["cache"], inner, filters=filters)
    resp = await client.get("/v1/a")
    assert resp.status == 200
    return seen["cache"]


async def test_middleware_local_cache(build: Build) -> None:
    cache = await _seen_cache(build, {})
    assert isinstance(cache, LocalCache)
    await cache.set("k", 1)
    assert await cache.get("k") == 1


async def test_middleware_memcached(build: Build, memcached: str) -> None:
    cache = await _seen_cache(build, {"cache": {"memcache_servers": memcached,
                                                "memcache_max_connections": 4}})
    try:
        assert isinstance(cache, MemcacheRing)
        await cache.set("mw", {"v": 1})
        assert await cache.get("mw") == {"v": 1}
    finally:
        await cache.close()


@pytest.mark.parametrize(
    "settings",
    [
        {"memcache_serialization_support": 1},
        {"memcache_max_connections": "many"},
        {"io_timeout": 0},
        {"memcache_servers": "nohostport:"},
        {"memcached_servers": "typo:11211"},
    ],
)
def test_bad_settings(settings: dict[str, Any]) -> None:
    from swiftlite.proxy.pipeline import build_pipeline

    async def inner(request: web.Request) -> web.StreamResponse:
        return web.Response()

    ctx = make_ctx(["cache"], {"cache": settings})
    with pytest.raises(ConfigError, match="cache"):
        build_pipeline(inner, ctx)


def test_warns_when_workers_do_not_share(caplog: pytest.LogCaptureFixture) -> None:
    from swiftlite.proxy.pipeline import build_pipeline

    async def inner(request: web.Request) -> web.StreamResponse:
        return web.Response()

    ctx = make_ctx(["cache"], workers=2)
    with caplog.at_level("WARNING", logger="mw-test"):
        build_pipeline(inner, ctx)
    assert "each worker keeps its own cache" in caplog.text


async def test_never_blocks_the_event_loop(cache: CacheClient) -> None:
    """blockbuster raises on any blocking call made from the event loop."""
    from blockbuster import blockbuster_ctx

    with blockbuster_ctx():
        await cache.set("bb", {"x": 1}, time=30)
        assert await cache.get("bb") == {"x": 1}
        assert await cache.incr("bb-n", 2) == 2
        await cache.delete("bb")
