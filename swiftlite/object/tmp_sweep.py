"""Periodic removal of stale temp files left by writes that never finished.

A PUT writes into ``<dev>/tmp[-N]/`` and renames into place only once the file
is complete and durable, so a process killed mid-write leaves a temp file that
nobody will ever rename. Such files are invisible to clients but hold space.
The object server sweeps every device's temp dirs when it starts and then
every ``tmp_sweep_interval`` seconds, removing files older than
``tmp_max_age`` (a day by default, as Hummingbird does) with
:meth:`DiskFileManager.cleanup_temp_files`. The age threshold is what keeps
the sweep away from temp files of writes still in flight, in this worker or
another.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence

from swiftlite.common.devices import DeviceError, DeviceManager
from swiftlite.object.diskfile import DiskFileManager


async def sweep_all(
    dm: DeviceManager,
    mgr: DiskFileManager,
    policy_indexes: Sequence[int],
    max_age: float,
    logger: logging.Logger,
) -> int:
    """Sweep every device, each in its own threads at background priority."""

    def list_devices() -> list[str]:
        try:
            return sorted(os.listdir(dm.devices_root))
        except OSError:
            return []

    def sweep_device(device: str) -> int:
        return sum(mgr.cleanup_temp_files(device, max_age, index) for index in policy_indexes)

    total = 0
    for device in await asyncio.to_thread(list_devices):
        try:
            await dm.acheck(device, priority="background")
            removed = await dm.run(device, sweep_device, device, priority="background")
        except DeviceError:
            continue  # unmounted or locked: leave it alone
        except OSError as exc:
            logger.warning("temp sweep of %s failed: %s", device, exc)
            continue
        if removed:
            logger.info("removed %d stale temp files from %s", removed, device)
        total += removed
    return total


async def sweep_forever(
    dm: DeviceManager,
    mgr: DiskFileManager,
    policy_indexes: Sequence[int],
    max_age: float,
    interval: float,
    logger: logging.Logger,
) -> None:
    """Sweep now, then every ``interval`` seconds, until cancelled."""
    while True:
        try:
            await sweep_all(dm, mgr, policy_indexes, max_age, logger)
        except Exception:
            logger.exception("temp sweep failed")
        await asyncio.sleep(interval)
