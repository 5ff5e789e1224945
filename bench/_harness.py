"""Shared machinery for the storage-server benchmarks (swiftlite vs OpenStack Swift).

What lives here and why:

- storage: an XFS loop image per run (as Swift's all-in-one guide does; file
  creation on this machine's root ext4 costs ~1 ms of kernel time, on XFS
  ~25 us), or a plain directory on the root ext4 for the second line; both are
  always cleaned up (unmount + delete the image) in ``finally``.
- servers: config files for both systems generated from one set of choices
  (same devices layout, same worker count, both fsyncing, logging at WARNING)
  and a process wrapper that waits for the port, reports a dead server with
  the tail of its log, and stops its own process group.
- load: one asyncio + aiohttp client process (uvloop when importable) running
  N requests at a fixed concurrency, keep-alive, recording each latency.
- a "ceiling" server (``python3 bench/_harness.py ceiling PORT``) that answers
  the same requests from memory, so every report can say how fast the client
  itself can go on this 2-core machine: a figure near the ceiling is
  client-bound, not server-bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import aiohttp

HERE = os.path.dirname(os.path.abspath(__file__))
#: Load client for small requests: "raw" (`_RawConn`, lean) or "aiohttp".
CLIENT = "raw"
HASH_PREFIX = "benchprefix"
HASH_SUFFIX = "benchsuffix"
DEVICE = "sda1"


# --------------------------------------------------------------------------
# storage


def _run(cmd: Sequence[str]) -> None:
    subprocess.run(list(cmd), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@contextlib.contextmanager
def storage_root(kind: str, base: str, size: str = "6G") -> Iterator[str]:
    """Yield a directory on ``kind`` storage ("xfs" loop image or plain "ext4" dir)."""
    os.makedirs(base, exist_ok=True)
    if kind == "ext4":
        path = tempfile.mkdtemp(prefix="ext4-", dir=base)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
        return
    if kind != "xfs":
        raise ValueError(f"unknown storage kind {kind!r}")
    image = tempfile.mktemp(prefix="xfs-", suffix=".img", dir=base)
    mnt = image[:-4] + ".mnt"
    mounted = False
    try:
        _run(["truncate", "-s", size, image])
        # -i size=1024: room for Swift's xattrs inline, as the SAIO guide says.
        _run(["mkfs.xfs", "-q", "-f", "-i", "size=1024", image])
        os.makedirs(mnt, exist_ok=True)
        _run(["mount", "-o", "loop,noatime", image, mnt])
        mounted = True
        yield mnt
    finally:
        if mounted:
            for attempt in range(10):
                res = subprocess.run(["umount", mnt], capture_output=True)
                if res.returncode == 0:
                    break
                time.sleep(0.5 * (attempt + 1))
            else:
                subprocess.run(["umount", "-l", mnt], capture_output=True)
        with contextlib.suppress(OSError):
            os.rmdir(mnt)
        with contextlib.suppress(OSError):
            os.unlink(image)


def make_devices(root: str, name: str) -> str:
    """Create ``<root>/<name>/<DEVICE>`` and return the devices root."""
    devices = os.path.join(root, name)
    os.makedirs(os.path.join(devices, DEVICE), exist_ok=True)
    return devices


# --------------------------------------------------------------------------
# configs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_swift_configs(
    etc: str, role: str, devices: str, port: int, extra: dict[str, str] | None = None
) -> str:
    """Write swift.conf and ``<role>-server.conf`` for OpenStack Swift; return the conf path.

    ``role`` is "object" or "container". The pipeline holds only the app: no
    middleware on either side, so both systems serve the bare backend protocol.
    """
    os.makedirs(etc, exist_ok=True)
    with open(os.path.join(etc, "swift.conf"), "w") as fp:
        fp.write(
            "[swift-hash]\n"
            f"swift_hash_path_prefix = {HASH_PREFIX}\n"
            f"swift_hash_path_suffix = {HASH_SUFFIX}\n\n"
            "[storage-policy:0]\nname = Policy-0\ndefault = yes\n"
        )
    lines = [
        "[DEFAULT]",
        f"devices = {devices}",
        "mount_check = false",
        "disable_fallocate = true",
        "bind_ip = 127.0.0.1",
        f"bind_port = {port}",
        "workers = 1",
        "user = root",
        f"swift_dir = {etc}",
        "log_level = WARNING",
        f"log_name = {role}-server",
        "",
        "[pipeline:main]",
        f"pipeline = {role}-server",
        "",
        f"[app:{role}-server]",
        f"use = egg:swift#{role}",
    ]
    for key, value in (extra or {}).items():
        lines.append(f"{key} = {value}")
    path = os.path.join(etc, f"{role}-server.conf")
    with open(path, "w") as fp:
        fp.write("\n".join(lines) + "\n")
    return path


def write_swiftlite_configs(
    etc: str, role: str, devices: str, port: int, extra: dict[str, Any] | None = None
) -> str:
    """Write swiftlite.yaml and ``<role>-server.yaml``; return the conf path."""
    os.makedirs(etc, exist_ok=True)
    with open(os.path.join(etc, "swiftlite.yaml"), "w") as fp:
        fp.write(
            f"hash_path_prefix: {HASH_PREFIX}\nhash_path_suffix: {HASH_SUFFIX}\n"
            "policies:\n  - index: 0\n    name: Policy-0\n    default: true\n"
        )
    conf: dict[str, Any] = {
        "bind_ip": "127.0.0.1",
        "bind_port": port,
        "workers": 1,
        "devices": devices,
        "mount_check": False,
        "swift_dir": etc,
        "log_level": "WARNING",
    }
    conf.update(extra or {})
    path = os.path.join(etc, f"{role}-server.yaml")
    with open(path, "w") as fp:
        # JSON is valid YAML and needs no YAML writer here.
        json.dump(conf, fp, indent=1)
    return path


def parse_settings(items: Sequence[str] | None) -> dict[str, Any]:
    """``--lite-set key=value`` options as a mapping; values are read as YAML
    (``8`` is an int, ``false`` a bool), as the server's config loader would."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--lite-set wants KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


