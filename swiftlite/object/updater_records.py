"""The object updater's side of async_pending records. Every function BLOCKS:
the updater runs them in the device's own threads.

Records are what :mod:`swiftlite.object.updates` writes (JSON, version 1) at
``<dev>/async_pending[-N]/<suffix>/<hash>-<timestamp>``; the updater adds
``successes`` (container node ids already updated, so a retry only goes to
the others), and for shard redirects ``container_path`` and
``redirect_history``, as Swift's updater does with its pickles.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import tempfile
from dataclasses import dataclass, field
from typing import Any

from swiftlite.object.updates import ASYNC_PENDING_VERSION, policy_dir, read_async_pending

ASYNC_BASE = "async_pending"


class RecordQuarantined(Exception):
    """The record could not be read or decoded; it was moved aside."""


@dataclass(frozen=True)
class PendingRecord:
    path: str
    policy_index: int
    obj_hash: str
    timestamp: str


@dataclass
class PrefixScan:
    """The newest record per object in one ``<suffix>`` dir, and what was dropped."""

    records: list[PendingRecord] = field(default_factory=list)
    outdated_unlinks: int = 0
    bad_names: list[str] = field(default_factory=list)


def async_dirs(device_path: str) -> list[tuple[str, int | None]]:
    """``(path, policy index)`` of every ``async_pending[-N]`` dir on a device.

    The index is None for a name that does not parse (the caller warns).
    """
    out: list[tuple[str, int | None]] = []
    try:
        names = os.listdir(device_path)
    except FileNotFoundError:
        return out
    for name in sorted(names):
        if not name.startswith(ASYNC_BASE):
            continue
        path = os.path.join(device_path, name)
        if not os.path.isdir(path):
            continue
        rest = name[len(ASYNC_BASE) :]
        index: int | None
        if not rest:
            index = 0
        elif rest.startswith("-") and rest[1:].isascii() and rest[1:].isdigit():
            index = int(rest[1:])
        else:
            index = None
        out.append((path, index))
    return out


def list_prefixes(async_path: str) -> list[str]:
    """Suffix dirs of an async dir, shuffled as Swift does so that many
    updaters (or a restarted one) do not all start on the same records."""
    try:
        names = [n for n in os.listdir(async_path) if not n.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return []
    random.shuffle(names)
    return names


def scan_prefix(prefix_path: str, policy_index: int) -> PrefixScan:
    """The newest record of each object; older ones are unlinked.

    A newer update for an object carries everything an older one would
    tell the container (the container keeps the newest row anyway), so
    only the newest is worth sending.
    """
    scan = PrefixScan()
    try:
        names = os.listdir(prefix_path)
    except (FileNotFoundError, NotADirectoryError):
        return scan
    last_hash = None
    for name in sorted(names, reverse=True):
        if name.startswith("."):
            continue
        path = os.path.join(prefix_path, name)
        obj_hash, sep, timestamp = name.partition("-")
        if not sep or not obj_hash or not timestamp or "-" in timestamp:
            scan.bad_names.append(path)
            continue
        if obj_hash == last_hash:
            try:
                os.unlink(path)
                scan.outdated_unlinks += 1
            except FileNotFoundError:
                pass
            except IsADirectoryError:
                scan.bad_names.append(path)
            continue
        if not os.path.isfile(path):
            continue
        last_hash = obj_hash
        scan.records.append(PendingRecord(path, policy_index, obj_hash, timestamp))
    return scan


def load_record(path: str, device_path: str) -> dict[str, Any] | None:
    """The record, or None if it is gone; RecordQuarantined if unreadable.

    A bad record is moved to ``<dev>/quarantined/objects/`` (Swift's place
    for them) so it is kept for a look but never retried.
    """
    try:
        record = read_async_pending(path)
        if not all(isinstance(record.get(k), str) for k in ("op", "account", "container", "obj")):
            raise ValueError("missing op/account/container/obj")
        if not isinstance(record.get("headers"), dict):
            raise ValueError("missing headers")
        return record
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        if isinstance(exc, OSError) and exc.errno == errno.ENOENT:
            return None
        target_dir = os.path.join(device_path, "quarantined", "objects")
        os.makedirs(target_dir, exist_ok=True)
        target = os.path.join(target_dir, os.path.basename(path))
        if os.path.lexists(target):
            target = f"{target}-{os.urandom(8).hex()}"
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return None
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(path))
        raise RecordQuarantined(f"{path}: {exc}") from None


def rewrite_record(path: str, record: dict[str, Any], device_path: str, policy_index: int) -> None:
    """Replace the record atomically (temp file in ``tmp[-N]``, fsync, rename)."""
    tmp_dir = os.path.join(device_path, policy_dir("tmp", policy_index))
    os.makedirs(tmp_dir, exist_ok=True)
    body = json.dumps({**record, "version": ASYNC_PENDING_VERSION}, sort_keys=True).encode()
    fd, tmp_path = tempfile.mkstemp(dir=tmp_dir, prefix=".async-")
    try:
        with os.fdopen(fd, "wb") as fp:
            fp.write(body)
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_path)
        raise
    dfd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def remove_record(path: str) -> None:
    """Unlink a record that every container replica has; drop an emptied dir."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(path))
