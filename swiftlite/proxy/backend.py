"""The proxy's client for the storage servers (Swift's backend protocol).

One aiohttp session per proxy worker keeps a pool of keep-alive connections
to every storage node. Three kinds of call:

* :meth:`Backend.request` — one request, whole body read (HEAD, POST,
  DELETE, container/account PUT, listings);
* :meth:`Backend.open` — a streaming response (object GET), released by the
  caller;
* :class:`Putter` — an object PUT sent with ``Expect: 100-continue`` whose
  body is fed chunk by chunk, so one client upload streams to several nodes
  at once and a node that refuses (507, 503…) does so before any byte moves.

Every failure (exception, timeout, 5xx) is counted by the error limiter; a
507 limits the node at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from swiftlite.proxy.best_response import NodeResponse
from swiftlite.proxy.error_limiter import ErrorLimiter
from swiftlite.proxy.node_iter import NodeTimings

Node = dict[str, Any]

# Backend errors we treat as "this node failed": count it, try another.
BACKEND_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError, TimeoutError)


class BackendFailure(Exception):
    """A backend node could not be used (connect error, timeout, closed early)."""


# Queued to a putter's body to make its writer fail (see Putter.abort).
_ABORT = b"<abort>"


def backend_url(node: Mapping[str, Any], part: int, path: str, query: str = "") -> URL:
    """``http://ip:port/<device>/<part>/<quoted a/c/o>[?query]``."""
    ip = node["ip"]
    host = f"[{ip}]" if ":" in ip else ip
    text = f"http://{host}:{node['port']}/{quote(node['device'])}/{part}{quote(path)}"
    if query:
        text += "?" + query
    return URL(text, encoded=True)


def node_desc(node: Mapping[str, Any]) -> str:
    return f"{node['ip']}:{node['port']}/{node['device']}"


class Backend:
    def __init__(
        self,
        limiter: ErrorLimiter,
        logger: logging.Logger,
        conn_timeout: float = 0.5,
        node_timeout: float = 10.0,
        pool_size: int = 0,
        timings: NodeTimings | None = None,
    ) -> None:
        self.limiter = limiter
        self.timings = timings
        self.logger = logger
        self.conn_timeout = conn_timeout
        self.node_timeout = node_timeout
        self.pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.pool_size, limit_per_host=0, enable_cleanup_closed=False
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Content-Type", "Accept-Encoding"),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def timeout(self, node_timeout: float | None = None) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=None,
            sock_connect=self.conn_timeout,
            sock_read=node_timeout if node_timeout is not None else self.node_timeout,
        )

    def record(self, node: Node, status: int | None, exc: BaseException | None = None) -> None:
        """Feed the error limiter with one outcome."""
        if exc is not None:
            self.logger.warning("ERROR with %s: %r", node_desc(node), exc)
            if self.limiter.increment(node):
                self.logger.error("Node error limited %s", node_desc(node))
        elif status == 507:
            self.logger.warning("ERROR Insufficient Storage %s", node_desc(node))
            self.limiter.limit(node)
        elif status is not None and status >= 500:
            if self.limiter.increment(node):
                self.logger.error("Node error limited %s", node_desc(node))

    async def request(
        self,
        node: Node,
        part: int,
        method: str,
        path: str,
        headers: Mapping[str, str],
        query: str = "",
        body: bytes | None = None,
        node_timeout: float | None = None,
    ) -> NodeResponse:
        """One backend request with its whole body read; raises BackendFailure."""
        started = time.monotonic()
        try:
            async with self.session.request(
                method,
                backend_url(node, part, path, query),
                headers=dict(headers),
                data=body,
                timeout=self.timeout(node_timeout),
                allow_redirects=False,
            ) as resp:
                data = await resp.read()
                result = NodeResponse(
                    resp.status, resp.reason or "", data, CIMultiDict(resp.headers)
                )
        except BACKEND_ERRORS as exc:
            self.record(node, None, exc)
            raise BackendFailure(str(exc) or type(exc).__name__) from exc
        self.record(node, result.status)
        if self.timings is not None and method in ("GET", "HEAD"):
            self.timings.record(node, time.monotonic() - started)
        return result

    async def open(
        self,
        node: Node,
        part: int,
        method: str,
        path: str,
        headers: Mapping[str, str],
        query: str = "",
        node_timeout: float | None = None,
    ) -> aiohttp.ClientResponse:
        """Start a request and return once headers are in; the caller reads and
        releases the body. Raises BackendFailure."""
        started = time.monotonic()
        try:
            resp = await self.session.request(
                method,
                backend_url(node, part, path, query),
                headers=dict(headers),
                timeout=self.timeout(node_timeout),
                allow_redirects=False,
            )
        except BACKEND_ERRORS as exc:
            self.record(node, None, exc)
            raise BackendFailure(str(exc) or type(exc).__name__) from exc
        self.record(node, resp.status)
        if self.timings is not None and method in ("GET", "HEAD"):
            self.timings.record(node, time.monotonic() - started)
        return resp


