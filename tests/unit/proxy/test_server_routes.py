"""The proxy app's route takes every path, even one holding a newline."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from swiftlite.common.config import config_from_dict, load_cluster_config
from swiftlite.proxy.config import ProxyServerConfig
from swiftlite.proxy.server import make_app, swift_framing_headers
from swiftlite.ring.builder import RingBuilder


def build_ring(path: Path) -> None:
    builder = RingBuilder(2, 1, 0)
    builder.add_dev({"region": 1, "zone": 0, "ip": "127.0.0.1", "port": 9,
                     "device": "d0", "weight": 1})
    builder.rebalance()
    builder.get_ring().save(str(path))


async def test_path_with_newline_reaches_the_pipeline(tmp_path: Path, aiohttp_client: Any) -> None:
    # Swift's tests.py testQuotedWWWAuthenticateHeader: the realm of the 401
    # is the quoted account, even when the account holds '"' and '\n'.
    (tmp_path / "swiftlite.yaml").write_text("hash_path_prefix: p\nhash_path_suffix: s\n")
    for kind in ("object", "container", "account"):
        build_ring(tmp_path / f"{kind}.ring.gz")
    conf = config_from_dict(
        ProxyServerConfig,
        {"swift_dir": str(tmp_path), "pipeline": ["tempauth", "proxy_server"]},
    )
    client = await aiohttp_client(make_app(conf, load_cluster_config(str(tmp_path))))
    hax = quote('AUTH_haxx"\nContent-Length: 14\n\n<b>Hello World')
    resp = await client.get("/v1/" + hax)
    assert resp.status == 401
    assert resp.headers["Www-Authenticate"] == f'Swift realm="{hax}"'


async def test_204_and_keep_alive_headers_as_swift(aiohttp_client: Any) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=204 if request.path == "/empty" else 200, body=b"x")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        swift_framing_headers(request, response)

    app.on_response_prepare.append(on_prepare)
    client = await aiohttp_client(app)
    for method in ("GET", "HEAD", "DELETE"):
        resp = await client.request(method, "/empty")
        assert resp.status == 204
        assert resp.headers["Content-Length"] == "0"
        assert resp.headers["Content-Type"] == "text/html; charset=UTF-8"
    resp = await client.get("/full", headers={"Connection": "keep-alive"})
    assert resp.headers["Connection"] == "keep-alive"
    assert resp.headers["Content-Length"] == "1"
    resp = await client.get("/full")
    assert "Connection" not in resp.headers


async def test_options_without_origin_lists_methods(tmp_path: Path, aiohttp_client: Any) -> None:
    # Swift's Controller.OPTIONS: no Origin, no auth needed, 200 with Allow
    # (Swift's tests.py TestServiceToken expects a success for OPTIONS).
    (tmp_path / "swiftlite.yaml").write_text("hash_path_prefix: p\nhash_path_suffix: s\n")
    for kind in ("object", "container", "account"):
        build_ring(tmp_path / f"{kind}.ring.gz")
    conf = config_from_dict(
        ProxyServerConfig,
        {"swift_dir": str(tmp_path), "pipeline": ["tempauth", "proxy_server"]},
    )
    client = await aiohttp_client(make_app(conf, load_cluster_config(str(tmp_path))))
    resp = await client.options("/v1/AUTH_test/c/o")
    assert resp.status == 200
    assert resp.headers["Allow"] == "DELETE, GET, HEAD, OPTIONS, POST, PUT"
    assert await resp.read() == b""
    resp = await client.options("/v1/SERVICE_test5/c")
    assert resp.status == 200
    resp = await client.options("/v1/AUTH_test")
    assert resp.status == 200
    assert "OPTIONS" in resp.headers["Allow"].split(", ")
