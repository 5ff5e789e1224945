"""Which files in a hash dir make up an object, and which are obsolete.

This is Swift's replication-policy ``get_ondisk_files`` (swift-internals 2.3),
re-derived: newest ``.ts``/``.data`` wins, the newest ``.meta`` is kept, plus
an older ``.meta`` when it carries a newer content-type timestamp. The result
is one of: nothing; only a ``.ts``; a ``.data`` with optional ``.meta`` (and
ctype ``.meta``). Everything here works on file *names*; only
:func:`cleanup_ondisk_files` touches the disk.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass, field

from swiftlite.common.timestamp import Timestamp, decode_timestamps, encode_timestamps

DATA_EXT = ".data"
META_EXT = ".meta"
TS_EXT = ".ts"
DEFAULT_RECLAIM_AGE = 604800  # one week, Swift's default
_ZERO = Timestamp(0)


@dataclass(frozen=True, slots=True)
class FileInfo:
    """One parsed on-disk file name."""

    filename: str
    timestamp: Timestamp
    ext: str
    # Only for ``<ts>±<delta>.meta``: the content-type timestamp.
    ctype_timestamp: Timestamp | None = None


@dataclass(slots=True)
class OnDiskFiles:
    """The outcome of :func:`get_ondisk_files` for one hash dir."""

    data: FileInfo | None = None
    meta: FileInfo | None = None
    ctype: FileInfo | None = None
    ts: FileInfo | None = None
    obsolete: list[FileInfo] = field(default_factory=list)
    # ``.meta`` files with no ``.data``: removable once older than reclaim_age.
    possible_reclaim: list[FileInfo] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    # Set by cleanup_ondisk_files: names left in the dir, newest first.
    files: list[str] = field(default_factory=list)

    @property
    def newest(self) -> Timestamp | None:
        """Timestamp of the state-defining file (the ``.data`` or ``.ts``)."""
        if self.data is not None:
            return self.data.timestamp
        if self.ts is not None:
            return self.ts.timestamp
        return None


def _policy_dir(base: str, policy_index: int) -> str:
    return base if not policy_index else f"{base}-{policy_index}"


def data_dir(policy_index: int = 0) -> str:
    """``objects`` or ``objects-N``."""
    return _policy_dir("objects", policy_index)


def tmp_dir(policy_index: int = 0) -> str:
    return _policy_dir("tmp", policy_index)


def async_dir(policy_index: int = 0) -> str:
    return _policy_dir("async_pending", policy_index)


def make_on_disk_filename(
    timestamp: Timestamp, ext: str, ctype_timestamp: Timestamp | None = None
) -> str:
    """``<ts.internal><ext>``; a content-type ``.meta`` is ``<ts>±<hex delta>.meta``."""
    if ext == META_EXT and ctype_timestamp is not None:
        return encode_timestamps(timestamp, ctype_timestamp, explicit=True) + ext
    return timestamp.internal + ext


def parse_on_disk_filename(filename: str) -> FileInfo:
    """Parse ``<ts><ext>``; raises ValueError for names that are not object files."""
    stem, dot, ext_tail = filename.rpartition(".")
    if not dot or not stem:
        raise ValueError(f"not an object file name: {filename!r}")
    ext = "." + ext_tail
    if ext == META_EXT:
        ts, ctype_ts, _ = decode_timestamps(stem, explicit=True)
        return FileInfo(filename, ts, ext, ctype_ts)
    if ext in (DATA_EXT, TS_EXT):
        return FileInfo(filename, Timestamp(stem), ext)
    raise ValueError(f"unexpected extension in {filename!r}")


def _ctype_key(info: FileInfo) -> Timestamp:
    return info.ctype_timestamp if info.ctype_timestamp else _ZERO


def get_ondisk_files(files: list[str]) -> OnDiskFiles:
    """Classify the names in one hash dir (Swift's replication policy)."""
    result = OnDiskFiles()
    exts: dict[str, list[FileInfo]] = {}
    for name in files:
        try:
            info = parse_on_disk_filename(name)
        except ValueError:
            result.unexpected.append(name)
            continue
        exts.setdefault(info.ext, []).append(info)
    for infos in exts.values():
        infos.sort(key=lambda i: i.timestamp, reverse=True)

    tss = exts.get(TS_EXT)
    if tss:
        newest_ts = tss[0].timestamp
        for ext, infos in exts.items():
            if ext == TS_EXT:
                continue
            exts[ext] = [i for i in infos if i.timestamp > newest_ts]
            result.obsolete.extend(i for i in infos if i.timestamp <= newest_ts)
        result.obsolete.extend(tss[1:])
        exts[TS_EXT] = tss[:1]

    metas = exts.get(META_EXT)
    if metas:
        retain = 1
        if len(metas) > 1:
            # Among the older .meta files the one with the newest content-type
            # time survives if that time beats the newest .meta's own.
            metas[1:] = sorted(metas[1:], key=_ctype_key, reverse=True)
            if _ctype_key(metas[1]) > _ctype_key(metas[0]):
                if metas[1].timestamp == metas[0].timestamp:
                    metas[0], metas[1] = metas[1], metas[0]
                else:
                    retain = 2
        result.obsolete.extend(metas[retain:])
        exts[META_EXT] = metas = metas[:retain]

    datas = exts.get(DATA_EXT)
    if datas:
        newest_data = datas[0].timestamp
        for ext, infos in exts.items():
            if ext == DATA_EXT:
                keep = [i for i in infos if i.timestamp >= newest_data]
                drop = [i for i in infos if i.timestamp < newest_data]
            else:
                keep = [i for i in infos if i.timestamp > newest_data]
                drop = [i for i in infos if i.timestamp <= newest_data]
            exts[ext] = keep
            result.obsolete.extend(drop)
        result.data = datas[0]
    elif exts.get(META_EXT):
        result.possible_reclaim.extend(exts[META_EXT])

    if result.data is not None:
        metas = exts.get(META_EXT) or []
        if metas:
            result.meta = metas[0]
            last = metas[-1]
            if last.ctype_timestamp is not None and last.ctype_timestamp > result.data.timestamp:
                result.ctype = last
    elif exts.get(TS_EXT):
        result.ts = exts[TS_EXT][0]
    return result


def is_reclaimable(timestamp: Timestamp, reclaim_age: float, now: float | None = None) -> bool:
    current = time.time() if now is None else now
    return current - float(timestamp) > reclaim_age


def cleanup_ondisk_files(
    hash_dir: str, reclaim_age: float = DEFAULT_RECLAIM_AGE, now: float | None = None
) -> OnDiskFiles:
    """Unlink obsolete files and reclaimable tombstones; rmdir an emptied dir.

    Raises OSError (ENOTDIR, ENODATA...) for the caller to quarantine; a
    missing dir is simply empty.
    """
    try:
        files = os.listdir(hash_dir)
    except FileNotFoundError:
        return OnDiskFiles()
    files.sort(reverse=True)
    result = get_ondisk_files(files)
    if result.ts is not None and is_reclaimable(result.ts.timestamp, reclaim_age, now):
        result.obsolete.append(result.ts)
        result.ts = None
    for info in result.possible_reclaim:
        if is_reclaimable(info.timestamp, reclaim_age, now):
            result.obsolete.append(info)
    for info in result.obsolete:
        try:
            os.unlink(os.path.join(hash_dir, info.filename))
        except FileNotFoundError:
            pass
        try:
            files.remove(info.filename)
        except ValueError:
            pass
    result.files = files
    if not files:
        try:
            os.rmdir(hash_dir)
        except OSError as exc:
            # A concurrent writer may have just linked a file in: keep the dir.
            if exc.errno not in (errno.ENOENT, errno.ENOTEMPTY):
                raise
    return result
