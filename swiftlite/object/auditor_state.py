"""What the object daemons keep between moments: rate limits, resumable
progress and the recon cache.

* :class:`RateLimiter` is Hummingbird's ``rateLimitSleep``: after counting
  ``n`` more units it sleeps until ``count <= elapsed * rate``, so a pass
  keeps an average rate; idle time builds up at most a few seconds of
  credit (Swift's ``rate_buffer``). Clock and sleep are injectable so tests
  check the sleeps asked for instead of timing them.
* Auditor progress is Swift's ``<dev>/objects[-N]/auditor_status_<TYPE>.json``
  holding the partitions not yet audited (plus a version field); a restarted
  auditor resumes with them instead of starting the device over.
* The recon cache is one JSON file per role (``object.recon``, as Swift's)
  in ``recon_cache_path``, updated key by key under a lock so the auditor
  and the updater can share it.

Everything except :class:`RateLimiter` blocks: call it in a device's
threads (or ``asyncio.to_thread`` for the recon file).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

STATUS_VERSION = 1
# Swift's MIN_TIME_UPDATE_AUDITOR_STATUS: rewriting the status after every
# partition would cost a write per partition; a restart redoes at most this
# many seconds of work.
MIN_STATUS_UPDATE_INTERVAL = 60.0
RECON_OBJECT_FILE = "object.recon"


class RateLimiter:
    """Average-rate limiter (``rate`` units per second; 0 or less is unlimited).

    Time that passed without work is credit, but at most ``burst`` seconds of
    it (Swift's ``rate_buffer``): after a stall (a slow listing, a disk that
    hung) the limiter does not let a long burst through to "catch up".
    """

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        burst: float = 5.0,
    ) -> None:
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.burst = burst
        # When the work counted so far is due to be done at ``rate``.
        self.due = clock()

    async def consume(self, n: float = 1.0) -> float:
        """Count ``n`` units; sleep as long as needed to stay at the rate.

        Returns the seconds slept (0.0 when none).
        """
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        self.due = max(self.due, now - self.burst) + n / self.rate
        wait = self.due - now
        if wait <= 0:
            return 0.0
        await self.sleep(wait)
        return wait


# -- auditor progress --------------------------------------------------------


def status_path(datadir_path: str, auditor_type: str) -> str:
    return os.path.join(datadir_path, f"auditor_status_{auditor_type}.json")


def _is_partition(name: str) -> bool:
    return name.isdigit() and name.isascii()


def list_partitions(datadir_path: str) -> list[str]:
    """Partition dirs of ``objects[-N]``, in numeric order (empty if none)."""
    try:
        names = os.listdir(datadir_path)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted((n for n in names if _is_partition(n)), key=int)


def load_status(datadir_path: str, auditor_type: str) -> list[str] | None:
    """The partitions a previous pass left to audit; None when there is no
    usable status (no file, unreadable, or a format this code does not know)."""
    try:
        with open(status_path(datadir_path, auditor_type), "rb") as fp:
            doc = json.loads(fp.read())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("version", STATUS_VERSION) != STATUS_VERSION:
        return None
    parts = doc.get("partitions")
    if not isinstance(parts, list) or not all(
        isinstance(p, str) and _is_partition(p) for p in parts
    ):
        return None
    return parts


def partitions_to_audit(datadir_path: str, auditor_type: str) -> list[str]:
    """Resume from the saved status when it has work left, else list afresh."""
    saved = load_status(datadir_path, auditor_type)
    if saved:
        return saved
    return list_partitions(datadir_path)


def save_status(
    datadir_path: str,
    auditor_type: str,
    partitions: list[str],
    min_interval: float = MIN_STATUS_UPDATE_INTERVAL,
    now: float | None = None,
) -> bool:
    """Record the partitions still to audit, unless written < ``min_interval`` ago.

    Written atomically (temp file + rename) so a crash mid-write leaves the
    previous status rather than a torn one. Returns True when written.
    """
    path = status_path(datadir_path, auditor_type)
    current = time.time() if now is None else now
    if min_interval > 0:
        try:
            if os.stat(path).st_mtime + min_interval > current:
                return False
        except FileNotFoundError:
            pass
    if not os.path.isdir(datadir_path):
        return False
    body = json.dumps({"version": STATUS_VERSION, "partitions": partitions}).encode()
    fd, tmp = tempfile.mkstemp(dir=datadir_path, prefix=f".auditor_status_{auditor_type}.")
    try:
        with os.fdopen(fd, "wb") as fp:
            fp.write(body)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True


# -- recon cache ---------------------------------------------------------------


def read_recon(recon_cache_path: str, filename: str = RECON_OBJECT_FILE) -> dict[str, Any]:
    try:
        with open(os.path.join(recon_cache_path, filename), "rb") as fp:
            doc = json.loads(fp.read())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def dump_recon(
    recon_cache_path: str, entries: Mapping[str, Any], filename: str = RECON_OBJECT_FILE
) -> None:
    """Merge ``entries`` (top-level keys replaced) into the recon file.

    A lock file serialises the read-modify-write between daemons; the file
    itself is replaced atomically so readers never see half of it.
    """
    os.makedirs(recon_cache_path, exist_ok=True)
    path = os.path.join(recon_cache_path, filename)
    lock_fd = os.open(path + ".lock", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        doc = read_recon(recon_cache_path, filename)
        doc.update(entries)
        fd, tmp = tempfile.mkstemp(dir=recon_cache_path, prefix=f".{filename}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fp:
                json.dump(doc, fp, sort_keys=True)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    finally:
        os.close(lock_fd)
