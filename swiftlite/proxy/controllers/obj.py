"""``/v1/<account>/<container>/<object>``: object GET/HEAD/PUT/POST/DELETE.

PUT opens one backend PUT per replica with ``Expect: 100-continue`` (a node
that refuses or fails is replaced by the next handoff), streams the client
body to all of them at once and answers from a quorum. GET reads from one
node at a time and, if the node fails mid-body, resumes from another with a
Range request for the rest of the same ETag.
"""

from __future__ import annotations

import asyncio
import itertools
import mimetypes
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from swiftlite.common.constraints import check_metadata
from swiftlite.common.http import header_true, swift_response
from swiftlite.common.timestamp import Timestamp
from swiftlite.proxy.backend import BACKEND_ERRORS, BackendFailure, Putter
from swiftlite.proxy.best_response import (
    NodeResponse,
    best_response,
    num_container_updates,
    quorum_size,
)
from swiftlite.proxy.controllers.base import (
    Controller,
    csv_append,
    node_response_to_web,
    response_headers,
    response_timestamp,
)
from swiftlite.proxy.request_body import HTTPError, body_length, iter_body
from swiftlite.ring.ring import Ring

MAX_DELETE_AT = 9999999999  # Swift caps X-Delete-At here (November 2286)

Node = dict[str, Any]


def _good_object_status(status: int) -> bool:
    return 200 <= status < 400 or status == 416


