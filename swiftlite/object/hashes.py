"""Suffix hashes: the cheap per-partition summary replication compares.

A suffix hash is exactly Swift's (swift-internals 2.6): after cleaning up each
hash dir, MD5 over, per hash dir in sorted order, ``<ts>.meta`` and ``<ts>.ts``
of the chosen files, then ``<ts>.data``, then ``<ctype_ts>_ctype`` for a
content-type ``.meta``. Two nodes holding the same object states therefore
agree with each other and with Swift.

Swift caches them in a pickle; here ``<part>/hashes.json`` holds versioned
JSON ``{"version": 1, "valid": bool, "updated": float, "hashes": {suffix:
md5hex | null}}``, written atomically (temp file, fsync, rename). Writers
never touch it: they append the suffix to ``<part>/hashes.invalid`` under the
partition lock (``flock`` on ``<part>/.lock``), and :func:`get_hashes` folds
those lines in (as ``null``) before rehashing. Like Swift, the append is not
fsynced: after a power loss a stale hash only delays replication of that
suffix until the next full rehash, and avoiding one fsync per PUT matters.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from swiftlite.object.diskfile_exceptions import PartitionLockTimeout
from swiftlite.object.diskfile_ondisk import (
    DEFAULT_RECLAIM_AGE,
    OnDiskFiles,
    cleanup_ondisk_files,
    get_ondisk_files,
)

HASH_FILE = "hashes.json"
HASH_INVALIDATIONS_FILE = "hashes.invalid"
LOCK_FILE = ".lock"
HASHES_VERSION = 1
_HEX = frozenset("0123456789abcdef")
_HASH_TMP_PREFIX = f".{HASH_FILE}."
_STALE_TMP_AGE = 3600.0


def valid_suffix(value: object) -> bool:
    return isinstance(value, str) and len(value) == 3 and all(c in _HEX for c in value)


@contextlib.contextmanager
def lock_partition(partition_dir: str, timeout: float = 10.0) -> Iterator[None]:
    """Exclusive ``flock`` on ``<part>/.lock`` (works across threads and processes).

    Blocking: callers run in a device thread. Raises PartitionLockTimeout.
    """
    fd = os.open(
        os.path.join(partition_dir, LOCK_FILE), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644
    )
    try:
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise PartitionLockTimeout(partition_dir) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
        yield
    finally:
        # Closing the fd releases the lock.
        os.close(fd)


def invalidate_hash(suffix_dir: str) -> None:
    """Mark ``suffix_dir``'s hash stale by appending it to ``hashes.invalid``."""
    suffix = os.path.basename(suffix_dir.rstrip("/"))
    partition_dir = os.path.dirname(suffix_dir.rstrip("/"))
    try:
        with lock_partition(partition_dir):
            fd = os.open(
                os.path.join(partition_dir, HASH_INVALIDATIONS_FILE),
                os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                0o644,
            )
            try:
                os.write(fd, suffix.encode("ascii") + b"\n")
            finally:
                os.close(fd)
    except FileNotFoundError:
        # The partition dir is gone (a handoff just drained): nothing to mark.
        pass


def read_hashes(partition_dir: str) -> dict[str, Any]:
    """``{"valid": bool, "updated": float, "hashes": {...}}``; invalid when unreadable."""
    invalid: dict[str, Any] = {"valid": False, "updated": -1.0, "hashes": {}}
    try:
        with open(os.path.join(partition_dir, HASH_FILE), "rb") as fh:
            raw = fh.read()
    except OSError:
        return invalid
    try:
        doc = json.loads(raw)
    except ValueError:
        return invalid
    if not isinstance(doc, dict) or doc.get("version") != HASHES_VERSION:
        return invalid
    hashes = doc.get("hashes")
    if not isinstance(hashes, dict) or not all(
        valid_suffix(k) and (v is None or isinstance(v, str)) for k, v in hashes.items()
    ):
        return invalid
    updated = doc.get("updated", -1.0)
    return {
        "valid": bool(doc.get("valid", False)),
        "updated": float(updated) if isinstance(updated, int | float) else -1.0,
        "hashes": hashes,
    }


