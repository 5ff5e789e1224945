"""``/v1/<account>/<container>``: container HEAD/GET (object listings), PUT,
POST, DELETE. PUT and DELETE carry the account-update headers so the
container servers report the change to the account."""

from __future__ import annotations

from aiohttp import web

from swiftlite.common.constraints import check_metadata
from swiftlite.proxy.best_response import NodeResponse
from swiftlite.proxy.controllers.base import Controller, csv_append, node_response_to_web
from swiftlite.proxy.request_body import HTTPError


class ContainerController(Controller):
    server_type = "Container"

    @property
    def path(self) -> str:
        return f"/{self.account}/{self.container}"

    def _check_name(self) -> None:
        assert self.container is not None
        limit = self.app.constraints.max_container_name_length
        size = len(self.container.encode("utf-8"))
        if size > limit:
            raise HTTPError(400, f"Container name length of {size} longer than {limit}")

    async def GET(self, request: web.Request) -> web.StreamResponse:
        return await self._get_or_head(request)

    async def HEAD(self, request: web.Request) -> web.StreamResponse:
        return await self._get_or_head(request)

    async def _get_or_head(self, request: web.Request) -> web.StreamResponse:
        self._check_name()
        ring = self.app.container_ring
        part = ring.get_part(self.account, self.container)
        resp = await self.get_from_nodes(
            request,
            ring,
            part,
            request.method,
            self.path,
            self.backend_headers(request),
            request.rel_url.raw_query_string,
        )
        request["swift.acl"] = resp.headers.get("X-Container-Read")
        denial = await self.authorize(request)
        if denial is not None:
            return denial
        out = node_response_to_web(resp, request)
        self.drop_owner_headers(request, out.headers)
        index = resp.headers.get("X-Backend-Storage-Policy-Index")
        if index is not None and 200 <= resp.status < 300:
            policy = self.app.cluster.get_policy(int(index)) if index.isdigit() else None
            if policy is not None:
                out.headers["X-Storage-Policy"] = policy.name
        return out

    def _check_meta(self, request: web.Request) -> None:
        err = check_metadata(request.headers, "container", self.app.constraints)
        if err:
            raise HTTPError(400, err)

    def _policy_headers(self, request: web.Request) -> dict[str, str]:
        name = request.headers.get("X-Storage-Policy")
        if not name:
            # Absent or empty (Swift: "if not policy_name"): the default policy.
            return {
                "X-Backend-Storage-Policy-Default": str(self.app.cluster.default_policy.index)
            }
        policy = self.app.cluster.get_policy(name.strip()) if name.strip() else None
        if policy is None:
            raise HTTPError(400, f'Invalid X-Storage-Policy "{name}"')
        if policy.deprecated:
            raise HTTPError(400, f'Storage Policy "{policy.name}" is deprecated')
        return {"X-Backend-Storage-Policy-Index": str(policy.index)}

    async def _account_exists(self, request: web.Request, create: bool) -> bool:
        info = await self.account_info(request)
        if 200 <= info.status < 300:
            return True
        if info.status == 404 and create and self.app.conf.account_autocreate:
            await self.autocreate_account(request, self.account)
            return True
        if info.status >= 500:
            raise HTTPError(503)
        return False

    async def PUT(self, request: web.Request) -> web.StreamResponse:
        self._check_name()
        self._check_meta(request)
        policy_headers = self._policy_headers(request)
        if not await self._account_exists(request, create=True):
            return await self._not_found(request)
        denial = await self.authorize(request)
        if denial is not None:
            return denial
        resp = await self._write(request, "PUT", policy_headers)
        await self.clear_info(request, self.account, self.container)
        return node_response_to_web(resp, request)

    async def POST(self, request: web.Request) -> web.StreamResponse:
        self._check_name()
        self._check_meta(request)
        if not await self._account_exists(request, create=False):
            return await self._not_found(request)
        denial = await self.authorize(request)
        if denial is not None:
            return denial
        resp = await self._write(request, "POST", {}, account_updates=False)
        await self.clear_info(request, self.account, self.container)
        return node_response_to_web(resp, request)

    async def DELETE(self, request: web.Request) -> web.StreamResponse:
        self._check_name()
        if not await self._account_exists(request, create=False):
            return await self._not_found(request)
        denial = await self.authorize(request)
        if denial is not None:
            return denial
        resp = await self._write(request, "DELETE", {})
        await self.clear_info(request, self.account, self.container)
        if resp.status == 202:
            # No container server had it (Swift's reading of an all-202 answer).
            raise HTTPError(404)
        return node_response_to_web(resp, request)

    def _clean_acls(self, request: web.Request, headers: dict[str, str]) -> None:
        """Let the auth middleware normalise (or refuse) container ACLs."""
        clean = request.get("swift.clean_acl")
        if clean is None:
            return
        for key in [k for k in headers if k.lower() in ("x-container-read", "x-container-write")]:
            try:
                headers[key] = clean(key.lower(), headers[key])
            except ValueError as exc:
                raise HTTPError(400, str(exc)) from None

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        denial = await self.authorize(request)
        if denial is not None:
            return denial
        raise HTTPError(404)

    async def _write(
        self,
        request: web.Request,
        method: str,
        extra: dict[str, str],
        account_updates: bool = True,
    ) -> NodeResponse:
        ring = self.app.container_ring
        part, nodes = ring.get_nodes(self.account, self.container)
        transfer = method != "DELETE"
        base = self.backend_headers(request, additional=extra, transfer=transfer)
        if transfer:
            self.drop_owner_headers(request, base)
            self._clean_acls(request, base)
        headers_list = [dict(base) for _ in nodes]
        if account_updates and headers_list:
            apart, anodes = self.app.account_ring.get_nodes(self.account)
            # Each account replica is named by one container node, round robin.
            for i, anode in enumerate(anodes):
                hdrs = headers_list[i % len(headers_list)]
                hdrs["X-Account-Partition"] = str(apart)
                hdrs["X-Account-Host"] = csv_append(
                    hdrs.get("X-Account-Host"), f"{anode['ip']}:{anode['port']}"
                )
                hdrs["X-Account-Device"] = csv_append(hdrs.get("X-Account-Device"), anode["device"])
        return await self.make_requests(
            request, ring, part, method, self.path, headers_list, nodes=nodes
        )
