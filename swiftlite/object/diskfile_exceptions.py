"""Errors raised by the object storage layer (metadata codec, diskfile, hashes).

The object server maps them to HTTP answers: NotExist/Deleted/Expired/
Collision/Quarantined -> 404 (Deleted carries the tombstone's timestamp for
``X-Backend-Timestamp``), NoSpace -> 507, DeviceUnavailable -> 507,
PartitionLockTimeout -> 503.
"""

from __future__ import annotations

from swiftlite.common.timestamp import Timestamp


class DiskFileError(Exception):
    """Base of every storage-layer error."""


class DiskFileNotOpen(DiskFileError):
    """A method that needs :meth:`DiskFile.open` was called before it."""


class DiskFileNoSpace(DiskFileError):
    """ENOSPC/EDQUOT, or the write would cross ``fallocate_reserve`` (507)."""


class DiskFileDeviceUnavailable(DiskFileError):
    """The device is missing or, with ``mount_check``, not a mount point (507)."""


class DiskFileBadMetadata(DiskFileError):
    """Stored metadata is missing, undecodable or fails its checksum."""


class DiskFileNotExist(DiskFileError):
    """No ``.data`` (and no tombstone) for this object."""


class DiskFileDeleted(DiskFileNotExist):
    """The newest state is a tombstone; ``timestamp`` is the ``.ts`` time."""

    def __init__(self, timestamp: Timestamp, metadata: dict[str, str] | None = None) -> None:
        super().__init__(f"deleted at {timestamp.internal}")
        self.timestamp = timestamp
        self.metadata: dict[str, str] = metadata or {}


class DiskFileExpired(DiskFileNotExist):
    """``X-Delete-At`` is at or before now; ``metadata`` is the merged metadata."""

    def __init__(self, metadata: dict[str, str]) -> None:
        super().__init__("expired")
        self.metadata = metadata
        self.timestamp = Timestamp(metadata["X-Timestamp"]) if "X-Timestamp" in metadata else None


class DiskFileQuarantined(DiskFileNotExist):
    """The object failed a check and its hash dir was moved to ``quarantined/``."""


class DiskFileCollision(DiskFileNotExist):
    """The stored ``name`` differs from the requested path (an md5 collision)."""


class PartitionLockTimeout(DiskFileError):
    """The partition's ``.lock`` could not be taken in time (503)."""
