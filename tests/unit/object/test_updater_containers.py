"""The updater against real container servers: two swiftlite container servers
and OpenStack Swift's ``ContainerController`` (in-process, behind a small
aiohttp adapter) as the three replicas of one container. Every replica must
end up listing the object, and the replica that was down must be the only one
asked again."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

swift_container_server = pytest.importorskip("swift.container.server")

import swift.common.utils  # noqa: E402
from swift.common.storage_policy import StoragePolicy as SwiftPolicy  # noqa: E402
from swift.common.storage_policy import StoragePolicyCollection  # noqa: E402
from swift.common.swob import Request  # noqa: E402

from swiftlite.common.config import ClusterConfig, StoragePolicy, config_from_dict  # noqa: E402
from swiftlite.common.hashing import get_hash_path_secrets, set_hash_path_secrets  # noqa: E402
from swiftlite.common.timestamp import Timestamp  # noqa: E402
from swiftlite.container.config import ContainerServerConfig  # noqa: E402
from swiftlite.container.server import make_app  # noqa: E402
from swiftlite.object import updates  # noqa: E402
from swiftlite.object.daemon_config import ObjectUpdaterConfig  # noqa: E402
from swiftlite.object.updater import ObjectUpdater  # noqa: E402
from tests.unit.object.test_updater import free_port, write_ring  # noqa: E402

PREFIX, SUFFIX = "pre", "suf"


class NullLogger:
    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def cluster() -> ClusterConfig:
    return ClusterConfig(
        hash_path_prefix=PREFIX,
        hash_path_suffix=SUFFIX,
        policies=[StoragePolicy(0, "gold", default=True)],
    )


class SwiftContainer:
    """Swift's container controller answering HTTP (requests run in-process)."""

    def __init__(self, root: Path) -> None:
        self.controller = swift_container_server.ContainerController(
            {"devices": str(root), "mount_check": "false", "log_requests": "false"},
            logger=NullLogger(),
        )
        self.requests: list[str] = []
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.server = TestServer(app, host="127.0.0.1")

    def call(self, method: str, path: str, headers: dict[str, str], query: str = "") -> Any:
        env = {"REQUEST_METHOD": method, "QUERY_STRING": query}
        return Request.blank(path, environ=env, headers=headers).get_response(self.controller)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(f"{request.method} {request.rel_url.raw_path}")
        headers = {k: v.encode("utf-8").decode("latin-1") for k, v in request.headers.items()}
        resp = self.call(request.method, request.rel_url.raw_path, headers, request.query_string)
        return web.Response(status=resp.status_int, body=resp.body)


@pytest.fixture
async def replicas(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[list[Any], list[Path]]]:
    old = get_hash_path_secrets()
    monkeypatch.setattr(swift.common.utils, "HASH_PATH_PREFIX", PREFIX.encode())
    monkeypatch.setattr(swift.common.utils, "HASH_PATH_SUFFIX", SUFFIX.encode())
    monkeypatch.setattr(
        swift_container_server,
        "POLICIES",
        StoragePolicyCollection([SwiftPolicy(0, "gold", is_default=True)]),
    )
    set_hash_path_secrets(PREFIX, SUFFIX)
    roots = [tmp_path / f"c{i}" for i in range(3)]
    for root, dev in zip(roots, ("sda", "sdb", "sdc"), strict=True):
        (root / dev).mkdir(parents=True)
    ours0 = TestServer(make_app(_conf(roots[0]), cluster()), host="127.0.0.1")
    theirs = SwiftContainer(roots[1])
    await ours0.start_server()
    await theirs.server.start_server()
    try:
        yield [ours0, theirs], roots
    finally:
        await ours0.close()
        await theirs.server.close()
        set_hash_path_secrets(*old)


def _conf(root: Path) -> ContainerServerConfig:
    return config_from_dict(
        ContainerServerConfig, {"devices": str(root), "mount_check": False, "log_requests": False}
    )


async def http(port: int, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"http://127.0.0.1:{port}{path}", headers=headers) as resp,
    ):
        return resp.status, await resp.read()


async def listing(port: int, dev: str) -> list[dict[str, Any]]:
    status, body = await http(port, "GET", f"/{dev}/0/a/c?format=json", {})
    assert status == 200, body
    return json.loads(body)  # type: ignore[no-any-return]


async def test_updater_fills_every_replica(
    tmp_path: Path, replicas: tuple[list[Any], list[Path]]
) -> None:
    (ours0, theirs), roots = replicas
    down_port = free_port()
    ports = [ours0.port, theirs.server.port, down_port]
    swift_dir = tmp_path / "etc"
    swift_dir.mkdir()
    write_ring(swift_dir, ports)
    put_c = {"X-Timestamp": Timestamp(1700000000.0).internal}
    for port, dev in zip(ports[:2], ("sda", "sdb"), strict=True):
        assert (await http(port, "PUT", f"/{dev}/0/a/c", put_c))[0] == 201

    objdev = tmp_path / "node"
    (objdev / "sda").mkdir(parents=True)
    t = Timestamp(1700000100.0).internal
    headers = {
        "x-timestamp": t,
        "x-size": "11",
        "x-content-type": "text/plain",
        "x-etag": "5eb63bbbe01eeed093cb22bb8f5acdc3",
        "x-backend-storage-policy-index": "0",
        "x-trans-id": "tx-oracle",
    }
    record = {
        "op": "PUT",
        "account": "a",
        "container": "c",
        "obj": "caf\u00e9 menu",
        "headers": headers,
        "db_state": None,
    }
    path = updates.write_async_pending(
        str(objdev / "sda"), 0, "a", "c", "caf\u00e9 menu", record, t
    )

    def updater() -> ObjectUpdater:
        conf = ObjectUpdaterConfig(
            devices=str(objdev),
            mount_check=False,
            swift_dir=str(swift_dir),
            recon_cache_path=str(tmp_path / "recon"),
            objects_per_second=0,
            conn_timeout=2,
        )
        return ObjectUpdater(conf, cluster())

    upd = updater()
    try:
        stats = await upd.update_pass()
    finally:
        await upd.close()
    assert stats.failures == 1
    with open(path) as fp:
        assert sorted(json.load(fp)["successes"]) == [0, 1]
    for port, dev in zip(ports[:2], ("sda", "sdb"), strict=True):
        (row,) = await listing(port, dev)
        assert row["name"] == "caf\u00e9 menu" and row["bytes"] == 11
        assert row["hash"] == headers["x-etag"] and row["content_type"] == "text/plain"

    # The third replica comes back (on the port the ring names).
    ours2 = TestServer(make_app(_conf(roots[2]), cluster()), host="127.0.0.1", port=down_port)
    await ours2.start_server()
    try:
        assert (await http(down_port, "PUT", "/sdc/0/a/c", put_c))[0] == 201
        before = len(theirs.requests)
        upd = updater()
        try:
            stats = await upd.update_pass()
        finally:
            await upd.close()
        assert stats.successes == 1
        assert len(theirs.requests) == before  # Swift's replica was not asked again
        (row,) = await listing(down_port, "sdc")
        assert row["name"] == "caf\u00e9 menu" and row["bytes"] == 11
    finally:
        await ours2.close()
    assert not os.path.exists(path)