def write_hashes(partition_dir: str, valid: bool, hashes: dict[str, str | None]) -> float:
    """Atomically replace ``hashes.json`` (temp file, fsync, rename); returns its ``updated``."""
    updated = time.time()
    doc = {"version": HASHES_VERSION, "valid": valid, "updated": updated, "hashes": hashes}
    data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("ascii")
    final = os.path.join(partition_dir, HASH_FILE)
    tmp = os.path.join(partition_dir, f"{_HASH_TMP_PREFIX}{uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return updated


def consolidate_hashes(partition_dir: str) -> dict[str, Any]:
    """Fold ``hashes.invalid`` into ``hashes.json`` (as null) and empty it."""
    inv_path = os.path.join(partition_dir, HASH_INVALIDATIONS_FILE)
    with lock_partition(partition_dir):
        state = read_hashes(partition_dir)
        try:
            with open(inv_path, "rb") as fh:
                lines = fh.read().decode("ascii", "replace").split()
        except FileNotFoundError:
            lines = []
        changed = False
        for line in lines:
            if valid_suffix(line):
                state["hashes"][line] = None
                changed = True
        if changed:
            state["updated"] = write_hashes(partition_dir, state["valid"], state["hashes"])
        if lines:
            # Only now, with every line reflected in hashes.json, may it go.
            os.truncate(inv_path, 0)
        return state


def quarantine_hash_dir(hash_dir: str) -> str:
    """Move ``<dev>/objects[-N]/<part>/<suf>/<hash>`` to ``<dev>/quarantined/objects[-N]/``.

    The suffix is invalidated so replication restores the object from a
    peer. Returns the quarantine path (``<hash>`` or ``<hash>-<uuid>``).
    """
    hash_dir = hash_dir.rstrip("/")
    suffix_dir = os.path.dirname(hash_dir)
    partition_dir = os.path.dirname(suffix_dir)
    datadir = os.path.dirname(partition_dir)
    device_path = os.path.dirname(datadir)
    target_dir = os.path.join(device_path, "quarantined", os.path.basename(datadir))
    os.makedirs(target_dir, exist_ok=True)
    target = os.path.join(target_dir, os.path.basename(hash_dir))
    invalidate_hash(suffix_dir)
    while True:
        # rename() would silently replace an existing *empty* dir, so look first.
        if not os.path.lexists(target):
            try:
                os.rename(hash_dir, target)
                # Again after the move, for a rehash that ran in between.
                invalidate_hash(suffix_dir)
                return target
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
        target = os.path.join(target_dir, f"{os.path.basename(hash_dir)}-{uuid.uuid4().hex}")


class _PathNotDir(Exception):
    pass


def hash_suffix(
    suffix_dir: str, reclaim_age: float = DEFAULT_RECLAIM_AGE, now: float | None = None
) -> str:
    """Clean up every hash dir in ``suffix_dir`` and return Swift's suffix MD5.

    Raises _PathNotDir when the suffix dir is missing, not a dir, or ends up
    empty (it is then removed and should be dropped from the hashes).
    """
    try:
        names = sorted(os.listdir(suffix_dir))
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise _PathNotDir() from None
        raise
    md5 = hashlib.md5(usedforsecurity=False)
    for name in names:
        hash_dir = os.path.join(suffix_dir, name)
        try:
            info = cleanup_ondisk_files(hash_dir, reclaim_age, now)
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.ENODATA, errno.EUCLEAN):
                # A file where a hash dir belongs, or an unreadable dir.
                quarantine_hash_dir(hash_dir)
                continue
            raise
        if not info.files:
            continue
        for chosen in (info.meta, info.ts, info.data):
            if chosen is not None:
                md5.update((chosen.timestamp.internal + chosen.ext).encode("ascii"))
        if info.ctype is not None and info.ctype.ctype_timestamp is not None:
            md5.update((info.ctype.ctype_timestamp.internal + "_ctype").encode("ascii"))
    try:
        os.rmdir(suffix_dir)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise _PathNotDir() from None
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    else:
        raise _PathNotDir()
    return md5.hexdigest()