class Putter:
    """One backend object PUT, fed chunk by chunk after ``100 Continue``."""

    QUEUE_CHUNKS = 4

    def __init__(
        self,
        backend: Backend,
        node: Node,
        part: int,
        path: str,
        headers: Mapping[str, str],
    ) -> None:
        self.backend = backend
        self.node = node
        self.part = part
        self.path = path
        self.headers = dict(headers)
        self.failed = False
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(self.QUEUE_CHUNKS)
        self._continued = asyncio.Event()
        self._task: asyncio.Task[NodeResponse] | None = None

    async def _body(self) -> AsyncIterator[bytes]:
        # aiohttp starts iterating only after the node's 100 Continue.
        self._continued.set()
        while True:
            chunk = await self._queue.get()
            if chunk is None:
                return
            if chunk is _ABORT:
                # Fails aiohttp's body writer, which drops the connection:
                # the node sees a short body and discards the upload.
                raise BackendFailure("upload aborted")
            yield chunk

    async def _run(self) -> NodeResponse:
        session = self.backend.session
        async with session.put(
            backend_url(self.node, self.part, self.path),
            headers=self.headers,
            data=self._body(),
            expect100=True,
            timeout=self.backend.timeout(),
            allow_redirects=False,
        ) as resp:
            data = await resp.read()
            return NodeResponse(resp.status, resp.reason or "", data, CIMultiDict(resp.headers))

    async def connect(self) -> NodeResponse | None:
        """Open the request; None once the node said 100 Continue, or the
        node's final answer if it gave one instead. Raises BackendFailure."""
        self._task = asyncio.ensure_future(self._run())
        # Failures are reported through connect/send/finish; mark the task's
        # exception retrieved so an abandoned putter logs no asyncio warning.
        self._task.add_done_callback(lambda t: t.cancelled() or t.exception())
        waiter = asyncio.ensure_future(self._continued.wait())
        try:
            done, _ = await asyncio.wait(
                {self._task, waiter},
                timeout=self.backend.conn_timeout + self.backend.node_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            waiter.cancel()
        if self._continued.is_set():
            return None
        if self._task in done:
            try:
                resp = self._task.result()
            except BACKEND_ERRORS as exc:
                self.backend.record(self.node, None, exc)
                raise BackendFailure(str(exc) or type(exc).__name__) from exc
            self.backend.record(self.node, resp.status)
            return resp
        self.abort()
        timeout = TimeoutError("timeout waiting for 100-continue")
        self.backend.record(self.node, None, timeout)
        raise BackendFailure(str(timeout))

    async def send(self, chunk: bytes) -> None:
        """Queue a chunk for this node; raises BackendFailure if it died or stalled."""
        task = self._task
        if task is None or task.done():
            raise BackendFailure("backend PUT ended early")
        try:
            self._queue.put_nowait(chunk)
            return
        except asyncio.QueueFull:
            pass
        put = asyncio.ensure_future(self._queue.put(chunk))
        done, _ = await asyncio.wait(
            {put, task}, timeout=self.backend.node_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if put not in done:
            put.cancel()
            exc = TimeoutError("timeout sending data") if not done else BackendFailure("ended")
            self.backend.record(self.node, None, exc)
            raise BackendFailure(str(exc))

    async def finish(self) -> NodeResponse:
        """End the body and wait for the node's final answer."""
        await self.send_end()
        assert self._task is not None
        try:
            async with asyncio.timeout(self.backend.node_timeout):
                resp = await asyncio.shield(self._task)
        except BACKEND_ERRORS as exc:
            self.abort()
            self.backend.record(self.node, None, exc)
            raise BackendFailure(str(exc) or type(exc).__name__) from exc
        self.backend.record(self.node, resp.status)
        return resp

    async def send_end(self) -> None:
        task = self._task
        if task is None or task.done():
            return
        with contextlib.suppress(BackendFailure):
            await self.send(None)  # type: ignore[arg-type]

    @property
    def in_flight(self) -> bool:
        return self._task is not None and not self._task.done()

    def abort(self) -> None:
        self.failed = True
        # The body is written by aiohttp's own writer task, which may be
        # waiting on our queue: wake it with the abort marker as well as
        # cancelling the request, or the connection would stay open.
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(_ABORT)
        if self._task is not None and not self._task.done():
            self._task.cancel()
