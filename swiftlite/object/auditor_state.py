"""What the object auditor keeps between runs: resumable progress.

(Rate limits live in :mod:`swiftlite.common.ratelimit`, the recon cache in
:mod:`swiftlite.common.recon`.)

* Auditor progress is Swift's ``<dev>/objects[-N]/auditor_status_<TYPE>.json``
  holding the partitions not yet audited (plus a version field); a restarted
  auditor resumes with them instead of starting the device over.

Everything here blocks: call it in a device's threads.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time

STATUS_VERSION = 1
# Swift's MIN_TIME_UPDATE_AUDITOR_STATUS: rewriting the status after every
# partition would cost a write per partition; a restart redoes at most this
# many seconds of work.
MIN_STATUS_UPDATE_INTERVAL = 60.0


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
