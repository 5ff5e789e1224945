"""Shared fixtures for the REPCONN and replicator tests (no tests of its own).

A "cluster" here is N object servers in this process (aiohttp TestServers on
127.0.0.1, one device each), with the REPCONN route added the way the object
server registers it, and a ring file whose devices point at them.
"""

from __future__ import annotations

import array
import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp.http_parser
import aiohttp.web_protocol
import pytest
from aiohttp.test_utils import TestServer

from swiftlite.common import hashing
from swiftlite.common.config import ClusterConfig, StoragePolicy
from swiftlite.common.timestamp import Timestamp
from swiftlite.object import repconn
from swiftlite.object.config import ObjectServerConfig
from swiftlite.object.diskfile import DiskFileManager
from swiftlite.object.replicator import ObjectReplicator
from swiftlite.object.replicator_config import ObjectReplicatorConfig
from swiftlite.object.server import ObjectServer
from swiftlite.ring.ring import Ring
from swiftlite.ring.ring_io import RingData

SECRET = "repl-test-suffix"


def cluster_config() -> ClusterConfig:
    return ClusterConfig(
        hash_path_suffix=SECRET,
        policies=[
            StoragePolicy(index=0, name="gold", default=True),
            StoragePolicy(index=1, name="silver"),
        ],
    )


@pytest.fixture
def python_http_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiohttp's C parser refuses methods it does not know (REPCONN); the
    object server process re-execs with the Python one, and so do these tests."""
    monkeypatch.setattr(
        aiohttp.web_protocol, "HttpRequestParser", aiohttp.http_parser.HttpRequestParserPy
    )


@dataclass
class Node:
    index: int
    device: str
    devices: str
    server: ObjectServer
    http: TestServer | None
    port: int
    mgr: DiskFileManager

    @property
    def device_path(self) -> str:
        return os.path.join(self.devices, self.device)

    def put(
        self, name: str, body: bytes, ts: str, part: int = 0, policy: int = 0, **meta: str
    ) -> str:
        a, c, o = name.split("/")
        df = self.mgr.get_diskfile(self.device, part, a, c, o, policy)
        with df.create(len(body)) as w:
            w.write(body)
            return w.put(
                {
                    "X-Timestamp": ts,
                    "Content-Type": "application/octet-stream",
                    "ETag": hashlib.md5(body).hexdigest(),
                    "Content-Length": str(len(body)),
                    **meta,
                }
            )

    def delete(self, name: str, ts: str, part: int = 0) -> None:
        a, c, o = name.split("/")
        self.mgr.get_diskfile(self.device, part, a, c, o).write_tombstone(ts)

    def post(self, name: str, ts: str, part: int = 0, **meta: str) -> None:
        a, c, o = name.split("/")
        self.mgr.get_diskfile(self.device, part, a, c, o).write_meta({"X-Timestamp": ts, **meta})

    def files(self, name: str, part: int = 0) -> list[str]:
        a, c, o = name.split("/")
        df = self.mgr.get_diskfile(self.device, part, a, c, o)
        try:
            return sorted(os.listdir(df.datadir))
        except FileNotFoundError:
            return []

    def read(self, name: str, part: int = 0, policy: int = 0) -> bytes:
        a, c, o = name.split("/")
        df = self.mgr.get_diskfile(self.device, part, a, c, o, policy).open()
        with df, df.reader(verify_etag=True) as r:
            return r.read(df.content_length + 1)


@dataclass
class Cluster:
    nodes: list[Node]
    ring: Ring
    ring_path: str
    root: str

    def replicator(self, node: Node, **conf: Any) -> ObjectReplicator:
        settings: dict[str, Any] = {
            "devices": node.devices,
            "mount_check": False,
            "bind_ip": "127.0.0.1",
            "bind_port": node.port,
            "recon_cache_path": os.path.join(self.root, f"recon{node.index}"),
            "swift_dir": self.root,
            "log_level": "DEBUG",
        }
        settings.update(conf)
        # Both policies use the same ring here.
        return ObjectReplicator(
            ObjectReplicatorConfig(**settings),
            cluster_config(),
            {0: self.ring, 1: self.ring},
            {"127.0.0.1"},
        )

    async def run_pass(self, node: Node, **conf: Any) -> ObjectReplicator:
        repl = self.replicator(node, **conf)
        try:
            await repl.run_once()
        finally:
            repl.close()
        return repl


def ts(offset: float = 0.0) -> str:
    return Timestamp(time.time() + offset).internal


def write_ring(path: str, ports: list[int], devices: list[str], primaries: int) -> Ring:
    """Part power 1; the tests use partition 0, held by devices 0..primaries-1
    (the rest are its handoffs). Objects are placed in partition 0 whatever
    their names hash to: the replicator goes by directories."""
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
    # Partition 1 only gives get_more_nodes(0) a handoff to walk to.
    count = len(devices)
    rows = [array.array("H", [r, (r + primaries) % count]) for r in range(primaries)]
    RingData(rows, devs, 31).save(path)
    return Ring(path)


@pytest.fixture
async def make_cluster(
    tmp_path: Any, python_http_parser: None
) -> AsyncIterator[Callable[..., Any]]:
    hashing.set_hash_path_secrets("", SECRET)
    servers: list[TestServer] = []
    nodes_all: list[Node] = []

    async def factory(count: int = 3, primaries: int = 3, **server_conf: Any) -> Cluster:
        nodes: list[Node] = []
        for i in range(count):
            devices = str(tmp_path / f"node{i}")
            device = f"sd{chr(ord('a') + i)}"
            os.makedirs(os.path.join(devices, device))
            conf = ObjectServerConfig(
                devices=devices, mount_check=False, log_requests=False, **server_conf
            )
            srv = ObjectServer(conf, cluster_config())
            srv.methods["REPCONN"] = lambda req, path, srv=srv: repconn.handle_repconn(
                srv, req, path
            )
            http = TestServer(srv.make_app(), host="127.0.0.1")
            await http.start_server()
            servers.append(http)
            assert http.port is not None
            mgr = DiskFileManager(devices, mount_check=False)
            nodes.append(Node(i, device, devices, srv, http, http.port, mgr))
        nodes_all.extend(nodes)
        ring_path = str(tmp_path / "object.ring.gz")
        ring = write_ring(ring_path, [n.port for n in nodes], [n.device for n in nodes], primaries)
        return Cluster(nodes, ring, ring_path, str(tmp_path))

    yield factory
    for http in servers:
        await http.close()
