"""The proxy app's route takes every path, even one holding a newline."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from swiftlite.common.config import config_from_dict, load_cluster_config
from swiftlite.proxy.config import ProxyServerConfig
from swiftlite.proxy.server import make_app
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
