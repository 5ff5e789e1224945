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
    -> fsync(hash dir) (+ parents of newly created dirs) -> invalidate again
    -> cleanup old files

The suffix is invalidated *before* the rename (as Swift does) so a crash just
after the rename cannot leave a stale suffix hash behind, and again after it,
because a concurrent ``get_hashes`` may have consumed the first invalidation
and hashed the suffix before the new file arrived (a race Swift has).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
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
    async_dir,
    data_dir,
    get_ondisk_files,
    tmp_dir,
)
from swiftlite.object.diskfile_reader import DiskFileReader
from swiftlite.object.diskfile_writer import DiskFileWriter
from swiftlite.object.hashes import get_hashes, quarantine_hash_dir, yield_hashes
from swiftlite.object.metadata import read_metadata_and_length

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
    "verify_file",
]

logger = logging.getLogger("swiftlite.object.diskfile")

# Keys that always come from the .data even when a .meta exists (Swift's
# RESERVED_DATAFILE_META | DATAFILE_SYSTEM_META, lower-cased).
_DATAFILE_ONLY = frozenset({"content-length", "deleted", "etag", "x-static-large-object"})
_SYSMETA_PREFIX = "x-object-sysmeta-"


def _partition(value: int | str) -> str:
    """A partition as its directory name; anything but digits could escape the tree."""
    text = str(value)
    if not text.isdigit() or not text.isascii():
        raise ValueError(f"invalid partition {value!r}")
    return text


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
        return os.path.join(self.device_path(device), data_dir(policy_index), _partition(partition))

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
            _partition(partition),
            name_hash,
            policy_index,
            name=f"/{account}/{container}/{obj}",
        )

    def get_diskfile_from_hash(
        self, device: str, partition: int | str, name_hash: str, policy_index: int = 0
    ) -> DiskFile:
        """A DiskFile known only by its hash (replication, audit); open() checks
        that the stored name hashes back to it instead of comparing names."""
        return DiskFile(
            self, self.device_path(device), _partition(partition), name_hash, policy_index
        )

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

    def yield_hashes(
        self,
        device: str,
        partition: int | str,
        policy_index: int = 0,
        suffixes: list[str] | None = None,
    ) -> Iterator[tuple[str, OnDiskFiles]]:
        """``(name_hash, files)`` per object; see :func:`hashes.yield_hashes`."""
        return yield_hashes(self.partition_path(device, partition, policy_index), suffixes)

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


_REQUIRED = {
    DATA_EXT: ("name", "X-Timestamp", "Content-Length", "Content-Type", "ETag"),
    TS_EXT: ("name", "X-Timestamp"),
    META_EXT: ("name", "X-Timestamp"),
}


def verify_file(path: str) -> dict[str, str]:
    """A cheap check of one object file before it is sent to a peer (mini-audit).

    The metadata must decode with a good checksum and carry the fields its
    kind needs, a ``.data`` must be exactly ``Content-Length`` bytes long, and
    the stored name must hash to the file's hash dir. Returns the metadata;
    raises DiskFileBadMetadata (the caller quarantines) or DiskFileNotExist.
    """
    meta, data_len = read_metadata_and_length(path)
    ext = os.path.splitext(path)[1]
    for key in _REQUIRED.get(ext, ("name", "X-Timestamp")):
        if key not in meta:
            raise DiskFileBadMetadata(f"{path}: missing {key}")
    if ext == DATA_EXT:
        try:
            length = int(meta["Content-Length"])
        except ValueError:
            raise DiskFileBadMetadata(f"{path}: bad Content-Length") from None
        if length != data_len:
            raise DiskFileBadMetadata(f"{path}: size {data_len} != Content-Length {length}")
    parts = meta["name"].lstrip("/").split("/", 2)
    name_hash = os.path.basename(os.path.dirname(path))
    if len(parts) != 3 or hash_path_digest(*parts).hex() != name_hash:
        raise DiskFileBadMetadata(f"{path}: name does not hash to its directory")
    return meta


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
            except _StateChanged:
                os.close(fd)
                continue
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
        except DiskFileNotExist:
            # A .meta superseded (and cleaned up) since we listed: relist.
            raise _StateChanged() from None

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
            pass  # already moved (a concurrent reader quarantined it)
        except OSError:
            # Still answer "not here" rather than a 500; the auditor retries.
            logger.exception("could not quarantine %s (%s)", self.datadir, reason)
        return DiskFileQuarantined(reason)


class _StateChanged(Exception):
    """The files changed between listing and reading them; list again."""


def _ts_or_zero(value: str | None) -> Timestamp:
    if not value:
        return Timestamp(0)
    try:
        return Timestamp(value)
    except ValueError:
        return Timestamp(0)
