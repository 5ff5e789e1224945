"""Fixtures for the DB replication tests: in-process container/account
servers on loopback (aiohttp's Python parser, so REPLICATE gets through), a
ring naming them, and helpers to make DBs and read them back."""

from __future__ import annotations

import array
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp.http_parser
import aiohttp.web_protocol
import pytest
from aiohttp.test_utils import TestServer

from swiftlite.account import server as account_server
from swiftlite.account.backend import AccountBroker
from swiftlite.account.config import AccountServerConfig
from swiftlite.account.replicator import AccountReplicator, AccountReplicatorConfig
from swiftlite.common import hashing
from swiftlite.common.config import ClusterConfig
from swiftlite.common.timestamp import Timestamp
from swiftlite.container import server as container_server
from swiftlite.container.backend import ContainerBroker
from swiftlite.container.config import ContainerServerConfig
from swiftlite.container.replicator import ContainerReplicator, ContainerReplicatorConfig
from swiftlite.db.broker import DatabaseBroker
from swiftlite.db.replicator import DBReplicator
from swiftlite.ring.ring_io import RingData

SECRET = "db-repl-test-suffix"
# The tests put every DB in partition 0 whatever its name hashes to: the
# replicator goes by directories.
HASH = "0123456789abcdef0123456789abcdef"


# Recent enough that no tombstone is older than the default reclaim_age.
BASE = int(time.time()) - 3600


def ts(n: float) -> str:
    return Timestamp(BASE + n).internal


def write_ring(path: str, ports: list[int], devices: list[str], primaries: int) -> None:
    """Part power 1; partition 0 lives on devices 0..primaries-1 (the rest are
    its handoffs)."""
    devs: list[dict[str, Any] | None] = [
        {
            "id": i,
            "region": 1,
            "zone": i + 1,
            "ip": "127.0.0.1",
            "port": port,
            "replication_ip": "127.0.0.1",
            "replication_port": port,
            "device": dev,
            "weight": 1.0,
            "meta": "",
        }
        for i, (port, dev) in enumerate(zip(ports, devices, strict=True))
    ]
    count = len(devices)
    rows = [array.array("H", [r, (r + primaries) % count]) for r in range(primaries)]
    RingData(rows, devs, 31).save(path)


@dataclass
class Node:
    index: int
    role: str
    devices: str
    device: str
    port: int
    http: TestServer

    def db_file(self, name_hash: str = HASH) -> str:
        datadir = "containers" if self.role == "container" else "accounts"
        return os.path.join(
            self.devices, self.device, datadir, "0", name_hash[-3:], name_hash, name_hash + ".db"
        )

    def broker(self, name_hash: str = HASH) -> DatabaseBroker:
        if self.role == "container":
            return ContainerBroker(self.db_file(name_hash), account="a", container="c")
        return AccountBroker(self.db_file(name_hash), account="a")

    def create(self, name_hash: str = HASH, put_ts: str | None = None) -> DatabaseBroker:
        broker = self.broker(name_hash)
        broker.initialize(put_ts or ts(0), storage_policy_index=0)
        return broker

    def exists(self, name_hash: str = HASH) -> bool:
        return os.path.exists(self.db_file(name_hash))

    def replicator(self, tmp: str, **conf: Any) -> DBReplicator:
        settings: dict[str, Any] = {
            "devices": self.devices,
            "mount_check": False,
            "swift_dir": tmp,
            "bind_ip": "127.0.0.1",
            "bind_port": self.port,
            "recon_cache_path": os.path.join(tmp, f"recon{self.index}"),
            "log_level": "WARNING",
        }
        settings.update(conf)
        if self.role == "container":
            return ContainerReplicator(ContainerReplicatorConfig(**settings))
        return AccountReplicator(AccountReplicatorConfig(**settings))


def add_rows(broker: DatabaseBroker, names: list[str], t: float) -> None:
    for i, name in enumerate(names):
        if isinstance(broker, ContainerBroker):
            broker.put_object(name, ts(t + i * 0.01), 10 + i, "text/plain", "etag" + name)
        else:
            assert isinstance(broker, AccountBroker)
            broker.put_container(name, ts(t + i * 0.01), "0", i, 100 * i, 0)


def names_in(node: Node, name_hash: str = HASH) -> list[str]:
    with node.broker(name_hash) as broker:
        if isinstance(broker, ContainerBroker):
            return [row[0] for row in broker.list_objects_iter(10000, None, None, None, None)]
        assert isinstance(broker, AccountBroker)
        return [row[0] for row in broker.list_containers_iter(10000, None, None, None, None)]


def info_of(node: Node, name_hash: str = HASH) -> dict[str, Any]:
    with node.broker(name_hash) as broker:
        return broker.get_replication_info()


@pytest.fixture
def python_http_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """The servers re-exec with aiohttp's Python parser (REPLICATE); so do these tests."""
    monkeypatch.setattr(
        aiohttp.web_protocol, "HttpRequestParser", aiohttp.http_parser.HttpRequestParserPy
    )


Factory = Callable[..., Any]


@pytest.fixture
async def make_nodes(tmp_path: Any, python_http_parser: None) -> AsyncIterator[Factory]:
    hashing.set_hash_path_secrets("", SECRET)
    servers: list[TestServer] = []

    async def factory(role: str = "container", count: int = 3, primaries: int = 3) -> list[Node]:
        nodes: list[Node] = []
        cluster = ClusterConfig(hash_path_suffix=SECRET)
        for i in range(count):
            devices = str(tmp_path / f"{role}{i}")
            device = f"sd{chr(ord('a') + i)}"
            os.makedirs(os.path.join(devices, device))
            if role == "container":
                app = container_server.make_app(
                    ContainerServerConfig(devices=devices, mount_check=False, log_requests=False),
                    cluster,
                )
            else:
                app = account_server.make_app(
                    AccountServerConfig(devices=devices, mount_check=False, log_requests=False),
                    cluster,
                )
            http = TestServer(app, host="127.0.0.1")
            await http.start_server()
            servers.append(http)
            assert http.port is not None
            nodes.append(Node(i, role, devices, device, http.port, http))
        write_ring(
            str(tmp_path / f"{role}.ring.gz"),
            [n.port for n in nodes],
            [n.device for n in nodes],
            primaries,
        )
        return nodes

    yield factory
    for http in servers:
        await http.close()
