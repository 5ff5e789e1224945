"""The cache behind ``request["swift.cache"]``: memcached or an in-process LRU.

Both offer Swift's ``MemcacheRing`` API as coroutines: ``get``, ``set``
(``time=`` is the TTL), ``incr``/``decr``, ``delete``, ``get_multi`` and
``set_multi``. Values are JSON (memcached flag 2, as Swift writes them), so a
swiftlite proxy and a Swift proxy can share one memcached pool; a value Swift
stored as a pickle (flag 1) reads as absent: nothing here ever unpickles.

Why a small asyncio client rather than pymemcache: pymemcache blocks, so
every call would need a thread hop (and a thread per concurrent call), while
the four memcached text commands used here are a few lines each over an
asyncio stream. Keys are hashed to servers on Swift's consistent-hash ring
(md5 of ``"<server>-<i>"``, 50 points per server) so both proxies agree on
where a key lives.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

JSON_FLAG = 2
PICKLE_FLAG = 1
NODE_WEIGHT = 50
TRY_COUNT = 3
# memcached takes an expiry above 30 days as an absolute unix time.
EXPTIME_MAXDELTA = 30 * 24 * 60 * 60
ERROR_LIMIT_COUNT = 10
ERROR_LIMIT_TIME = 60.0
ERROR_LIMIT_DURATION = 60.0


class MemcacheConnectionError(Exception):
    """No memcached server could do what was asked."""


def md5hash(key: str | bytes) -> bytes:
    if isinstance(key, str):
        key = key.encode("utf-8", errors="surrogateescape")
    return hashlib.md5(key, usedforsecurity=False).hexdigest().encode("ascii")


def sanitize_timeout(timeout: float) -> int:
    """A TTL in seconds as memcached wants it (absolute past 30 days)."""
    if timeout > EXPTIME_MAXDELTA:
        timeout += time.time()
    return int(timeout)


def encode_value(value: Any, serialize: bool = True) -> tuple[int, bytes]:
    if serialize:
        return JSON_FLAG, json.dumps(value).encode("utf-8")
    if isinstance(value, bytes):
        return 0, value
    return 0, str(value).encode("utf-8")


def decode_value(flags: int, data: bytes) -> Any:
    if flags & JSON_FLAG:
        return json.loads(data)
    if flags & PICKLE_FLAG:
        # Written by a Swift configured for pickles: never unpickle.
        return None
    return data


class CacheClient:
    """What ``request["swift.cache"]`` offers (both implementations)."""

    async def get(self, key: str, raise_on_error: bool = False) -> Any:
        raise NotImplementedError

    async def set(
        self,
        key: str,
        value: Any,
        serialize: bool = True,
        time: float = 0,
        min_compress_len: int = 0,
        raise_on_error: bool = False,
    ) -> None:
        raise NotImplementedError

    async def incr(self, key: str, delta: int = 1, time: float = 0) -> int:
        raise NotImplementedError

    async def decr(self, key: str, delta: int = 1, time: float = 0) -> int:
        return await self.incr(key, delta=-delta, time=time)

    async def delete(self, key: str, server_key: str | None = None) -> None:
        raise NotImplementedError

    async def get_multi(self, keys: Iterable[str], server_key: str | None = None) -> list[Any]:
        return [await self.get(key) for key in keys]

    async def set_multi(
        self,
        mapping: Mapping[str, Any],
        server_key: str | None = None,
        serialize: bool = True,
        time: float = 0,
        min_compress_len: int = 0,
    ) -> None:
        for key, value in mapping.items():
            await self.set(key, value, serialize=serialize, time=time)

    async def close(self) -> None:
        """Drop open connections (none for the local cache)."""


class LocalCache(CacheClient):
    """One process's stand-in for memcached (saio without memcached).

    Values go through the same JSON encoding as memcached, so callers see
    the same types either way (a stored tuple comes back as a list). It is
    per process: with ``workers > 1`` each worker has its own, so a token
    issued by one worker is unknown to the others; use memcached there.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        # key -> (expires_at or 0, flags, data); most recently used last.
        self._data: OrderedDict[bytes, tuple[float, int, bytes]] = OrderedDict()

    def _expiry(self, ttl: float) -> float:
        ttl = sanitize_timeout(ttl)
        if ttl == 0:
            return 0.0
        if ttl < 0:
            return -1.0  # already expired, as memcached treats it
        if ttl > EXPTIME_MAXDELTA:
            return float(ttl)
        return time.time() + ttl

    def _lookup(self, key: str) -> tuple[float, int, bytes] | None:
        hkey = md5hash(key)
        entry = self._data.get(hkey)
        if entry is None:
            return None
        expires = entry[0]
        if expires and expires <= time.time():
            del self._data[hkey]
            return None
        self._data.move_to_end(hkey)
        return entry

    def _store(self, key: str, flags: int, data: bytes, ttl: float) -> None:
        hkey = md5hash(key)
        self._data[hkey] = (self._expiry(ttl), flags, data)
        self._data.move_to_end(hkey)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    async def get(self, key: str, raise_on_error: bool = False) -> Any:
        entry = self._lookup(key)
        if entry is None:
            return None
        return decode_value(entry[1], entry[2])

    async def set(
        self,
        key: str,
        value: Any,
        serialize: bool = True,
        time: float = 0,
        min_compress_len: int = 0,
        raise_on_error: bool = False,
    ) -> None:
        flags, data = encode_value(value, serialize)
        self._store(key, flags, data, time)

    async def incr(self, key: str, delta: int = 1, time: float = 0) -> int:
        delta = int(delta)
        entry = self._lookup(key)
        if entry is None:
            new = max(delta, 0)
            self._store(key, 0, str(new).encode("ascii"), time)
            return new
        try:
            current = int(entry[2])
        except ValueError:
            raise MemcacheConnectionError(
                "cannot increment or decrement non-numeric value"
            ) from None
        # memcached counters are unsigned: decr stops at 0.
        new = max(current + delta, 0)
        # As memcached: incr keeps the key's expiry and flags.
        self._data[md5hash(key)] = (entry[0], entry[1], str(new).encode("ascii"))
        return new

    async def delete(self, key: str, server_key: str | None = None) -> None:
        self._data.pop(md5hash(key), None)


