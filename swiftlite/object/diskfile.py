"""Objects on disk, in Swift's layout (swift-internals 2.1-2.8).

``<devices>/<dev>/objects[-N]/<part>/<suffix>/<hash>/<ts>.data|.ts|.meta``;
temp files in ``<dev>/tmp[-N]``; quarantine in ``<dev>/quarantined/objects[-N]``.

Every method here BLOCKS: the object server runs them in the device's own
thread pool (``DeviceManager.run``). Durability order of a write (the object
becomes visible only at the rename, so a crash at any earlier point leaves
nothing but a temp file, which :meth:`DiskFileManager.cleanup_temp_files`
removes later)::

    temp file in <dev>/tmp -> data -> metadata (xattrs/tail) -> fsync(file)
    -> mkdir hash dir -> invalidate suffix -> rename into the hash dir
    -> fsync(hash dir) (+ parents of newly created dirs) -> cleanup old files

The suffix is invalidated *before* the rename (as Swift does) so a crash just
after the rename can never leave a stale suffix hash behind.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from swiftlite.common.hashing import hash_path_digest
from swiftlite.common.timestamp import Timestamp
from swiftlite.object import diskfile_io
from swiftlite.object.diskfile_exceptions import (
    DiskFileBadMetadata,
    DiskFileCollision,
    DiskFileDeleted,
    DiskFileDeviceUnavailable,
    DiskFileError,
    DiskFileExpired,
    DiskFileNoSpace,
    DiskFileNotExist,
    DiskFileNotOpen,
    DiskFileQuarantined,
)
from swiftlite.object.diskfile_ondisk import (
    DATA_EXT,
    DEFAULT_RECLAIM_AGE,
    META_EXT,
    TS_EXT,
    FileInfo,
    OnDiskFiles,
    cleanup_ondisk_files,
    get_ondisk_files,
    make_on_disk_filename,
)
from swiftlite.object.hashes import get_hashes, invalidate_hash, quarantine_hash_dir
from swiftlite.object.metadata import read_metadata_and_length, write_metadata

__all__ = [
    "DiskFile",
    "DiskFileBadMetadata",
    "DiskFileCollision",
    "DiskFileDeleted",
    "DiskFileDeviceUnavailable",
    "DiskFileError",
    "DiskFileExpired",
    "DiskFileManager",
    "DiskFileNoSpace",
    "DiskFileNotExist",
    "DiskFileNotOpen",
    "DiskFileQuarantined",
    "DiskFileReader",
    "DiskFileWriter",
    "async_dir",
    "data_dir",
    "tmp_dir",
]

logger = logging.getLogger("swiftlite.object.diskfile")

# Keys that always come from the .data even when a .meta exists (Swift's
# RESERVED_DATAFILE_META | DATAFILE_SYSTEM_META, lower-cased).
_DATAFILE_ONLY = frozenset({"content-length", "deleted", "etag", "x-static-large-object"})
_SYSMETA_PREFIX = "x-object-sysmeta-"
READ_CHUNK = 1 << 20


def _policy_dir(base: str, policy_index: int) -> str:
    return base if not policy_index else f"{base}-{policy_index}"


def data_dir(policy_index: int = 0) -> str:
    """``objects`` or ``objects-N``."""
    return _policy_dir("objects", policy_index)


def tmp_dir(policy_index: int = 0) -> str:
    return _policy_dir("tmp", policy_index)


def async_dir(policy_index: int = 0) -> str:
    return _policy_dir("async_pending", policy_index)


def _datafile_only(key: str) -> bool:
    low = key.lower()
    return low in _DATAFILE_ONLY or low.startswith(_SYSMETA_PREFIX)


class DiskFileManager:
    """Entry point: finds devices and hands out :class:`DiskFile` objects."""

    def __init__(
        self,
        devices_root: str,
        reclaim_age: int = DEFAULT_RECLAIM_AGE,
        mount_check: bool = False,
        fsync: bool = True,
        fallocate_reserve: str | int | float = "1%",
    ) -> None:
        self.devices_root = devices_root
        self.reclaim_age = reclaim_age
        self.mount_check = mount_check
        self.fsync = fsync
        self.reserve, self.reserve_is_percent = diskfile_io.parse_reserve(fallocate_reserve)

    # -- paths --------------------------------------------------------------

    def device_path(self, device: str) -> str:
        """The device's root; DiskFileDeviceUnavailable if absent or unmounted."""
        if not device or "/" in device or device in (".", ".."):
            raise DiskFileDeviceUnavailable(device)
        path = os.path.join(self.devices_root, device)
        if self.mount_check:
            if not os.path.ismount(path):
                raise DiskFileDeviceUnavailable(f"{device} is not mounted")
        elif not os.path.isdir(path):
            raise DiskFileDeviceUnavailable(f"{device} does not exist")
        return path

    def partition_path(self, device: str, partition: int | str, policy_index: int = 0) -> str:
        return os.path.join(self.device_path(device), data_dir(policy_index), str(partition))

    def async_pending_path(
        self, device: str, name_hash: str, timestamp: Timestamp | str, policy_index: int = 0
    ) -> str:
        """``<dev>/async_pending[-N]/<suffix>/<hash>-<ts>`` for a failed container update."""
        ts = (
            timestamp.internal
            if isinstance(timestamp, Timestamp)
            else Timestamp(timestamp).internal
        )
        return os.path.join(
            self.device_path(device), async_dir(policy_index), name_hash[-3:], f"{name_hash}-{ts}"
        )

    # -- objects ------------------------------------------------------------

    def get_diskfile(
        self,
        device: str,
        partition: int | str,
        account: str,
        container: str,
        obj: str,
        policy_index: int = 0,
    ) -> DiskFile:
        name_hash = hash_path_digest(account, container, obj).hex()
        return DiskFile(
            self,
            self.device_path(device),
            str(partition),
            name_hash,
            policy_index,
            name=f"/{account}/{container}/{obj}",
        )

    def get_diskfile_from_hash(
        self, device: str, partition: int | str, name_hash: str, policy_index: int = 0
    ) -> DiskFile:
        """A DiskFile known only by its hash (replication, audit); open() checks
        that the stored name hashes back to it instead of comparing names."""
        return DiskFile(self, self.device_path(device), str(partition), name_hash, policy_index)

    # -- partitions ---------------------------------------------------------

    def get_hashes(
        self,
        device: str,
        partition: int | str,
        policy_index: int = 0,
        recalculate: tuple[str, ...] | list[str] = (),
        do_listdir: bool = False,
    ) -> dict[str, str]:
        return get_hashes(
            self.partition_path(device, partition, policy_index),
            recalculate=recalculate,
            do_listdir=do_listdir,
            reclaim_age=self.reclaim_age,
        )

    def cleanup_temp_files(
        self, device: str, max_age: float = 86400.0, policy_index: int = 0
    ) -> int:
        """Remove temp files older than ``max_age`` (left by crashed writers)."""
        tdir = os.path.join(self.device_path(device), tmp_dir(policy_index))
        removed = 0
        cutoff = time.time() - max_age
        try:
            names = os.listdir(tdir)
        except FileNotFoundError:
            return 0
        for name in names:
            path = os.path.join(tdir, name)
            try:
                if os.lstat(path).st_mtime < cutoff:
                    os.unlink(path)
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


