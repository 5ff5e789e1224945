"""The middleware pipeline: ``pipeline`` in proxy-server.yaml, outermost first.

A middleware is named either by its entry point in the group
``swiftlite.middleware`` or by a dotted path ``package.module:factory``. Its
factory is called once at start-up as ``factory(conf, ctx)`` with its own
settings (``filters: {name: {...}}``) and the :class:`PipelineContext`, and
returns ``async def middleware(request, handler)``. A bad setting must raise
ConfigError then, not on the first request.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from aiohttp import web

from swiftlite.common.config import ClusterConfig, ConfigError
from swiftlite.proxy.config import ProxyServerConfig
from swiftlite.proxy.request_body import make_subrequest

ENTRY_POINT_GROUP = "swiftlite.middleware"
# A dict put in every client request's mapping before the pipeline runs.
# Request clones (gatekeeper, subrequests) copy the mapping shallowly, so
# this one dict is shared by all of them: flags set deep inside (headers
# sent, 100 Continue sent) are seen by the outer layers.
SHARED = "swiftlite.shared"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]
Factory = Callable[[dict[str, Any], "PipelineContext"], Middleware]
ResponseHook = Callable[[web.Request, web.StreamResponse], None]


@dataclass
class PipelineContext:
    """What a middleware factory gets besides its own settings."""

    conf: ProxyServerConfig
    cluster: ClusterConfig
    logger: logging.Logger
    info: dict[str, dict[str, Any]] = field(default_factory=dict)
    response_hooks: list[ResponseHook] = field(default_factory=list)
    _pipeline: Handler | None = None

    def register_info(self, name: str, **data: Any) -> None:
        """Show ``data`` under the top-level key ``name`` in GET /info."""
        self.info.setdefault(name, {}).update(data)

    def add_response_hook(self, hook: ResponseHook) -> None:
        """Call ``hook(request, response)`` just before any response to a
        client is sent (also streamed ones, whose headers cannot change later)."""
        self.response_hooks.append(hook)

    async def call_pipeline(self, request: web.Request) -> web.StreamResponse:
        """Send a (sub)request through the whole pipeline, from the top."""
        if self._pipeline is None:
            raise RuntimeError("the pipeline is not built yet")
        return await self._pipeline(request)

    make_subrequest = staticmethod(make_subrequest)


def load_factory(name: str) -> Factory:
    """Find a middleware factory by entry-point name or ``module:attr`` path."""
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"pipeline: cannot import {module_name!r}: {exc}") from None
        factory = getattr(module, attr, None)
        if factory is None or not callable(factory):
            raise ConfigError(f"pipeline: {module_name!r} has no factory {attr!r}")
        return factory  # type: ignore[no-any-return]
    found = entry_points(group=ENTRY_POINT_GROUP, name=name)
    for ep in found:
        return ep.load()  # type: ignore[no-any-return]
    raise ConfigError(f"pipeline: unknown middleware {name!r} (not an entry point in "
                      f"{ENTRY_POINT_GROUP!r} nor a module:factory path)")


def _chain(mw: Middleware, inner: Handler) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await mw(request, inner)

    return handler


def build_pipeline(app_handler: Handler, ctx: PipelineContext) -> Handler:
    """Wrap ``app_handler`` in the configured middleware; returns the outermost."""
    names = ctx.conf.pipeline[:-1]
    unused = set(ctx.conf.filters) - set(names)
    if unused:
        raise ConfigError(
            f"filters: settings for {', '.join(sorted(unused))} which the pipeline does not use"
        )
    middlewares: list[Middleware] = []
    for name in names:
        factory = load_factory(name)
        settings = dict(ctx.conf.filters.get(name) or {})
        try:
            middlewares.append(factory(settings, ctx))
        except ConfigError as exc:
            raise ConfigError(f"filters: {name}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"filters: {name}: bad setting: {exc}") from None
    handler = app_handler
    for mw in reversed(middlewares):
        handler = _chain(mw, handler)
    ctx._pipeline = handler
    return handler
