"""What every controller shares: backend headers, parallel writes with
quorum, one-node-at-a-time reads with failover, and account/container info.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web
from multidict import CIMultiDict

from swiftlite.common.http import header_true, swift_response
from swiftlite.common.timestamp import Timestamp
from swiftlite.proxy.backend import BackendFailure
from swiftlite.proxy.best_response import NodeResponse, best_response, quorum_size
from swiftlite.proxy.node_iter import NodeIter
from swiftlite.ring.ring import Ring

if TYPE_CHECKING:
    from swiftlite.proxy.app import ProxyApp

Node = dict[str, Any]

# Headers that belong to one hop and never cross the proxy.
HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "expect",
        "server",
        "date",
    }
)


def is_success(status: int) -> bool:
    return 200 <= status < 300


def csv_append(value: str | None, item: str) -> str:
    return f"{value},{item}" if value else item


def response_headers(headers: Mapping[str, str]) -> CIMultiDict[str]:
    """Backend answer headers worth passing to the client (not hop-by-hop)."""
    out: CIMultiDict[str] = CIMultiDict()
    for key, value in headers.items():
        lower = key.lower()
        if lower == "etag":
            # Object servers send the ETag quoted (RFC 7232); Swift's proxy
            # hands it to clients unquoted (update_headers), and clients and
            # Swift's functional tests compare it with listing hashes as is.
            out.add(key, value.replace('"', ""))
        elif lower not in HOP_HEADERS:
            # Title case, as Swift's HeaderKeyDict: storage servers may keep
            # metadata names lower-cased, clients see X-Object-Meta-Color.
            out.add(key.title(), value)
    return out


def node_response_to_web(resp: NodeResponse, request: web.Request) -> web.Response:
    """A client response from one backend answer (its status, headers, body)."""
    headers = response_headers(resp.headers)
    if resp.body or resp.status < 300 or "Content-Type" in headers:
        body: bytes | None = resp.body
    else:
        body = None
    if resp.status == 503 and not resp.body:
        body = None
    out = swift_response(resp.status, body, headers)
    if request.method == "HEAD" and "Content-Length" in resp.headers:
        # A HEAD answer keeps the size the backend reported.
        out.headers["Content-Length"] = resp.headers["Content-Length"]
    return out


class Controller:
    """Base of the account, container and object controllers."""

    server_type = "Base"

    def __init__(self, app: ProxyApp, account: str, container: str | None, obj: str | None):
        self.app = app
        self.account = account
        self.container = container
        self.obj = obj

    # -- request plumbing --------------------------------------------------

    def backend_headers(
        self,
        request: web.Request,
        additional: Mapping[str, str] | None = None,
        transfer: bool = False,
    ) -> dict[str, str]:
        """Swift's ``generate_request_headers``: timestamp, transaction id,
        every ``X-Backend-*`` header and, with ``transfer``, the client's
        metadata-like headers."""
        # Case-insensitive while building: a client's "x-delete-at" and our
        # "X-Delete-At" are one header and must not both reach the backend.
        headers: CIMultiDict[str] = CIMultiDict()
        if additional:
            for key, value in additional.items():
                if key.lower() not in HOP_HEADERS:
                    headers[key] = value
        if transfer:
            st = self.server_type.lower()
            # Swift's transfer_headers: an X-Remove-<type>-Meta-* header (and
            # the container's X-Remove-Container-Read & co) reaches the
            # backend as the plain header with an empty value, which the
            # servers store as "delete this item". Removals first, so a
            # header that is both set and removed ends up set, as in Swift.
            removable = (
                {f"x-remove-{st}-{n}" for n in ("read", "write", "sync-key", "sync-to")}
                | {"x-remove-versions-location"}
                if st == "container"
                else set()
            )
            for key in request.headers:
                lower = key.lower()
                if lower.startswith(f"x-remove-{st}-meta-") or lower in removable:
                    headers[lower.replace("-remove", "", 1)] = ""
            prefixes = (
                f"x-{st}-",
                f"x-remove-{st}-",
                "x-versions-",
                "x-history-",
                "x-remove-versions-",
                "x-remove-history-",
            )
            for key, value in request.headers.items():
                lower = key.lower()
                if lower.startswith(f"x-remove-{st}-meta-") or lower in removable:
                    continue
                if lower.startswith(prefixes):
                    headers[key] = value
        for key, value in request.headers.items():
            if key.lower().startswith("x-backend-"):
                headers[key] = value
        headers["X-Timestamp"] = request["swiftlite.timestamp"].internal
        headers["X-Trans-Id"] = request.get("swift.trans_id", "")
        headers["Referer"] = f"{request.method} {request.url}"
        headers["User-Agent"] = f"proxy-server {os.getpid()}"
        return dict(headers.items())

    async def authorize(self, request: web.Request) -> web.StreamResponse | None:
        """Call ``swift.authorize`` (set by an auth middleware) if there is
        one; its answer, if any, is the denial to return."""
        auth: Callable[[web.Request], Any] | None = request.get("swift.authorize")
        if auth is None:
            return None
        result = auth(request)
        if inspect.isawaitable(result):
            result = await result
        return result  # type: ignore[no-any-return]

    def is_owner(self, request: web.Request) -> bool:
        return bool(request.get("swift_owner"))

    def drop_owner_headers(self, request: web.Request, headers: Any) -> None:
        """Remove owner-only headers (request dicts or response headers)
        unless an auth middleware marked the request ``swift_owner``."""
        if self.is_owner(request):
            return
        owner = {h.lower() for h in self.app.conf.swift_owner_headers}
        for key in [k for k in headers if k.lower() in owner]:
            headers.pop(key, None)

    def node_iter(self, ring: Ring, part: int, nodes: list[Node] | None = None) -> NodeIter:
        conf = self.app.conf
        replicas = len(nodes) if nodes is not None else int(ring.replica_count)
        return NodeIter(
            ring,
            part,
            self.app.limiter,
            node_count=conf.node_count(replicas),
            primaries=nodes,
            sorting_method=conf.sorting_method,
            timings=self.app.timings,
        )

    # -- writes to several nodes -------------------------------------------

    async def make_requests(
        self,
        request: web.Request,
        ring: Ring,
        part: int,
        method: str,
        path: str,
        headers_list: Sequence[Mapping[str, str]],
        query: str = "",
        body: bytes | None = None,
        overrides: Mapping[int, int] | None = None,
        nodes: list[Node] | None = None,
    ) -> NodeResponse:
        """Send one request per header set, each to the next usable node
        (primaries, then handoffs), and pick Swift's best response.

        A slot moves on past connection errors and 5xx answers; once a
        quorum of answers agree in class, stragglers get
        ``post_quorum_timeout`` more and are then counted as 503."""
        if nodes is None:
            nodes = ring.get_part_nodes(part)
        it = self.node_iter(ring, part, nodes)
        responses = await self.send_to_nodes(part, method, path, headers_list, it, query, body)
        return best_response(responses, quorum_size(len(responses)), overrides)

    async def send_to_nodes(
        self,
        part: int,
        method: str,
        path: str,
        headers_list: Sequence[Mapping[str, str]],
        it: NodeIter,
        query: str = "",
        body: bytes | None = None,
    ) -> list[NodeResponse]:
        """One request per header set, concurrently, each slot pulling the
        next node from the shared iterator until a node answers below 500."""
        backend = self.app.backend

        async def one(headers: Mapping[str, str]) -> NodeResponse:
            for node in it:
                try:
                    resp = await backend.request(node, part, method, path, headers, query, body)
                except BackendFailure:
                    continue
                if resp.status < 500:
                    return resp
            return NodeResponse(503)

        tasks = [asyncio.ensure_future(one(h)) for h in headers_list]
        return await self.gather_with_quorum(tasks, quorum_size(len(tasks)))

    async def gather_with_quorum(
        self, tasks: Sequence[asyncio.Future[NodeResponse]], quorum: int
    ) -> list[NodeResponse]:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            finished = [t.result() for t in tasks if t.done() and not t.cancelled()]
            if pending and self.have_quorum([r.status for r in finished], quorum):
                _, pending = await asyncio.wait(pending, timeout=self.app.conf.post_quorum_timeout)
                # Stragglers count as 503 for the answer but are not cut
                # off: as in Swift, they finish (or time out) on their own,
                # so a slow replica still gets the write.
                for task in pending:
                    self.app.keep_running(task)
                break
        return [
            t.result() if t.done() and not t.cancelled() and t.exception() is None
            else NodeResponse(503)
            for t in tasks
        ]

    @staticmethod
    def have_quorum(statuses: Sequence[int], quorum: int) -> bool:
        for hundred in (100, 200, 300, 400):
            if sum(1 for s in statuses if hundred <= s < hundred + 100) >= quorum:
                return True
        return False

    # -- reads from one node at a time -------------------------------------

    async def get_from_nodes(
        self,
        request: web.Request,
        ring: Ring,
        part: int,
        method: str,
        path: str,
        headers: Mapping[str, str],
        query: str = "",
        good: Callable[[int], bool] | None = None,
    ) -> NodeResponse:
        """Ask nodes one at a time until one answers well (2xx/3xx); with
        ``X-Newest`` ask every primary and keep the newest answer. Without a
        good answer, best_response over what came back decides."""
        is_good = good or (lambda s: 200 <= s < 400)
        backend = self.app.backend
        nodes = ring.get_part_nodes(part)
        collected: list[NodeResponse] = []
        if header_true(request.headers, "X-Newest"):
            it = self.node_iter(ring, part, nodes)

            async def one() -> NodeResponse | None:
                for node in it:
                    try:
                        return await backend.request(node, part, method, path, headers, query)
                    except BackendFailure:
                        continue
                return None

            results = await asyncio.gather(*(one() for _ in nodes))
            found = [r for r in results if r is not None]
            winners = [r for r in found if is_good(r.status)]
            if winners:
                return max(winners, key=response_timestamp)
            collected = found
        else:
            for node in self.node_iter(ring, part, nodes):
                try:
                    resp = await backend.request(node, part, method, path, headers, query)
                except BackendFailure:
                    continue
                if is_good(resp.status):
                    return resp
                collected.append(resp)
        while len(collected) < len(nodes):
            collected.append(NodeResponse(503))
        return best_response(collected, quorum_size(len(nodes)))

    # -- account / container info ------------------------------------------

    async def account_info(self, request: web.Request) -> NodeResponse:
        """HEAD of the account (cached for this request)."""
        return await self._info(request, self.account, None)

    async def container_info(self, request: web.Request) -> NodeResponse:
        assert self.container is not None
        return await self._info(request, self.account, self.container)

    async def _info(self, request: web.Request, account: str, container: str | None) -> NodeResponse:
        cache: dict[str, NodeResponse] = request.setdefault("swift.infocache", {})
        key = f"/{account}" + (f"/{container}" if container else "")
        cached = cache.get(key)
        if cached is not None:
            return cached
        ring = self.app.container_ring if container else self.app.account_ring
        part = ring.get_part(account, container)
        headers = {
            "X-Timestamp": Timestamp.now().internal,
            "X-Trans-Id": request.get("swift.trans_id", ""),
            "User-Agent": f"proxy-server {os.getpid()}",
            "Referer": f"HEAD {request.url}",
        }
        newest = header_true(request.headers, "X-Newest")
        shared = request.get("swift.cache")
        shared_key = "swiftlite/info" + key
        if shared is not None and not newest:
            found = await shared.get(shared_key)
            if isinstance(found, dict) and isinstance(found.get("status"), int):
                resp = NodeResponse(found["status"], "", b"", CIMultiDict(found.get("headers", {})))
                cache[key] = resp
                return resp
        if newest:
            headers["X-Newest"] = "true"
        resp = await self.get_from_nodes(request, ring, part, "HEAD", key, headers)
        cache[key] = resp
        if shared is not None and (is_success(resp.status) or resp.status == 404):
            conf = self.app.conf
            ttl = conf.recheck_container_existence if container else conf.recheck_account_existence
            if resp.status == 404:
                # As Swift: a miss is rechecked ten times as often as a hit.
                ttl *= 0.1
            if ttl > 0:
                value = {"status": resp.status, "headers": dict(resp.headers.items())}
                await shared.set(shared_key, value, time=ttl)
        return resp

    async def autocreate_account(self, request: web.Request, account: str) -> None:
        """Create an account on first write (``account_autocreate``)."""
        ring = self.app.account_ring
        part, nodes = ring.get_nodes(account)
        headers = {
            "X-Timestamp": Timestamp.now().internal,
            "X-Trans-Id": request.get("swift.trans_id", ""),
            "User-Agent": f"proxy-server {os.getpid()}",
            "Referer": f"PUT {request.url}",
        }
        resp = await self.make_requests(
            request, ring, part, "PUT", f"/{account}", [headers] * len(nodes), nodes=nodes
        )
        await self.clear_info(request, account)
        if not (is_success(resp.status) or resp.status == 409):
            self.app.logger.warning("could not autocreate account %r (%d)", account, resp.status)

    async def clear_info(
        self, request: web.Request, account: str, container: str | None = None
    ) -> None:
        """Forget cached account/container info after changing it."""
        key = f"/{account}" + (f"/{container}" if container else "")
        cache = request.get("swift.infocache")
        if cache:
            cache.pop(key, None)
        shared = request.get("swift.cache")
        if shared is not None:
            await shared.delete("swiftlite/info" + key)

    def container_policy_index(self, info: NodeResponse) -> str:
        return str(info.headers.get("X-Backend-Storage-Policy-Index", "0"))


def response_timestamp(resp: NodeResponse) -> Timestamp:
    for name in ("X-Backend-Timestamp", "X-Timestamp", "X-Put-Timestamp"):
        value = resp.headers.get(name)
        if value:
            try:
                return Timestamp(value)
            except ValueError:
                continue
    return Timestamp(0)
