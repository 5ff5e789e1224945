"""copy: Swift's server-side copy (``swift.common.middleware.copy``).

``COPY /v1/a/c/o`` with ``Destination: c2/o2`` (and ``Destination-Account``)
and ``PUT /v1/a/c2/o2`` with ``X-Copy-From: c/o`` (and
``X-Copy-From-Account``) both become a GET of the source and a PUT of the
destination, sent to the rest of the pipeline as subrequests (tagged
``swift.source`` ``SSC``, as Swift tags them), so auth and container ACLs
apply to both sides: the user needs read access to the source and write
access to the destination. The source body streams into the destination PUT
through a bounded buffer, never held whole. As in Swift:

* the source is read with ``X-Newest`` and with the client's other headers
  (a ``Range`` makes a partial copy; conditional headers apply to the source);
* its user metadata, system metadata, content type and other stored headers
  are carried over unless ``X-Fresh-Metadata: true`` (then only system
  metadata); the request's own headers win; ``X-Delete-At`` is copied, an
  ``X-Delete-After`` in the request replaces it;
* the source ETag goes with the PUT for a whole (200), non-large-object source,
  so the object servers verify the copy;
* ``?multipart-manifest=get`` copies a large-object manifest itself;
* a successful answer carries ``X-Copied-From``, ``X-Copied-From-Account``,
  ``X-Copied-From-Last-Modified`` and the metadata that was written.

Not supported: Swift's ``?heartbeat=on`` (the answer is sent when the copy
ends), OPTIONS (the proxy has none), symlinks and versioning parameters other
than dropping ``version-id`` from the PUT.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, unquote_to_bytes, urlencode

from aiohttp import web
from multidict import CIMultiDict

from swiftlite.common.config import ConfigError
from swiftlite.common.http import header_true, split_path, swift_response
from swiftlite.proxy.middleware.copy_source import (
    CaptureWriter,
    Pipe,
    bytes_body,
    pipe_body,
)
from swiftlite.proxy.pipeline import Handler, Middleware, PipelineContext

SWIFT_SOURCE = "SSC"
COPY_FROM_FORM = "X-Copy-From header must be of the form <container name>/<object name>"
DESTINATION_FORM = "Destination header must be of the form <container name>/<object name>"
# Source answer headers never carried to the destination: Swift's list
# (content type and ETag are decided separately) plus what describes the
# answer rather than the object.
NOT_COPIED = frozenset(
    (
        "x-static-large-object", "x-object-manifest", "etag", "content-type", "x-timestamp",
        "x-backend-timestamp", "content-length", "transfer-encoding", "connection", "date",
        "server", "accept-ranges", "last-modified", "content-range", "x-trans-id",
        "x-openstack-request-id", "keep-alive",
    )
)
SYSMETA = "x-object-sysmeta-"
USERMETA = "x-object-meta-"
TRANSIENT = "x-object-transient-sysmeta-"
CONTAINER_UPDATE_OVERRIDE = "x-object-sysmeta-container-update-override-"
# Bytes of source body the proxy may hold for one copy while the
# destination catches up.
DEFAULT_BUFFER = 1 << 20


class _Refused(Exception):
    """Answer the client with ``response`` (bad copy headers)."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__(response.status)
        self.response = response


HTML = "text/html; charset=UTF-8"


def _precondition_failed(body: str) -> _Refused:
    # swob's default type for a body given as text
    return _Refused(swift_response(412, body, content_type=HTML))


def _has_prefix(key: str, prefix: str) -> bool:
    low = key.lower()
    return low.startswith(prefix) and len(low) > len(prefix)


def _is_sysmeta(key: str) -> bool:
    return _has_prefix(key, SYSMETA)


def _shown_in_answer(key: str) -> bool:
    """Swift's _copy_headers: what of the written headers the answer repeats."""
    return (
        _has_prefix(key, USERMETA)
        or _has_prefix(key, SYSMETA)
        or _has_prefix(key, TRANSIENT)
        or key.lower() == "x-delete-at"
    )


def _check_account(name: str) -> str:
    if not name:
        raise _precondition_failed("Account name cannot be empty")
    if "/" in name:
        raise _precondition_failed("Account name cannot contain slashes")
    return name


def _check_path_header(value: str, error: str) -> tuple[str, str]:
    """``c/o`` or ``/c/o`` (URL-quoted) -> (container, object)."""
    path = unquote(value)
    if not path.startswith("/"):
        path = "/" + path
    try:
        container, obj = split_path(path, 2, 2, True)
    except ValueError:
        raise _precondition_failed(error) from None
    assert container is not None and obj is not None
    return container, obj


def _content_length(headers: CIMultiDict[str]) -> int:
    value = headers.get("Content-Length")
    if not value:
        return 0
    try:
        return int(value)
    except ValueError:
        return 1  # not zero: refused like any body


