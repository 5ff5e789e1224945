"""``swiftlite-proxy-server <proxy-server.yaml>``: the aiohttp app and its runner."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from aiohttp import web

from swiftlite.common.config import ClusterConfig, ConfigError, load_cluster_config, load_config
from swiftlite.common.daemon import load_or_exit, parse_args, run_server
from swiftlite.common.logs import get_logger
from swiftlite.proxy.app import ProxyApp
from swiftlite.proxy.config import ProxyServerConfig
from swiftlite.proxy.pipeline import SHARED, PipelineContext, build_pipeline

PROXY_KEY = web.AppKey("swiftlite.proxy", ProxyApp)
CTX_KEY = web.AppKey("swiftlite.pipeline", PipelineContext)


async def _no_expect(request: web.Request) -> None:
    """Send no early ``100 Continue``: the proxy sends it when it first reads
    the body, so a request refused up front never has its body sent."""


def swift_framing_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """Headers Swift (swob + eventlet) sends that aiohttp leaves out: a 204
    with ``Content-Length: 0`` and swob's default ``Content-Type``, and
    ``Connection: keep-alive`` echoed to a client that asked for it. Runs in
    on_response_prepare, which aiohttp calls after its own header
    preparation (which drops Content-Length from a 204), just before writing."""
    if response.status == 204:
        response.headers.setdefault("Content-Length", "0")
        response.headers.setdefault("Content-Type", "text/html; charset=UTF-8")
    if response.keep_alive and request.headers.get("Connection", "").lower() == "keep-alive":
        response.headers.setdefault("Connection", "keep-alive")


def make_app(conf: ProxyServerConfig, cluster: ClusterConfig | None = None) -> web.Application:
    """Build the proxy: rings, backend client and the middleware pipeline.
    Raises ConfigError for a bad pipeline or filter setting."""
    if cluster is None:
        cluster = load_cluster_config(conf.swift_dir)
    logger = get_logger(conf.log_name, conf.log_level, conf.log_file)
    ctx = PipelineContext(conf=conf, cluster=cluster, logger=logger)
    proxy = ProxyApp(conf, cluster, logger, info=ctx.info)
    pipeline = build_pipeline(proxy.handle, ctx)

    async def entry(request: web.Request) -> web.StreamResponse:
        request[SHARED] = {}
        return await pipeline(request)

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        for hook in ctx.response_hooks:
            hook(request, response)
        swift_framing_headers(request, response)

    async def on_startup(_app: web.Application) -> None:
        await proxy.start()

    async def on_cleanup(_app: web.Application) -> None:
        await proxy.close()

    # auto_decompress off: a client's Content-Encoding (gzip, say) describes
    # the object as stored, not the transfer; aiohttp would otherwise inflate
    # the upload (or refuse a body that is not really gzip).
    app = web.Application(client_max_size=1 << 20, handler_args={"auto_decompress": False})
    # [\s\S], not ".": a path may hold a %0A, which "." would not match (aiohttp
    # would then answer its own 404 without the proxy seeing the request).
    app.router.add_route("*", r"/{tail:[\s\S]*}", entry, expect_handler=_no_expect)
    app.on_response_prepare.append(on_prepare)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app[PROXY_KEY] = proxy
    app[CTX_KEY] = ctx
    return app


def _make_app_or_exit(conf: ProxyServerConfig) -> web.Application:
    try:
        return make_app(conf)
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def main(argv: Sequence[str] | None = None) -> int:
    conf_path, _once, verbose = parse_args(argv, "swiftlite-proxy-server")
    conf = load_or_exit(conf_path, ProxyServerConfig)
    if verbose:
        conf.log_level = "DEBUG"
    # Check the pipeline and cluster before forking workers, so a bad
    # setting stops the server at once with a clear message.
    _make_app_or_exit(conf)
    return run_server(
        conf,
        _make_app_or_exit,
        reload_conf=lambda: load_config(conf_path, ProxyServerConfig),
    )


if __name__ == "__main__":
    raise SystemExit(main())