class ObjectController(Controller):
    server_type = "Object"

    @property
    def path(self) -> str:
        return f"/{self.account}/{self.container}/{self.obj}"

    # -- helpers -------------------------------------------------------------

    def _client_headers(self, request: web.Request) -> CIMultiDict[str]:
        """Client headers the object servers should see (hop-by-hop ones are
        dropped later; X-Backend-* ones are added by backend_headers)."""
        return CIMultiDict(
            (k, v) for k, v in request.headers.items() if not k.lower().startswith("x-backend-")
        )

    def _policy_index(self, request: web.Request, info: NodeResponse) -> int:
        given = request.headers.get("X-Backend-Storage-Policy-Index")
        if given is None and 200 <= info.status < 300:
            given = info.headers.get("X-Backend-Storage-Policy-Index")
        if given is None or not str(given).isdigit():
            return self.app.cluster.default_policy.index
        return int(given)

    def _ring(self, index: int) -> Ring:
        ring = self.app.object_ring(index)
        if ring is None:
            raise HTTPError(503, f"No policy with index {index}")
        return ring

    def _container_update_headers(self, headers_list: list[dict[str, str]]) -> None:
        """Spread container-update targets over the object requests as Swift
        does: every container replica named at least once, enough updates
        that a container quorum hears of any object quorum."""
        cpart, cnodes = self.app.container_ring.get_nodes(self.account, self.container)
        n_out = len(headers_list)
        if not cnodes or not n_out:
            return
        needed = num_container_updates(
            len(cnodes), quorum_size(len(cnodes)), n_out, quorum_size(n_out)
        )
        cycle = itertools.cycle(cnodes)
        for i in range(needed):
            hdrs = headers_list[i % n_out]
            cnode = next(cycle)
            hdrs["X-Container-Partition"] = str(cpart)
            hdrs["X-Container-Host"] = csv_append(
                hdrs.get("X-Container-Host"), f"{cnode['ip']}:{cnode['port']}"
            )
            hdrs["X-Container-Device"] = csv_append(hdrs.get("X-Container-Device"), cnode["device"])

    def _check_delete_headers(self, request: web.Request, headers: CIMultiDict[str]) -> None:
        """X-Delete-After becomes X-Delete-At; both must lie in the future."""
        now = time.time()
        after = headers.get("X-Delete-After")
        if after is not None:
            try:
                seconds = int(after)
            except ValueError:
                raise HTTPError(400, "Non-integer X-Delete-After") from None
            if seconds < 0:
                raise HTTPError(400, "X-Delete-After in past")
            headers.pop("X-Delete-After", None)
            headers["X-Delete-At"] = str(int(request["swiftlite.timestamp"].raw / 100000 + seconds))
        at = headers.get("X-Delete-At")
        if at is not None:
            try:
                when = int(at)
            except ValueError:
                raise HTTPError(400, "Non-integer X-Delete-At") from None
            if when < now:
                raise HTTPError(400, "X-Delete-At in past")
            # Swift's normalize_delete_at_timestamp: ten digits, capped at
            # 9999999999 (the expirer's queue sorts them as strings).
            headers["X-Delete-At"] = f"{min(when, MAX_DELETE_AT):010d}"

    async def _container_or_404(self, request: web.Request) -> NodeResponse:
        info = await self.container_info(request)
        request["swift.acl"] = info.headers.get(
            "X-Container-Read" if request.method in ("GET", "HEAD") else "X-Container-Write"
        )
        denial = await self.authorize(request)
        if denial is not None:
            raise _Denied(denial)
        if info.status >= 500:
            raise HTTPError(503)
        if not 200 <= info.status < 300:
            raise HTTPError(404)
        return info

    # -- GET / HEAD ------------------------------------------------------------

    async def HEAD(self, request: web.Request) -> web.StreamResponse:
        return await self.GET(request)

    async def GET(self, request: web.Request) -> web.StreamResponse:
        info = await self.container_info(request)
        if info.status >= 500:
            # As Swift: without the container's policy we cannot know where
            # to look, and a guess could answer a wrong 404.
            raise HTTPError(503)
        request["swift.acl"] = info.headers.get("X-Container-Read")
        denial = await self.authorize(request)
        if denial is not None:
            return denial
        index = self._policy_index(request, info)
        ring = self._ring(index)
        part, nodes = ring.get_nodes(self.account, self.container, self.obj)
        headers = self.backend_headers(request, additional=self._client_headers(request))
        headers["X-Backend-Storage-Policy-Index"] = str(index)
        if request.method == "HEAD":
            resp = await self.get_from_nodes(
                request, ring, part, "HEAD", self.path, headers, good=_good_object_status
            )
            out = node_response_to_web(resp, request)
            # Swift marks every answer from a good source (2xx, 304, 416).
            if _good_object_status(resp.status):
                out.headers.setdefault("Accept-Ranges", "bytes")
            return out
        return await self._stream_get(request, ring, part, nodes, headers)

    async def _open_source(
        self, request: web.Request, ring: Ring, part: int, nodes: list[Node], headers: dict[str, str]
    ) -> tuple[aiohttp.ClientResponse | None, list[NodeResponse], Any]:
        """The first good backend GET (or, with X-Newest, the newest)."""
        backend = self.app.backend
        timeout = self.app.conf.recoverable_timeout
        it = self.node_iter(ring, part, list(nodes))
        collected: list[NodeResponse] = []
        if header_true(request.headers, "X-Newest"):

            async def one() -> aiohttp.ClientResponse | None:
                for node in it:
                    try:
                        return await backend.open(
                            node, part, "GET", self.path, headers, node_timeout=timeout
                        )
                    except BackendFailure:
                        continue
                return None

            opened = [r for r in await asyncio.gather(*(one() for _ in nodes)) if r is not None]
            good = [r for r in opened if _good_object_status(r.status)]
            best = max(good, key=_client_response_ts) if good else None
            for r in opened:
                if r is best:
                    continue
                if _good_object_status(r.status):
                    # An older copy: drop the connection rather than read
                    # a whole object nobody wants.
                    r.close()
                else:
                    collected.append(await _drain(r))
            return best, collected, it
        for node in it:
            try:
                resp = await backend.open(node, part, "GET", self.path, headers, node_timeout=timeout)
            except BackendFailure:
                continue
            if _good_object_status(resp.status):
                return resp, collected, it
            collected.append(await _drain(resp))
        return None, collected, it

    async def _stream_get(
        self, request: web.Request, ring: Ring, part: int, nodes: list[Node], headers: dict[str, str]
    ) -> web.StreamResponse:
        source, collected, it = await self._open_source(request, ring, part, nodes, headers)
        if source is None:
            while len(collected) < len(nodes):
                collected.append(NodeResponse(503))
            return node_response_to_web(best_response(collected, quorum_size(len(nodes))), request)
        out = web.StreamResponse(status=source.status, reason=source.reason)
        for key, value in response_headers(source.headers).items():
            out.headers.add(key, value)
        if "Content-Length" in source.headers:
            out.headers["Content-Length"] = source.headers["Content-Length"]
        if _good_object_status(source.status):
            out.headers.setdefault("Accept-Ranges", "bytes")
        # Resuming is only sound for a whole-object 200: we know the offset.
        resumable = source.status == 200 and "Range" not in request.headers
        etag = source.headers.get("Etag", "").strip('"')
        await out.prepare(request)
        sent = 0
        chunk_size = self.app.conf.object_chunk_size
        while True:
            try:
                chunk = await source.content.read(chunk_size)
            except BACKEND_ERRORS as exc:
                source.release()
                self.app.backend.record(_node_of(source), None, exc)
                nxt = None
                if resumable and etag:
                    nxt = await self._resume(it, part, headers, sent, etag)
                if nxt is None:
                    # Nothing else can finish the body: cut the client off
                    # rather than end a short body that looks complete.
                    if request.transport is not None:
                        request.transport.close()
                    return out
                source = nxt
                continue
            if not chunk:
                break
            sent += len(chunk)
            await out.write(chunk)
        source.release()
        await out.write_eof()
        return out

    async def _resume(
        self, it: Any, part: int, headers: dict[str, str], offset: int, etag: str
    ) -> aiohttp.ClientResponse | None:
        hdrs = dict(headers)
        hdrs["Range"] = f"bytes={offset}-"
        hdrs["If-Match"] = etag
        for key in ("If-None-Match", "If-Modified-Since", "If-Unmodified-Since"):
            hdrs.pop(key, None)
        for node in it:
            try:
                resp = await self.app.backend.open(
                    node, part, "GET", self.path, hdrs, node_timeout=self.app.conf.recoverable_timeout
                )
            except BackendFailure:
                continue
            if resp.status == 206 and resp.headers.get("Etag", "").strip('"') == etag:
                self.app.logger.info("resumed GET %s at byte %d from %s", self.path, offset, node)
                return resp
            resp.release()
        return None

    # -- PUT -------------------------------------------------------------------

    def _check_creation(self, request: web.Request, headers: CIMultiDict[str]) -> int | None:
        constraints = self.app.constraints
        try:
            length = body_length(request)
        except ValueError:
            raise HTTPError(400, "Invalid Content-Length") from None
        if length is not None and length < 0:
            raise HTTPError(400, "Invalid Content-Length")
        if length is not None and length > constraints.max_file_size:
            raise HTTPError(413, "Your request is too large.")
        chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
        if length is None and not chunked and "swiftlite.body" not in request:
            raise HTTPError(411, "Missing Content-Length header.")
        assert self.obj is not None
        name_len = len(self.obj.encode("utf-8"))
        if name_len > constraints.max_object_name_length:
            raise HTTPError(
                400,
                f"Object name length of {name_len} longer than {constraints.max_object_name_length}",
            )
        err = check_metadata(request.headers, "object", constraints)
        if err:
            raise HTTPError(400, err)
        if "Content-Type" not in headers or header_true(headers, "X-Detect-Content-Type"):
            headers.pop("X-Detect-Content-Type", None)
            guessed = mimetypes.guess_type(self.obj)[0]
            headers["Content-Type"] = guessed or "application/octet-stream"
        self._check_delete_headers(request, headers)
        return length

    async def PUT(self, request: web.Request) -> web.StreamResponse:
        inm = request.headers.get("If-None-Match")
        if inm is not None and "*" not in inm:
            # Checked first, as Swift does: an ETag here is never supported.
            return swift_response(400, "If-None-Match only supports *", content_type="text/plain")
        try:
            info = await self._container_or_404(request)
        except _Denied as denied:
            return denied.response
        index = self._policy_index(request, info)
        ring = self._ring(index)
        headers = self._client_headers(request)
        length = self._check_creation(request, headers)
        part, nodes = ring.get_nodes(self.account, self.container, self.obj)
        base = self.backend_headers(request, additional=headers)
        base["X-Backend-Storage-Policy-Index"] = str(index)
        if length is not None:
            base["Content-Length"] = str(length)
        headers_list = [dict(base) for _ in nodes]
        self._container_update_headers(headers_list)
        it = self.node_iter(ring, part, nodes)
        opened: list[Putter] = []
        try:
            return await self._put_to_nodes(request, part, headers_list, it, length, opened)
        finally:
            # Whatever ended this request (an error answer, the client going
            # away, a cancel), no backend PUT may linger half-fed.
            self._abort_all([p for p in opened if p.in_flight])

    async def _put_to_nodes(
        self,
        request: web.Request,
        part: int,
        headers_list: list[dict[str, str]],
        it: Any,
        length: int | None,
        opened: list[Putter],
    ) -> web.StreamResponse:
        quorum = quorum_size(len(headers_list))
        putters, finals = await self._connect_putters(part, headers_list, it, opened)
        if any(r.status == 412 for r in finals) and "If-None-Match" in request.headers:
            raise HTTPError(412)
        if any(r.status == 409 for r in finals):
            # Some node already has this name at an equal or newer time:
            # the write is superseded, which Swift reports as 202.
            raise HTTPError(202)
        if len(putters) < quorum:
            self.app.logger.error(
                "Object PUT returning 503, %d/%d required connections", len(putters), quorum
            )
            raise HTTPError(503)
        await self._send_body(request, putters, length, quorum)
        responses = await self._collect(putters)
        etags = {r.headers.get("Etag", "").strip('"') for r in responses if 200 <= r.status < 300}
        if len(etags) > 1:
            self.app.logger.error("Object servers returned %d mismatched etags", len(etags))
            raise HTTPError(500)
        resp = best_response(responses, quorum)
        out_headers: dict[str, str] = {}
        if 200 <= resp.status < 300:
            if etags:
                out_headers["Etag"] = etags.pop()
            ts = request["swiftlite.timestamp"]
            out_headers["Last-Modified"] = _http_date(ts.ceil)
            return swift_response(
                resp.status, b"", out_headers, content_type="text/html; charset=UTF-8"
            )
        return node_response_to_web(resp, request)

    async def _connect_putters(
        self, part: int, headers_list: list[dict[str, str]], it: Any, opened: list[Putter]
    ) -> tuple[list[Putter], list[NodeResponse]]:
        backend = self.app.backend
        finals: list[NodeResponse] = []

        async def slot(headers: dict[str, str]) -> Putter | None:
            for node in it:
                putter = Putter(backend, node, part, self.path, headers)
                opened.append(putter)
                try:
                    resp = await putter.connect()
                except BackendFailure:
                    continue
                if resp is None:
                    return putter
                if resp.status >= 500:
                    continue
                finals.append(resp)
                return None
            return None

        got = await asyncio.gather(*(slot(h) for h in headers_list))
        return [p for p in got if p is not None], finals

    @staticmethod
    def _abort_all(putters: list[Putter]) -> None:
        for putter in putters:
            putter.abort()

    async def _send_body(
        self, request: web.Request, putters: list[Putter], length: int | None, quorum: int
    ) -> None:
        max_size = self.app.constraints.max_file_size
        client_timeout = self.app.conf.client_timeout
        received = 0
        chunks = iter_body(request, self.app.conf.client_chunk_size)
        while True:
            try:
                async with asyncio.timeout(client_timeout):
                    chunk = await anext(chunks, None)
            except TimeoutError:
                self._abort_all(putters)
                raise HTTPError(408) from None
            except (aiohttp.ClientPayloadError, ConnectionError, aiohttp.http_exceptions.HttpProcessingError):
                self._abort_all(putters)
                raise HTTPError(499) from None
            if chunk is None:
                break
            received += len(chunk)
            if received > max_size or (length is not None and received > length):
                self._abort_all(putters)
                raise HTTPError(413, "Your request is too large.")
            await self._send_chunk(putters, chunk, quorum)
        if length is not None and received < length:
            self._abort_all(putters)
            raise HTTPError(499)

    async def _send_chunk(self, putters: list[Putter], chunk: bytes, quorum: int) -> None:
        live = [p for p in putters if not p.failed]
        results = await asyncio.gather(*(p.send(chunk) for p in live), return_exceptions=True)
        for putter, result in zip(live, results, strict=True):
            if isinstance(result, BaseException):
                putter.abort()
        if sum(1 for p in putters if not p.failed) < quorum:
            self._abort_all(putters)
            self.app.logger.error("Object PUT exceptions during send, fewer than quorum left")
            raise HTTPError(503)

    async def _collect(self, putters: list[Putter]) -> list[NodeResponse]:
        async def finish(p: Putter) -> NodeResponse:
            if p.failed:
                return NodeResponse(503)
            try:
                return await p.finish()
            except BackendFailure:
                return NodeResponse(503)

        return list(await asyncio.gather(*(finish(p) for p in putters)))

    # -- POST / DELETE ---------------------------------------------------------

    async def POST(self, request: web.Request) -> web.StreamResponse:
        try:
            info = await self._container_or_404(request)
        except _Denied as denied:
            return denied.response
        err = check_metadata(request.headers, "object", self.app.constraints)
        if err:
            raise HTTPError(400, err)
        headers = self._client_headers(request)
        self._check_delete_headers(request, headers)
        return await self._write_all(request, info, "POST", headers, overrides=None)

    async def DELETE(self, request: web.Request) -> web.StreamResponse:
        try:
            info = await self._container_or_404(request)
        except _Denied as denied:
            return denied.response
        headers = self._client_headers(request)
        return await self._write_all(request, info, "DELETE", headers, overrides={404: 204})

    async def _write_all(
        self,
        request: web.Request,
        info: NodeResponse,
        method: str,
        headers: Mapping[str, str],
        overrides: Mapping[int, int] | None,
    ) -> web.StreamResponse:
        index = self._policy_index(request, info)
        ring = self._ring(index)
        part, nodes = ring.get_nodes(self.account, self.container, self.obj)
        base = self.backend_headers(request, additional=headers)
        base["X-Backend-Storage-Policy-Index"] = str(index)
        headers_list = [dict(base) for _ in nodes]
        self._container_update_headers(headers_list)
        if method == "DELETE":
            resp = await self.make_requests(
                request, ring, part, method, self.path, headers_list, overrides=overrides,
                nodes=nodes,
            )
            return node_response_to_web(resp, request)
        return node_response_to_web(
            await self._post_to_nodes(ring, part, nodes, headers_list), request
        )

    async def _post_to_nodes(
        self, ring: Ring, part: int, nodes: list[Node], headers_list: list[dict[str, str]]
    ) -> NodeResponse:
        """Swift's object POST: when the primaries disagree (some 202, some
        404), ask as many handoffs as there were 404s, and never answer 404
        when some node proved the object exists."""
        it = self.node_iter(ring, part, nodes)
        responses = await self.send_to_nodes(part, "POST", self.path, headers_list, it)
        quorum = quorum_size(len(responses))
        found = sum(1 for r in responses if r.status == 202)
        missing = sum(1 for r in responses if r.status == 404)
        if found and found < quorum:
            quorum = quorum_size(len(nodes))
            extra = [headers_list[i % len(headers_list)] for i in range(missing)]
            responses.extend(await self.send_to_nodes(part, "POST", self.path, extra, it))
        resp = best_response(responses, quorum)
        if resp.status == 404 and found:
            self.app.logger.info("Unable to resolve mixed results on POST: %s",
                                 [r.status for r in responses])
            return NodeResponse(503)
        return resp


class _Denied(Exception):
    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__("denied")
        self.response = response


async def _drain(resp: aiohttp.ClientResponse) -> NodeResponse:
    try:
        body = await resp.read()
    except BACKEND_ERRORS:
        body = b""
    finally:
        resp.release()
    return NodeResponse(resp.status, resp.reason or "", body, resp.headers.copy())


def _client_response_ts(resp: aiohttp.ClientResponse) -> Timestamp:
    return response_timestamp(NodeResponse(resp.status, "", b"", resp.headers))


def _node_of(resp: aiohttp.ClientResponse) -> Node:
    url = resp.url
    device = url.path.split("/")[1] if url.path.count("/") > 1 else ""
    return {"ip": url.host or "", "port": url.port or 0, "device": device}


def _http_date(seconds: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(seconds))
