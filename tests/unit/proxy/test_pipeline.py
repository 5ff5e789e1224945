"""The pipeline loader, the three core middleware and subrequests, on a
proxy whose storage nodes are all down (rings point at a closed port)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from swiftlite.common.config import ConfigError, config_from_dict, load_cluster_config
from swiftlite.proxy.config import ProxyServerConfig
from swiftlite.proxy.server import make_app
from swiftlite.ring.builder import RingBuilder

HERE = Path(__file__).parent


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def swift_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(HERE))
    (tmp_path / "swiftlite.yaml").write_text("hash_path_prefix: p\nhash_path_suffix: s\n")
    port = closed_port()
    for name in ("account", "container", "object"):
        builder = RingBuilder(4, 3, 0)
        for i in range(4):
            builder.add_dev(
                {"region": 1, "zone": i, "ip": "127.0.0.1", "port": port, "device": f"d{i}",
                 "weight": 1}
            )
        builder.rebalance()
        builder.get_ring().save(str(tmp_path / f"{name}.ring.gz"))
    return tmp_path


def conf_for(swift_dir: Path, **settings: Any) -> ProxyServerConfig:
    return config_from_dict(
        ProxyServerConfig,
        {"swift_dir": str(swift_dir), "bind_port": 0, "node_timeout": 2, **settings},
    )


async def client_for(aiohttp_client: Any, conf: ProxyServerConfig) -> TestClient:
    app = make_app(conf, load_cluster_config(conf.swift_dir))
    return await aiohttp_client(app)  # type: ignore[no-any-return]


FULL = ["catch_errors", "gatekeeper", "healthcheck", "sample_mw:echo_factory",
        "sample_mw:boom_factory", "sample_mw:hello_factory", "proxy_server"]


async def test_dotted_path_middleware_and_info(swift_dir: Path, aiohttp_client: Any) -> None:
    conf = conf_for(swift_dir, pipeline=FULL, filters={"sample_mw:hello_factory": {"greeting": "hi"}})
    client = await client_for(aiohttp_client, conf)
    resp = await client.get("/info")
    assert resp.status == 200
    assert resp.headers["X-Hello"] == "hi"
    info = await resp.json()
    assert info["hello_header"] == {"greeting": "hi"}
    assert info["swift"]["account_autocreate"] is False
    assert resp.headers["X-Trans-Id"] == resp.headers["X-Openstack-Request-Id"]
    # healthcheck sits outside hello: no header there.
    resp = await client.get("/healthcheck")
    assert (resp.status, await resp.text()) == (200, "OK")
    assert "X-Hello" not in resp.headers
    # A subrequest through the whole pipeline, from inside a middleware.
    resp = await client.get("/sub")
    assert await resp.text() == "sub:hi"


async def test_catch_errors_and_gatekeeper(swift_dir: Path, aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client, conf_for(swift_dir, pipeline=FULL))
    resp = await client.get("/boom")
    assert resp.status == 500
    assert await resp.text() == "An error occurred"
    assert resp.headers["X-Trans-Id"].startswith("tx")
    resp = await client.get(
        "/echo",
        headers={
            "X-Backend-Storage-Policy-Index": "3",
            "X-Object-Sysmeta-Foo": "bar",
            "X-Container-Host": "1.2.3.4:5",
            "X-Timestamp": "1234.5",
            "X-Object-Meta-Ok": "yes",
            "X-Trans-Id-Extra": "abc",
        },
    )
    seen = {k.lower(): v for k, v in (await resp.json()).items()}
    assert "x-backend-storage-policy-index" not in seen
    assert "x-object-sysmeta-foo" not in seen
    assert "x-container-host" not in seen
    assert "x-timestamp" not in seen
    assert seen["x-backend-inbound-x-timestamp"] == "1234.5"
    assert seen["x-object-meta-ok"] == "yes"
    assert resp.headers["X-Trans-Id"].endswith("-abc")


async def test_backend_down_gives_503(swift_dir: Path, aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client, conf_for(swift_dir))
    resp = await client.head("/v1/AUTH_test/c")
    assert resp.status == 503
    resp = await client.put("/v1/AUTH_test/c/o", data=b"x")
    assert resp.status == 503
    resp = await client.get("/v1/AUTH_test/c%FFo")
    assert resp.status == 412
    resp = await client.get("/v1")
    assert resp.status == 412


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"pipeline": ["catch_errors", "no_such_thing", "proxy_server"]}, "unknown middleware"),
        ({"pipeline": ["sample_mw:nope", "proxy_server"]}, "no factory"),
        ({"pipeline": ["missing_module_xyz:factory", "proxy_server"]}, "cannot import"),
        ({"pipeline": ["sample_mw:hello_factory", "proxy_server"],
          "filters": {"sample_mw:hello_factory": {"greeting": ""}}}, "non-empty"),
        ({"pipeline": ["healthcheck", "proxy_server"],
          "filters": {"healthcheck": {"bogus": 1}}}, "bogus"),
        ({"filters": {"tempauth": {}}}, "does not use"),
    ],
)
def test_bad_pipeline_config(swift_dir: Path, settings: dict[str, Any], message: str) -> None:
    conf = conf_for(swift_dir, **settings)
    with pytest.raises(ConfigError, match=message):
        make_app(conf, load_cluster_config(str(swift_dir)))


def test_config_validation(swift_dir: Path) -> None:
    with pytest.raises(ConfigError, match="end with proxy_server"):
        conf_for(swift_dir, pipeline=["catch_errors"])
    with pytest.raises(ConfigError, match="sorting_method"):
        conf_for(swift_dir, sorting_method="random")
    with pytest.raises(ConfigError, match="request_node_count"):
        conf_for(swift_dir, request_node_count="lots")
    conf = conf_for(swift_dir, request_node_count="3 * replicas")
    assert conf.node_count(3) == 9
    assert conf_for(swift_dir, request_node_count="5").node_count(3) == 5
    assert conf.recoverable_timeout == conf.node_timeout == 2
    defaults = ProxyServerConfig()
    assert (defaults.bind_port, defaults.node_timeout, defaults.client_timeout) == (8080, 10.0, 60.0)
    assert defaults.pipeline == ["catch_errors", "gatekeeper", "healthcheck", "proxy_server"]


def test_sample_config_builds(swift_dir: Path) -> None:
    from swiftlite.common.config import load_config

    sample = Path(__file__).parents[3] / "etc" / "proxy-server.yaml"
    conf = load_config(str(sample), ProxyServerConfig)
    conf.swift_dir = str(swift_dir)
    app = make_app(conf, load_cluster_config(str(swift_dir)))
    assert app is not None


async def test_info_keys_match_swift(swift_dir: Path, aiohttp_client: Any) -> None:
    from swift.common import constraints as swift_constraints

    client = await client_for(aiohttp_client, conf_for(swift_dir))
    info = await (await client.get("/info")).json()
    expected = set(swift_constraints.EFFECTIVE_CONSTRAINTS) | {
        "version", "strict_cors_mode", "policies", "allow_account_management",
        "account_autocreate", "allow_open_expired",
    }
    # Swift hides these two by default (disallowed_sections).
    expected -= {"auto_create_account_prefix", "valid_api_versions"}
    assert set(info["swift"]) == expected
    for name in expected & set(swift_constraints.EFFECTIVE_CONSTRAINTS):
        assert info["swift"][name] == swift_constraints.EFFECTIVE_CONSTRAINTS[name], name
    assert (await client.post("/info")).status == 405


async def test_rings_reload_off_the_loop(swift_dir: Path, aiohttp_client: Any) -> None:
    from swiftlite.proxy.server import PROXY_KEY

    client = await client_for(aiohttp_client, conf_for(swift_dir))
    proxy = client.server.app[PROXY_KEY]
    # Every ring has a watcher task, so lookups never stat the file on the loop.
    assert all(ring._watchers == 1 for ring in proxy.rings())
    await client.close()
    assert all(ring._watchers == 0 for ring in proxy.rings())


async def test_container_writes_are_denied_before_any_lookup(
    swift_dir: Path, aiohttp_client: Any
) -> None:
    # Backends are down: a lookup would answer 503. Swift refuses container
    # writes (and account requests) at once, before any lookup.
    conf = conf_for(swift_dir, pipeline=["catch_errors", "sample_mw:deny_factory", "proxy_server"])
    client = await client_for(aiohttp_client, conf)
    for method in ("PUT", "POST", "DELETE"):
        resp = await client.request(method, "/v1/AUTH_test/c")
        assert resp.status == 403, method
    resp = await client.get("/v1/AUTH_test")
    assert resp.status == 403
