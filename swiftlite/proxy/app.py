"""The proxy application proper (``proxy_server``, last in the pipeline):
path checks, transaction id and timestamp, controller dispatch, auth hook."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import unquote_to_bytes

from aiohttp import web

from swiftlite.common.config import ClusterConfig, Constraints
from swiftlite.common.constraints import valid_api_version
from swiftlite.common.http import split_path, swift_response
from swiftlite.common.logs import generate_trans_id, set_txn_id
from swiftlite.common.timestamp import Timestamp
from swiftlite.proxy.backend import Backend
from swiftlite.proxy.config import ProxyServerConfig
from swiftlite.proxy.controllers.account import AccountController
from swiftlite.proxy.controllers.base import Controller
from swiftlite.proxy.controllers.container import ContainerController
from swiftlite.proxy.controllers.info import InfoController
from swiftlite.proxy.controllers.obj import ObjectController
from swiftlite.proxy.error_limiter import ErrorLimiter
from swiftlite.proxy.node_iter import NodeTimings
from swiftlite.proxy.request_body import HTTPError
from swiftlite.ring.ring import Ring

ALLOWED_METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE")
# Container methods Swift marks @delay_denial.
DELAY_DENIAL_CONTAINER = frozenset({"GET", "HEAD"})


class ProxyApp:
    def __init__(
        self,
        conf: ProxyServerConfig,
        cluster: ClusterConfig,
        logger: logging.Logger,
        info: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.conf = conf
        self.cluster = cluster
        self.constraints: Constraints = cluster.constraints
        self.logger = logger
        self.info: dict[str, dict[str, Any]] = info if info is not None else {}
        self.account_ring = Ring(conf.swift_dir, ring_name="account")
        self.container_ring = Ring(conf.swift_dir, ring_name="container")
        self._object_rings: dict[int, Ring] = {}
        for policy in cluster.policies:
            self._object_rings[policy.index] = Ring(conf.swift_dir, ring_name=policy.ring_name())
        self._background: set[asyncio.Future[Any]] = set()
        self.limiter = ErrorLimiter(conf.error_suppression_interval, conf.error_suppression_limit)
        self.timings = NodeTimings(conf.timing_expiry)
        self.backend = Backend(
            self.limiter,
            logger,
            conf.conn_timeout,
            conf.node_timeout,
            conf.backend_pool_size,
            timings=self.timings,
        )

    def keep_running(self, task: asyncio.Future[Any]) -> None:
        """Hold a reference to a backend request nobody waits for any more."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def object_ring(self, policy_index: int) -> Ring | None:
        return self._object_rings.get(policy_index)

    def rings(self) -> list[Ring]:
        return [self.account_ring, self.container_ring, *self._object_rings.values()]

    async def start(self) -> None:
        """Reload rings off the event loop: without a watcher a lookup would
        stat the ring file on the loop every reload_time seconds."""
        self._watchers = [asyncio.create_task(ring.watch()) for ring in self.rings()]

    async def close(self) -> None:
        watchers = getattr(self, "_watchers", [])
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        if self._background:
            await asyncio.wait(self._background, timeout=self.conf.node_timeout)
        await self.backend.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._handle(request)
        except HTTPError as exc:
            content_type = "text/html; charset=UTF-8" if exc.body else None
            return swift_response(exc.status, exc.body, exc.headers, content_type=content_type)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.raw_path.split("?", 1)[0]
        try:
            path = unquote_to_bytes(raw_path).decode("utf-8")
        except UnicodeDecodeError:
            raise HTTPError(412, "Invalid UTF8 or contains NULL") from None
        if "\x00" in path:
            raise HTTPError(412, "Invalid UTF8 or contains NULL")
        if "swift.trans_id" not in request:
            request["swift.trans_id"] = generate_trans_id()
            set_txn_id(request["swift.trans_id"])
        request["swiftlite.timestamp"] = self._timestamp(request)
        try:
            version, account, container, obj = split_path(path, 1, 4, True)
        except ValueError:
            raise HTTPError(404) from None
        if version == "info" and account is None:
            return await InfoController(self).handle(request)
        if account is None:
            raise HTTPError(412, "Bad URL")
        assert version is not None
        if not valid_api_version(version, self.constraints):
            raise HTTPError(400)
        cls: type[Controller]
        if obj:
            cls = ObjectController
        elif container:
            cls = ContainerController
        else:
            cls = AccountController
        controller = cls(self, account, container, obj)
        allowed = list(ALLOWED_METHODS)
        if cls is AccountController and not self.conf.allow_account_management:
            allowed = ["GET", "HEAD", "POST"]
        if request.method == "OPTIONS" and not request.headers.get("Origin"):
            # Swift's Controller.OPTIONS without an Origin (not a CORS
            # preflight): 200 naming the methods, before any authorization.
            # A CORS preflight (with Origin) is not implemented: 405 below.
            return swift_response(
                200, b"", headers={"Allow": ", ".join(sorted([*allowed, "OPTIONS"]))}
            )
        if request.method not in allowed:
            raise HTTPError(405, headers={"Allow": ", ".join(sorted(allowed))})
        handler = getattr(controller, request.method)
        # As Swift: authorize once before the handler. An approval is final
        # (the hook is put away for the handler's duration); a denial stands
        # unless the handler gathers ACLs and asks again (container reads,
        # objects).
        authorize = request.get("swift.authorize")
        if authorize is not None:
            denial = await controller.authorize(request)
            if denial is None:
                request.pop("swift.authorize", None)
            elif cls is AccountController or (
                cls is ContainerController and request.method not in DELAY_DENIAL_CONTAINER
            ):
                # Swift delays a denial only for container reads and for
                # objects (they may yet be allowed by the container's ACLs);
                # container writes are refused at once, before any lookup.
                return denial
        try:
            return await handler(request)  # type: ignore[no-any-return]
        finally:
            if authorize is not None:
                request["swift.authorize"] = authorize

    def _timestamp(self, request: web.Request) -> Timestamp:
        """Keep a valid client X-Timestamp (internal callers send one), else now."""
        given = request.headers.get("X-Timestamp")
        if given is None:
            return Timestamp.now()
        try:
            return Timestamp(given)
        except ValueError:
            raise HTTPError(
                400, f"X-Timestamp should be a UNIX timestamp float value; was {given!r}"
            ) from None
