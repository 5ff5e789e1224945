"""GET, HEAD and REPLICATE for the object server.

A GET of a small object costs one thread hop: the device's thread opens the
object, reads and md5-checks the whole body and hands it back.  A large
object is opened in that hop and its bytes then go out with ``os.sendfile``
from the device's threads (:mod:`swiftlite.object.sendfile`).  Conditional
requests and ranges follow swob (:mod:`swiftlite.object.ranges`).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from swiftlite.common.http import swift_response
from swiftlite.common.timestamp import Timestamp
from swiftlite.object import disk_ops, ranges
from swiftlite.object.hops import run_hop
from swiftlite.object.request_checks import (
    get_policy,
    response_metadata,
    split_object_path,
    split_replicate_path,
)
from swiftlite.object.sendfile import (
    SendfileError,
    quiet_transport,
    sendfile_owned,
    socket_fd,
)

if TYPE_CHECKING:
    from swiftlite.object.server import ObjectServer

FALLBACK_CHUNK = 1 << 20


def request_time(headers: Any) -> float:
    """Swift opens with ``ensure_x_timestamp``: the request's X-Timestamp, else now."""
    value = headers.get("X-Timestamp")
    if value:
        try:
            return float(Timestamp(value))
        except ValueError:
            pass
    return time.time()


def conditional_etag(headers: Any, metadata: dict[str, str]) -> str | None:
    """The ETag conditions compare against (X-Backend-Etag-Is-At may redirect it)."""
    etag = metadata.get("ETag")
    names = headers.get("X-Backend-Etag-Is-At")
    if names:
        lowered = {k.lower(): v for k, v in metadata.items()}
        for name in names.split(","):
            value = lowered.get(name.strip().lower())
            if value is not None:
                return value
    return etag


def ignore_range(headers: Any, metadata: dict[str, str]) -> bool:
    names = headers.get("X-Backend-Ignore-Range-If-Metadata-Present")
    if not names:
        return False
    lowered = {k.lower() for k in metadata}
    return any(n.strip().lower() in lowered for n in names.split(","))


def object_headers(srv: ObjectServer, state: disk_ops.OnDisk) -> dict[str, str]:
    meta = state.metadata
    ts = Timestamp(meta["X-Timestamp"])
    headers = response_metadata(meta, srv.allowed_headers)
    headers["Content-Type"] = meta.get("Content-Type", "application/octet-stream")
    headers["ETag"] = f'"{meta["ETag"]}"'
    headers["Last-Modified"] = ranges.http_date(ts.ceil)
    headers["X-Timestamp"] = ts.normal
    headers["X-Backend-Timestamp"] = ts.internal
    headers["X-Backend-Data-Timestamp"] = state.data_timestamp.internal
    headers["X-Backend-Durable-Timestamp"] = state.data_timestamp.internal
    if "Content-Encoding" in meta:
        headers["Content-Encoding"] = meta["Content-Encoding"]
    return headers


async def get_or_head(
    srv: ObjectServer, request: web.Request, path: str, head: bool
) -> web.StreamResponse:
    device, partition, account, container, obj = split_object_path(path)
    policy = get_policy(srv.cluster, request.headers)
    where = disk_ops.Placement(device, partition, account, container, obj, policy.index)
    now = request_time(request.headers)
    verify = srv.conf.etag_validate_pct >= 100 or (
        random.random() * 100 < srv.conf.etag_validate_pct  # noqa: S311 - sampling, not crypto
    )
    async with srv.dm.slot(device, "read"):
        res = await run_hop(
            srv.dm,
            device,
            disk_ops.read_begin,
            srv.dm,
            srv.mgr,
            where,
            now,
            not head,
            srv.conf.sendfile_min_size,
            verify,
            priority="read",
            release=disk_ops.release_read,
        )
        try:
            return await _answer(srv, request, device, res, head, verify)
        finally:
            if res.fd is not None:
                await run_hop(srv.dm, device, disk_ops.release_read, res, priority="read")


async def _answer(
    srv: ObjectServer,
    request: web.Request,
    device: str,
    res: disk_ops.ReadResult,
    head: bool,
    verify: bool,
) -> web.StreamResponse:
    state = res.state
    if not state.exists:
        headers = {}
        if state.deleted or state.expired:
            headers["X-Backend-Timestamp"] = state.timestamp.internal
        status = ranges.conditional_status(request.headers, exists=False) or 404
        return swift_response(status, headers=headers)
    meta = state.metadata
    size = int(meta["Content-Length"])
    headers = object_headers(srv, state)
    cond = ranges.conditional_status(
        request.headers,
        exists=True,
        etag=conditional_etag(request.headers, meta),
        last_modified=Timestamp(meta["X-Timestamp"]).ceil,
    )
    if cond is not None:
        headers["Content-Length"] = "0"
        return web.Response(status=cond, headers=headers)
    if head:
        headers["Content-Length"] = str(size)
        return web.Response(status=200, headers=headers)
    range_header = None if ignore_range(request.headers, meta) else request.headers.get("Range")
    decision = ranges.decide_ranges(range_header, size)
    if decision.status == 416:
        headers["Content-Range"] = f"bytes */{size}"
        return web.Response(status=416, body=ranges.RANGE_NOT_SATISFIABLE_BODY, headers=headers)
    if res.body is not None:
        return _small_body(res.body, size, headers, decision)
    assert res.fd is not None and res.df is not None
    return await _large_body(srv, request, device, res, size, headers, decision, verify)


