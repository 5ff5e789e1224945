"""REPCONN: the object replication wire protocol, and its receiving side.

One connection carries one (device, partition, policy) session (DESIGN 4,
swift-internals 3.2). The sender opens TCP to the peer's replication
ip/port and sends an HTTP/1.1 request::

    REPCONN /<device>/<partition> HTTP/1.1
    Connection: Upgrade
    Upgrade: tcp
    X-Backend-Storage-Policy-Index: <n>

A device that is unmounted or missing gets a plain ``507``, one that is
locked or already has ``incoming_limit`` sessions a plain ``503``, *before*
anything is taken over, so the sender sees a clean HTTP refusal (Hummingbird
hijacks first and can only drop the socket). On acceptance the receiver
answers ``HTTP/1.1 200 OK`` with ``Upgrade: tcp`` and from then on both sides
speak messages: a 4-byte big-endian length followed by that many bytes of
JSON (an object). File bytes travel raw, right after a go-ahead, exactly
``size`` of them. The ``Upgrade`` headers are what lets aiohttp hand the
rest of the socket to this module instead of parsing it as further requests.

Messages (sender -> receiver, then the answer):

* ``{"type": "begin", "v": 1, "need_hashes": bool}`` ->
  ``{"v": 1, "hashes": {suffix: md5} | null}``
* ``{"type": "sync", "path": "<suffix>/<hash>/<file>", "metadata": {...},
  "size": n, "check": bool}`` -> ``{"exists", "newer_exists", "go_ahead":
  bool, "msg": str}``; after ``go_ahead`` the sender writes ``size`` raw
  bytes and the receiver answers ``{"success": bool, "msg": str}``.
* ``{"type": "ping"}`` -> ``{"msg": "pong"}``
* ``{"type": "done"}``: no answer; the receiver closes.

The receiver decides per file, comparing names with the storage layer's own
rules (:func:`swiftlite.object.diskfile_ondisk.get_ondisk_files`): the same
file -> exists; a file the offered one would be made obsolete by -> newer
exists; otherwise go ahead. Old data therefore never overwrites new, and a
file the receiver holds is never sent twice. Metadata travels as the JSON
dict (never raw xattrs: this node may keep it inline or in the file's tail),
and the receiver rewrites it with the normal write path after checking the
md5 of the received bytes against the ``ETag``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from swiftlite.common.devices import DeviceError, device_error_response
from swiftlite.common.http import is_valid_partition
from swiftlite.common.timestamp import Timestamp
from swiftlite.object.diskfile_exceptions import DiskFileError, DiskFileNoSpace
from swiftlite.object.diskfile_ondisk import (
    DATA_EXT,
    META_EXT,
    TS_EXT,
    get_ondisk_files,
    make_on_disk_filename,
    parse_on_disk_filename,
)
from swiftlite.object.hashes import valid_suffix

if TYPE_CHECKING:
    from swiftlite.object.diskfile import DiskFileManager, DiskFileWriter

PROTOCOL_VERSION = 1
UPGRADE_TOKEN = "tcp"
_LEN = struct.Struct(">I")
# A message is metadata plus a path; Swift's limits keep it under ~10 KiB.
MAX_MESSAGE = 1 << 20
DEFAULT_INCOMING_LIMIT = 3
# Receiver: longest wait for the sender's next message or file bytes.
RECEIVE_TIMEOUT = 600.0
# Files up to this size are received in memory and written in one thread hop.
SMALL_FILE = 1 << 20
CHUNK = 1 << 20
_HEX = frozenset("0123456789abcdef")
_ACCEPT = (
    b"HTTP/1.1 200 OK\r\n"
    b"Connection: Upgrade\r\n"
    b"Upgrade: tcp\r\n"
    b"Content-Type: application/x-swiftlite-repconn\r\n"
    b"\r\n"
)


class ProtocolError(Exception):
    """The peer broke the framing or sent a message that makes no sense."""


# -- framing --------------------------------------------------------------


def encode_message(msg: Mapping[str, Any]) -> bytes:
    body = json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8", "surrogatepass"
    )
    if len(body) > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(body)} bytes is too large")
    return _LEN.pack(len(body)) + body


def decode_message(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body.decode("utf-8", "surrogatepass"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"message is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ProtocolError("message is not a JSON object")
    return doc


async def read_message(reader: asyncio.StreamReader, timeout: float | None = None) -> dict[str, Any]:
    """One framed message; ProtocolError on bad framing, IncompleteReadError at EOF."""
    async with asyncio.timeout(timeout):
        head = await reader.readexactly(_LEN.size)
        (length,) = _LEN.unpack(head)
        if length > MAX_MESSAGE:
            raise ProtocolError(f"message length {length} exceeds {MAX_MESSAGE}")
        return decode_message(await reader.readexactly(length))


# -- receiver decisions (blocking: run in the device's threads) -----------


def parse_sync_path(rel_path: object) -> tuple[str, str, str, str]:
    """``<suffix>/<hash>/<file>`` -> (suffix, hash, filename, ext); ValueError if bad.

    Nothing else is accepted, so a path can never leave the partition.
    """
    if not isinstance(rel_path, str):
        raise ValueError("path is not a string")
    parts = rel_path.split("/")
    if len(parts) != 3:
        raise ValueError("bad file path")
    suffix, name_hash, filename = parts
    if not valid_suffix(suffix) or len(name_hash) != 32 or not set(name_hash) <= _HEX:
        raise ValueError("bad file path")
    if not name_hash.endswith(suffix):
        raise ValueError("bad file path")
    info = parse_on_disk_filename(filename)  # ValueError for other extensions
    if info.ext not in (DATA_EXT, TS_EXT, META_EXT):
        raise ValueError("bad file path")
    return suffix, name_hash, filename, info.ext


def decide(hash_dir: str, filename: str) -> str:
    """``exists``, ``newer`` or ``go`` for an offered file (names only).

    The offered file is "newer exists" exactly when the storage layer's own
    selection would discard it next to what is already here: an older
    ``.data`` beside a newer one, anything at or before a newer tombstone, a
    ``.meta`` at or before the ``.data``... A ``.meta`` offered to a dir with
    no ``.data`` yet is accepted (its ``.data`` may follow).
    """
    try:
        existing = os.listdir(hash_dir)
    except (FileNotFoundError, NotADirectoryError):
        existing = []
    if filename in existing:
        return "exists"
    result = get_ondisk_files([*existing, filename])
    if any(info.filename == filename for info in result.obsolete):
        return "newer"
    return "go"


def check_offer(
    filename: str, ext: str, metadata: object, size: object
) -> tuple[dict[str, str], int]:
    """The metadata and size of an offer, checked against its file name."""
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise ValueError("metadata is not a str -> str mapping")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError("bad size")
    try:
        ts = Timestamp(metadata["X-Timestamp"])
        ctype_ts = None
        if ext == META_EXT and metadata.get("Content-Type-Timestamp"):
            ctype_ts = Timestamp(metadata["Content-Type-Timestamp"])
    except (KeyError, ValueError):
        raise ValueError("bad or missing X-Timestamp") from None
    if make_on_disk_filename(ts, ext, ctype_ts) != filename:
        raise ValueError("metadata does not match the file name")
    if "name" not in metadata:
        raise ValueError("metadata has no name")
    if ext == DATA_EXT:
        if metadata.get("Content-Length") != str(size) or "ETag" not in metadata:
            raise ValueError("Content-Length/ETag do not match the offered size")
    elif size:
        raise ValueError(f"a {ext} file carries no data")
    return metadata, size


class _Receiver:
    """One accepted session on one device/partition/policy."""

    def __init__(
        self,
        mgr: DiskFileManager,
        dm: Any,
        device: str,
        partition: str,
        policy_index: int,
        reader: asyncio.StreamReader,
        transport: asyncio.WriteTransport,
        timeout: float,
    ) -> None:
        self.mgr = mgr
        self.dm = dm
        self.device = device
        self.partition = partition
        self.policy_index = policy_index
        self.reader = reader
        self.transport = transport
        self.timeout = timeout
        self.files_received = 0
        self.bytes_received = 0

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await self.dm.run(self.device, fn, *args, priority="replication")

    async def send(self, msg: Mapping[str, Any]) -> None:
        if self.transport.is_closing():
            raise ConnectionResetError("peer went away")
        self.transport.write(encode_message(msg))
        # Answers are small, but a sender that stops reading must not make
        # this side buffer without bound.
        while self.transport.get_write_buffer_size() > (1 << 20):
            if self.transport.is_closing():
                raise ConnectionResetError("peer went away")
            await asyncio.sleep(0.01)

    async def serve(self) -> None:
        begin = await read_message(self.reader, self.timeout)
        if begin.get("type") != "begin" or begin.get("v") != PROTOCOL_VERSION:
            raise ProtocolError(f"expected a version {PROTOCOL_VERSION} begin message")
        hashes = None
        if begin.get("need_hashes"):
            hashes = await self._run(self.mgr.get_hashes, self.device, self.partition, self.policy_index)
        await self.send({"v": PROTOCOL_VERSION, "hashes": hashes})
        while True:
            try:
                msg = await read_message(self.reader, self.timeout)
            except asyncio.IncompleteReadError:
                return  # the sender hung up between files: nothing half done
            kind = msg.get("type")
            if kind == "done":
                return
            if kind == "ping":
                await self.send({"msg": "pong"})
            elif kind == "sync":
                await self.sync_file(msg)
            else:
                raise ProtocolError(f"unknown message type {kind!r}")

    async def sync_file(self, msg: dict[str, Any]) -> None:
        answer = {"exists": False, "newer_exists": False, "go_ahead": False, "msg": ""}
        try:
            suffix, name_hash, filename, ext = parse_sync_path(msg.get("path"))
            metadata, size = check_offer(filename, ext, msg.get("metadata"), msg.get("size"))
        except ValueError as exc:
            answer["msg"] = str(exc) if str(exc) else "bad file path"
            await self.send(answer)
            return
        check = bool(msg.get("check"))
        verdict, writer = await self._run(self._decide, name_hash, filename, size, ext, check)
        if verdict == "exists":
            answer["exists"] = True
        elif verdict == "newer":
            answer["newer_exists"] = True
        elif verdict == "nospace":
            answer["msg"] = "insufficient storage"
        elif writer is not None:
            answer["go_ahead"] = True
            await self.send(answer)
            await self.receive(writer, metadata, size, ext)
            return
        await self.send(answer)

    def _decide(
        self, name_hash: str, filename: str, size: int, ext: str, check: bool
    ) -> tuple[str, DiskFileWriter | None]:
        """The verdict and, on a go-ahead, the open writer: one thread hop.

        (get_diskfile_from_hash stats the device, so it runs here too.)
        """
        df = self.mgr.get_diskfile_from_hash(
            self.device, self.partition, name_hash, self.policy_index
        )
        verdict = decide(df.datadir, filename)
        if verdict != "go" or check:
            return verdict, None
        try:
            return verdict, _open_writer(df, size, ext)
        except DiskFileNoSpace:
            return "nospace", None

    async def receive(
        self, writer: DiskFileWriter, metadata: dict[str, str], size: int, ext: str
    ) -> None:
        """Take exactly ``size`` bytes, check them, link the file in, answer."""
        try:
            if size <= SMALL_FILE:
                async with asyncio.timeout(self.timeout):
                    data = await self.reader.readexactly(size) if size else b""
                ok, why = await self._run(_finish_small, writer, data, metadata, ext)
            else:
                left = size
                while left:
                    async with asyncio.timeout(self.timeout):
                        chunk = await self.reader.read(min(CHUNK, left))
                    if not chunk:
                        raise asyncio.IncompleteReadError(b"", left)
                    left -= len(chunk)
                    await self._run(writer.write, chunk)
                ok, why = await self._run(_finish, writer, metadata, ext)
        except BaseException:
            await self._run(writer.abort)
            raise
        if ok:
            self.files_received += 1
            self.bytes_received += size
        await self.send({"success": ok, "msg": why})


def _open_writer(df: Any, size: int, ext: str) -> DiskFileWriter:
    writer: DiskFileWriter = df.create(size if ext != META_EXT else None, ext)
    return writer


def _finish_small(
    writer: DiskFileWriter, data: bytes, metadata: dict[str, str], ext: str
) -> tuple[bool, str]:
    if data:
        writer.write(data)
    return _finish(writer, metadata, ext)


def _finish(writer: DiskFileWriter, metadata: dict[str, str], ext: str) -> tuple[bool, str]:
    """Check the md5 (a ``.data`` against its ETag), then put; never leaves a temp file."""
    if ext == DATA_EXT and writer.etag != metadata["ETag"].strip('"').lower():
        writer.abort()
        return False, f"md5 mismatch: got {writer.etag}, ETag {metadata['ETag']}"
    try:
        writer.put(metadata)
    except DiskFileError as exc:
        writer.abort()
        return False, f"put failed: {exc}"
    return True, ""


# -- the aiohttp handler ---------------------------------------------------


class _Feeder:
    """Plugs into aiohttp's protocol as its payload parser after the takeover.

    aiohttp hands every later byte of the socket to ``feed_data``; an
    ``asyncio.StreamReader`` holding its transport pauses reading when its
    buffer is full, so a fast sender cannot outrun a slow disk.
    """

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.reader.feed_data(data)
        return False, b""

    def feed_eof(self) -> None:
        self.reader.feed_eof()


class _TakenOver(web.StreamResponse):
    """What the handler returns once it has answered on the raw socket itself:
    aiohttp must write nothing more."""

    async def prepare(self, request: web.BaseRequest) -> None:  # type: ignore[override]
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


def _plain(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text + "\n", headers={"Connection": "close"})


def _split(path: str) -> tuple[str, str] | None:
    parts = path.split("/")
    if len(parts) != 3 or parts[0]:
        return None
    return parts[1], parts[2]


async def handle_repconn(
    server: Any, request: web.Request, path: str | None = None
) -> web.StreamResponse:
    """Serve ``REPCONN /<device>/<partition>`` for an object server.

    ``server`` needs ``dm`` (DeviceManager), ``mgr`` (DiskFileManager),
    ``cluster`` (policies), ``conf`` (for ``replication_concurrency_per_device``,
    default 3) and ``logger``. Refusals are ordinary HTTP answers; after the
    ``200`` this coroutine owns the socket until the session ends.
    """
    target = _split(path if path is not None else request.path)
    if target is None or not is_valid_partition(target[1]):
        return _plain(400, "Invalid path")
    device, partition = target
    connection = {t.strip().lower() for t in request.headers.get("Connection", "").split(",")}
    if request.headers.get("Upgrade", "").lower() != UPGRADE_TOKEN or "upgrade" not in connection:
        # Without both, aiohttp goes on parsing the socket as HTTP requests.
        return _plain(400, "REPCONN needs Connection: Upgrade and Upgrade: tcp")
    if request.content_length or "Transfer-Encoding" in request.headers:
        return _plain(400, "REPCONN takes no body")
    policy_value = request.headers.get("X-Backend-Storage-Policy-Index") or "0"
    policy_index = int(policy_value) if policy_value.isdigit() else -1
    if not any(p.index == policy_index for p in server.cluster.policies):
        return _plain(503, f"No policy with index {policy_value}")
    limit = int(
        getattr(server.conf, "replication_concurrency_per_device", DEFAULT_INCOMING_LIMIT)
    )
    async with contextlib.AsyncExitStack() as stack:
        try:
            await server.dm.acheck(device, priority="replication")
            await stack.enter_async_context(server.dm.slot(device, "replication", limit=limit))
        except DeviceError as exc:  # 507 unmounted/missing, 503 locked or busy
            resp = device_error_response(exc)
            resp.headers["Connection"] = "close"
            return resp
        transport = request.transport
        if transport is None or transport.is_closing():
            return _TakenOver()
        reader = asyncio.StreamReader(limit=4 * CHUNK)
        reader.set_transport(transport)
        request.protocol.set_parser(_Feeder(reader))  # type: ignore[arg-type]
        transport.write(_ACCEPT)
        session = _Receiver(
            server.mgr,
            server.dm,
            device,
            partition,
            policy_index,
            reader,
            transport,  # type: ignore[arg-type]
            float(getattr(server.conf, "replication_timeout", RECEIVE_TIMEOUT)),
        )
        try:
            await session.serve()
        except (ProtocolError, asyncio.IncompleteReadError, ConnectionError, TimeoutError) as exc:
            server.logger.warning(
                "REPCONN %s/%s ended early: %s", device, partition, exc or type(exc).__name__
            )
        except DiskFileError as exc:
            server.logger.error("REPCONN %s/%s aborted: %s", device, partition, exc)
        except Exception:
            server.logger.exception("REPCONN %s/%s failed", device, partition)
        finally:
            transport.close()
        server.logger.debug(
            "REPCONN %s/%s: %d files, %d bytes received",
            device,
            partition,
            session.files_received,
            session.bytes_received,
        )
    return _TakenOver()


# -- the sending side -------------------------------------------------------


class RepconnRefused(Exception):
    """The peer answered the REPCONN request with a non-200 status."""

    def __init__(self, status: int, reason: str = "") -> None:
        super().__init__(f"REPCONN refused: {status} {reason}".strip())
        self.status = status


class SyncAnswer:
    """The receiver's verdict on one offered file."""

    __slots__ = ("exists", "go_ahead", "msg", "newer_exists")

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.exists = bool(doc.get("exists"))
        self.newer_exists = bool(doc.get("newer_exists"))
        self.go_ahead = bool(doc.get("go_ahead"))
        self.msg = str(doc.get("msg") or "")


