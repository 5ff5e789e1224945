"""Reading a GET subrequest's answer as a stream, for server-side copy.

The proxy's object GET prepares a ``StreamResponse`` on the request it is
given and writes the body into that request's payload writer: for a client
request, the socket. A copy must read the source instead of sending it to
the client, so the source subrequest gets its own writer
(:class:`CaptureWriter`) that hands the status, headers and body chunks to
the copy through a bounded buffer (:class:`Pipe`). The buffer bound is the
back-pressure: a slow destination PUT slows the source GET, and at most
``limit`` bytes of the object sit in the proxy's memory.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from aiohttp.abc import AbstractStreamWriter
from multidict import CIMultiDict


class SourceFailed(ConnectionError):
    """The source body ended early or broke: the copy must not be stored.

    A ConnectionError, so the object controller treats it like a client that
    went away and aborts every backend PUT instead of committing a short object.
    """


class Pipe:
    """A bounded byte buffer between one producer and one consumer."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buf: deque[bytes] = deque()
        self._size = 0
        self._ended = False
        self.complete = False  # the producer wrote its end (write_eof)
        self.closed = False  # the consumer gave up
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

    async def put(self, chunk: bytes) -> None:
        while self._size >= self.limit and not self.closed:
            self._writable.clear()
            await self._writable.wait()
        if self.closed or self._ended:
            raise ConnectionResetError("copy: nobody reads the source any more")
        self._buf.append(chunk)
        self._size += len(chunk)
        self._readable.set()

    def end(self, complete: bool) -> None:
        if self._ended:
            return
        self._ended = True
        self.complete = complete
        self._readable.set()

    async def get(self) -> bytes | None:
        """The next chunk, or None at the end (see ``complete``)."""
        while not self._buf:
            if self._ended:
                return None
            self._readable.clear()
            await self._readable.wait()
        chunk = self._buf.popleft()
        self._size -= len(chunk)
        self._writable.set()
        return chunk

    def close(self) -> None:
        """The consumer is gone: drop what is buffered, fail the producer's
        next write (and wake it if it waits for room)."""
        self.closed = True
        self._buf.clear()
        self._size = 0
        self._writable.set()


class CaptureWriter(AbstractStreamWriter):
    """A payload writer that keeps the answer instead of sending it."""

    def __init__(self, limit: int) -> None:
        self.pipe = Pipe(limit)
        self.status = 0
        self.headers: CIMultiDict[str] = CIMultiDict()
        self.headers_ready = asyncio.Event()
        self.output_size = 0
        self.buffer_size = 0
        self.length = None

    async def write_headers(self, status_line: str, headers: CIMultiDict[str]) -> None:
        # "HTTP/1.1 200 OK"
        self.status = int(status_line.split(" ", 2)[1])
        self.headers = CIMultiDict(headers)
        self.headers_ready.set()

    async def write(self, chunk: bytes | bytearray | memoryview) -> None:
        if not chunk:
            return
        data = bytes(chunk)
        await self.pipe.put(data)
        self.output_size += len(data)

    async def write_eof(self, chunk: bytes = b"") -> None:
        if chunk:
            await self.write(chunk)
        self.pipe.end(complete=True)

    async def drain(self) -> None:
        return None

    def enable_compression(self, encoding: str = "deflate", strategy: int | None = None) -> None:
        return None

    def enable_chunking(self) -> None:
        return None


async def pipe_body(pipe: Pipe, expected: int | None) -> AsyncIterator[bytes]:
    """The source body from ``pipe``; raises SourceFailed when it ends before
    its end was written or differs from the length the source announced."""
    got = 0
    while True:
        chunk = await pipe.get()
        if chunk is None:
            break
        got += len(chunk)
        if expected is not None and got > expected:
            raise SourceFailed(f"source sent more than its {expected} bytes")
        yield chunk
    if not pipe.complete:
        raise SourceFailed(f"source body broke off after {got} bytes")
    if expected is not None and got != expected:
        raise SourceFailed(f"source body ended after {got} of {expected} bytes")


async def bytes_body(body: bytes, chunk_size: int = 65536) -> AsyncIterator[bytes]:
    for start in range(0, len(body), chunk_size):
        yield body[start : start + chunk_size]
