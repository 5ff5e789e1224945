"""The account reaper against real swiftlite account, container and object
servers (in-process aiohttp apps on free loopback ports, 2 replicas each on
devices sda and sdb, one-partition rings)."""

from __future__ import annotations

import array
import asyncio
import json
import logging
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestServer

from swiftlite.account.backend import AccountBroker
from swiftlite.account.config import AccountServerConfig
from swiftlite.account.daemon_config import AccountReaperConfig
from swiftlite.account.reaper import AccountReaper, ReaperStats, container_shard
from swiftlite.account.server import make_app as account_app
from swiftlite.common.config import ClusterConfig, StoragePolicy, config_from_dict
from swiftlite.common.hashing import hash_path, set_hash_path_secrets
from swiftlite.common.timestamp import Timestamp
from swiftlite.container.config import ContainerServerConfig
from swiftlite.container.server import make_app as container_app
from swiftlite.object.config import ObjectServerConfig
from swiftlite.object.server import make_app as object_app
from swiftlite.ring.ring_io import RingData

PREFIX, SUFFIX = "reap-pre", "reap-suf"
DEVICES = ("sda", "sdb")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_ring(path: Path, port: int, replication_port: int | None = None) -> None:
    """One partition, 2 replicas: replica i on device DEVICES[i] at ``port``
    (and ``replication_port`` on the replication network when given)."""
    devs: list[dict[str, Any] | None] = [
        {
            "id": i,
            "region": 1,
            "zone": i + 1,
            "ip": "127.0.0.1",
            "port": port,
            "device": dev,
            "weight": 100.0,
            "meta": "",
        }
        for i, dev in enumerate(DEVICES)
    ]
    if replication_port is not None:
        for dev in devs:
            assert dev is not None
            dev.update(replication_ip="127.0.0.1", replication_port=replication_port)
    rows = [array.array("H", [i]) for i in range(len(DEVICES))]
    RingData(rows, devs, 32).save(str(path))


def cluster() -> ClusterConfig:
    return ClusterConfig(
        hash_path_prefix=PREFIX,
        hash_path_suffix=SUFFIX,
        policies=[StoragePolicy(0, "gold", default=True)],
    )