@dataclass
class _Source:
    status: int
    headers: CIMultiDict[str]
    body: AsyncIterator[bytes]
    length: int | None
    task: asyncio.Future[web.StreamResponse] | None = None
    pipe: Pipe | None = None

    async def close(self) -> None:
        """Stop the source GET if the destination did not read it all."""
        if self.pipe is not None:
            self.pipe.close()
        if self.task is not None:
            if not self.task.done():
                self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


def _relay(status: int, headers: CIMultiDict[str], body: bytes) -> web.Response:
    """A source error answer that was streamed, as a plain answer."""
    hdrs: CIMultiDict[str] = CIMultiDict(
        (k, v) for k, v in headers.items()
        if k.lower() not in ("content-length", "transfer-encoding", "date", "server", "connection")
    )
    return web.Response(status=status, headers=hdrs, body=body)


async def _open_source(
    ctx: PipelineContext,
    request: web.Request,
    handler: Handler,
    path_qs: str,
    headers: CIMultiDict[str],
    limit: int,
) -> _Source | web.StreamResponse:
    """GET the source through the rest of the pipeline; the answer itself
    when it is not a success."""
    sub = ctx.make_subrequest(request, "GET", path_qs, headers=headers, swift_source=SWIFT_SOURCE)
    capture = CaptureWriter(limit)
    # The GET controller streams into the request's payload writer: give it
    # ours. And no response hooks: they dress answers for the client (the
    # gatekeeper's would strip the system metadata a copy must carry).
    sub._payload_writer = capture
    sub._match_info = None
    task: asyncio.Future[web.StreamResponse] = asyncio.ensure_future(handler(sub))
    # An answer that ends without write_eof (the GET gave up mid-body)
    # must end the copy's body as broken, not leave it waiting.
    task.add_done_callback(lambda _t: capture.pipe.end(complete=False))
    ready: asyncio.Future[Any] = asyncio.ensure_future(capture.headers_ready.wait())
    waiters: set[asyncio.Future[Any]] = {task, ready}
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        capture.pipe.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise
    finally:
        ready.cancel()
    if capture.headers_ready.is_set():
        length_value = capture.headers.get("Content-Length")
        length = int(length_value) if length_value and length_value.isdigit() else None
        source = _Source(
            capture.status, capture.headers, pipe_body(capture.pipe, length), length,
            task=task, pipe=capture.pipe,
        )
        if capture.status >= 300:
            # Small (an error or 304): read it to answer with it.
            chunks = [chunk async for chunk in _quiet(source.body)]
            await source.close()
            return _relay(capture.status, capture.headers, b"".join(chunks))
        return source
    response = task.result()
    if response.status >= 300:
        return response
    body = response.body if isinstance(response, web.Response) else None
    data = bytes(body) if isinstance(body, bytes | bytearray) else b""
    return _Source(response.status, CIMultiDict(response.headers), bytes_body(data), len(data))


