"""Per-disk isolation shared by every storage server.

Each device gets its own in-flight limit and its own small pool of threads for
blocking file and SQLite work. A request first takes an in-flight slot, which is
pure bookkeeping in the event loop and never waits: at the limit it fails at
once with 503 and ``X-Disk-Usage``, so the proxy moves on to another node.
Only then does anything touch the disk, and always in that device's threads, so
a stalled disk ties up its own slots and threads and nothing else: the event
loop and every other device keep going.

Within a device's pool, queued work runs by priority: client reads before
client writes, and both before replication and audit I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import itertools
import os
import queue
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from aiohttp import web

from swiftlite.common.config import parse_reserve

T = TypeVar("T")

PRIORITY = {"read": 0, "write": 1, "replication": 2, "background": 3}
LOCK_FILE = "lock_device"


class DeviceError(Exception):
    status = 500
    body = "Internal Error"

    def __init__(self, device: str, detail: str = "") -> None:
        super().__init__(f"{device}: {detail or self.body}")
        self.device = device
        self.detail = detail


class DeviceUnavailable(DeviceError):
    """Bad name, missing, or not mounted: Swift answers 507."""

    status = 507
    body = "Insufficient Storage"


class DeviceLocked(DeviceError):
    """An operator put a ``lock_device`` file in the device root."""

    status = 503
    body = "Service Unavailable"


class DeviceBusy(DeviceError):
    """The device is at its in-flight limit."""

    status = 503
    body = "Service Unavailable"

    def __init__(self, device: str, in_flight: int) -> None:
        super().__init__(device, f"{in_flight} requests in flight")
        self.in_flight = in_flight


class DeviceFull(DeviceError):
    status = 507
    body = "Insufficient Storage"


def valid_device_name(device: str) -> bool:
    return bool(device) and device not in (".", "..") and "/" not in device and "\x00" not in device


class _PriorityPool:
    """A fixed set of threads taking work from one priority queue."""

    def __init__(self, name: str, threads: int) -> None:
        self._queue: queue.PriorityQueue[tuple[int, int, Any]] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._threads = [
            threading.Thread(target=self._worker, name=f"{name}-{i}", daemon=True)
            for i in range(threads)
        ]
        for t in self._threads:
            t.start()

    def _worker(self) -> None:
        while True:
            _prio, _seq, item = self._queue.get()
            if item is None:
                return
            loop, fut, ctx, fn, args, kwargs = item
            if fut.cancelled():
                continue
            try:
                result = ctx.run(fn, *args, **kwargs)
            except BaseException as exc:  # handed to the awaiting coroutine
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_set_exception, fut, exc)
            else:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_set_result, fut, result)

    def submit(
        self, priority: int, fn: Callable[..., T], *args: Any, **kwargs: Any
    ) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        ctx = contextvars.copy_context()
        self._queue.put((priority, next(self._seq), (loop, fut, ctx, fn, args, kwargs)))
        return fut

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put((10**9, next(self._seq), None))


def _set_result(fut: asyncio.Future[Any], result: Any) -> None:
    if not fut.done():
        fut.set_result(result)


def _set_exception(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


class DeviceManager:
    """In-flight limits and thread pools, one of each per device."""

    def __init__(
        self,
        devices_root: str,
        mount_check: bool = True,
        disk_limit: int = 25,
        threads_per_disk: int = 4,
        fallocate_reserve: str = "1%",
    ) -> None:
        self.devices_root = devices_root
        self.mount_check = mount_check
        self.disk_limit = disk_limit
        self.threads_per_disk = threads_per_disk
        self.reserve, self.reserve_is_percent = parse_reserve(fallocate_reserve)
        self._pools: dict[str, _PriorityPool] = {}
        self._in_flight: dict[str, int] = {}
        self._in_flight_by_kind: dict[tuple[str, str], int] = {}

    # -- paths and health (blocking: call through run()) --------------------

    def device_path(self, device: str) -> str:
        if not valid_device_name(device):
            raise DeviceUnavailable(device, "invalid device name")
        return os.path.join(self.devices_root, device)

    def check(self, device: str) -> str:
        """Return the device root or raise; blocking (stat calls)."""
        path = self.device_path(device)
        if self.mount_check:
            if not os.path.ismount(path):
                raise DeviceUnavailable(device, "not mounted")
        elif not os.path.isdir(path):
            raise DeviceUnavailable(device, "no such device")
        if os.path.exists(os.path.join(path, LOCK_FILE)):
            raise DeviceLocked(device, "locked by operator")
        return path

    def space_ok(self, device: str, nbytes: int = 0) -> bool:
        """Would writing ``nbytes`` keep free space above fallocate_reserve? Blocking."""
        try:
            st = os.statvfs(self.device_path(device))
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                raise DeviceUnavailable(device, "no such device") from None
            raise
        free = st.f_bavail * st.f_frsize - nbytes
        if self.reserve_is_percent:
            total = st.f_blocks * st.f_frsize
            return total <= 0 or free * 100.0 / total >= self.reserve
        return free >= self.reserve

    # -- admission -------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def slot(
        self, device: str, kind: str = "read", limit: int | None = None
    ) -> AsyncIterator[int]:
        """Hold one in-flight slot on ``device`` or fail at once with DeviceBusy.

        ``limit`` caps this kind on its own (replication sessions, say) on top
        of the device-wide ``disk_limit``.
        """
        if not valid_device_name(device):
            raise DeviceUnavailable(device, "invalid device name")
        current = self._in_flight.get(device, 0)
        if current >= self.disk_limit:
            raise DeviceBusy(device, current)
        key = (device, kind)
        if limit is not None and self._in_flight_by_kind.get(key, 0) >= limit:
            raise DeviceBusy(device, current)
        self._in_flight[device] = current + 1
        self._in_flight_by_kind[key] = self._in_flight_by_kind.get(key, 0) + 1
        try:
            yield current + 1
        finally:
            self._in_flight[device] -= 1
            self._in_flight_by_kind[key] -= 1

    def usage(self) -> dict[str, int]:
        return {dev: n for dev, n in sorted(self._in_flight.items())}

    def usage_by_kind(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (dev, kind), n in sorted(self._in_flight_by_kind.items()):
            out.setdefault(dev, {})[kind] = n
        return out

    # -- blocking work ----------------------------------------------------------

    def _pool(self, device: str) -> _PriorityPool:
        pool = self._pools.get(device)
        if pool is None:
            pool = _PriorityPool(f"disk-{device}", self.threads_per_disk)
            self._pools[device] = pool
        return pool

    async def run(
        self,
        device: str,
        fn: Callable[..., T],
        *args: Any,
        priority: str = "read",
        **kwargs: Any,
    ) -> T:
        """Run blocking ``fn`` in ``device``'s own threads and await its result."""
        if not valid_device_name(device):
            raise DeviceUnavailable(device, "invalid device name")
        return await self._pool(device).submit(PRIORITY[priority], fn, *args, **kwargs)

    async def acheck(self, device: str, priority: str = "read") -> str:
        return await self.run(device, self.check, device, priority=priority)

    async def has_space_for(self, device: str, nbytes: int) -> bool:
        return await self.run(device, self.space_ok, device, nbytes, priority="write")

    def close(self) -> None:
        for pool in self._pools.values():
            pool.shutdown()
        self._pools.clear()


def device_error_response(exc: DeviceError) -> web.Response:
    """Swift's answer for a device problem: 507 or 503, plain text."""
    headers = {}
    if isinstance(exc, DeviceBusy):
        headers["X-Disk-Usage"] = str(exc.in_flight)
    if exc.status == 507:
        body = f"<html><h1>Insufficient Storage</h1><p>There was not enough space to save the resource. Drive: {exc.device}</p></html>"
        return web.Response(status=507, text=body, content_type="text/html", headers=headers)
    return web.Response(
        status=exc.status,
        text="<html><h1>Service Unavailable</h1><p>The server is currently unavailable. Please try again at a later time.</p></html>",
        content_type="text/html",
        headers=headers,
    )


__all__ = [
    "DeviceBusy",
    "DeviceError",
    "DeviceFull",
    "DeviceLocked",
    "DeviceManager",
    "DeviceUnavailable",
    "device_error_response",
    "valid_device_name",
]
