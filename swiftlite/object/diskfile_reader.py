"""Reading an opened object's bytes, with the ETag check of a full read. Blocking."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from swiftlite.object.diskfile_exceptions import DiskFileError

if TYPE_CHECKING:
    from swiftlite.object.diskfile import DiskFile

READ_CHUNK = 1 << 20
logger = logging.getLogger("swiftlite.object.diskfile")


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
        except OSError:
            # The bytes were served already; failing to move them must not
            # turn into an error for this request. The auditor will retry.
            logger.exception("could not quarantine %s (%s)", self.df.datadir, reason)

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)

    def __enter__(self) -> DiskFileReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