@dataclass
class Cluster:
    root: Path
    swift_dir: Path
    ports: dict[str, int]

    def devices(self, role: str) -> Path:
        return self.root / role

    async def call(
        self,
        role: str,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> tuple[int, dict[str, str], bytes]:
        url = f"http://127.0.0.1:{self.ports[role]}{path}"
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, url, headers=headers or {}, data=body) as resp,
        ):
            return resp.status, dict(resp.headers), await resp.read()

    async def put_account(self, account: str) -> None:
        for dev in DEVICES:
            status, _, _ = await self.call(
                "account", "PUT", f"/{dev}/0/{account}", {"X-Timestamp": Timestamp.now().internal}
            )
            assert status in (201, 202), status

    async def delete_account(self, account: str) -> None:
        for dev in DEVICES:
            status, _, _ = await self.call(
                "account",
                "DELETE",
                f"/{dev}/0/{account}",
                {"X-Timestamp": Timestamp.now().internal},
            )
            assert status == 204, status

    async def put_container(self, account: str, container: str) -> None:
        ts = Timestamp.now().internal
        for dev in DEVICES:
            status, _, _ = await self.call(
                "container",
                "PUT",
                f"/{dev}/0/{account}/{container}",
                {
                    "X-Timestamp": ts,
                    "X-Account-Host": f"127.0.0.1:{self.ports['account']}",
                    "X-Account-Partition": "0",
                    "X-Account-Device": dev,
                    "X-Backend-Storage-Policy-Index": "0",
                },
            )
            assert status == 201, status

    async def put_object(self, account: str, container: str, obj: str) -> None:
        ts = Timestamp.now().internal
        body = obj.encode() * 3
        for dev in DEVICES:
            status, _, _ = await self.call(
                "object",
                "PUT",
                f"/{dev}/0/{account}/{container}/{obj}",
                {
                    "X-Timestamp": ts,
                    "Content-Type": "text/plain",
                    "Content-Length": str(len(body)),
                    "X-Container-Host": f"127.0.0.1:{self.ports['container']}",
                    "X-Container-Partition": "0",
                    "X-Container-Device": dev,
                    "X-Backend-Storage-Policy-Index": "0",
                },
                body,
            )
            assert status == 201, status

    async def object_statuses(self, account: str, container: str, obj: str) -> list[int]:
        return [
            (await self.call("object", "HEAD", f"/{dev}/0/{account}/{container}/{obj}"))[0]
            for dev in DEVICES
        ]

    async def listing(self, account: str, container: str) -> list[list[str] | None]:
        """Object names per container replica (None: the container is gone)."""
        out: list[list[str] | None] = []
        for dev in DEVICES:
            status, _, body = await self.call(
                "container", "GET", f"/{dev}/0/{account}/{container}?format=json"
            )
            out.append(None if status == 404 else [o["name"] for o in json.loads(body or b"[]")])
        return out

    def account_containers(self, account: str) -> list[list[str]]:
        """Container names in each account DB replica (deleted accounts too)."""
        digest = str(hash_path(account))
        out = []
        for dev in DEVICES:
            db = self.devices("account") / dev / "accounts" / "0" / digest[-3:] / digest
            with AccountBroker(str(db / f"{digest}.db")) as broker:
                rows = broker.list_containers_iter(100, "", None, None, None)
            out.append([r[0] for r in rows])
        return out

    def reaper(self, **conf: Any) -> AccountReaper:
        settings: dict[str, Any] = {
            "devices": str(self.devices("account")),
            "mount_check": False,
            "swift_dir": str(self.swift_dir),
            "bind_ip": "127.0.0.1",
            "bind_port": self.ports["account"],
            "recon_cache_path": str(self.root / "recon"),
            "log_level": "DEBUG",
        }
        settings.update(conf)
        return AccountReaper(config_from_dict(AccountReaperConfig, settings), cluster())


@pytest.fixture
async def servers(tmp_path: Path) -> AsyncIterator[Cluster]:
    set_hash_path_secrets(PREFIX, SUFFIX)
    swift_dir = tmp_path / "etc"
    swift_dir.mkdir()
    (swift_dir / "swiftlite.yaml").write_text(
        f"hash_path_prefix: {PREFIX}\nhash_path_suffix: {SUFFIX}\n"
    )
    ports = {role: free_port() for role in ("account", "container", "object")}
    for role in ("account", "container"):
        write_ring(swift_dir / f"{role}.ring.gz", ports[role])
    write_ring(swift_dir / "object.ring.gz", ports["object"])
    made = []
    for role, conf_cls, factory in (
        ("account", AccountServerConfig, account_app),
        ("container", ContainerServerConfig, container_app),
        ("object", ObjectServerConfig, object_app),
    ):
        for dev in DEVICES:
            (tmp_path / role / dev).mkdir(parents=True)
        conf = config_from_dict(
            conf_cls,
            {
                "devices": str(tmp_path / role),
                "mount_check": False,
                "swift_dir": str(swift_dir),
                "log_requests": False,
                "log_level": "WARNING",
            },
        )
        server = TestServer(factory(conf, cluster()), host="127.0.0.1", port=ports[role])
        await server.start_server()
        made.append(server)
    try:
        yield Cluster(tmp_path, swift_dir, ports)
    finally:
        for server in made:
            await server.close()


async def populate(c: Cluster, account: str, containers: int, objects: int) -> None:
    await c.put_account(account)
    for i in range(containers):
        await c.put_container(account, f"c{i}")
        for j in range(objects):
            await c.put_object(account, f"c{i}", f"o{j}")