class RepconnClient:
    """The sender's end of one session; open it with :meth:`connect`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        timeout: float,
        hashes: dict[str, str] | None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        self.hashes = hashes
        self.closed = False

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        device: str,
        partition: int | str,
        policy_index: int = 0,
        *,
        need_hashes: bool = True,
        conn_timeout: float = 0.5,
        http_timeout: float = 60.0,
        node_timeout: float = 10.0,
        txn_id: str | None = None,
    ) -> RepconnClient:
        """Open a session; RepconnRefused (with the HTTP status) or OSError/TimeoutError."""
        async with asyncio.timeout(conn_timeout):
            reader, writer = await asyncio.open_connection(host, port, limit=4 * CHUNK)
        try:
            host_header = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            head = (
                f"REPCONN /{device}/{partition} HTTP/1.1\r\n"
                f"Host: {host_header}\r\n"
                "Connection: Upgrade\r\n"
                f"Upgrade: {UPGRADE_TOKEN}\r\n"
                f"X-Backend-Storage-Policy-Index: {policy_index}\r\n"
                + (f"X-Trans-Id: {txn_id}\r\n" if txn_id else "")
                + "\r\n"
            )
            writer.write(head.encode("utf-8", "surrogateescape"))
            async with asyncio.timeout(http_timeout):
                await writer.drain()
                status, reason = await _read_response_head(reader)
            if status != 200:
                raise RepconnRefused(status, reason)
            writer.write(
                encode_message({"type": "begin", "v": PROTOCOL_VERSION, "need_hashes": need_hashes})
            )
            async with asyncio.timeout(http_timeout):
                await writer.drain()
                answer = await read_message(reader)
            hashes = answer.get("hashes")
            if hashes is not None and not isinstance(hashes, dict):
                raise ProtocolError("hashes is not a mapping")
            return cls(reader, writer, node_timeout, hashes)
        except BaseException:
            writer.close()
            raise

    async def _send(self, msg: Mapping[str, Any]) -> None:
        self.writer.write(encode_message(msg))
        async with asyncio.timeout(self.timeout):
            await self.writer.drain()

    async def offer(
        self, rel_path: str, metadata: Mapping[str, str], size: int, check: bool = False
    ) -> SyncAnswer:
        await self._send(
            {"type": "sync", "path": rel_path, "metadata": dict(metadata), "size": size, "check": check}
        )
        return SyncAnswer(await read_message(self.reader, self.timeout))

    async def write_bytes(self, data: bytes | memoryview) -> None:
        """Part of a file's bytes, after a go-ahead."""
        self.writer.write(data)
        async with asyncio.timeout(self.timeout):
            await self.writer.drain()

    async def upload_result(self) -> tuple[bool, str]:
        """The receiver's answer once all of a file's bytes were written."""
        doc = await read_message(self.reader, self.timeout)
        return bool(doc.get("success")), str(doc.get("msg") or "")

    async def ping(self) -> bool:
        await self._send({"type": "ping"})
        return (await read_message(self.reader, self.timeout)).get("msg") == "pong"

    async def close(self, done: bool = True) -> None:
        """End the session (``done`` tells the receiver it was complete)."""
        if self.closed:
            return
        self.closed = True
        try:
            if done:
                self.writer.write(encode_message({"type": "done"}))
                async with asyncio.timeout(self.timeout):
                    await self.writer.drain()
        except (OSError, TimeoutError):
            pass
        finally:
            self.writer.close()
            with contextlib.suppress(OSError, TimeoutError, asyncio.TimeoutError):
                async with asyncio.timeout(self.timeout):
                    await self.writer.wait_closed()


async def _read_response_head(reader: asyncio.StreamReader) -> tuple[int, str]:
    """Status and reason of the HTTP answer; its headers (and any body) are ignored,
    since a refused session is closed and an accepted one switches protocol."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise ProtocolError("response head too long") from None
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ProtocolError(f"bad status line {line!r}")
    return int(parts[1]), parts[2] if len(parts) > 2 else ""


__all__ = [
    "MAX_MESSAGE",
    "PROTOCOL_VERSION",
    "ProtocolError",
    "RepconnClient",
    "RepconnRefused",
    "SyncAnswer",
    "check_offer",
    "decide",
    "decode_message",
    "encode_message",
    "handle_repconn",
    "parse_sync_path",
    "read_message",
]