class _ServerPool:
    """Idle connections to one memcached server, at most ``max_conns`` in use."""

    def __init__(self, server: str, max_conns: int, connect_timeout: float) -> None:
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"memcache server {server!r} is not host:port")
        self.host = host.strip("[]")
        self.port = int(port)
        self.connect_timeout = connect_timeout
        self.slots = asyncio.Semaphore(max_conns)
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.idle:
            return self.idle.pop()
        async with asyncio.timeout(self.connect_timeout):
            return await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        idle, self.idle = self.idle, []
        for _reader, writer in idle:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _read_values(reader: asyncio.StreamReader) -> dict[bytes, tuple[int, bytes]]:
    """Read ``VALUE <key> <flags> <len>`` blocks up to ``END``."""
    found: dict[bytes, tuple[int, bytes]] = {}
    while True:
        line = await reader.readuntil(b"\r\n")
        parts = line.split()
        if parts == [b"END"]:
            return found
        if len(parts) < 4 or parts[0] != b"VALUE":
            raise MemcacheConnectionError(f"unexpected reply {line[:80]!r}")
        size = int(parts[3])
        data = await reader.readexactly(size + 2)
        found[parts[1]] = (int(parts[2]), data[:-2])


class MemcacheRing(CacheClient):
    """Async memcached client: Swift's ring, failover and error limiting."""

    def __init__(
        self,
        servers: list[str],
        max_conns: int = 2,
        connect_timeout: float = 0.3,
        pool_timeout: float = 1.0,
        io_timeout: float = 2.0,
        tries: int = TRY_COUNT,
        logger: Any = None,
    ) -> None:
        if not servers:
            raise ValueError("no memcache servers")
        self._pools = {s: _ServerPool(s, max_conns, connect_timeout) for s in servers}
        self._ring: dict[bytes, str] = {}
        for server in servers:
            for i in range(NODE_WEIGHT):
                self._ring[md5hash(f"{server}-{i}")] = server
        self._sorted = sorted(self._ring)
        self._tries = min(tries, len(servers))
        self._pool_timeout = pool_timeout
        self._io_timeout = io_timeout
        self._errors: dict[str, list[float]] = {s: [] for s in servers}
        self._limited_until: dict[str, float] = dict.fromkeys(servers, 0.0)
        self.logger = logger

    def _servers_for(self, hkey: bytes) -> list[str]:
        pos = bisect.bisect(self._sorted, hkey)
        served: list[str] = []
        for _ in range(len(self._sorted)):
            if len(served) >= self._tries:
                break
            pos = (pos + 1) % len(self._sorted)
            server = self._ring[self._sorted[pos]]
            if server not in served:
                served.append(server)
        now = time.time()
        return [s for s in served if self._limited_until[s] <= now]

    def _error(self, server: str, exc: BaseException, action: str) -> None:
        now = time.time()
        recent = [t for t in self._errors[server] if t > now - ERROR_LIMIT_TIME]
        recent.append(now)
        self._errors[server] = recent
        if self.logger is not None:
            self.logger.error("Error %s to memcached: %s: %r", action, server, exc)
        if len(recent) > ERROR_LIMIT_COUNT:
            self._limited_until[server] = now + ERROR_LIMIT_DURATION
            self._errors[server] = []
            if self.logger is not None:
                self.logger.error("Error limiting server %s", server)

    async def _run(self, key: str | bytes, op: Any, action: str, raise_on_error: bool) -> Any:
        """Run ``op(reader, writer, hkey)`` on the key's servers in turn
        until one works. A connection is reused only after a clean exchange:
        after an error or a cancellation its stream state is unknown."""
        hkey = key if isinstance(key, bytes) else md5hash(key)
        for server in self._servers_for(hkey):
            pool = self._pools[server]
            try:
                async with asyncio.timeout(self._pool_timeout):
                    await pool.slots.acquire()
            except TimeoutError as exc:
                self._error(server, exc, "getting a connection")
                continue
            conn: Conn | None = None
            try:
                conn = await pool.connect()
                async with asyncio.timeout(self._io_timeout):
                    result = await op(conn[0], conn[1], hkey)
                pool.idle.append(conn)
                conn = None
                return result
            except (OSError, TimeoutError, ValueError, MemcacheConnectionError,
                    asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                self._error(server, exc, action)
            finally:
                if conn is not None:
                    conn[1].close()
                pool.slots.release()
        if raise_on_error:
            raise MemcacheConnectionError("No memcached connections succeeded.")
        return None

    async def get(self, key: str, raise_on_error: bool = False) -> Any:
        async def op(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     hkey: bytes) -> Any:
            writer.write(b"get " + hkey + b"\r\n")
            found = await _read_values(reader)
            if hkey not in found:
                return None
            return decode_value(*found[hkey])

        return await self._run(key, op, "getting", raise_on_error)

    async def set(
        self,
        key: str,
        value: Any,
        serialize: bool = True,
        time: float = 0,
        min_compress_len: int = 0,
        raise_on_error: bool = False,
    ) -> None:
        flags, data = encode_value(value, serialize)
        ttl = sanitize_timeout(time)

        async def op(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     hkey: bytes) -> bool:
            writer.write(b"set %s %d %d %d\r\n%s\r\n" % (hkey, flags, ttl, len(data), data))
            line = await reader.readuntil(b"\r\n")
            if line != b"STORED\r\n":
                raise MemcacheConnectionError(f"set failed: {line[:80]!r}")
            return True

        await self._run(key, op, "setting", raise_on_error)

    async def incr(self, key: str, delta: int = 1, time: float = 0) -> int:
        delta = int(delta)
        cmd = b"incr" if delta >= 0 else b"decr"
        amount = str(abs(delta)).encode("ascii")
        ttl = sanitize_timeout(time)

        async def bump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       hkey: bytes) -> int | None:
            writer.write(b"%s %s %s\r\n" % (cmd, hkey, amount))
            line = await reader.readuntil(b"\r\n")
            if line == b"NOT_FOUND\r\n":
                return None
            if not line.strip().isdigit():
                raise MemcacheConnectionError(f"{cmd.decode()} failed: {line[:80]!r}")
            return int(line)

        async def op(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     hkey: bytes) -> int:
            new = await bump(reader, writer, hkey)
            if new is not None:
                return new
            # Missing: add it (delta, or 0 for a decr); if another client
            # added it meanwhile, increment theirs.
            start = b"0" if delta < 0 else amount
            writer.write(b"add %s 0 %d %d\r\n%s\r\n" % (hkey, ttl, len(start), start))
            line = await reader.readuntil(b"\r\n")
            if line == b"STORED\r\n":
                return int(start)
            new = await bump(reader, writer, hkey)
            if new is None:
                raise MemcacheConnectionError(f"incr: key expired meanwhile (ttl={time})")
            return new

        result = await self._run(key, op, "incrementing", True)
        return int(result)

    async def delete(self, key: str, server_key: str | None = None) -> None:
        async def op(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     hkey: bytes) -> bool:
            writer.write(b"delete " + hkey + b"\r\n")
            line = await reader.readuntil(b"\r\n")
            if line not in (b"DELETED\r\n", b"NOT_FOUND\r\n"):
                raise MemcacheConnectionError(f"delete failed: {line[:80]!r}")
            return True

        await self._run(key, op, "deleting", False)

    async def close(self) -> None:
        for pool in self._pools.values():
            await pool.close()


def parse_servers(value: Any) -> list[str]:
    """``memcache_servers`` as a list of ``host:port`` (comma string or list)."""
    if value is None:
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    servers: list[str] = []
    for item in items:
        server = str(item).strip()
        if not server:
            continue
        if ":" not in server.lstrip("[").split("]")[-1]:
            server += ":11211"
        servers.append(server)
    return servers
