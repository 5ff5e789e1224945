"""Middleware used by the pipeline tests, loaded by dotted path.

``hello_factory`` is the complete example from docs/middleware.md.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from swiftlite.common.config import ConfigError
from swiftlite.proxy.pipeline import Handler, Middleware, PipelineContext


def hello_factory(conf: dict[str, Any], ctx: PipelineContext) -> Middleware:
    greeting = conf.pop("greeting", "hello")
    if not isinstance(greeting, str) or not greeting:
        raise ConfigError("greeting must be a non-empty string")
    if conf:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(conf))}")
    ctx.register_info("hello_header", greeting=greeting)

    async def hello(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/hello":
            return web.Response(text=greeting)
        response = await handler(request)
        # A streamed answer (object GET) has gone out already; to change
        # its headers, register ctx.add_response_hook instead.
        if response.prepared:
            return response
        response.headers["X-Hello"] = greeting
        return response

    return hello


def boom_factory(conf: dict[str, Any], ctx: PipelineContext) -> Middleware:
    async def boom(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/boom":
            raise RuntimeError("kaboom")
        return await handler(request)

    return boom


def echo_factory(conf: dict[str, Any], ctx: PipelineContext) -> Middleware:
    """``/echo`` answers with the request headers it sees (after gatekeeper);
    ``/sub`` fetches ``/hello`` through the whole pipeline as a subrequest."""

    async def echo(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/echo":
            return web.json_response(dict(request.headers))
        if request.path == "/sub":
            sub = ctx.make_subrequest(request, "GET", "/hello", headers={}, swift_source="T")
            resp = await ctx.call_pipeline(sub)
            assert isinstance(resp, web.Response) and resp.body is not None
            return web.Response(body=b"sub:" + bytes(resp.body))  # type: ignore[arg-type]
        return await handler(request)

    return echo


def deny_factory(conf: dict[str, Any], ctx: PipelineContext) -> Middleware:
    """An auth layer that refuses everything (for the delay-denial tests)."""

    async def deny(request: web.Request, handler: Handler) -> web.StreamResponse:
        request["swift.authorize"] = lambda req: web.Response(status=403, text="denied")
        return await handler(request)

    return deny