# --------------------------------------------------------------------------
# server processes


class ServerFailed(RuntimeError):
    """A server under test did not start or died; the message says which and why."""


class ServerProc:
    """One server under test, in its own process group so stopping it stops its workers."""

    def __init__(self, name: str, argv: Sequence[str], port: int, log_path: str) -> None:
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def log_tail(self, lines: int = 15) -> str:
        try:
            with open(self.log_path, errors="replace") as fp:
                return "".join(fp.readlines()[-lines:]).rstrip()
        except OSError:
            return "(no log)"

    def start(self, timeout: float = 30.0) -> None:
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            raise ServerFailed(f"{self.name}: cannot run {self.argv[0]}: {exc}") from None
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerFailed(
                    f"{self.name} exited with status {self.proc.returncode} at start-up; "
                    f"log tail:\n{self.log_tail()}"
                )
            if self._answers():
                return
            time.sleep(0.1)
        self.stop()
        raise ServerFailed(f"{self.name} did not answer HTTP within {timeout}s:\n{self.log_tail()}")

    def _answers(self) -> bool:
        """True once the port answers an HTTP request with any status line."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return s.recv(12).startswith(b"HTTP/1.")
        except OSError:
            return False

    def cpu_seconds(self) -> float:
        """User + system CPU of every live process in the server's process group.

        The group is the one ``start`` created (parent and workers, all their
        threads), so this is the server's whole CPU cost, disk threads included.
        """
        if self.proc is None:
            return 0.0
        total = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as fp:
                    stat = fp.read()
            except OSError:
                continue
            # Fields after the ")" of the command name: state is [0], pgrp [2],
            # utime [11], stime [12].
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == self.proc.pid:
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise ServerFailed(f"{self.name} died (status {code}); log tail:\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)
        # Workers that outlived their parent are still in the group we created.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def swift_server(role: str, conf: str, port: int, log_path: str) -> ServerProc:
    exe = shutil.which(f"swift-{role}-server") or f"swift-{role}-server"
    return ServerProc(f"swift {role}-server", [exe, conf], port, log_path)


def swiftlite_server(role: str, conf: str, port: int, log_path: str) -> ServerProc:
    exe = shutil.which(f"swiftlite-{role}-server") or f"swiftlite-{role}-server"
    return ServerProc(f"swiftlite {role}-server", [exe, conf], port, log_path)


def ceiling_server(port: int, log_path: str) -> ServerProc:
    argv = [sys.executable, os.path.join(HERE, "_harness.py"), "ceiling", str(port)]
    return ServerProc("ceiling (in-memory) server", argv, port, log_path)


# --------------------------------------------------------------------------
# load generation


@dataclasses.dataclass
class Req:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None = None


@dataclasses.dataclass
class Result:
    """One load run: ``n`` requests at ``concurrency``, latencies in seconds."""

    n: int
    concurrency: int
    elapsed: float
    latencies: list[float]
    payload_bytes: int
    errors: int
    first_error: str | None = None
    #: CPU seconds the server spent during the run (None: not measured).
    server_cpu: float | None = None

    @property
    def ops_s(self) -> float:
        return (self.n - self.errors) / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def mb_s(self) -> float:
        return self.payload_bytes / self.elapsed / 1e6 if self.elapsed > 0 else 0.0

    def pct(self, p: float) -> float:
        return percentile(self.latencies, p)

    def summary(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "concurrency": self.concurrency,
            "errors": self.errors,
            "first_error": self.first_error,
            "elapsed_s": round(self.elapsed, 4),
            "ops_s": round(self.ops_s, 1),
            "mb_s": round(self.mb_s, 2),
            "p50_ms": round(self.pct(50) * 1000, 3),
            "p99_ms": round(self.pct(99) * 1000, 3),
            "cpu_ms_op": (
                round(self.server_cpu * 1000 / self.n, 4)
                if self.server_cpu is not None and self.n
                else None
            ),
        }


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def install_uvloop() -> None:
    """Use uvloop for the client too, as the servers do (it is ~2x cheaper per request)."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def run_load(
    base_url: str,
    make_req: Callable[[int], Req],
    n: int,
    concurrency: int,
    ok_status: Sequence[int],
    timeout: float = 120.0,
    cpu: Callable[[], float] | None = None,
) -> Result:
    """Send ``make_req(0..n-1)`` with ``concurrency`` keep-alive connections.

    Bodies of responses are read to the end (in 1 MiB pieces, then dropped) so a
    GET costs the client what a real reader pays; the payload count is request
    body bytes plus response body bytes.
    """
    if CLIENT == "raw":
        port = int(base_url.rsplit(":", 1)[1])
        return await run_load_raw(port, make_req, n, concurrency, ok_status, cpu=cpu)

    latencies: list[float] = []
    state = {"next": 0, "errors": 0, "bytes": 0}
    first_error: list[str] = []
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False, ttl_dns_cache=None)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    ok = set(ok_status)

    async def worker(session: aiohttp.ClientSession) -> None:
        while True:
            i = state["next"]
            if i >= n:
                return
            state["next"] = i + 1
            req = make_req(i)
            t0 = time.perf_counter()
            try:
                async with session.request(
                    req.method, base_url + req.path, headers=req.headers, data=req.body
                ) as resp:
                    got = 0
                    while True:
                        chunk = await resp.content.read(1 << 20)
                        if not chunk:
                            break
                        got += len(chunk)
                    status = resp.status
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                status, got = -1, 0
                if not first_error:
                    first_error.append(f"{req.method} {req.path}: {type(exc).__name__}: {exc}")
            latencies.append(time.perf_counter() - t0)
            if status in ok:
                state["bytes"] += got + (len(req.body) if req.body else 0)
            else:
                state["errors"] += 1
                if not first_error:
                    first_error.append(f"{req.method} {req.path}: status {status}")

    async with aiohttp.ClientSession(
        connector=connector, timeout=client_timeout, auto_decompress=False
    ) as session:
        cpu0 = cpu() if cpu else 0.0
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(min(concurrency, n))))
        elapsed = time.perf_counter() - t0
        server_cpu = cpu() - cpu0 if cpu else None
    return Result(
        server_cpu=server_cpu,
        n=n,
        concurrency=concurrency,
        elapsed=elapsed,
        latencies=latencies,
        payload_bytes=state["bytes"],
        errors=state["errors"],
        first_error=first_error[0] if first_error else None,
    )