async def _quiet(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        async for chunk in body:
            yield chunk
    except ConnectionError:
        return


def _sink_headers(
    req_headers: CIMultiDict[str], source: _Source, manifest_get: bool
) -> CIMultiDict[str]:
    """The destination PUT's headers, by Swift's rules."""
    sink: CIMultiDict[str] = CIMultiDict()
    if header_true(req_headers, "X-Fresh-Metadata"):
        for key, value in source.headers.items():
            if _is_sysmeta(key):
                sink[key] = value
        sink.update(req_headers)
    else:
        for key, value in source.headers.items():
            low = key.lower()
            if low in NOT_COPIED or low.startswith("x-backend-"):
                continue
            sink[key] = value
        sink.update(req_headers)
    src = source.headers
    is_slo = "X-Static-Large-Object" in src
    is_dlo = "X-Object-Manifest" in src
    if manifest_get and is_dlo:
        sink["X-Object-Manifest"] = src["X-Object-Manifest"]
    if source.status == 200 and not is_slo and (not is_dlo or manifest_get):
        # The object servers check the copy against the source's ETag.
        etag = src.get("Etag")
        if etag:
            sink["Etag"] = etag.strip('"')
    else:
        for key in [k for k in sink if k.lower().startswith(CONTAINER_UPDATE_OVERRIDE)]:
            sink.popall(key, None)
    for key in ("X-Copy-From", "X-Copy-From-Account"):
        sink.popall(key, None)
    if not req_headers.get("Content-Type"):
        sink["Content-Type"] = src.get("Content-Type", "application/octet-stream")
    return sink


def _sink_query(params: dict[str, str], raw_query: str, source: _Source) -> str:
    changed = False
    if params.get("multipart-manifest") == "get":
        if "X-Static-Large-Object" in source.headers:
            params["multipart-manifest"] = "put"
        if "X-Object-Manifest" in source.headers:
            params.pop("multipart-manifest", None)
        changed = True
    if "version-id" in params:
        del params["version-id"]
        changed = True
    return urlencode(params) if changed else raw_query


def factory(conf: dict[str, Any], ctx: PipelineContext) -> Middleware:
    # Swift's setting for its heartbeat, which swiftlite does not send;
    # accepted so a Swift-style filter section loads.
    conf.pop("yield_frequency", None)
    try:
        limit = int(conf.pop("source_buffer_bytes", DEFAULT_BUFFER))
    except (TypeError, ValueError):
        raise ConfigError("source_buffer_bytes must be an integer") from None
    if limit < 1:
        raise ConfigError("source_buffer_bytes must be positive")
    if conf:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(conf))}")
    constraints = ctx.cluster.constraints

    async def handle_put(
        request: web.Request,
        handler: Handler,
        path: tuple[str, str, str, str],
        headers: CIMultiDict[str],
        raw_query: str,
    ) -> web.StreamResponse:
        ver, acct, _container, _obj = path
        if _content_length(headers):
            return swift_response(
                400, "Copy requests require a zero byte body", content_type="text/plain"
            )
        src_acct = acct
        if headers.get("X-Copy-From-Account"):
            src_acct = _check_account(unquote(headers["X-Copy-From-Account"]))
        src_container, src_obj = _check_path_header(headers["X-Copy-From"], COPY_FROM_FORM)
        source_path = f"/{ver}/{src_acct}/{src_container}/{src_obj}"
        params = dict(request.rel_url.query)
        manifest_get = params.get("multipart-manifest") == "get"
        source_query = raw_query
        if manifest_get:
            source_query = urlencode({**params, "format": "raw"})
        get_headers = CIMultiDict(headers)
        get_headers.popall("X-Backend-Storage-Policy-Index", None)
        get_headers["X-Newest"] = "true"
        opened = await _open_source(
            ctx, request, handler,
            quote(source_path) + (f"?{source_query}" if source_query else ""),
            get_headers, limit,
        )
        if not isinstance(opened, _Source):
            return opened
        source = opened
        try:
            if source.length is None or source.length > constraints.max_file_size:
                return swift_response(413)
            sink = _sink_headers(headers, source, manifest_get)
            query = _sink_query(params, raw_query, source)
            dest = quote("/" + "/".join(path)) + (f"?{query}" if query else "")
            put = ctx.make_subrequest(
                request, "PUT", dest, headers=sink, body=source.body, swift_source=SWIFT_SOURCE
            )
            response = await handler(put)
        finally:
            await source.close()
        if 200 <= response.status < 300 and not response.prepared:
            extra: dict[str, str] = {
                "X-Copied-From-Account": quote(src_acct),
                "X-Copied-From": quote(f"{src_container}/{src_obj}"),
            }
            if "Last-Modified" in source.headers:
                extra["X-Copied-From-Last-Modified"] = source.headers["Last-Modified"]
            if "X-Object-Version-Id" in source.headers:
                extra["X-Copied-From-Version-Id"] = source.headers["X-Object-Version-Id"]
            for key, value in sink.items():
                if _shown_in_answer(key):
                    extra[key] = value
            for key, value in extra.items():
                response.headers[key] = value
        return response

    async def handle_copy(
        request: web.Request,
        handler: Handler,
        path: tuple[str, str, str, str],
        raw_query: str,
    ) -> web.StreamResponse:
        ver, acct, container, obj = path
        headers: CIMultiDict[str] = CIMultiDict(request.headers)
        if not headers.get("Destination"):
            return swift_response(412, "Destination header required", content_type=HTML)
        dest_acct = acct
        if "Destination-Account" in headers:
            dest_acct = _check_account(unquote(headers["Destination-Account"]))
            headers["X-Copy-From-Account"] = quote(acct)
            headers.popall("Destination-Account")
        dest_container, dest_obj = _check_path_header(headers["Destination"], DESTINATION_FORM)
        headers["Content-Length"] = "0"
        headers["X-Copy-From"] = quote(f"/{container}/{obj}")
        headers.popall("Destination")
        return await handle_put(
            request, handler, (ver, dest_acct, dest_container, dest_obj), headers, raw_query
        )

    async def copy(request: web.Request, handler: Handler) -> web.StreamResponse:
        method = request.method
        if method not in ("PUT", "COPY") or (
            method == "PUT" and not request.headers.get("X-Copy-From")
        ):
            return await handler(request)
        raw_path, _, raw_query = request.raw_path.partition("?")
        try:
            parts = split_path(unquote_to_bytes(raw_path).decode("utf-8"), 4, 4, True)
        except (ValueError, UnicodeDecodeError):
            # Not an object path: the proxy answers it (404, 412...).
            return await handler(request)
        path = (str(parts[0]), str(parts[1]), str(parts[2]), str(parts[3]))
        try:
            if method == "COPY":
                return await handle_copy(request, handler, path, raw_query)
            return await handle_put(
                request, handler, path, CIMultiDict(request.headers), raw_query
            )
        except _Refused as refused:
            return refused.response

    return copy
