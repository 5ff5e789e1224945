"""The auditor's checks of one object. Every function here BLOCKS: the auditor
runs them in the device's own threads at background priority.

The metadata step (both passes) opens the object through the storage layer,
which already quarantines undecodable metadata, a bad checksum, a missing
name, a name that does not hash to its directory, a non-integer
``X-Delete-At`` or ``Content-Length`` and a size that differs from
``Content-Length``. On top of that the auditor wants what every ``.data``
must carry (Hummingbird's mini-audit: ``ETag``, ``Content-Type``,
``X-Timestamp``) and, for a zero-byte object, the ETag of no bytes: the
ZBF pass can check those completely without reading anything.

The full pass then reads the bytes through :class:`DiskFileReader`, whose
md5 check quarantines on a mismatch, chunk by chunk so the event loop can
apply ``bytes_per_second`` between chunks.

Quarantine moves the hash dir to ``quarantined/objects[-N]/`` and
invalidates the suffix, so the replicator brings a good copy back.
"""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass

from swiftlite.common.timestamp import Timestamp
from swiftlite.object.diskfile import (
    DiskFile,
    DiskFileDeleted,
    DiskFileExpired,
    DiskFileManager,
    DiskFileNotExist,
    DiskFileQuarantined,
    DiskFileReader,
)
from swiftlite.object.diskfile_ondisk import is_reclaimable
from swiftlite.object.hashes import invalidate_hash, valid_suffix

logger = logging.getLogger("swiftlite.object.auditor")

EMPTY_ETAG = "d41d8cd98f00b204e9800998ecf8427e"
_REQUIRED_DATA_KEYS = ("ETag", "Content-Type", "X-Timestamp")
_HEX = frozenset("0123456789abcdef")

# Outcomes of :func:`audit_metadata`.
OK = "ok"
READ = "read"  # metadata passed; the caller reads the bytes next
QUARANTINED = "quarantined"
EXPIRED_REMOVED = "expired_removed"
EXPIRED_KEPT = "expired_kept"
TOMBSTONE = "tombstone"
TOMBSTONE_RECLAIM = "tombstone_reclaim"
MISSING = "missing"


@dataclass
class Outcome:
    kind: str
    reason: str = ""
    length: int = 0
    reader: DiskFileReader | None = None


def list_object_hashes(partition_path: str) -> list[str]:
    """Hash dir names of a partition, by suffix then hash (names only).

    Entries that are not hash-shaped are left alone; a hash entry that is a
    file is returned too, so opening it quarantines it.
    """
    out: list[str] = []
    try:
        suffixes = os.listdir(partition_path)
    except (FileNotFoundError, NotADirectoryError):
        return out
    for suffix in sorted(s for s in suffixes if valid_suffix(s)):
        try:
            names = os.listdir(os.path.join(partition_path, suffix))
        except (FileNotFoundError, NotADirectoryError):
            continue
        out.extend(
            sorted(n for n in names if len(n) == 32 and n.endswith(suffix) and set(n) <= _HEX)
        )
    return out


def audit_metadata(
    mgr: DiskFileManager,
    device: str,
    partition: str,
    name_hash: str,
    policy_index: int,
    *,
    now: float,
    reclaim_age: float,
    remove_expired: bool,
    full: bool,
) -> Outcome:
    """Open and check one object; see the module docstring.

    With ``full`` and a non-empty object the outcome is READ and carries an
    open reader that the caller must finish with :func:`finish_read`.
    """
    df = mgr.get_diskfile_from_hash(device, partition, name_hash, policy_index)
    try:
        df.open(now=now)
    except DiskFileQuarantined as exc:
        return Outcome(QUARANTINED, str(exc))
    except DiskFileExpired as exc:
        if remove_expired and remove_expired_object(df, exc):
            return Outcome(EXPIRED_REMOVED)
        return Outcome(EXPIRED_KEPT)
    except DiskFileDeleted as exc:
        if is_reclaimable(exc.timestamp, reclaim_age, now):
            # As Swift: let the next rehash (the replicator's) reclaim it.
            invalidate_hash(df.suffix_path)
            return Outcome(TOMBSTONE_RECLAIM)
        return Outcome(TOMBSTONE)
    except DiskFileNotExist:
        return Outcome(MISSING)
    try:
        problem = _data_problem(df)
        if problem:
            _quarantine(df, problem)
            return Outcome(QUARANTINED, problem)
        length = df.content_length
        if not full or length == 0:
            return Outcome(OK, length=length)
        return Outcome(READ, length=length, reader=df.reader(verify_etag=True))
    finally:
        # The reader owns its own fd; the DiskFile's is no longer needed.
        df.close()


def _data_problem(df: DiskFile) -> str:
    meta = df.get_datafile_metadata()
    for key in _REQUIRED_DATA_KEYS:
        if key not in meta:
            return f"missing {key} in metadata"
    try:
        ts = Timestamp(meta["X-Timestamp"])
    except ValueError:
        return f"bad X-Timestamp {meta['X-Timestamp']!r}"
    if ts != df.data_timestamp:
        return (
            f"X-Timestamp {ts.internal} does not match the file name {df.data_timestamp.internal}"
        )
    if df.content_length == 0 and meta["ETag"].lower() != EMPTY_ETAG:
        return f"zero-byte object with ETag {meta['ETag']}"
    return ""


def _quarantine(df: DiskFile, reason: str) -> None:
    try:
        df.quarantine(reason)
    except FileNotFoundError:
        pass  # someone else moved or removed it meanwhile


def read_chunk(reader: DiskFileReader, size: int) -> int:
    """Read up to ``size`` bytes (md5 tracked by the reader); returns the count."""
    return len(reader.read(size))


def finish_read(reader: DiskFileReader) -> str:
    """Close the reader; "" when the bytes matched, else the quarantine reason."""
    try:
        if reader.quarantined:
            return "quarantined while reading"
        if reader.pos != reader.length:
            reason = f"read {reader.pos} bytes of {reader.length}"
            _quarantine(reader.df, reason)
            return reason
        if not reader.finish_full_read():
            return "ETag does not match the md5 of the data"
        return ""
    finally:
        reader.close()


def remove_expired_object(df: DiskFile, exc: DiskFileExpired) -> bool:
    """Unlink the files of an object whose X-Delete-At has passed (no tombstone).

    Every replica carries the same X-Delete-At, so each auditor removes its
    own copy and a copy replicated back later is just as expired. Only the
    files that made up the expired state are removed: a newer PUT that lands
    meanwhile keeps its file (and keeps the hash dir, whose rmdir then fails).
    Returns False when the object changed since it was opened.
    """
    info = df.ondisk_files()
    if info.data is None or exc.timestamp is None:
        return False
    state = info.data.timestamp
    if info.meta is not None and info.meta.timestamp > state:
        state = info.meta.timestamp
    if state != exc.timestamp:
        return False
    doomed = [i for i in (info.data, info.meta, info.ctype) if i is not None]
    doomed.extend(info.obsolete)
    for item in doomed:
        try:
            os.unlink(os.path.join(df.datadir, item.filename))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(df.datadir)
    except OSError as err:
        if err.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST):
            raise
    invalidate_hash(df.suffix_path)
    logger.info("removed expired object %s (%s)", df.name or df.name_hash, df.datadir)
    return True
