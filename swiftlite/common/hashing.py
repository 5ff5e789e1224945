"""Path hashing, partitions and suffixes, byte-identical to OpenStack Swift.

The cluster's secret prefix and suffix are process-wide, as in Swift: daemons
call :func:`set_hash_path_secrets` once at start-up from the cluster config.
Callers that need another pair (tests, tools reading a foreign cluster) pass
``prefix``/``suffix`` explicitly.
"""

from __future__ import annotations

import hashlib
import struct

_HASH_PATH_PREFIX = b""
_HASH_PATH_SUFFIX = b""


def set_hash_path_secrets(prefix: str | bytes, suffix: str | bytes) -> None:
    """Install the cluster's hash_path_prefix/suffix (Swift reads them as latin-1)."""
    global _HASH_PATH_PREFIX, _HASH_PATH_SUFFIX
    _HASH_PATH_PREFIX = prefix.encode("latin-1") if isinstance(prefix, str) else prefix
    _HASH_PATH_SUFFIX = suffix.encode("latin-1") if isinstance(suffix, str) else suffix


def get_hash_path_secrets() -> tuple[bytes, bytes]:
    return _HASH_PATH_PREFIX, _HASH_PATH_SUFFIX


def _utf8(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def hash_path_digest(
    account: str | bytes,
    container: str | bytes | None = None,
    obj: str | bytes | None = None,
    *,
    prefix: bytes | None = None,
    suffix: bytes | None = None,
) -> bytes:
    """Raw MD5 digest of ``prefix + "/" + "/".join(parts) + suffix``."""
    if obj and not container:
        raise ValueError("container is required if object is provided")
    parts = [_utf8(account)]
    if container:
        parts.append(_utf8(container))
    if obj:
        parts.append(_utf8(obj))
    pre = _HASH_PATH_PREFIX if prefix is None else prefix
    suf = _HASH_PATH_SUFFIX if suffix is None else suffix
    return hashlib.md5(pre + b"/" + b"/".join(parts) + suf, usedforsecurity=False).digest()


def hash_path(
    account: str | bytes,
    container: str | bytes | None = None,
    obj: str | bytes | None = None,
    raw_digest: bool = False,
    *,
    prefix: bytes | None = None,
    suffix: bytes | None = None,
) -> str | bytes:
    """Swift's ``hash_path``: the hex name hash (or the raw digest)."""
    digest = hash_path_digest(account, container, obj, prefix=prefix, suffix=suffix)
    return digest if raw_digest else digest.hex()


def name_hash(
    account: str | bytes, container: str | bytes | None = None, obj: str | bytes | None = None
) -> str:
    """The 32-hex name hash used in on-disk paths."""
    return hash_path_digest(account, container, obj).hex()


def partition_for_digest(digest: bytes, part_shift: int) -> int:
    """Top ``32 - part_shift`` bits of the first four digest bytes, big-endian."""
    return struct.unpack_from(">I", digest)[0] >> part_shift


def partition_for_hash(hexhash: str, part_power: int) -> int:
    """Partition from a 32-hex name hash (as the replicator and auditor see it)."""
    return int(hexhash[:8], 16) >> (32 - part_power)


def suffix_for_hash(hexhash: str) -> str:
    """Swift's suffix directory: the last three hex characters of the name hash."""
    return hexhash[-3:]


def storage_directory(datadir: str, partition: int | str, name_hash: str) -> str:
    """``<datadir>/<partition>/<suffix>/<hash>``, relative to a device root."""
    return f"{datadir}/{partition}/{name_hash[-3:]}/{name_hash}"
