"""The reaper's backend requests compared with OpenStack Swift's AccountReaper.

Both reap the same container (three replicas of everything): Swift's with
its direct_client calls recorded, swiftlite's against a recording HTTP
server. The listing node, every DELETE's target and the headers that tell
the object servers which container replica to update (and the container
servers which account replica) must be the same."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

swift_reaper = pytest.importorskip("swift.account.reaper")

from swiftlite.account.daemon_config import AccountReaperConfig  # noqa: E402
from swiftlite.account.reaper import AccountReaper, ReaperStats  # noqa: E402
from swiftlite.common.config import ClusterConfig, StoragePolicy, config_from_dict  # noqa: E402

OBJECTS = ["o1", "o2", "o3"]
COMPARED = (
    "X-Account-Host",
    "X-Account-Device",
    "X-Account-Partition",
    "X-Account-Override-Deleted",
    "X-Container-Host",
    "X-Container-Device",
    "X-Container-Partition",
    "X-Backend-Storage-Policy-Index",
)


def nodes(kind: str, port: int) -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "index": i,
            "ip": "127.0.0.1",
            "port": port,
            "device": f"{kind}{'abc'[i]}",
            "replication_ip": "127.0.0.1",
            "replication_port": port,
        }
        for i in range(3)
    ]


class FakeRing:
    def __init__(self, part: int, ring_nodes: list[dict[str, Any]]) -> None:
        self.part = part
        self.nodes = ring_nodes

    def get_nodes(self, *args: Any) -> tuple[int, list[dict[str, Any]]]:
        return self.part, [dict(n) for n in self.nodes]


class NullLogger:
    def getEffectiveLevel(self) -> int:  # noqa: N802 - Swift's logger API
        return 100

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def wanted(headers: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in headers.items() if k in COMPARED}


def swift_requests(port: int) -> list[tuple[Any, ...]]:
    """What Swift's reaper sends to reap container "c" of account "AUTH_a"."""
    seen: list[tuple[Any, ...]] = []
    pages = [({"X-Backend-Storage-Policy-Index": "0"}, [{"name": o} for o in OBJECTS]), ({}, [])]

    def get_container(
        node: dict[str, Any],
        part: int,
        account: str,
        container: str,
        marker: str = "",
        **kwargs: Any,
    ) -> Any:
        seen.append(("GET", node["device"], part, f"/{account}/{container}", marker))
        return pages.pop(0)

    def delete_container(
        node: dict[str, Any],
        part: int,
        account: str,
        container: str,
        headers: dict[str, Any],
        **kwargs: Any,
    ) -> None:
        seen.append(("DELETE", node["device"], part, f"/{account}/{container}", wanted(headers)))

    def delete_object(
        node: dict[str, Any],
        part: int,
        account: str,
        container: str,
        obj: str,
        headers: dict[str, Any],
        **kwargs: Any,
    ) -> None:
        seen.append(
            ("DELETE", node["device"], part, f"/{account}/{container}/{obj}", wanted(headers))
        )

    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(swift_reaper, "direct_get_container", get_container)
        mp.setattr(swift_reaper, "direct_delete_container", delete_container)
        mp.setattr(swift_reaper, "direct_delete_object", delete_object)
        reaper = swift_reaper.AccountReaper({"bind_ip": "127.0.0.1"}, logger=NullLogger())
        reaper.container_ring = FakeRing(7, nodes("c", port))
        object_ring = FakeRing(9, nodes("o", port))
        mp.setattr(reaper, "get_object_ring", lambda policy_idx: object_ring)
        reaper.reap_container("AUTH_a", 5, nodes("a", port), "c")
    finally:
        mp.undo()
    return seen


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[TestServer, list[tuple[Any, ...]]]]:
    seen: list[tuple[Any, ...]] = []

    async def handle(request: web.Request) -> web.Response:
        _, device, part, rest = request.path.split("/", 3)
        if request.method == "GET":
            marker = request.query.get("marker", "")
            assert request.query.get("format") == "json"
            seen.append(("GET", device, int(part), "/" + rest, marker))
            listing = [] if marker else [{"name": o} for o in OBJECTS]
            return web.Response(
                status=200,
                body=json.dumps(listing),
                headers={"X-Backend-Storage-Policy-Index": "0"},
                content_type="application/json",
            )
        seen.append((request.method, device, int(part), "/" + rest, wanted(dict(request.headers))))
        assert request.headers["X-Timestamp"]
        return web.Response(status=204)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server, seen
    finally:
        await server.close()


async def test_same_requests_as_swift(
    recorder: tuple[TestServer, list[tuple[Any, ...]]], tmp_path: Path
) -> None:
    server, seen = recorder
    port = server.port
    assert port is not None
    conf = config_from_dict(
        AccountReaperConfig,
        {"devices": str(tmp_path), "mount_check": False, "concurrency": 1},
    )
    cluster = ClusterConfig(hash_path_suffix="x", policies=[StoragePolicy(0, "gold", default=True)])
    reaper = AccountReaper(conf, cluster, ips={"127.0.0.1"})
    reaper.rings = {
        "container": FakeRing(7, nodes("c", port)),
        "object": FakeRing(9, nodes("o", port)),
    }  # type: ignore[dict-item]
    stats = ReaperStats()
    try:
        await reaper.reap_container("AUTH_a", 5, nodes("a", port), "c", stats)  # type: ignore[arg-type]
    finally:
        await reaper.close()
    ours = seen
    theirs = swift_requests(port)
    # Listing: the same node, the same pages (Swift asks the last primary).
    assert [r for r in ours if r[0] == "GET"] == [r for r in theirs if r[0] == "GET"]
    # Every DELETE, with the headers that steer the container/account updates.
    assert sorted(map(repr, (r for r in ours if r[0] == "DELETE"))) == sorted(
        map(repr, (r for r in theirs if r[0] == "DELETE"))
    )
    assert len([r for r in ours if r[0] == "DELETE"]) == 3 * len(OBJECTS) + 3
    assert (stats.objects_deleted, stats.containers_deleted) == (len(OBJECTS), 1)
