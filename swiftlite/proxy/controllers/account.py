"""``/v1/<account>``: account HEAD/GET (listing of containers), POST, and PUT/
DELETE when ``allow_account_management`` is on."""

from __future__ import annotations

import json

from aiohttp import web
from multidict import CIMultiDict

from swiftlite.common.constraints import check_metadata
from swiftlite.common.http import swift_response
from swiftlite.common.listing import (
    ListingError,
    format_account_listing,
    parse_account_listing_params,
    response_content_type,
)
from swiftlite.common.timestamp import Timestamp
from swiftlite.proxy.best_response import NodeResponse
from swiftlite.proxy.controllers.base import Controller, node_response_to_web
from swiftlite.proxy.request_body import HTTPError

ACL_SYSMETA = "X-Account-Sysmeta-Core-Access-Control"
ACL_HEADER = "X-Account-Access-Control"


def add_acls_from_sys_metadata(headers: CIMultiDict[str]) -> None:
    """Show the account ACL kept in sysmeta (where auth put it) as the
    client-facing ``X-Account-Access-Control`` (Swift's v2 ACL JSON)."""
    raw = headers.pop(ACL_SYSMETA, None)
    if raw is None or raw == "":
        return
    try:
        acl = json.loads(raw)
    except ValueError:
        return
    if isinstance(acl, dict) and acl:
        headers[ACL_HEADER] = json.dumps(acl, separators=(",", ":"), sort_keys=True)


class AccountController(Controller):
    server_type = "Account"

    def _check_name(self) -> None:
        limit = self.app.constraints.max_account_name_length
        if len(self.account.encode("utf-8")) > limit:
            raise HTTPError(
                400, f"Account name length of {len(self.account.encode('utf-8'))} longer than {limit}"
            )

    @property
    def path(self) -> str:
        return f"/{self.account}"

    async def GET(self, request: web.Request) -> web.StreamResponse:
        return await self._get_or_head(request)

    async def HEAD(self, request: web.Request) -> web.StreamResponse:
        return await self._get_or_head(request)

    async def _get_or_head(self, request: web.Request) -> web.StreamResponse:
        self._check_name()
        ring = self.app.account_ring
        part = ring.get_part(self.account)
        query = request.rel_url.raw_query_string
        resp = await self.get_from_nodes(
            request, ring, part, request.method, self.path, self.backend_headers(request), query
        )
        if resp.status == 404 and self.app.conf.account_autocreate:
            return self._fake_empty_account(request)
        out = node_response_to_web(resp, request)
        if self.is_owner(request):
            add_acls_from_sys_metadata(out.headers)
        else:
            self.drop_owner_headers(request, out.headers)
        return out

    def _fake_empty_account(self, request: web.Request) -> web.StreamResponse:
        """What Swift answers for an account that would be created on first
        write: an empty listing with zero counts."""
        try:
            params = parse_account_listing_params(
                request.rel_url.raw_query_string,
                request.headers.get("Accept"),
                self.app.constraints.account_listing_limit,
            )
        except ListingError as exc:
            return swift_response(exc.status, exc.body, content_type=exc.content_type)
        now = Timestamp.now()
        headers = {
            "X-Account-Container-Count": "0",
            "X-Account-Object-Count": "0",
            "X-Account-Bytes-Used": "0",
            "X-Timestamp": now.normal,
            "X-Put-Timestamp": now.normal,
            "Content-Type": response_content_type(params.content_type),
        }
        body = b""
        if request.method == "GET":
            body = format_account_listing([], params.content_type, self.account)
        status = 200 if body else 204
        return swift_response(status, body, headers)

    def _check_meta(self, request: web.Request) -> None:
        err = check_metadata(request.headers, "account", self.app.constraints)
        if err:
            raise HTTPError(400, err)

    async def POST(self, request: web.Request) -> web.StreamResponse:
        self._check_name()
        self._check_meta(request)
        resp = await self._write(request, "POST")
        if resp.status == 404 and self.app.conf.account_autocreate:
            await self.autocreate_account(request, self.account)
            resp = await self._write(request, "POST")
        await self.clear_info(request, self.account)
        out = node_response_to_web(resp, request)
        add_acls_from_sys_metadata(out.headers)
        return out

    async def PUT(self, request: web.Request) -> web.StreamResponse:
        self._check_name()
        self._check_meta(request)
        resp = await self._write(request, "PUT")
        await self.clear_info(request, self.account)
        out = node_response_to_web(resp, request)
        add_acls_from_sys_metadata(out.headers)
        return out

    async def DELETE(self, request: web.Request) -> web.StreamResponse:
        # Swift refuses a query string here: it could be a mistyped listing.
        if request.rel_url.raw_query_string:
            raise HTTPError(400, "DELETE with query string")
        resp = await self._write(request, "DELETE")
        await self.clear_info(request, self.account)
        return node_response_to_web(resp, request)

    async def _write(self, request: web.Request, method: str) -> NodeResponse:
        ring = self.app.account_ring
        part, nodes = ring.get_nodes(self.account)
        headers = self.backend_headers(request, transfer=True)
        if method == "DELETE":
            headers = self.backend_headers(request)
        return await self.make_requests(
            request, ring, part, method, self.path, [headers] * len(nodes), nodes=nodes
        )