class DiskFile:
    """One object (by name or by hash) on one device."""

    def __init__(
        self,
        mgr: DiskFileManager,
        device_path: str,
        partition: str,
        name_hash: str,
        policy_index: int = 0,
        name: str | None = None,
    ) -> None:
        self.mgr = mgr
        self.device_path = device_path
        self.partition = partition
        self.name_hash = name_hash
        self.policy_index = policy_index
        self.name = name
        self.partition_path = os.path.join(device_path, data_dir(policy_index), partition)
        self.suffix_path = os.path.join(self.partition_path, name_hash[-3:])
        self.datadir = os.path.join(self.suffix_path, name_hash)
        self._fd: int | None = None
        self._metadata: dict[str, str] | None = None
        self._datafile_metadata: dict[str, str] | None = None
        self._metafile_metadata: dict[str, str] | None = None
        self._ondisk: OnDiskFiles | None = None
        self._content_length = 0
        self.data_path: str | None = None

    def __repr__(self) -> str:
        return f"<DiskFile {self.name or self.name_hash} at {self.datadir}>"

    # -- selection ----------------------------------------------------------

    def _list(self) -> list[str]:
        try:
            return os.listdir(self.datadir)
        except FileNotFoundError:
            return []
        except NotADirectoryError:
            raise self._quarantine(f"expected a directory at {self.datadir}") from None
        except OSError as exc:
            if exc.errno in (errno.ENODATA, errno.EUCLEAN):
                raise self._quarantine(f"failed to list {self.datadir}: {exc}") from None
            raise

    def ondisk_files(self) -> OnDiskFiles:
        """The current selection of files (names only; no metadata read)."""
        return get_ondisk_files(self._list())

    def newest_timestamp(self) -> Timestamp | None:
        """Timestamp of the ``.data`` or ``.ts`` on disk, from names alone.

        The cheap check for 409: a write must lose when this is >= its own.
        """
        return self.ondisk_files().newest

    # -- open ---------------------------------------------------------------

    def open(self, now: float | None = None) -> DiskFile:
        """Select the files and read their metadata; see the module's exceptions."""
        self.close()
        for _attempt in range(3):
            info = self.ondisk_files()
            if info.data is None:
                if info.ts is not None:
                    raise self._deleted(info.ts)
                raise DiskFileNotExist(self.name or self.name_hash)
            path = os.path.join(self.datadir, info.data.filename)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                # A concurrent write superseded it between listdir and open.
                continue
            try:
                self._load(fd, path, info, now)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            self._ondisk = info
            self.data_path = path
            return self
        raise DiskFileNotExist(self.name or self.name_hash)

    def _deleted(self, ts: FileInfo) -> DiskFileError:
        try:
            meta = read_metadata_and_length(os.path.join(self.datadir, ts.filename))[0]
        except DiskFileBadMetadata as exc:
            return self._quarantine(f"bad tombstone metadata: {exc}")
        except DiskFileNotExist:
            return DiskFileNotExist(self.name or self.name_hash)
        return DiskFileDeleted(ts.timestamp, meta)

    def _read_meta(self, source: int | str) -> tuple[dict[str, str], int]:
        try:
            return read_metadata_and_length(source)
        except DiskFileBadMetadata as exc:
            raise self._quarantine(f"bad metadata: {exc}") from None

    def _load(self, fd: int, path: str, info: OnDiskFiles, now: float | None) -> None:
        data_meta, data_len = self._read_meta(fd)
        assert info.data is not None
        data_ts = info.data.timestamp
        merged: dict[str, str]
        meta_meta: dict[str, str] | None = None
        if info.meta is not None:
            meta_meta, _ = self._read_meta(os.path.join(self.datadir, info.meta.filename))
            if info.ctype is not None and info.ctype is not info.meta:
                ctype_meta, _ = self._read_meta(os.path.join(self.datadir, info.ctype.filename))
                self._merge_ctype(meta_meta, ctype_meta, data_ts)
            merged = dict(meta_meta)
            merged.update((k, v) for k, v in data_meta.items() if _datafile_only(k))
            meta_meta.pop("name", None)
            if "Content-Type" in data_meta and data_ts > _ts_or_zero(
                meta_meta.get("Content-Type-Timestamp")
            ):
                merged["Content-Type"] = data_meta["Content-Type"]
                merged.pop("Content-Type-Timestamp", None)
        else:
            merged = dict(data_meta)
        self._check(merged, data_len, now)
        self._datafile_metadata = data_meta
        self._metafile_metadata = meta_meta
        self._metadata = merged
        self._content_length = data_len

    @staticmethod
    def _merge_ctype(
        meta_meta: dict[str, str], ctype_meta: dict[str, str], data_ts: Timestamp
    ) -> None:
        ctype_ts = _ts_or_zero(ctype_meta.get("Content-Type-Timestamp"))
        if (
            "Content-Type" in ctype_meta
            and ctype_ts > _ts_or_zero(meta_meta.get("Content-Type-Timestamp"))
            and ctype_ts > data_ts
        ):
            meta_meta["Content-Type"] = ctype_meta["Content-Type"]
            meta_meta["Content-Type-Timestamp"] = ctype_meta["Content-Type-Timestamp"]

    def _check(self, merged: dict[str, str], data_len: int, now: float | None) -> None:
        stored = merged.get("name")
        if stored is None:
            raise self._quarantine("missing name metadata")
        if self.name is None:
            parts = stored.lstrip("/").split("/", 2)
            if len(parts) != 3 or hash_path_digest(*parts).hex() != self.name_hash:
                raise self._quarantine("hash of stored name does not match the hash dir")
            self.name = stored
        elif stored != self.name:
            logger.error("client path %s does not match stored path %s", self.name, stored)
            raise DiskFileCollision("client path does not match path stored in object metadata")
        if "X-Delete-At" in merged:
            try:
                delete_at = int(merged["X-Delete-At"])
            except ValueError:
                raise self._quarantine(f"bad X-Delete-At {merged['X-Delete-At']!r}") from None
            if delete_at <= (time.time() if now is None else now):
                raise DiskFileExpired(merged)
        try:
            length = int(merged["Content-Length"])
        except KeyError:
            raise self._quarantine("missing Content-Length in metadata") from None
        except ValueError:
            raise self._quarantine(f"bad Content-Length {merged['Content-Length']!r}") from None
        if length != data_len:
            raise self._quarantine(f"Content-Length {length} does not match object size {data_len}")

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> DiskFile:
        if self._metadata is None:
            raise DiskFileNotOpen()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A safety net for a caller that forgets close(); not the normal path.
        fd = getattr(self, "_fd", None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- after open ---------------------------------------------------------

    def _need_open(self) -> dict[str, str]:
        if self._metadata is None:
            raise DiskFileNotOpen()
        return self._metadata

    def get_metadata(self) -> dict[str, str]:
        """Merged metadata (.data overlaid by .meta, per Swift's rules)."""
        return self._need_open()

    def get_datafile_metadata(self) -> dict[str, str]:
        self._need_open()
        assert self._datafile_metadata is not None
        return self._datafile_metadata

    def get_metafile_metadata(self) -> dict[str, str] | None:
        self._need_open()
        return self._metafile_metadata

    @property
    def data_timestamp(self) -> Timestamp:
        self._need_open()
        assert self._ondisk is not None and self._ondisk.data is not None
        return self._ondisk.data.timestamp

    @property
    def timestamp(self) -> Timestamp:
        """Newest of the .data and .meta timestamps (Last-Modified source)."""
        self._need_open()
        assert self._ondisk is not None and self._ondisk.data is not None
        if self._ondisk.meta is not None:
            return max(self._ondisk.data.timestamp, self._ondisk.meta.timestamp)
        return self._ondisk.data.timestamp

    @property
    def content_type_timestamp(self) -> Timestamp:
        meta = self._need_open()
        ctt = meta.get("Content-Type-Timestamp")
        return Timestamp(ctt) if ctt else self.data_timestamp

    @property
    def content_length(self) -> int:
        self._need_open()
        return self._content_length

    def open_fd(self) -> int:
        """A new fd on the opened ``.data`` (for sendfile/pread); the caller closes it.

        Bytes past ``content_length`` may hold the metadata tail: never send them.
        """
        self._need_open()
        if self._fd is None:
            raise DiskFileNotOpen()
        return os.dup(self._fd)

    def reader(self, verify_etag: bool = True) -> DiskFileReader:
        """A reader over the object's bytes (its own fd; close it when done)."""
        meta = self._need_open()
        return DiskFileReader(
            self, self.open_fd(), self._content_length, meta.get("ETag") if verify_etag else None
        )

    # -- writes -------------------------------------------------------------

    def create(self, size: int | None = None, ext: str = DATA_EXT) -> DiskFileWriter:
        """A writer on a fresh temp file; DiskFileNoSpace when the disk is too full."""
        writer = DiskFileWriter(self, size, ext)
        writer.open()
        return writer

    def write_tombstone(
        self, timestamp: Timestamp | str, extra_metadata: Mapping[str, Any] | None = None
    ) -> None:
        """Write ``<ts>.ts`` (DELETE); skips the free-space reserve like Swift."""
        ts = Timestamp(timestamp)
        meta: dict[str, Any] = dict(extra_metadata or {})
        meta["X-Timestamp"] = ts.internal
        writer = self.create(0, TS_EXT)
        with writer:
            writer.put(meta)

    def write_meta(self, metadata: Mapping[str, Any]) -> None:
        """Write a fast-POST ``.meta`` (named ``<ts>±<delta>.meta`` with a ctype time)."""
        writer = self.create(None, META_EXT)
        with writer:
            writer.put(metadata)

    def quarantine(self, reason: str) -> str:
        """Move this object's hash dir to quarantine; returns where it went."""
        self.close()
        target = quarantine_hash_dir(self.datadir)
        logger.error("quarantined %s to %s: %s", self.datadir, target, reason)
        return target

    def _quarantine(self, reason: str) -> DiskFileQuarantined:
        try:
            self.quarantine(reason)
        except FileNotFoundError:
            pass
        return DiskFileQuarantined(reason)


def _ts_or_zero(value: str | None) -> Timestamp:
    if not value:
        return Timestamp(0)
    try:
        return Timestamp(value)
    except ValueError:
        return Timestamp(0)


class DiskFileWriter:
    """Writes one new file for a DiskFile; see the module docstring for ordering.

    Use as a context manager: leaving the block without :meth:`put` aborts
    (removes the temp file).
    """

    def __init__(self, df: DiskFile, size: int | None, ext: str = DATA_EXT) -> None:
        if ext not in (DATA_EXT, META_EXT, TS_EXT):
            raise ValueError(f"bad extension {ext!r}")
        self.df = df
        self.size = size
        self.ext = ext
        self.tmp_path: str | None = None
        self._fd: int | None = None
        self._md5 = hashlib.md5(usedforsecurity=False)
        self.bytes_written = 0
        self.put_succeeded = False
        self.target_path: str | None = None

    def open(self) -> DiskFileWriter:
        mgr = self.df.mgr
        tdir = os.path.join(self.df.device_path, tmp_dir(self.df.policy_index))
        path = os.path.join(tdir, f"{uuid.uuid4().hex}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            try:
                fd = os.open(path, flags, 0o644)
            except FileNotFoundError:
                os.makedirs(tdir, exist_ok=True)
                fd = os.open(path, flags, 0o644)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFileNoSpace("cannot create temp file") from exc
            raise
        self._fd, self.tmp_path = fd, path
        try:
            if self.ext != TS_EXT:
                # DELETEs bypass the reserve (they free space in the end).
                need = self.size or 0
                if not diskfile_io.has_space_for(fd, need, mgr.reserve, mgr.reserve_is_percent):
                    raise DiskFileNoSpace("fallocate_reserve reached")
                if need:
                    diskfile_io.fallocate(fd, need)
        except BaseException:
            self.abort()
            raise
        return self

    def __enter__(self) -> DiskFileWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.put_succeeded:
            self.abort()

    @property
    def etag(self) -> str:
        """MD5 hex of the bytes written so far."""
        return self._md5.hexdigest()

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        if self._fd is None:
            raise DiskFileError("writer is not open")
        self._md5.update(chunk)
        try:
            self.bytes_written += diskfile_io.write_all(self._fd, chunk)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                self.abort()
                raise DiskFileNoSpace("no space writing object data") from exc
            raise

    def put(self, metadata: Mapping[str, Any]) -> str:
        """Make the file durable and visible; returns its final path.

        ``metadata`` must carry ``X-Timestamp``; ``name`` is added. For a
        ``.data``, ``Content-Length``/``ETag`` default to what was written. A
        ``.meta`` with ``Content-Type-Timestamp`` gets the ctype file name.
        """
        if self._fd is None or self.tmp_path is None:
            raise DiskFileError("writer is not open")
        df = self.df
        meta: dict[str, Any] = dict(metadata)
        timestamp = Timestamp(meta["X-Timestamp"])
        ctype_ts = None
        if self.ext == META_EXT and meta.get("Content-Type-Timestamp"):
            ctype_ts = Timestamp(meta["Content-Type-Timestamp"])
        if self.ext == DATA_EXT:
            meta.setdefault("Content-Length", str(self.bytes_written))
            meta.setdefault("ETag", self.etag)
        if df.name is None:
            raise DiskFileError("cannot write a DiskFile known only by hash")
        meta["name"] = df.name
        target = os.path.join(df.datadir, make_on_disk_filename(timestamp, self.ext, ctype_ts))
        fsync = df.mgr.fsync
        try:
            write_metadata(self._fd, meta, data_end=self.bytes_written, fresh=True)
            if fsync:
                os.fsync(self._fd)
            created = self._rename_into_place(target)
        except DiskFileNoSpace:
            self.abort()
            raise
        except OSError as exc:
            self.abort()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFileNoSpace(str(exc)) from exc
            raise
        self.put_succeeded = True
        self.target_path = target
        self._close_fd()
        if fsync:
            diskfile_io.fsync_dir(df.datadir)
            for path in created:
                diskfile_io.fsync_dir(os.path.dirname(path))
        try:
            cleanup_ondisk_files(df.datadir, df.mgr.reclaim_age)
        except OSError:
            logger.exception("problem cleaning up %s", df.datadir)
        return target

    def _rename_into_place(self, target: str) -> list[str]:
        assert self.tmp_path is not None
        df = self.df
        created: list[str] = []
        try:
            for _attempt in range(5):
                created += diskfile_io.makedirs_count(df.datadir)
                invalidate_hash(df.suffix_path)
                try:
                    os.rename(self.tmp_path, target)
                    return created
                except FileNotFoundError:
                    # cleanup_ondisk_files (another writer, or a rehash) removed
                    # the emptied hash dir between our mkdir and rename: redo.
                    if not os.path.exists(self.tmp_path):
                        raise
            raise DiskFileError(f"could not rename into {df.datadir}")
        except Exception:
            # Leave nothing behind: drop the dirs this write created (they are
            # empty unless a concurrent writer used them, and then rmdir fails).
            for path in reversed(created):
                with contextlib.suppress(OSError):
                    os.rmdir(path)
            raise

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def abort(self) -> None:
        """Close and remove the temp file (idempotent)."""
        self._close_fd()
        if self.tmp_path is not None and not self.put_succeeded:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp_path)
            self.tmp_path = None


class DiskFileReader:
    """Reads an opened object's bytes; checks the ETag after a full sequential read.

    Owns its fd. The md5 is only tracked while reads are sequential from
    offset 0; :meth:`finish_full_read` then compares it with the ETag and
    quarantines on mismatch (after the bytes were served, as in Swift).
    """

    def __init__(self, df: DiskFile, fd: int, length: int, etag: str | None) -> None:
        self.df = df
        self.fd: int | None = fd
        self.length = length
        self.etag = etag
        self.pos = 0
        self._md5 = hashlib.md5(usedforsecurity=False) if etag else None
        self._sequential = True
        self.quarantined = False

    def seek(self, offset: int) -> None:
        if offset != self.pos:
            self._sequential = False
        self.pos = max(0, min(offset, self.length))

    def read(self, size: int = READ_CHUNK) -> bytes:
        """Up to ``size`` bytes at the current position; b"" at the end of the data."""
        if self.fd is None:
            raise DiskFileError("reader is closed")
        size = min(size, self.length - self.pos)
        if size <= 0:
            return b""
        try:
            chunk = os.pread(self.fd, size, self.pos)
        except OSError as exc:
            if exc.errno == errno.EIO:
                self._quarantine(f"EIO reading: {exc}")
            raise
        self.pos += len(chunk)
        if self._md5 is not None and self._sequential:
            self._md5.update(chunk)
        return chunk

    def iter_range(self, start: int, stop: int, chunk_size: int = READ_CHUNK) -> Iterator[bytes]:
        """Bytes ``[start, stop)`` in chunks of at most ``chunk_size``."""
        self.seek(start)
        stop = min(stop, self.length)
        while self.pos < stop:
            chunk = self.read(min(chunk_size, stop - self.pos))
            if not chunk:
                break
            yield chunk

    def finish_full_read(self) -> bool:
        """After serving: False (and quarantined) if a complete read's md5 != ETag.

        True when the check passed or did not apply (partial/non-sequential read).
        """
        if self._md5 is None or not self._sequential or self.pos != self.length:
            return True
        if self._md5.hexdigest() != (self.etag or "").lower():
            self._quarantine(
                f"ETag {self.etag} and file's md5 {self._md5.hexdigest()} do not match"
            )
            return False
        return True

    def _quarantine(self, reason: str) -> None:
        if self.quarantined:
            return
        self.quarantined = True
        try:
            self.df.quarantine(reason)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)

    def __enter__(self) -> DiskFileReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