async def test_deleted_account_is_emptied_and_live_one_untouched(servers: Cluster) -> None:
    c = servers
    await populate(c, "AUTH_dead", containers=4, objects=3)
    await populate(c, "AUTH_live", containers=1, objects=2)
    assert await c.listing("AUTH_dead", "c0") == [["o0", "o1", "o2"]] * 2
    assert c.account_containers("AUTH_dead") == [["c0", "c1", "c2", "c3"]] * 2
    await c.delete_account("AUTH_dead")

    reaper = c.reaper()
    try:
        stats = await reaper.reap_pass()
    finally:
        await reaper.close()

    # Both account replicas (sda at position 0, sdb at 1) took their share.
    assert stats.accounts == 2
    assert stats.containers_deleted == 4
    assert stats.objects_deleted == 12
    assert stats.containers_remaining == stats.objects_remaining == 0
    assert stats.objects_failures == stats.containers_failures == 0
    for i in range(4):
        for j in range(3):
            assert await c.object_statuses("AUTH_dead", f"c{i}", f"o{j}") == [404, 404]
        assert await c.listing("AUTH_dead", f"c{i}") == [None, None]
    # The container servers told the account replicas: no rows remain.
    assert c.account_containers("AUTH_dead") == [[], []]
    # The live account is as it was.
    assert await c.listing("AUTH_live", "c0") == [["o0", "o1"]] * 2
    for j in range(2):
        assert await c.object_statuses("AUTH_live", "c0", f"o{j}") == [200, 200]
    assert c.account_containers("AUTH_live") == [["c0"]] * 2
    recon = json.loads((c.root / "recon" / "account.recon").read_text())
    assert recon["account_reaper_stats"]["objects_deleted"] == 12
    assert recon["account_reaper_stats"]["return_codes"]["2"] > 0

    # A second pass finds nothing more to do.
    reaper = c.reaper()
    try:
        again = await reaper.reap_pass()
    finally:
        await reaper.close()
    assert again.accounts == 0 and again.objects_deleted == 0


async def test_delay_reaping_is_respected(servers: Cluster) -> None:
    c = servers
    await populate(c, "AUTH_d", containers=2, objects=2)
    await c.delete_account("AUTH_d")
    reaper = c.reaper(delay_reaping=3600)
    try:
        stats = await reaper.reap_pass()
        assert stats.accounts == 0 and stats.objects_deleted == 0
        assert await c.object_statuses("AUTH_d", "c0", "o0") == [200, 200]
        assert c.account_containers("AUTH_d") == [["c0", "c1"]] * 2
        # Once the delay has run out the account is reaped.
        reaper.wall = lambda: time.time() + 3601
        stats = await reaper.reap_pass()
    finally:
        await reaper.close()
    assert stats.containers_deleted == 2 and stats.objects_deleted == 4
    assert await c.object_statuses("AUTH_d", "c0", "o0") == [404, 404]


async def test_only_primaries_on_this_host_reap(servers: Cluster) -> None:
    c = servers
    await populate(c, "AUTH_x", containers=1, objects=1)
    await c.delete_account("AUTH_x")
    # Another host's address, then another port: the DBs here are not ours.
    for kwargs in ({"bind_ip": "10.255.0.1"}, {"bind_port": c.ports["account"] + 1}):
        reaper = c.reaper(**kwargs)
        try:
            stats = await reaper.reap_pass()
        finally:
            await reaper.close()
        assert stats.accounts == 0
    assert await c.object_statuses("AUTH_x", "c0", "o0") == [200, 200]
    # Only sda (replica 0): it reaps just the containers of its shard. A
    # partition the (one-partition) ring does not have is passed over.
    (c.devices("account") / "sda" / "accounts" / "5").mkdir()
    reaper = c.reaper()
    try:
        stats = await reaper.reap_pass(devices=["sda"])
    finally:
        await reaper.close()
    expected = 1 if container_shard("c0", 2) == 0 else 0
    assert stats.containers_deleted == expected
    assert stats.errors == 0


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def test_unreachable_object_servers_leave_work_for_next_pass(servers: Cluster) -> None:
    c = servers
    await populate(c, "AUTH_u", containers=1, objects=2)
    await c.delete_account("AUTH_u")
    # The object ring now points at a port nobody listens on.
    write_ring(c.swift_dir / "object.ring.gz", free_port())
    reaper = c.reaper(conn_timeout=0.2, node_timeout=0.5, reap_warn_after=0)
    records = Records()
    reaper.logger.addHandler(records)
    try:
        stats = await reaper.reap_pass()
    finally:
        reaper.logger.removeHandler(records)
        await reaper.close()
    assert stats.objects_remaining == 2 and stats.objects_deleted == 0
    assert stats.objects_failures == 4
    # The container still holds its objects, so no container server deletes it.
    assert stats.containers_deleted == 0
    assert stats.containers_remaining == 1
    assert await c.listing("AUTH_u", "c0") == [["o0", "o1"]] * 2
    assert any("has not been reaped since" in line for line in records.lines)


