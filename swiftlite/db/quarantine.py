"""Moving a corrupt DB aside so it is never served again.

Swift's layout: ``<dev>/quarantined/<db_type>s/<hash>``; a second quarantine
of the same hash gets a random suffix rather than overwriting the first.
"""

from __future__ import annotations

import errno
import os
import uuid

# Substrings of SQLite error messages that mean the file itself is damaged
# (as opposed to locked or busy), paired with the reason we record.
_CORRUPTION_HINTS = (
    ("database disk image is malformed", "malformed database"),
    ("malformed database schema", "malformed database"),
    (" is not a database", "corrupted database"),
    ("disk I/O error", "disk error while accessing database"),
)


def corruption_reason(err: BaseException) -> str | None:
    text = str(err)
    for hint, reason in _CORRUPTION_HINTS:
        if hint in text:
            return reason
    return None


def device_path_of(db_dir: str) -> str:
    """``<dev>/<datadir>/<part>/<suffix>/<hash>`` -> ``<dev>``."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(db_dir))))


def quarantine_db_dir(db_dir: str, db_type: str) -> str:
    """Rename the DB's hash directory under ``quarantined/``; return the new path."""
    target_root = os.path.join(device_path_of(db_dir), "quarantined", db_type + "s")
    os.makedirs(target_root, exist_ok=True)
    target = os.path.join(target_root, os.path.basename(db_dir))
    try:
        # os.rename onto an existing non-empty dir fails, which is what we want.
        os.rename(db_dir, target)
    except OSError as err:
        if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
        target = f"{target}-{uuid.uuid4().hex}"
        os.rename(db_dir, target)
    return target
