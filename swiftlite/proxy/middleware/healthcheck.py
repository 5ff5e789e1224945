"""healthcheck: ``GET /healthcheck`` answers ``200 OK`` without touching the
cluster (load balancers poll it); with ``disable_path`` set and that file
present it answers ``503 DISABLED BY FILE``, so an operator can drain a proxy.
"""

from __future__ import annotations

import os
from typing import Any

from aiohttp import web

from swiftlite.common.config import ConfigError
from swiftlite.proxy.pipeline import Handler, Middleware, PipelineContext


def factory(conf: dict[str, Any], ctx: PipelineContext) -> Middleware:
    disable_path = str(conf.pop("disable_path", "") or "")
    if conf:
        raise ConfigError(f"unknown setting(s) {', '.join(sorted(conf))}")

    async def healthcheck(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != "/healthcheck":
            return await handler(request)
        if disable_path and os.path.exists(disable_path):
            return web.Response(status=503, text="DISABLED BY FILE", content_type="text/plain")
        return web.Response(status=200, text="OK", content_type="text/plain")

    return healthcheck
