"""Shared fixtures for the middleware tests: a pipeline built by the real
loader (entry-point names) around a tiny inner handler, and a real
memcached on a free port."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from swiftlite.common.config import ClusterConfig, config_from_dict
from swiftlite.proxy.config import ProxyServerConfig
from swiftlite.proxy.pipeline import SHARED, PipelineContext, build_pipeline

Inner = Callable[[web.Request], Awaitable[web.StreamResponse]]
MEMCACHED = "/usr/bin/memcached"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_ctx(pipeline: list[str], filters: dict[str, dict[str, Any]] | None = None,
             **settings: Any) -> PipelineContext:
    conf = config_from_dict(
        ProxyServerConfig,
        {"bind_port": 0, "pipeline": [*pipeline, "proxy_server"], "filters": filters or {},
         **settings},
    )
    cluster = ClusterConfig(hash_path_prefix="p", hash_path_suffix="s")
    return PipelineContext(conf=conf, cluster=cluster, logger=logging.getLogger("mw-test"))


def make_app(ctx: PipelineContext, inner: Inner) -> web.Application:
    """What swiftlite.proxy.server.make_app does, with ``inner`` as the proxy."""
    pipeline = build_pipeline(inner, ctx)

    async def entry(request: web.Request) -> web.StreamResponse:
        request[SHARED] = {}
        return await pipeline(request)

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        for hook in ctx.response_hooks:
            hook(request, response)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", entry)
    app.on_response_prepare.append(on_prepare)
    return app


Build = Callable[..., Awaitable[tuple[TestClient, PipelineContext]]]


@pytest.fixture
def build(aiohttp_client: Any) -> Build:
    async def _build(pipeline: list[str], inner: Inner,
                     filters: dict[str, dict[str, Any]] | None = None,
                     **settings: Any) -> tuple[TestClient, PipelineContext]:
        ctx = make_ctx(pipeline, filters, **settings)
        client = await aiohttp_client(make_app(ctx, inner))
        return client, ctx

    return _build


@pytest.fixture(scope="module")
def memcached() -> Iterator[str]:
    """``127.0.0.1:<port>`` of a memcached started for these tests."""
    binary = shutil.which("memcached") or (MEMCACHED if os.path.exists(MEMCACHED) else None)
    if binary is None:
        pytest.skip("memcached is not installed (apt-get install memcached)")
    port = free_port()
    cmd = [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "16"]
    if os.geteuid() == 0:
        cmd += ["-u", "root"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"memcached exited with {proc.returncode}")
                time.sleep(0.02)
        else:
            pytest.fail("memcached did not start listening")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
