"""Removal of stale temp files left by writes that never finished.

A PUT writes into ``<dev>/tmp[-N]/`` and renames into place only once the file
is complete and durable, so a process killed mid-write leaves a temp file that
nobody will ever rename. Such files are invisible to clients but hold space.
The object server sweeps every device's temp dirs when it starts and then
every ``tmp_sweep_interval`` seconds, removing files older than
``tmp_max_age`` (a day by default, as Hummingbird does). The age threshold is
what keeps the sweep away from temp files of writes still in flight, in this
worker or another.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from swiftlite.common.devices import DeviceError, DeviceManager

TMP_PREFIX = "tmp"


def sweep_device(device_path: str, max_age: float, now: float | None = None) -> int:
    """Remove temp files older than ``max_age`` under one device; blocking."""
    now = time.time() if now is None else now
    removed = 0
    try:
        entries = os.listdir(device_path)
    except OSError:
        return 0
    for entry in entries:
        if entry != TMP_PREFIX and not entry.startswith(TMP_PREFIX + "-"):
            continue
        tdir = os.path.join(device_path, entry)
        try:
            names = os.listdir(tdir)
        except OSError:
            continue
        for name in names:
            path = os.path.join(tdir, name)
            try:
                st = os.lstat(path)
                if now - st.st_mtime > max_age and not os.path.isdir(path):
                    os.unlink(path)
                    removed += 1
            except FileNotFoundError:
                continue  # finished (renamed) or removed by another worker
    return removed


async def sweep_all(dm: DeviceManager, max_age: float, logger: logging.Logger) -> int:
    """Sweep every device, each in its own threads at background priority."""

    def list_devices() -> list[str]:
        try:
            return sorted(os.listdir(dm.devices_root))
        except OSError:
            return []

    devices = await asyncio.to_thread(list_devices)
    total = 0
    for device in devices:
        try:
            path = await dm.acheck(device, priority="background")
            removed = await dm.run(device, sweep_device, path, max_age, priority="background")
        except DeviceError:
            continue
        except OSError as exc:
            logger.warning("temp sweep of %s failed: %s", device, exc)
            continue
        if removed:
            logger.info("removed %d stale temp files from %s", removed, device)
        total += removed
    return total


async def sweep_forever(
    dm: DeviceManager, max_age: float, interval: float, logger: logging.Logger
) -> None:
    """Sweep now, then every ``interval`` seconds, until cancelled."""
    while True:
        try:
            await sweep_all(dm, max_age, logger)
        except Exception:
            logger.exception("temp sweep failed")
        await asyncio.sleep(interval)