def get_hashes(
    partition_dir: str,
    recalculate: Iterable[str] = (),
    do_listdir: bool = False,
    reclaim_age: float = DEFAULT_RECLAIM_AGE,
    now: float | None = None,
) -> dict[str, str]:
    """``{suffix: md5hex}`` for a partition, rehashing what is stale.

    Invalidations are folded in, None (stale) and ``recalculate`` suffixes are
    rehashed, vanished suffixes dropped; ``hashes.json`` is written only if it
    did not change on disk meanwhile (else the whole procedure is redone, as
    in Swift). A missing partition gives ``{}``.
    """
    recalculate = [s for s in recalculate if valid_suffix(s)]
    try:
        return _get_hashes(partition_dir, recalculate, do_listdir, reclaim_age, now)
    except FileNotFoundError:
        # No partition (or it was removed meanwhile, e.g. a drained handoff).
        if os.path.isdir(partition_dir):
            raise
        return {}


def _get_hashes(
    partition_dir: str,
    recalculate: list[str],
    do_listdir: bool,
    reclaim_age: float,
    now: float | None,
) -> dict[str, str]:
    if not os.path.isdir(partition_dir):
        return {}
    for _attempt in range(100):
        orig = consolidate_hashes(partition_dir)
        if not orig["valid"]:
            # Only a full listing can make an unknown state valid; it stays on
            # for a redo, since the state we listed may be what changed.
            do_listdir = True
            hashes: dict[str, str | None] = {}
        else:
            hashes = dict(orig["hashes"])
        modified = False
        if do_listdir:
            for name in os.listdir(partition_dir):
                if valid_suffix(name):
                    hashes.setdefault(name, None)
                elif name.startswith(_HASH_TMP_PREFIX):
                    _remove_if_stale(os.path.join(partition_dir, name))
            modified = True
        for suffix in recalculate:
            hashes[suffix] = None
        for suffix, value in list(hashes.items()):
            if value:
                continue
            try:
                hashes[suffix] = hash_suffix(os.path.join(partition_dir, suffix), reclaim_age, now)
            except _PathNotDir:
                del hashes[suffix]
            modified = True
        if not modified:
            return {k: v for k, v in hashes.items() if v}
        with lock_partition(partition_dir):
            if _same_state(read_hashes(partition_dir), orig):
                write_hashes(partition_dir, True, hashes)
                return {k: v for k, v in hashes.items() if v}
    raise PartitionLockTimeout(f"{partition_dir}: hashes kept changing")


def _remove_if_stale(path: str) -> None:
    """Drop a hashes.json temp file left by a writer that crashed."""
    try:
        if time.time() - os.lstat(path).st_mtime > _STALE_TMP_AGE:
            os.unlink(path)
    except FileNotFoundError:
        pass


def _same_state(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["valid"] == b["valid"] and a["hashes"] == b["hashes"] and a["updated"] == b["updated"]


def _is_hash_name(name: str, suffix: str) -> bool:
    return len(name) == 32 and name.endswith(suffix) and all(c in _HEX for c in name)


def yield_hashes(
    partition_dir: str, suffixes: Iterable[str] | None = None
) -> Iterator[tuple[str, OnDiskFiles]]:
    """``(name_hash, files)`` for each object in the partition (or the given suffixes).

    Read-only (no cleanup), sorted by hash; objects with nothing chosen are
    skipped. The replicator offers these; ``files.data/meta/ctype/ts`` name
    the files that define each object's state.
    """
    if suffixes is None:
        try:
            suffixes = [n for n in os.listdir(partition_dir) if valid_suffix(n)]
        except FileNotFoundError:
            return
    for suffix in sorted(s for s in suffixes if valid_suffix(s)):
        suffix_dir = os.path.join(partition_dir, suffix)
        try:
            names = sorted(os.listdir(suffix_dir))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            if not _is_hash_name(name, suffix):
                continue
            try:
                files = get_ondisk_files(os.listdir(os.path.join(suffix_dir, name)))
            except (FileNotFoundError, NotADirectoryError):
                continue
            if files.data is None and files.ts is None:
                continue
            yield name, files