def _small_body(
    body: bytes, size: int, headers: dict[str, str], decision: ranges.RangeDecision
) -> web.Response:
    if decision.status == 200:
        return web.Response(status=200, body=body, headers=headers)
    if len(decision.ranges) == 1:
        start, stop = decision.ranges[0]
        headers["Content-Range"] = ranges.content_range_value(start, stop, size)
        return web.Response(status=206, body=body[start:stop], headers=headers)
    plan = ranges.plan_multipart(decision.ranges, size, headers["Content-Type"])
    pieces = []
    for part_head, start, stop in plan.parts:
        pieces += [part_head, body[start:stop], b"\r\n"]
    pieces.append(plan.trailer)
    headers["Content-Type"] = plan.content_type
    return web.Response(status=206, body=b"".join(pieces), headers=headers)


async def _large_body(
    srv: ObjectServer,
    request: web.Request,
    device: str,
    res: disk_ops.ReadResult,
    size: int,
    headers: dict[str, str],
    decision: ranges.RangeDecision,
    verify: bool,
) -> web.StreamResponse:
    assert res.fd is not None and res.df is not None
    segments: list[tuple[bytes, int, int, bytes]]
    if decision.status == 200:
        status, segments = 200, [(b"", 0, size, b"")]
        length = size
    elif len(decision.ranges) == 1:
        start, stop = decision.ranges[0]
        headers["Content-Range"] = ranges.content_range_value(start, stop, size)
        status, segments, length = 206, [(b"", start, stop, b"")], stop - start
    else:
        plan = ranges.plan_multipart(decision.ranges, size, headers["Content-Type"])
        headers["Content-Type"] = plan.content_type
        segments = [(h, s, e, b"\r\n") for h, s, e in plan.parts]
        segments[-1] = (*segments[-1][:3], b"\r\n" + plan.trailer)
        status, length = 206, plan.content_length
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_length = length
    await resp.prepare(request)
    hasher = hashlib.md5(usedforsecurity=False) if (verify and status == 200) else None
    use_sendfile = socket_fd(request) is not None
    dev = device
    try:
        for prefix, start, stop, suffix in segments:
            if prefix:
                await resp.write(prefix)
            if not use_sendfile:
                await _copy_through_loop(srv, dev, resp, res.fd, start, stop, hasher)
            else:
                async with quiet_transport(request, resp):
                    # Look the socket up after the last await and dup it at
                    # once: a connection closed meanwhile frees its fd number
                    # for another client, who must never get these bytes.
                    sock = socket_fd(request)
                    if sock is None:
                        raise SendfileError("connection closed")
                    sent = await run_hop(
                        srv.dm,
                        dev,
                        sendfile_owned,
                        os.dup(sock),
                        os.dup(res.fd),
                        start,
                        stop - start,
                        srv.conf.client_timeout,
                        hasher,
                        priority="read",
                    )
                if sent != stop - start:
                    raise SendfileError(f"short file: sent {sent} of {stop - start}")
            if suffix:
                await resp.write(suffix)
        await resp.write_eof()
    except (SendfileError, ConnectionError) as exc:
        srv.logger.info("GET %s: %s", request.path, exc)
        if request.transport is not None:
            request.transport.close()
        return resp
    if hasher is not None and hasher.hexdigest() != res.state.metadata["ETag"].lower():
        await srv.dm.run(
            dev,
            disk_ops.quarantine,
            res.df,
            f"ETag {res.state.metadata['ETag']} and file's md5 {hasher.hexdigest()} do not match",
            priority="read",
        )
    return resp


async def _copy_through_loop(
    srv: ObjectServer,
    device: str,
    resp: web.StreamResponse,
    fd: int,
    start: int,
    stop: int,
    hasher: Any,
) -> None:
    """Fallback when the socket fd is unavailable: read in the device's threads."""
    pos = start
    while pos < stop:
        end = min(stop, pos + FALLBACK_CHUNK)
        chunk = await run_hop(srv.dm, device, disk_ops.read_range, fd, pos, end)
        if not chunk:
            raise SendfileError("short file")
        if hasher is not None:
            hasher.update(chunk)
        await resp.write(chunk)
        pos += len(chunk)


async def replicate(srv: ObjectServer, request: web.Request, path: str) -> web.Response:
    device, partition, suffixes = split_replicate_path(path)
    policy = get_policy(srv.cluster, request.headers)
    async with srv.dm.slot(device, "replication"):
        hashes = await srv.dm.run(
            device,
            disk_ops.replicate,
            srv.dm,
            srv.mgr,
            device,
            partition,
            policy.index,
            suffixes,
            priority="replication",
        )
    return web.Response(text=json.dumps(hashes, sort_keys=True), content_type="application/json")