class _RawConn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 client connection, parsing only what the bench needs.

    Why not aiohttp here: on this 2-core machine the client shares the CPU
    with the server under test, and aiohttp's client costs about three times
    as much CPU per request as this; a cheaper client leaves more of the
    machine to the server, so the figure is more the server's. Responses are
    framed by Content-Length, chunked encoding, or (no length) the close;
    HEAD, 1xx, 204 and 304 answers have no body.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, int]] | None = None
        self.head_only = False
        self.closed = False
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.body_left = -1  # -1: head not parsed yet
        self.chunked = False
        self.until_close = False
        self.will_close = False
        self.got = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            if self.until_close and self.status:
                self.waiter.set_result((self.status, self.got + len(self.buf)))
            else:
                self.waiter.set_exception(ConnectionError("connection closed mid-response"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            self._parse()
        except (ValueError, IndexError) as exc:
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_exception(ConnectionError(f"bad response: {exc}"))
            if self.transport is not None:
                self.transport.close()

    def _parse(self) -> None:
        if self.waiter is None or self.waiter.done():
            return
        if self.body_left == -1:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            del self.buf[: end + 4]
            self.status = int(lines[0].split(None, 2)[1])
            length = None
            for line in lines[1:]:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key == "content-length":
                    length = int(value)
                elif key == "transfer-encoding" and "chunked" in value.lower():
                    self.chunked = True
                elif key == "connection" and value.strip().lower() == "close":
                    self.will_close = True
            if self.head_only or self.status in (204, 304) or self.status < 200:
                self.body_left = 0
                self.chunked = False
            elif self.chunked:
                self.body_left = 0
            elif length is not None:
                self.body_left = length
            else:
                self.until_close = True
                self.body_left = 0
        if self.until_close:
            self.got += len(self.buf)
            self.buf.clear()
            return
        if self.chunked:
            while True:
                eol = self.buf.find(b"\r\n")
                if eol < 0:
                    return
                size = int(bytes(self.buf[:eol]).split(b";")[0], 16)
                if size == 0:
                    # Last chunk; no trailers expected from these servers.
                    if len(self.buf) < eol + 4:
                        return
                    del self.buf[: eol + 4]
                    break
                if len(self.buf) < eol + 2 + size + 2:
                    return
                self.got += size
                del self.buf[: eol + 2 + size + 2]
        else:
            take = min(self.body_left, len(self.buf))
            self.got += take
            self.body_left -= take
            del self.buf[:take]
            if self.body_left > 0:
                return
        result = (self.status, self.got)
        if self.will_close and self.transport is not None:
            self.transport.close()
            self.closed = True
        self._reset()
        self.waiter.set_result(result)

    async def request(self, data: bytes, head_only: bool) -> tuple[int, int]:
        assert self.transport is not None
        self.head_only = head_only
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter


def _raw_request_bytes(req: Req) -> bytes:
    lines = [f"{req.method} {req.path} HTTP/1.1", "Host: 127.0.0.1"]
    has_length = False
    for key, value in req.headers.items():
        lines.append(f"{key}: {value}")
        has_length = has_length or key.lower() == "content-length"
    if not has_length and (req.body or req.method in ("PUT", "POST")):
        lines.append(f"Content-Length: {len(req.body or b'')}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + req.body if req.body else head


async def run_load_raw(
    port: int,
    make_req: Callable[[int], Req],
    n: int,
    concurrency: int,
    ok_status: Sequence[int],
    cpu: Callable[[], float] | None = None,
) -> Result:
    """``run_load`` with the lean client (`_RawConn`), same accounting."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    state = {"next": 0, "errors": 0, "bytes": 0}
    first_error: list[str] = []
    ok = set(ok_status)

    async def connect() -> _RawConn:
        _t, proto = await loop.create_connection(_RawConn, "127.0.0.1", port)
        sock = _t.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return proto

    async def worker() -> None:
        conn: _RawConn | None = None
        try:
            while True:
                i = state["next"]
                if i >= n:
                    return
                state["next"] = i + 1
                req = make_req(i)
                data = _raw_request_bytes(req)
                t0 = time.perf_counter()
                try:
                    if conn is None or conn.closed:
                        conn = await connect()
                    status, got = await asyncio.wait_for(
                        conn.request(data, req.method == "HEAD"), 120
                    )
                except (ConnectionError, OSError, TimeoutError) as exc:
                    status, got = -1, 0
                    if conn is not None and conn.transport is not None:
                        conn.transport.close()
                    conn = None
                    if not first_error:
                        first_error.append(f"{req.method} {req.path}: {type(exc).__name__}: {exc}")
                latencies.append(time.perf_counter() - t0)
                if status in ok:
                    state["bytes"] += got + (len(req.body) if req.body else 0)
                else:
                    state["errors"] += 1
                    if not first_error:
                        first_error.append(f"{req.method} {req.path}: status {status}")
        finally:
            if conn is not None and conn.transport is not None:
                conn.transport.close()

    cpu0 = cpu() if cpu else 0.0
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, n))))
    elapsed = time.perf_counter() - t0
    return Result(
        n=n,
        concurrency=concurrency,
        elapsed=elapsed,
        latencies=latencies,
        payload_bytes=state["bytes"],
        errors=state["errors"],
        first_error=first_error[0] if first_error else None,
        server_cpu=cpu() - cpu0 if cpu else None,
    )


def _recv_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read a response head; return (status, lower-cased headers, body bytes already read)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before the response head")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return status, headers, rest


def big_transfer(port: int, req: Req, buf: bytearray) -> tuple[int, int]:
    """One request on a fresh blocking socket; return (status, response body bytes).

    Why not aiohttp here: its client tops out near 450-550 MB/s on this machine
    (it copies every chunk through its StreamReader), below what a server can
    send over loopback, so for 64 MiB objects it would measure the client.
    ``sendall`` of the body and ``recv_into`` one reused buffer cost almost
    nothing, so the server's speed shows. Bodies are sized by Content-Length
    (both servers send it for a whole-object GET); anything else reads to EOF.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=600) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        lines = [f"{req.method} {req.path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in req.headers.items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if req.body:
            sock.sendall(req.body)
        status, headers, rest = _recv_head(sock)
        got = len(rest)
        view = memoryview(buf)
        want = int(headers["content-length"]) if "content-length" in headers else -1
        if req.method == "HEAD":
            want = 0
        while want < 0 or got < want:
            n = sock.recv_into(view)
            if not n:
                break
            got += n
        return status, got


def run_big_load(
    port: int,
    make_req: Callable[[int], Req],
    n: int,
    ok_status: Sequence[int],
    cpu: Callable[[], float] | None = None,
) -> Result:
    """``n`` large-object requests one after another (concurrency 1), blocking sockets."""
    buf = bytearray(4 << 20)
    latencies: list[float] = []
    errors = 0
    payload = 0
    first_error: str | None = None
    cpu0 = cpu() if cpu else 0.0
    t_start = time.perf_counter()
    for i in range(n):
        req = make_req(i)
        t0 = time.perf_counter()
        try:
            status, got = big_transfer(port, req, buf)
        except (OSError, ValueError, KeyError) as exc:
            status, got = -1, 0
            first_error = first_error or f"{req.method} {req.path}: {type(exc).__name__}: {exc}"
        latencies.append(time.perf_counter() - t0)
        if status in ok_status:
            payload += got + (len(req.body) if req.body else 0)
        else:
            errors += 1
            first_error = first_error or f"{req.method} {req.path}: status {status}"
    elapsed = time.perf_counter() - t_start
    return Result(
        server_cpu=cpu() - cpu0 if cpu else None,
        n=n,
        concurrency=1,
        elapsed=elapsed,
        latencies=latencies,
        payload_bytes=payload,
        errors=errors,
        first_error=first_error,
    )


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


def partition(account: str, container: str, obj: str | None = None, part_power: int = 10) -> int:
    """Swift's partition for a path (same secrets as the generated configs), so
    both systems spread their files over the same directory tree."""
    path = f"/{account}/{container}" + (f"/{obj}" if obj is not None else "")
    digest = hashlib.md5((HASH_PREFIX + path + HASH_SUFFIX).encode()).digest()
    return int.from_bytes(digest[:4], "big") >> (32 - part_power)


def timestamp() -> str:
    """A Swift normal-form timestamp, unique per call within this process."""
    global _last_ts
    now = max(time.time(), _last_ts + 0.00001)
    _last_ts = now
    return f"{now:016.5f}"


_last_ts = 0.0


# --------------------------------------------------------------------------
# figures


def median_summary(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-figure median over rounds (each round is one ``Result.summary()``)."""
    if not results:
        return {}
    out: dict[str, Any] = {"rounds": len(results)}
    for key in ("ops_s", "mb_s", "p50_ms", "p99_ms", "elapsed_s", "cpu_ms_op"):
        values = [r[key] for r in results if r.get(key) is not None]
        out[key] = round(statistics.median(values), 4) if values else None
    out["errors"] = sum(r["errors"] for r in results)
    errs = [r["first_error"] for r in results if r.get("first_error")]
    out["first_error"] = errs[0] if errs else None
    out["n"] = results[0]["n"]
    out["concurrency"] = results[0]["concurrency"]
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(value: float | None, lower_is_better: bool = False) -> str:
    if value is None:
        return "  n/a"
    return f"{value:5.2f}x" + (" (lower is better)" if lower_is_better else "")


def print_table(title: str, rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    print("  " + "  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  " + "  ".join("-" * w for w in widths))
    for r in rows:
        print("  " + "  ".join(str(c).rjust(w) for c, w in zip(r, widths, strict=True)))


def short_reason(why: str, width: int = 300) -> str:
    """First line of a failure plus its last line (usually the actual error)."""
    lines = [line for line in why.splitlines() if line.strip()]
    if not lines:
        return "(no reason given)"
    text = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1].strip()}"
    return text if len(text) <= width else text[: width - 3] + "..."


def cpu_note() -> str:
    return f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}"


# --------------------------------------------------------------------------
# the in-memory ceiling server


def _serve_ceiling(port: int) -> None:
    """Answer PUT/GET/HEAD/DELETE from memory: what the client alone can reach."""
    from aiohttp import web

    store: dict[str, int] = {}
    blobs: dict[int, bytes] = {}

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.method == "PUT":
            size = 0
            async for chunk in request.content.iter_chunked(1 << 20):
                size += len(chunk)
            store[request.path] = size
            return web.Response(status=201)
        if request.path == "/healthcheck":
            return web.Response(text="OK")
        known = store.get(request.path)
        if known is None and request.method == "HEAD":
            # A container HEAD: the container bench reads the row count from it.
            return web.Response(status=204, headers={"X-Container-Object-Count": str(len(store))})
        if known is None:
            return web.Response(status=404)
        size = known
        if request.method == "DELETE":
            del store[request.path]
            return web.Response(status=204)
        if request.method == "HEAD":
            return web.Response(headers={"Content-Length": str(size)})
        if size not in blobs:
            blobs[size] = b"x" * size
        return web.Response(body=blobs[size])

    app = web.Application(client_max_size=1 << 30)
    app.router.add_route("*", "/{tail:.*}", handle)
    install_uvloop()
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "ceiling":
        _serve_ceiling(int(sys.argv[2]))
    else:
        print("usage: _harness.py ceiling PORT", file=sys.stderr)
        sys.exit(2)
