"""Zero-copy GET bodies: ``os.sendfile`` driven from the device's threads.

uvloop has no ``loop.sendfile`` (aiohttp's FileResponse then falls back to
reading chunks through a thread pool, one thread hop per chunk), and copying
64 KiB chunks through Python costs CPU the event loop needs.  Instead, once
the response headers are on the wire, the handler hands the socket's file
descriptor to one of the device's threads, which calls ``os.sendfile`` until
the range is sent, waiting for the (non-blocking) socket to become writable
with ``poll`` in that thread.  The event loop never touches the disk or
waits on the socket; a slow client ties up one device thread, bounded by
``client_timeout`` without progress.

The transport must hold no unsent bytes while the thread writes, or the
bytes would interleave: before each hand-off the handler shrinks the
transport's high-water mark to zero and awaits ``drain``, which returns only
once the transport buffer is empty (``resume_writing`` fires at the low-water
mark, zero).

Integrity: when asked, the thread also feeds the bytes it just sent (read
back from the page cache) into an MD5, so a full read still checks the ETag
like Swift's reader does; a mismatch is reported after the body is sent and
the caller quarantines the object, as Swift does.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
from typing import Any

from aiohttp import web

WINDOW = 4 * 1024 * 1024


class SendfileError(Exception):
    """The peer went away or stopped reading for too long."""


def sendfile_blocking(
    sock_fd: int,
    file_fd: int,
    offset: int,
    count: int,
    timeout: float,
    hasher: Any | None = None,
) -> int:
    """Send ``count`` bytes of ``file_fd`` from ``offset`` to ``sock_fd``; blocking.

    ``hasher`` (an md5 object), when given, is updated with every byte sent.
    Returns the number of bytes sent (== count unless the file is short).
    """
    poller = select.poll()
    poller.register(sock_fd, select.POLLOUT | select.POLLERR | select.POLLHUP)
    sent = 0
    while sent < count:
        want = min(WINDOW, count - sent)
        try:
            n = os.sendfile(sock_fd, file_fd, offset + sent, want)
        except BlockingIOError:
            if not poller.poll(timeout * 1000):
                raise SendfileError("client stopped reading") from None
            continue
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.EBADF):
                raise SendfileError(f"client went away: {exc}") from None
            raise
        if n == 0:
            break  # the file is shorter than its metadata says
        if hasher is not None:
            hasher.update(os.pread(file_fd, n, offset + sent))
        sent += n
    return sent


def sendfile_owned(
    sock_fd: int,
    file_fd: int,
    offset: int,
    count: int,
    timeout: float,
    hasher: Any | None = None,
) -> int:
    """:func:`sendfile_blocking` on fds this call owns (dups), closed at the end.

    The handler passes duplicates so that the event loop closing the
    connection (or the handler closing the object) can never leave this
    thread writing to, or reading from, an fd number reused by someone else.
    """
    try:
        return sendfile_blocking(sock_fd, file_fd, offset, count, timeout, hasher)
    finally:
        os.close(sock_fd)
        os.close(file_fd)


def socket_fd(request: web.Request) -> int | None:
    """The connection's socket fd, or None when sendfile cannot be used."""
    transport = request.transport
    if transport is None or transport.is_closing():
        return None
    if transport.get_extra_info("sslcontext") is not None:
        return None
    sock = transport.get_extra_info("socket")
    if sock is None:
        return None
    try:
        return int(sock.fileno())
    except (OSError, ValueError):
        return None


@contextlib.asynccontextmanager
async def quiet_transport(request: web.Request, resp: web.StreamResponse) -> Any:
    """Flush everything aiohttp buffered, keeping the transport empty inside.

    Headers aiohttp buffered are pushed into the transport first, then the
    high-water mark drops to zero and ``drain`` waits for an empty buffer.
    """
    transport = request.transport
    if transport is None or transport.is_closing():
        raise SendfileError("connection closed")
    writer = resp._payload_writer  # noqa: SLF001 - aiohttp keeps headers here until a write
    if writer is not None:
        writer.send_headers()
    low, high = transport.get_write_buffer_limits()
    transport.set_write_buffer_limits(high=0, low=0)
    try:
        if transport.get_write_buffer_size():
            await _drain(resp)
        yield
    finally:
        if not transport.is_closing():
            transport.set_write_buffer_limits(high=high, low=low)


async def _drain(resp: web.StreamResponse) -> None:
    writer = resp._payload_writer  # noqa: SLF001
    if writer is not None:
        await writer.drain()
