"""Blocking file work of the object replicator (run in the device's threads).

Kept apart from the daemon so every function here is plainly "call me through
``DeviceManager.run``", and the daemon module only schedules and talks.
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass

from swiftlite.object.diskfile import verify_file
from swiftlite.object.diskfile_ondisk import DATA_EXT
from swiftlite.object.hashes import (
    HASH_FILE,
    HASH_INVALIDATIONS_FILE,
    LOCK_FILE,
    invalidate_hash,
    quarantine_hash_dir,
    valid_suffix,
)


@dataclass(slots=True)
class LocalFile:
    """One file about to be offered: its metadata, data length and, when
    small, its bytes (read in the same thread hop as the check)."""

    path: str
    rel_path: str
    metadata: dict[str, str]
    size: int
    data: bytes | None


def load_for_send(path: str, rel_path: str, small_limit: int) -> LocalFile:
    """The mini-audit before a file leaves this node, plus its bytes when small.

    Raises DiskFileBadMetadata (the caller quarantines) or DiskFileNotExist.
    """
    meta = verify_file(path)
    size = int(meta["Content-Length"]) if path.endswith(DATA_EXT) else 0
    data: bytes | None = None
    if size <= small_limit:
        data = read_range(path, 0, size) if size else b""
    return LocalFile(path, rel_path, meta, size, data)


def read_range(path: str, offset: int, length: int) -> bytes:
    """``length`` bytes at ``offset``; never past the object's data (a metadata
    tail may follow it), and a short file is an error, not a short send."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        parts: list[bytes] = []
        got = 0
        while got < length:
            chunk = os.pread(fd, length - got, offset + got)
            if not chunk:
                raise OSError(errno.EIO, f"{path} is shorter than its Content-Length")
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def quarantine(path: str) -> str | None:
    """Quarantine the hash dir of a file that failed its check."""
    try:
        return quarantine_hash_dir(os.path.dirname(path))
    except FileNotFoundError:
        return None


def remove_file(path: str) -> bool:
    """Unlink one object file (superseded remotely, or a drained handoff copy),
    drop its hash dir when empty, and invalidate the suffix."""
    hash_dir = os.path.dirname(path)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    with contextlib.suppress(OSError):
        os.rmdir(hash_dir)
    invalidate_hash(os.path.dirname(hash_dir))
    return True


def remove_partition_if_empty(partition_dir: str) -> bool:
    """Remove a drained handoff partition: empty suffix dirs go first; only if
    nothing else is left do the hash bookkeeping files and the dir go."""
    try:
        names = os.listdir(partition_dir)
    except FileNotFoundError:
        return True
    bookkeeping = {HASH_FILE, HASH_INVALIDATIONS_FILE, LOCK_FILE}
    for name in names:
        if name in bookkeeping or name.startswith(f".{HASH_FILE}."):
            continue
        path = os.path.join(partition_dir, name)
        if not valid_suffix(name):
            return False
        try:
            os.rmdir(path)
        except OSError:
            return False  # an object (maybe one written just now) is still here
    for name in os.listdir(partition_dir):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(partition_dir, name))
    try:
        os.rmdir(partition_dir)
    except OSError:
        return False  # a writer arrived meanwhile; the next pass retries
    return True


def list_partitions(objects_dir: str) -> list[str]:
    try:
        return [n for n in os.listdir(objects_dir) if n.isdigit() and n.isascii()]
    except (FileNotFoundError, NotADirectoryError):
        return []
