"""The blocking half of each object request, run in the device's own threads.

Each request does as few thread hops as it can, because a hop costs more
than the work for a 4 KiB object: one hop checks the device, reads what is on
disk and (for a PUT) opens the temp file; a small body is then written and
committed in a second hop; a small GET reads, verifies and returns the whole
body in its single hop.  The decisions (409, 412, ...) are pure functions
passed in from the server, so they run in the same hop as the I/O they guard.

Nothing here may run on the event loop.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from swiftlite.common.devices import DeviceManager
from swiftlite.common.timestamp import Timestamp
from swiftlite.object.diskfile import (
    DiskFile,
    DiskFileCollision,
    DiskFileDeleted,
    DiskFileExpired,
    DiskFileManager,
    DiskFileNotExist,
    DiskFileQuarantined,
    DiskFileReader,
    DiskFileWriter,
)

ZERO = Timestamp(0)


@dataclass
class OnDisk:
    """What a request found on disk before acting."""

    exists: bool = False  # a live (unexpired) object
    metadata: dict[str, str] = field(default_factory=dict)  # merged, if it exists
    timestamp: Timestamp = ZERO  # .data, expired .data, or tombstone time
    deleted: bool = False
    expired: bool = False
    expired_metadata: dict[str, str] = field(default_factory=dict)
    data_timestamp: Timestamp = ZERO
    ctype_timestamp: Timestamp = ZERO
    datafile_metadata: dict[str, str] = field(default_factory=dict)
    metafile_metadata: dict[str, str] | None = None


def probe(df: DiskFile, now: float) -> OnDisk:
    """Open ``df`` (leaving it open if it exists) and describe it."""
    try:
        df.open(now=now)
    except DiskFileCollision:
        # Swift answers 403 for a hash collision; the server maps it.
        raise
    except DiskFileExpired as exc:
        ts = exc.timestamp or ZERO
        return OnDisk(timestamp=ts, expired=True, expired_metadata=dict(exc.metadata))
    except DiskFileDeleted as exc:
        return OnDisk(timestamp=exc.timestamp, deleted=True)
    except (DiskFileNotExist, DiskFileQuarantined):
        return OnDisk()
    return OnDisk(
        exists=True,
        metadata=dict(df.get_metadata()),
        timestamp=df.data_timestamp,
        data_timestamp=df.data_timestamp,
        ctype_timestamp=df.content_type_timestamp,
        datafile_metadata=dict(df.get_datafile_metadata()),
        metafile_metadata=df.get_metafile_metadata(),
    )


@dataclass
class Placement:
    device: str
    partition: str
    account: str
    container: str
    obj: str
    policy_index: int


def _diskfile(dm: DeviceManager, mgr: DiskFileManager, where: Placement) -> DiskFile:
    dm.check(where.device)
    return mgr.get_diskfile(
        where.device, where.partition, where.account, where.container, where.obj,
        policy_index=where.policy_index,
    )  # fmt: skip


# -- PUT -----------------------------------------------------------------------


class Refused(Exception):
    """A pure decision said no: carries the status and headers to answer with."""

    def __init__(
        self, status: int, headers: Mapping[str, str] | None = None, body: str | None = None
    ) -> None:
        super().__init__(status)
        self.status = status
        self.headers = dict(headers or {})
        self.body = body


def put_begin(
    dm: DeviceManager,
    mgr: DiskFileManager,
    where: Placement,
    now: float,
    size: int | None,
    decide: Callable[[OnDisk], None],
) -> tuple[OnDisk, DiskFileWriter]:
    """Check the device, look at the current object, decide, open the temp file."""
    df = _diskfile(dm, mgr, where)
    state = probe(df, now)
    df.close()
    decide(state)  # raises Refused
    return state, df.create(size)


def put_write(writer: DiskFileWriter, chunks: list[bytes]) -> None:
    for chunk in chunks:
        writer.write(chunk)


def put_commit(
    writer: DiskFileWriter,
    chunks: list[bytes],
    metadata: Callable[[str, int], dict[str, str] | None],
) -> dict[str, str] | None:
    """Write the last chunks and commit with the metadata built from (etag, size).

    ``metadata`` returns None to abort (a 422 or 499); the temp file is removed.
    """
    put_write(writer, chunks)
    meta = metadata(writer.etag, writer.bytes_written)
    if meta is None:
        writer.abort()
        return None
    writer.put(meta)
    return meta


def put_whole(
    dm: DeviceManager,
    mgr: DiskFileManager,
    where: Placement,
    now: float,
    body: bytes,
    decide: Callable[[OnDisk], None],
    metadata: Callable[[str, int], dict[str, str] | None],
) -> dict[str, str] | None:
    """A small PUT whose body is already here: everything in one thread hop."""
    _state, writer = put_begin(dm, mgr, where, now, len(body), decide)
    try:
        return put_commit(writer, [body], metadata)
    except BaseException:
        writer.abort()
        raise


def abort(writer: DiskFileWriter) -> None:
    writer.abort()


# -- GET / HEAD ----------------------------------------------------------------


@dataclass
class ReadResult:
    state: OnDisk
    df: DiskFile | None = None
    body: bytes | None = None  # the whole body, for small objects
    fd: int | None = None  # for sendfile of large objects (caller closes)
    quarantined: bool = False


def read_begin(
    dm: DeviceManager,
    mgr: DiskFileManager,
    where: Placement,
    now: float,
    want_body: bool,
    small_limit: int,
    verify: bool,
) -> ReadResult:
    """Open the object; return its whole body when small, else an fd for sendfile."""
    df = _diskfile(dm, mgr, where)
    state = probe(df, now)
    if not state.exists:
        return ReadResult(state)
    try:
        if not want_body:
            return ReadResult(state, df)
        if df.content_length <= small_limit:
            reader: DiskFileReader = df.reader(verify_etag=verify)
            with reader:
                body = reader.read(df.content_length) if df.content_length else b""
                ok = reader.finish_full_read()
            return ReadResult(state, df, body=body, quarantined=not ok)
        return ReadResult(state, df, fd=df.open_fd())
    finally:
        df.close()


def close_fd(fd: int) -> None:
    os.close(fd)


def release_read(res: ReadResult) -> None:
    """Free what a :func:`read_begin` whose caller went away still holds."""
    if res.fd is not None:
        os.close(res.fd)
        res.fd = None


def release_put(begun: tuple[OnDisk, DiskFileWriter]) -> None:
    begun[1].abort()


def quarantine(df: DiskFile, reason: str) -> None:
    try:
        df.quarantine(reason)
    except FileNotFoundError:
        pass


def read_range(fd: int, start: int, stop: int) -> bytes:
    return os.pread(fd, stop - start, start)


# -- DELETE / POST ---------------------------------------------------------------


def delete(
    dm: DeviceManager,
    mgr: DiskFileManager,
    where: Placement,
    now: float,
    req_ts: Timestamp,
    decide: Callable[[OnDisk], Any],
) -> tuple[OnDisk, Any, bool]:
    """Probe, decide, and write the tombstone when the request is newer.

    Returns (state, decision, tombstone_written).
    """
    df = _diskfile(dm, mgr, where)
    state = probe(df, now)
    df.close()
    decision = decide(state)
    if state.timestamp < req_ts:
        df.write_tombstone(req_ts)
        return state, decision, True
    return state, decision, False


def post(
    dm: DeviceManager,
    mgr: DiskFileManager,
    where: Placement,
    now: float,
    build: Callable[[OnDisk], dict[str, str]],
) -> tuple[OnDisk, dict[str, str]]:
    """Probe, build the .meta contents (or raise Refused), write the .meta."""
    df = _diskfile(dm, mgr, where)
    state = probe(df, now)
    df.close()
    metadata = build(state)
    df.write_meta(metadata)
    return state, metadata


# -- REPLICATE ---------------------------------------------------------------------


def replicate(
    dm: DeviceManager,
    mgr: DiskFileManager,
    device: str,
    partition: str,
    policy_index: int,
    suffixes: list[str],
) -> dict[str, str]:
    dm.check(device)
    return mgr.get_hashes(device, partition, policy_index, recalculate=suffixes)