async def test_requests_use_the_replication_network(servers: Cluster) -> None:
    c = servers
    await populate(c, "AUTH_r", containers=1, objects=2)
    await c.delete_account("AUTH_r")
    # The object servers' client-facing port leads nowhere; they are reached
    # on the replication one. (The container ring keeps its real client port:
    # X-Container-Host names it for the object servers' container updates.)
    write_ring(c.swift_dir / "object.ring.gz", free_port(), c.ports["object"])
    reaper = c.reaper()
    try:
        stats = await reaper.reap_pass()
    finally:
        await reaper.close()
    assert (stats.containers_deleted, stats.objects_deleted) == (1, 2)
    assert stats.objects_failures == stats.containers_failures == 0
    assert await c.object_statuses("AUTH_r", "c0", "o1") == [404, 404]
    assert c.account_containers("AUTH_r") == [[], []]


async def test_main_once_end_to_end(servers: Cluster) -> None:
    c = servers
    await populate(c, "AUTH_m", containers=2, objects=2)
    await c.delete_account("AUTH_m")
    conf = c.root / "account-reaper.yaml"
    conf.write_text(
        yaml.safe_dump(
            {
                "devices": str(c.devices("account")),
                "mount_check": False,
                "swift_dir": str(c.swift_dir),
                "bind_ip": "127.0.0.1",
                "bind_port": c.ports["account"],
                "recon_cache_path": str(c.root / "recon"),
            }
        )
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from swiftlite.account.reaper import main; sys.exit(main(sys.argv[1:]))",
        str(conf),
        "once",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    assert "Account reaper pass completed" in err.decode()
    for i in range(2):
        assert await c.listing("AUTH_m", f"c{i}") == [None, None]
    assert await c.object_statuses("AUTH_m", "c1", "o1") == [404, 404]
    recon = json.loads((c.root / "recon" / "account.recon").read_text())
    assert recon["account_reaper_stats"]["containers_deleted"] == 2


def test_stats_summary_and_config_defaults() -> None:
    stats = ReaperStats(containers_deleted=2, objects_deleted=5)
    stats.code(204)
    stats.code(404)
    stats.code(204)
    assert stats.summary() == (
        ", 2 containers deleted, 5 objects deleted, return codes: 2 2xxs, 1 4xxs"
    )
    other = ReaperStats(objects_deleted=1)
    other.code(503)
    stats.add(other)
    assert stats.objects_deleted == 6 and stats.return_codes == {2: 2, 4: 1, 5: 1}
    conf = AccountReaperConfig()
    assert (conf.interval, conf.concurrency, conf.node_timeout, conf.conn_timeout) == (
        3600.0,
        25,
        10.0,
        0.5,
    )
    assert (conf.delay_reaping, conf.reap_warn_after) == (0.0, 2592000.0)
    with pytest.raises(ValueError):
        AccountReaperConfig(concurrency=0)


def test_sample_config_loads() -> None:
    from swiftlite.common.config import load_config

    etc = Path(__file__).resolve().parents[3] / "etc"
    conf = load_config(str(etc / "account-reaper.yaml"), AccountReaperConfig)
    assert conf == AccountReaperConfig()
