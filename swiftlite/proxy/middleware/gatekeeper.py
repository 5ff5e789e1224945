"""gatekeeper: keep internal headers out of client requests and answers.

Clients must not forge what storage servers trust (``X-Backend-*``, system
metadata, container-update targets), nor see them. A client X-Timestamp is
moved to ``X-Backend-Inbound-X-Timestamp`` (``shunt_inbound_x_timestamp``,
on by default, as in Swift) so the proxy stamps writes itself.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from swiftlite.common.config import ConfigError, config_true_value
from swiftlite.proxy.pipeline import Handler, Middleware, PipelineContext

EXCLUDED = re.compile(
    r"^(x-(account|container|object)-sysmeta-"
    r"|x-object-transient-sysmeta-"
    r"|x-backend"
    r"|x-account-(host|device|partition)$"
    r"|x-container-(host|device|partition|root-db-state)$"
    r"|x-delete-at-(host|device|partition|container)$)",
    re.IGNORECASE,
)


def factory(conf: dict[str, Any], ctx: PipelineContext) -> Middleware:
    shunt = config_true_value(conf.pop("shunt_inbound_x_timestamp", True))
    if conf:
        raise ConfigError(f"unknown setting(s) {', '.join(sorted(conf))}")

    def strip_response(request: web.Request, response: web.StreamResponse) -> None:
        for key in [k for k in response.headers if EXCLUDED.match(k)]:
            response.headers.popall(key, None)

    ctx.add_response_hook(strip_response)

    async def gatekeeper(request: web.Request, handler: Handler) -> web.StreamResponse:
        bad = [k for k in request.headers if EXCLUDED.match(k)]
        moved = shunt and "X-Timestamp" in request.headers
        if bad or moved:
            headers: CIMultiDict[str] = CIMultiDict(request.headers)
            for key in bad:
                headers.popall(key, None)
            if moved:
                headers["X-Backend-Inbound-X-Timestamp"] = headers.pop("X-Timestamp")
            request = request.clone(headers=headers)
        return await handler(request)

    return gatekeeper
