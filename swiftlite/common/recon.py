"""The recon cache: one JSON file per role (``object.recon``,
``container.recon``, ``account.recon``, as Swift names them) in
``recon_cache_path``, where background daemons leave their statistics for
operators and tools.

Several daemons share one file, so a write merges top-level keys under a lock
file and replaces the file atomically: readers never see half of it and no
daemon loses another's keys. Blocking: call through ``asyncio.to_thread`` or a
device's threads.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Mapping
from typing import Any

RECON_OBJECT_FILE = "object.recon"
RECON_CONTAINER_FILE = "container.recon"
RECON_ACCOUNT_FILE = "account.recon"


def read_recon(recon_cache_path: str, filename: str = RECON_OBJECT_FILE) -> dict[str, Any]:
    """The recon file's contents; ``{}`` when missing or unreadable."""
    try:
        with open(os.path.join(recon_cache_path, filename), "rb") as fp:
            doc = json.loads(fp.read())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def dump_recon(recon_cache_path: str, filename: str, entries: Mapping[str, Any]) -> None:
    """Merge ``entries`` (top-level keys replaced) into one recon file."""
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
