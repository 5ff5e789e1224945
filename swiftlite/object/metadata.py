"""Object metadata codec: versioned JSON in xattrs, overflowing into the file's tail.

Swift pickles the metadata dict into ``user.swift.metadata[N]`` xattrs;
swiftlite never pickles. Format version 1:

*Blob.* The metadata (a ``str -> str`` dict) is serialised as compact JSON::

    {"v": 1, "meta": {"name": "/a/c/o", "X-Timestamp": "...", ...}}

encoded as UTF-8 with ``surrogatepass`` (so any Python ``str`` header value,
even one carrying lone surrogates, round-trips). The MD5 hex of the blob is
stored in ``user.swiftlite.meta_checksum``; a mismatch on read raises
:class:`DiskFileBadMetadata` (the diskfile then quarantines the object).

*Inline (the usual case).* When the blob is at most :data:`INLINE_LIMIT`
bytes it is stored in ``user.swiftlite.meta`` and, past ``chunk_size``,
continued in ``user.swiftlite.meta1``, ``user.swiftlite.meta2`` ...; readers
concatenate chunks until one is missing, so any chunking is readable.

*Tail overflow.* ext4 gives a file roughly one 4 KiB block of xattrs in total,
and metadata at Swift's limits (90 items, 4096 bytes of user metadata, a
1024-byte name, a 256-byte content type, plus system fields) needs 6-8 KiB.
So above :data:`INLINE_LIMIT`, or whenever ``setxattr`` fails with
ENOSPC/E2BIG (the xattr block is full), the blob is appended to the file
itself, right after the object's bytes, and ``user.swiftlite.meta`` holds only
a pointer record::

    {"v": 1, "tail": [offset, length]}

where ``offset`` is where the object's data ends (the Content-Length of a
``.data``; 0 for ``.ts``/``.meta``) and ``offset + length`` is the file size.
The checksum still covers the blob. Why the tail rather than a sidecar file:
the object stays one self-contained file, so the single rename that publishes
it publishes its metadata atomically, the same fsync makes both durable,
replication and quarantine move one file, and cleanup needs no extra
bookkeeping. The one rule for readers: an object's bytes end at the data
length returned by :func:`read_metadata_and_length` (``Content-Length``),
never at ``st_size``.

ENOSPC/EDQUOT while writing either form raises :class:`DiskFileNoSpace`; the
caller (the diskfile writer) then removes its temp file, so nothing is left
behind.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

from swiftlite.object.diskfile_exceptions import (
    DiskFileBadMetadata,
    DiskFileError,
    DiskFileNoSpace,
    DiskFileNotExist,
)

FORMAT_VERSION = 1
METADATA_KEY = "user.swiftlite.meta"
CHECKSUM_KEY = "user.swiftlite.meta_checksum"
# Largest blob kept in xattrs. ext4 (4 KiB blocks) takes a single value up to
# ~4000 bytes but shares the block with the checksum and any security.*
# attributes; staying well below avoids a failing setxattr on the common path.
INLINE_LIMIT = 3072
# Linux caps one xattr value at 64 KiB (XATTR_SIZE_MAX).
DEFAULT_CHUNK_SIZE = 65536
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_XATTR_FULL = (errno.ENOSPC, errno.E2BIG, errno.ERANGE)


class XattrNotSupported(DiskFileError):
    """The filesystem refuses user xattrs (swiftlite needs them)."""


def _chunk_key(index: int) -> str:
    return METADATA_KEY if index == 0 else f"{METADATA_KEY}{index}"


def _stringify(metadata: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise TypeError(f"metadata key {key!r} is not a str")
        if isinstance(value, str):
            out[key] = value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            # Swift stores Content-Length and friends as strings; accept the
            # numbers callers naturally have and store them the same way.
            out[key] = str(value)
        else:
            raise TypeError(f"metadata value for {key!r} is not a str: {value!r}")
    return out


def encode_metadata(metadata: Mapping[str, Any]) -> bytes:
    """The version-1 blob for ``metadata`` (see module docstring)."""
    doc = {"v": FORMAT_VERSION, "meta": _stringify(metadata)}
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8", "surrogatepass")


def decode_metadata(blob: bytes) -> dict[str, str]:
    """Inverse of :func:`encode_metadata`; raises DiskFileBadMetadata."""
    try:
        doc = json.loads(blob.decode("utf-8", "surrogatepass"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DiskFileBadMetadata(f"metadata is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("v") != FORMAT_VERSION:
        raise DiskFileBadMetadata("unknown metadata format version")
    meta = doc.get("meta")
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        raise DiskFileBadMetadata("metadata is not a str -> str mapping")
    return meta


def _checksum(blob: bytes) -> bytes:
    return hashlib.md5(blob, usedforsecurity=False).hexdigest().encode("ascii")


def _raise_for(exc: OSError, what: str) -> None:
    if exc.errno in _NO_SPACE:
        raise DiskFileNoSpace(f"no space writing {what}") from exc
    if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
        raise XattrNotSupported(f"filesystem does not support xattrs: {exc}") from exc
    raise exc


def _remove_chunks_from(fd: int, index: int) -> None:
    """Drop continuation chunks left by an earlier, longer record."""
    while True:
        try:
            os.removexattr(fd, _chunk_key(index))
        except OSError as exc:
            if exc.errno == errno.ENODATA:
                return
            raise
        index += 1


def _existing_data_end(fd: int) -> int:
    """Data length of a file that may already carry a record (rewrite case)."""
    try:
        _, length = read_metadata_and_length(fd)
        return length
    except (DiskFileBadMetadata, DiskFileNotExist):
        return os.fstat(fd).st_size


def _write_inline(fd: int, blob: bytes, chunk_size: int, fresh: bool) -> None:
    index = 0
    for start in range(0, len(blob), chunk_size):
        os.setxattr(fd, _chunk_key(index), blob[start : start + chunk_size])
        index += 1
    if not fresh:
        _remove_chunks_from(fd, index)


def _write_tail(fd: int, blob: bytes, data_end: int) -> None:
    # Truncate first: an earlier tail (rewrite) must not linger past the new one.
    if os.fstat(fd).st_size != data_end:
        os.ftruncate(fd, data_end)
    written = 0
    while written < len(blob):
        written += os.pwrite(fd, blob[written:], data_end + written)
    pointer = json.dumps(
        {"v": FORMAT_VERSION, "tail": [data_end, len(blob)]}, separators=(",", ":")
    ).encode("ascii")
    os.setxattr(fd, METADATA_KEY, pointer)
    _remove_chunks_from(fd, 1)


def write_metadata(
    fd: int,
    metadata: Mapping[str, Any],
    data_end: int | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    inline_limit: int = INLINE_LIMIT,
    fresh: bool = False,
) -> None:
    """Store ``metadata`` on the open file ``fd`` (inline or in the tail).

    ``data_end`` is the length of the object's bytes (what the writer wrote);
    when None it is taken from an existing record, else from ``st_size``.
    ``fresh`` promises the file never carried a record (a new temp file), which
    saves the syscalls that clear an old one. Raises DiskFileNoSpace on
    ENOSPC/EDQUOT.
    """
    blob = encode_metadata(metadata)
    checksum = _checksum(blob)
    try:
        if data_end is None:
            data_end = _existing_data_end(fd)
        inline = len(blob) <= inline_limit
        if inline:
            try:
                _write_inline(fd, blob, chunk_size, fresh)
                os.setxattr(fd, CHECKSUM_KEY, checksum)
            except OSError as exc:
                if exc.errno not in _XATTR_FULL:
                    raise
                # The xattr space is full (ext4): free what the partial
                # record took, then keep the blob in the tail instead.
                inline = False
                _remove_chunks_from(fd, 0)
        if not inline:
            _write_tail(fd, blob, data_end)
            os.setxattr(fd, CHECKSUM_KEY, checksum)
        elif not fresh and os.fstat(fd).st_size > data_end:
            # A rewrite that shrinks back to inline drops the old tail.
            os.ftruncate(fd, data_end)
    except OSError as exc:
        _raise_for(exc, "metadata")


def _open_for_read(fd_or_path: int | str) -> tuple[int, bool]:
    if isinstance(fd_or_path, int):
        return fd_or_path, False
    try:
        return os.open(fd_or_path, os.O_RDONLY | os.O_CLOEXEC), True
    except FileNotFoundError:
        raise DiskFileNotExist(fd_or_path) from None


def _read_chunks(fd: int) -> bytes:
    parts: list[bytes] = []
    index = 0
    while True:
        try:
            parts.append(os.getxattr(fd, _chunk_key(index)))
        except OSError as exc:
            if exc.errno == errno.ENODATA:
                break
            if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
                raise XattrNotSupported(str(exc)) from exc
            raise
        index += 1
    return b"".join(parts)


def _read_tail(fd: int, record: bytes) -> tuple[bytes, int]:
    try:
        doc = json.loads(record)
        offset, length = doc["tail"]
        if not (isinstance(offset, int) and isinstance(length, int)) or offset < 0 or length < 0:
            raise ValueError("bad tail pointer")
    except (ValueError, KeyError, TypeError) as exc:
        raise DiskFileBadMetadata(f"bad tail pointer: {exc}") from None
    size = os.fstat(fd).st_size
    if offset + length != size:
        raise DiskFileBadMetadata(f"tail pointer [{offset}, {length}] disagrees with size {size}")
    blob = os.pread(fd, length, offset)
    if len(blob) != length:
        raise DiskFileBadMetadata("short read of tail metadata")
    return blob, offset


def read_metadata_and_length(fd_or_path: int | str) -> tuple[dict[str, str], int]:
    """The metadata and the length of the object's bytes (excluding any tail).

    Raises DiskFileBadMetadata when the record is missing, undecodable or
    fails its checksum; DiskFileNotExist when a path does not exist.
    """
    fd, owned = _open_for_read(fd_or_path)
    try:
        record = _read_chunks(fd)
        if not record:
            raise DiskFileBadMetadata("no metadata")
        if record.startswith(b'{"v":1,"tail":'):
            blob, data_len = _read_tail(fd, record)
        else:
            blob, data_len = record, -1
        try:
            stored = os.getxattr(fd, CHECKSUM_KEY)
        except OSError as exc:
            if exc.errno != errno.ENODATA:
                raise
            raise DiskFileBadMetadata("metadata checksum missing") from None
        if stored != _checksum(blob):
            raise DiskFileBadMetadata("metadata checksum mismatch")
        meta = decode_metadata(blob)
        if data_len < 0:
            data_len = os.fstat(fd).st_size
        return meta, data_len
    finally:
        if owned:
            os.close(fd)


def read_metadata(fd_or_path: int | str) -> dict[str, str]:
    """The metadata stored on a file (by fd or path); see read_metadata_and_length."""
    return read_metadata_and_length(fd_or_path)[0]
