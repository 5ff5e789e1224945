"""Writing one new object file: temp file, data, metadata, fsync, rename.

See :mod:`swiftlite.object.diskfile` for the durability order. Blocking.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from swiftlite.common.hashing import hash_path_digest
from swiftlite.common.timestamp import Timestamp
from swiftlite.object import diskfile_io
from swiftlite.object.diskfile_exceptions import DiskFileError, DiskFileNoSpace
from swiftlite.object.diskfile_ondisk import (
    DATA_EXT,
    META_EXT,
    TS_EXT,
    cleanup_ondisk_files,
    make_on_disk_filename,
    tmp_dir,
)
from swiftlite.object.hashes import invalidate_hash
from swiftlite.object.metadata import write_metadata

if TYPE_CHECKING:
    from swiftlite.object.diskfile import DiskFile

logger = logging.getLogger("swiftlite.object.diskfile")


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
            if str(meta["Content-Length"]) != str(self.bytes_written):
                # Committing this would only get it quarantined on first read.
                self.abort()
                raise DiskFileError(
                    f"Content-Length {meta['Content-Length']} but {self.bytes_written} bytes written"
                )
        if df.name is None:
            # Known only by hash (a replication receiver): the sender's
            # metadata must name an object that hashes to this dir.
            name = meta.get("name")
            parts = name.lstrip("/").split("/", 2) if isinstance(name, str) else []
            if len(parts) != 3 or hash_path_digest(*parts).hex() != df.name_hash:
                self.abort()
                raise DiskFileError(f"name {name!r} does not belong in {df.datadir}")
            df.name = name
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
        # Invalidate again: a get_hashes that ran between the first
        # invalidation and the rename consumed it and hashed the suffix
        # without this file.
        invalidate_hash(df.suffix_path)
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
