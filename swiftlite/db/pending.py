"""The pending file: a JSON-lines log of updates not yet merged into SQLite.

Object servers send one container update per object write; giving each its
own SQLite transaction (with an fsync) caps a container at a few thousand
updates per second. Instead each update is appended as one line to
``<db>.pending`` (one write, optionally fsynced) and a later read, or the file
growing past PENDING_CAP, merges the whole batch in a single transaction.

Line format: a JSON array whose first element is PENDING_VERSION followed by
the broker-specific fields. A line that does not decode (a write torn by a
crash, which was never acknowledged) is skipped with a log message.

All access happens under the DB directory's lock (``<db_dir>/.lock``, flock),
which serialises appends against the commit that truncates the file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from swiftlite.db.exceptions import LockTimeout

PENDING_VERSION = 1
# Same threshold as Swift: past this many bytes the appender commits at once,
# so the file (and the work a reader must do before answering) stays small.
PENDING_CAP = 131072

_log = logging.getLogger(__name__)


@contextlib.contextmanager
def lock_dir(directory: str, timeout: float) -> Iterator[None]:
    """Hold an exclusive flock on ``<directory>/.lock`` (blocking code).

    flock locks belong to the open file description, so two threads of one
    process each opening the file exclude each other just like two processes.
    """
    path = os.path.join(directory, ".lock")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise LockTimeout(path, timeout) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.01)
        yield
    finally:
        # Closing the descriptor releases the lock.
        os.close(fd)


def encode_entry(fields: list[Any]) -> bytes:
    return json.dumps([PENDING_VERSION, *fields], separators=(",", ":")).encode("ascii") + b"\n"


def append_entries(path: str, entries: list[list[Any]], fsync: bool) -> int:
    """Append ``entries`` with one write; return the file size afterwards.

    Caller holds the directory lock. If a previous writer crashed mid-line the
    file does not end in a newline; start on a fresh line so the torn fragment
    cannot swallow this (acknowledged) entry.
    """
    data = b"".join(encode_entry(e) for e in entries)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if fsync:
            os.fdatasync(fd)
        return size + len(data)
    finally:
        os.close(fd)


def set_aside_foreign(path: str) -> str | None:
    """Move a pending file in Swift's pickled format out of the way.

    Swift writes ``:<base64 pickle>`` records; swiftlite never unpickles, and
    must not truncate updates it cannot read either. The file is renamed to
    ``<pending>.swift`` (drain it with Swift's broker) and its new name returned.
    """
    try:
        with open(path, "rb") as fp:
            first = fp.read(1)
    except FileNotFoundError:
        return None
    if first != b":":
        return None
    target = path + ".swift"
    n = 0
    while os.path.exists(target):
        n += 1
        target = f"{path}.swift.{n}"
    os.rename(path, target)
    return target


def sync_file(path: str) -> None:
    """fdatasync the pending file (no lock needed: see DatabaseBroker.put_records)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def read_entries(path: str) -> list[list[Any]]:
    """Decode every complete, valid line of the pending file (caller holds the lock)."""
    try:
        with open(path, "rb") as fp:
            raw = fp.read()
    except FileNotFoundError:
        return []
    entries: list[list[Any]] = []
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            _log.error("Invalid pending entry in %s: %r", path, line[:200])
            continue
        if not isinstance(entry, list) or not entry or entry[0] != PENDING_VERSION:
            _log.error("Unknown pending entry version in %s: %r", path, line[:200])
            continue
        entries.append(entry[1:])
    return entries


def pending_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def truncate(path: str) -> None:
    """Empty the pending file after its entries are durable in SQLite.

    No fsync: if the truncation is lost the entries are merged again, which
    is harmless because merging is idempotent.
    """
    try:
        os.truncate(path, 0)
    except FileNotFoundError:
        pass
