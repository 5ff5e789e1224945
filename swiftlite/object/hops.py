"""Thread hops that finish even when the request is cancelled.

aiohttp cancels a handler when its client goes away.  Cancelling the await
of ``DeviceManager.run`` does not stop the device thread already running the
work, so a handler that then cleans up (closes the object's fd, aborts the
temp file) could race with that thread: an fd closed under a running
``write`` can be reused by another request's file, and the late write would
land in it.  :func:`run_hop` therefore waits for the hop to finish before the
cancellation goes on, and hands any result that holds resources to
``release`` so nothing leaks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

from swiftlite.common.devices import DeviceManager

T = TypeVar("T")


async def run_hop(
    dm: DeviceManager,
    device: str,
    fn: Callable[..., T],
    *args: Any,
    priority: str = "read",
    release: Callable[[T], Any] | None = None,
) -> T:
    """``await dm.run(device, fn, *args)``, but never abandon a running hop.

    If the caller is cancelled, wait (shielded) for the hop to end; if it
    returned something and ``release`` is given, run ``release(result)`` in
    the device's threads; then re-raise the cancellation.
    """
    task = asyncio.ensure_future(dm.run(device, fn, *args, priority=priority))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            result = await task
            if release is not None:
                await dm.run(device, release, result, priority=priority)
        raise
