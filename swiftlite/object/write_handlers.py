"""PUT, DELETE and POST for the object server, with Swift's answers.

A PUT checks the request, then (one hop in the device's threads) looks at
what is on disk, decides 409/412 and opens the temp file with its
preallocation (507 when the disk is too full) before it sends ``100
Continue``; the body is then streamed into the temp file in large batches,
md5 computed as it goes, and committed (fsync, rename, fsync dir) in the
last hop.  Container updates go out once the object is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from swiftlite.common.constraints import check_metadata
from swiftlite.common.http import swift_response
from swiftlite.common.timestamp import Timestamp
from swiftlite.object import disk_ops, ranges
from swiftlite.object.hops import run_hop
from swiftlite.object.request_checks import (
    HTTPError,
    check_object_creation,
    container_update_overrides,
    copy_headers,
    get_policy,
    is_sys_meta,
    required_timestamp,
    split_object_path,
)

if TYPE_CHECKING:
    from swiftlite.object.diskfile import DiskFileWriter
    from swiftlite.object.server import ObjectServer

# Bodies up to this size are written and committed in a single thread hop.
SMALL_BODY = 1 << 20
# Larger bodies are handed to the device's threads in batches of this size.
WRITE_BATCH = 4 << 20


class ClientDisconnect(Exception):
    """The body ended early or could not be read (Swift's 499)."""


def referer(request: web.Request) -> str:
    return f"{request.method} {request.url}"


async def _send_continue(request: web.Request) -> None:
    expect = request.headers.get("Expect", "")
    if expect.lower() == "100-continue" and request.version >= (1, 1):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")


async def _read_chunk(request: web.Request, timeout: float) -> bytes:
    try:
        async with asyncio.timeout(timeout):
            return await request.content.readany()
    except TimeoutError:
        raise HTTPError(408) from None
    except (aiohttp.ClientPayloadError, HttpProcessingError, ConnectionError) as exc:
        raise ClientDisconnect(str(exc)) from None


async def put(srv: ObjectServer, request: web.Request, path: str) -> web.StreamResponse:
    device, partition, account, container, obj = split_object_path(path)
    policy = get_policy(srv.cluster, request.headers)
    hdrs = request.headers
    req_ts = required_timestamp(hdrs)
    length, delete_at = check_object_creation(hdrs, obj, srv.constraints, req_ts)
    fsize = length
    if fsize is None and hdrs.get("X-Backend-Obj-Content-Length") is not None:
        try:
            fsize = int(hdrs["X-Backend-Obj-Content-Length"])
        except ValueError as exc:
            raise HTTPError(400, str(exc)) from None
    if_none_match = ranges.parse_match(hdrs.get("If-None-Match"))
    where = disk_ops.Placement(device, partition, account, container, obj, policy.index)

    def decide(state: disk_ops.OnDisk) -> None:
        if state.exists and if_none_match is not None:
            etag = state.metadata.get("ETag", "")
            if "*" in if_none_match or etag in if_none_match:
                raise disk_ops.Refused(412)
        if state.timestamp >= req_ts:
            raise disk_ops.Refused(409, {"X-Backend-Timestamp": state.timestamp.internal})

    client_etag = ranges.normalize_etag(hdrs.get("ETag", "")).lower()
    outcome: dict[str, int] = {}

    def build_metadata(etag: str, size: int) -> dict[str, str] | None:
        # Runs in the device's thread right before the commit.
        if length is not None and size != length:
            outcome["status"] = 499
            return None
        if client_etag and client_etag != etag:
            outcome["status"] = 422
            return None
        meta = {
            "X-Timestamp": req_ts.internal,
            "Content-Type": hdrs["Content-Type"],
            "Content-Length": str(size),
            "ETag": etag,
        }
        meta.update(copy_headers(hdrs, srv.allowed_headers, sysmeta=True))
        if "X-Delete-After" in hdrs and delete_at is not None:
            # X-Delete-After, like Swift, becomes an X-Delete-At.
            meta["X-Delete-At"] = str(delete_at)
        return meta

    expect = hdrs.get("Expect", "").lower() == "100-continue"
    async with srv.dm.slot(device, "write"):
        try:
            if length is not None and length <= SMALL_BODY and not expect:
                # The client sends the body without waiting for our checks,
                # so take it first and write it all in a single thread hop.
                body = await _read_small_body(srv, request, length)
                metadata = await run_hop(
                    srv.dm,
                    device,
                    disk_ops.put_whole,
                    srv.dm,
                    srv.mgr,
                    where,
                    float(req_ts),
                    body,
                    decide,
                    build_metadata,
                    priority="write",
                )
            else:
                metadata = await _put_streaming(
                    srv, request, device, where, float(req_ts), fsize, length, decide,
                    build_metadata,
                )  # fmt: skip
        except ClientDisconnect:
            return swift_response(499)
        if metadata is None:
            return swift_response(outcome.get("status", 499))

    update = {
        "x-size": metadata["Content-Length"],
        "x-content-type": metadata["Content-Type"],
        "x-timestamp": metadata["X-Timestamp"],
        "x-etag": metadata["ETag"],
    }
    if metadata.get("X-Delete-At"):
        update["x-delete-at"] = metadata["X-Delete-At"]
    container_update_overrides(update, [hdrs])
    await srv.updater.update(
        "PUT", account, container, obj, hdrs, update, device, policy.index, referer(request)
    )
    return swift_response(201, headers={"ETag": f'"{metadata["ETag"]}"'})


async def _put_streaming(
    srv: ObjectServer,
    request: web.Request,
    device: str,
    where: disk_ops.Placement,
    now: float,
    fsize: int | None,
    length: int | None,
    decide: Callable[[disk_ops.OnDisk], None],
    build_metadata: Callable[[str, int], dict[str, str] | None],
) -> dict[str, str] | None:
    """Check and open the temp file, then 100 Continue, then stream the body."""
    _state, writer = await run_hop(
        srv.dm,
        device,
        disk_ops.put_begin,
        srv.dm,
        srv.mgr,
        where,
        now,
        fsize,
        decide,
        priority="write",
        release=disk_ops.release_put,
    )
    committed = False
    try:
        await _send_continue(request)
        metadata = await _stream_body(srv, request, device, writer, length, build_metadata)
        committed = True
    finally:
        if not committed:
            # Also when cancelled: the temp file must go (run_hop waits for
            # any write still running on the writer before this).
            with contextlib.suppress(Exception):
                await run_hop(srv.dm, device, disk_ops.abort, writer, priority="write")
    return metadata


async def _read_small_body(srv: ObjectServer, request: web.Request, length: int) -> bytes:
    chunks = []
    total = 0
    while total < length:
        chunk = await _read_chunk(request, srv.conf.client_timeout)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total != length:
        raise ClientDisconnect("body shorter than Content-Length")
    return b"".join(chunks)


async def _stream_body(
    srv: ObjectServer,
    request: web.Request,
    device: str,
    writer: DiskFileWriter,
    length: int | None,
    build_metadata: Callable[[str, int], dict[str, str] | None],
) -> dict[str, str] | None:
    """Read the body into the writer; commit; return the metadata (None = refused)."""
    timeout = srv.conf.client_timeout
    deadline = time.monotonic() + srv.conf.max_upload_time
    batch: list[bytes] = []
    batched = 0
    total = 0
    while True:
        chunk = await _read_chunk(request, timeout)
        if not chunk:
            break
        if time.monotonic() > deadline:
            raise HTTPError(408)
        total += len(chunk)
        if length is not None and total > length:
            raise ClientDisconnect("body longer than Content-Length")
        if total > srv.constraints.max_file_size:
            raise HTTPError(413, "Your request is too large.")
        batch.append(chunk)
        batched += len(chunk)
        if batched >= WRITE_BATCH:
            await run_hop(srv.dm, device, disk_ops.put_write, writer, batch, priority="write")
            batch, batched = [], 0
    if length is not None and total != length:
        raise ClientDisconnect("body shorter than Content-Length")
    return await run_hop(
        srv.dm, device, disk_ops.put_commit, writer, batch, build_metadata, priority="write"
    )


async def delete(srv: ObjectServer, request: web.Request, path: str) -> web.StreamResponse:
    device, partition, account, container, obj = split_object_path(path)
    policy = get_policy(srv.cluster, request.headers)
    hdrs = request.headers
    req_ts = required_timestamp(hdrs)
    if_delete_at: Timestamp | None = None
    if "X-If-Delete-At" in hdrs:
        try:
            if_delete_at = Timestamp(hdrs["X-If-Delete-At"])
        except ValueError:
            raise HTTPError(400, "Bad X-If-Delete-At header value") from None
    where = disk_ops.Placement(device, partition, account, container, obj, policy.index)

    def decide(state: disk_ops.OnDisk) -> int:
        orig_ts = state.timestamp
        if state.exists:
            status = 204 if orig_ts < req_ts else 409
        else:
            status = 404
        if if_delete_at is not None:
            # Never plant a tombstone on an X-If-Delete-At we cannot verify.
            if not orig_ts:
                raise disk_ops.Refused(404)
            if orig_ts >= req_ts:
                raise disk_ops.Refused(409)
            orig_meta = state.metadata or state.expired_metadata
            orig_delete_at = Timestamp(orig_meta.get("X-Delete-At") or 0)
            if orig_delete_at != if_delete_at:
                raise disk_ops.Refused(
                    412, body="X-If-Delete-At and X-Delete-At do not match"
                )
            status = 204
        return status

    async with srv.dm.slot(device, "write"):
        state, status, written = await srv.dm.run(
            device,
            disk_ops.delete,
            srv.dm,
            srv.mgr,
            where,
            float(req_ts),
            req_ts,
            decide,
            priority="write",
        )
    if written:
        await srv.updater.update(
            "DELETE",
            account,
            container,
            obj,
            hdrs,
            {"x-timestamp": req_ts.internal},
            device,
            policy.index,
            referer(request),
        )
    orig_meta = state.metadata or state.expired_metadata
    return swift_response(
        status,
        headers={
            "X-Backend-Timestamp": max(state.timestamp, req_ts).internal,
            "X-Backend-Content-Type": orig_meta.get("Content-Type", ""),
        },
    )


async def post(srv: ObjectServer, request: web.Request, path: str) -> web.StreamResponse:
    device, partition, account, container, obj = split_object_path(path)
    policy = get_policy(srv.cluster, request.headers)
    hdrs = request.headers
    req_ts = required_timestamp(hdrs)
    try:
        new_delete_at = int(hdrs.get("X-Delete-At") or 0)
    except ValueError:
        raise HTTPError(400, "Non-integer X-Delete-At") from None
    if new_delete_at and new_delete_at < float(req_ts):
        raise HTTPError(400, "X-Delete-At in past")
    err = check_metadata(hdrs, "object", srv.constraints)
    if err:
        raise HTTPError(400, err)
    req_ctype = hdrs.get("Content-Type")
    try:
        req_ctype_ts = (
            Timestamp(hdrs.get("Content-Type-Timestamp", req_ts.internal))
            if req_ctype
            else Timestamp(0)
        )
    except ValueError as exc:
        raise HTTPError(400, str(exc)) from None
    where = disk_ops.Placement(device, partition, account, container, obj, policy.index)
    ctype_out: dict[str, str] = {}

    def build(state: disk_ops.OnDisk) -> dict[str, str]:
        if not state.exists:
            raise disk_ops.Refused(404)
        orig_ts = Timestamp(state.metadata["X-Timestamp"])
        orig_ctype_ts = state.ctype_timestamp
        if orig_ts >= req_ts and orig_ctype_ts >= req_ctype_ts:
            raise disk_ops.Refused(409, {"X-Backend-Timestamp": orig_ts.internal})
        if req_ts > orig_ts:
            metadata = {"X-Timestamp": req_ts.internal}
            metadata.update(copy_headers(hdrs, srv.allowed_headers, sysmeta=False))
        else:
            # Only the content-type is newer: keep the current .meta's items.
            metadata = dict(state.metafile_metadata or {})
        if req_ctype_ts > orig_ctype_ts:
            assert req_ctype is not None
            ctype = {"Content-Type": req_ctype, "Content-Type-Timestamp": req_ctype_ts.internal}
            metadata.update(ctype)
        else:
            ctype = {
                "Content-Type": state.metadata.get("Content-Type", ""),
                "Content-Type-Timestamp": orig_ctype_ts.internal,
            }
            if orig_ctype_ts != state.data_timestamp:
                metadata.update(ctype)
        ctype_out.update(ctype)
        return metadata

    async with srv.dm.slot(device, "write"):
        state, metadata = await srv.dm.run(
            device, disk_ops.post, srv.dm, srv.mgr, where, float(req_ts), build, priority="write"
        )
    orig = state.metadata
    content_type = ctype_out["Content-Type"]
    if ctype_out["Content-Type-Timestamp"] != state.data_timestamp.internal:
        # Keep SLO's swift_bytes parameter of the data file's content-type.
        data_ctype = state.datafile_metadata.get("Content-Type", "")
        if ";swift_bytes=" in data_ctype:
            content_type += ";swift_bytes=" + data_ctype.rsplit(";swift_bytes=", 1)[1]
    update = {
        "x-size": orig["Content-Length"],
        "x-content-type": content_type,
        "x-timestamp": state.data_timestamp.internal,
        "x-content-type-timestamp": ctype_out["Content-Type-Timestamp"],
        "x-meta-timestamp": metadata["X-Timestamp"],
        "x-etag": orig["ETag"],
    }
    delete_at = metadata.get("X-Delete-At") if "X-Delete-At" in metadata else None
    if delete_at is None and Timestamp(metadata["X-Timestamp"]) <= Timestamp(orig["X-Timestamp"]):
        delete_at = orig.get("X-Delete-At")
    if delete_at:
        update["x-delete-at"] = delete_at
    container_update_overrides(update, [orig])
    await srv.updater.update(
        "PUT", account, container, obj, hdrs, update, device, policy.index, referer(request)
    )
    headers = {"X-Backend-Content-Type": content_type}
    headers.update((k, v) for k, v in orig.items() if is_sys_meta(k))
    return swift_response(202, headers=headers)
