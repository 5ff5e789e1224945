"""Container updater against fake account servers on free ports."""

from __future__ import annotations

import array
import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from swiftlite.common.config import ClusterConfig, ConfigError, StoragePolicy, load_config
from swiftlite.common.hashing import get_hash_path_secrets, set_hash_path_secrets
from swiftlite.common.timestamp import Timestamp
from swiftlite.container.backend import ContainerBroker
from swiftlite.container.daemon_config import ContainerUpdaterConfig
from swiftlite.container.updater import ContainerUpdater, needs_report
from swiftlite.ring.ring_io import RingData

ROOT = Path(__file__).resolve().parents[3]


class FakeAccountServer:
    def __init__(self, status: int = 201) -> None:
        self.status = status
        self.requests: list[tuple[str, str, CIMultiDict[str]]] = []
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.server = TestServer(app, host="127.0.0.1")

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.raw_path, CIMultiDict(request.headers)))
        return web.Response(status=self.status)

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port


@pytest.fixture(autouse=True)
def secrets() -> Iterator[None]:
    old = get_hash_path_secrets()
    set_hash_path_secrets("", "endcap")
    yield
    set_hash_path_secrets(*old)


@pytest.fixture
async def fakes() -> AsyncIterator[list[FakeAccountServer]]:
    servers = [FakeAccountServer() for _ in range(3)]
    for s in servers:
        await s.server.start_server()
    try:
        yield servers
    finally:
        for s in servers:
            await s.server.close()


def write_ring(path: Path, ports: list[int]) -> None:
    """A one-partition ring: replica i on device sd<i> at ports[i]."""
    devs: list[dict[str, Any] | None] = [
        {
            "id": i,
            "region": 1,
            "zone": i + 1,
            "ip": "127.0.0.1",
            "port": port,
            "device": f"sd{'abc'[i]}",
            "weight": 100.0,
            "meta": "",
        }
        for i, port in enumerate(ports)
    ]
    rows = [array.array("H", [i]) for i in range(len(ports))]
    RingData(rows, devs, 32).save(str(path))


def cluster() -> ClusterConfig:
    return ClusterConfig(
        hash_path_suffix="endcap",
        policies=[StoragePolicy(index=0, name="gold", default=True)],
    )


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def devices(tmp_path: Path) -> Path:
    (tmp_path / "node" / "sda").mkdir(parents=True)
    return tmp_path / "node"


@pytest.fixture
def swift_dir(tmp_path: Path, fakes: list[FakeAccountServer]) -> Path:
    d = tmp_path / "etc"
    d.mkdir()
    write_ring(d / "account.ring.gz", [f.port for f in fakes])
    return d


def ts(n: float) -> str:
    return Timestamp(n).internal


def make_container(
    devices: Path, name: str, objects: int = 0, put_ts: float = 1.0, part: str = "0"
) -> ContainerBroker:
    b = ContainerBroker(
        ContainerBroker.db_path(str(devices), "sda", part, "AUTH_a", name),
        account="AUTH_a",
        container=name,
    )
    b.initialize(ts(put_ts), storage_policy_index=0)
    for i in range(objects):
        b.put_object(f"o{i}", ts(2 + i), 10, "text/plain", "etag")
    return b


def make_updater(
    devices: Path, swift_dir: Path, tmp_path: Path, fake: FakeTime | None = None, **kw: Any
) -> ContainerUpdater:
    args: dict[str, Any] = {
        "devices": str(devices),
        "mount_check": False,
        "swift_dir": str(swift_dir),
        "recon_cache_path": str(tmp_path / "recon"),
        "containers_per_second": 0,
    }
    args.update(kw)
    extra: dict[str, Any] = {}
    if fake is not None:
        extra = {"clock": fake.clock, "wall": fake.clock, "sleep": fake.sleep}
    return ContainerUpdater(ContainerUpdaterConfig(**args), cluster(), **extra)


def reported(b: ContainerBroker) -> tuple[Any, ...]:
    info = b.get_info()
    return (
        info["reported_put_timestamp"],
        info["reported_delete_timestamp"],
        info["reported_object_count"],
        info["reported_bytes_used"],
    )


async def test_changed_stats_reported_and_recorded(
    devices: Path, swift_dir: Path, tmp_path: Path, fakes: list[FakeAccountServer]
) -> None:
    b = make_container(devices, "c1", objects=3)
    upd = make_updater(devices, swift_dir, tmp_path)
    stats = await upd.update_pass()
    assert stats.successes == 1 and stats.failures == 0
    for i, f in enumerate(fakes):
        assert len(f.requests) == 1
        method, path, headers = f.requests[0]
        assert method == "PUT"
        assert path == f"/sd{'abc'[i]}/0/AUTH_a/c1"
        assert headers["X-Put-Timestamp"] == ts(1)
        assert Timestamp(headers["X-Delete-Timestamp"]) == Timestamp(0)
        assert headers["X-Object-Count"] == "3"
        assert headers["X-Bytes-Used"] == "30"
        assert headers["X-Account-Override-Deleted"] == "yes"
        assert headers["X-Backend-Storage-Policy-Index"] == "0"
    assert reported(b) == (ts(1), b.get_info()["delete_timestamp"], 3, 30)
    # Unchanged: nothing is sent again.
    stats = await upd.update_pass()
    assert stats.no_changes == 1 and stats.successes == 0
    assert all(len(f.requests) == 1 for f in fakes)
    # A new object: the new totals go out.
    b.put_object("new", ts(50), 5, "text/plain", "etag")
    stats = await upd.update_pass()
    assert stats.successes == 1
    assert [f.requests[-1][2]["X-Object-Count"] for f in fakes] == ["4"] * 3
    assert [f.requests[-1][2]["X-Bytes-Used"] for f in fakes] == ["35"] * 3
    assert reported(b)[2:] == (4, 35)
    recon = json.loads((tmp_path / "recon" / "container.recon").read_text())
    assert recon["container_updater_stats"]["successes"] == 1
    assert "container_updater_sweep" in recon
    await upd.close()


async def test_deleted_container_reports_delete_timestamp(
    devices: Path, swift_dir: Path, tmp_path: Path, fakes: list[FakeAccountServer]
) -> None:
    b = make_container(devices, "gone")
    upd = make_updater(devices, swift_dir, tmp_path)
    await upd.update_pass()
    b.delete_db(ts(99))
    stats = await upd.update_pass()
    assert stats.successes == 1
    assert [f.requests[-1][2]["X-Delete-Timestamp"] for f in fakes] == [ts(99)] * 3
    await upd.close()


async def test_majority_is_enough(
    devices: Path, swift_dir: Path, tmp_path: Path, fakes: list[FakeAccountServer]
) -> None:
    b = make_container(devices, "c", objects=1)
    fakes[2].status = 503
    upd = make_updater(devices, swift_dir, tmp_path)
    stats = await upd.update_pass()
    assert stats.successes == 1
    assert reported(b)[2] == 1
    await upd.close()


async def test_failure_not_recorded_suppressed_then_retried(
    devices: Path, swift_dir: Path, tmp_path: Path, fakes: list[FakeAccountServer]
) -> None:
    b = make_container(devices, "c", objects=2)
    fakes[0].status = 500
    fakes[1].status = 404
    fake = FakeTime()
    upd = make_updater(devices, swift_dir, tmp_path, fake, account_suppression_time=60)
    stats = await upd.update_pass()
    assert stats.failures == 1 and stats.successes == 0
    assert reported(b)[2] == 0
    # Within the suppression time the account is left alone.
    fakes[0].status = fakes[1].status = 201
    fake.now += 30
    stats = await upd.update_pass()
    assert stats.suppressed == 1
    assert len(fakes[2].requests) == 1
    # After it, the next pass sends again and records it.
    fake.now += 31
    stats = await upd.update_pass()
    assert stats.successes == 1
    assert len(fakes[2].requests) == 2
    assert reported(b)[2:] == (2, 20)
    await upd.close()


async def test_unreachable_account_server_is_a_failure(
    devices: Path, swift_dir: Path, tmp_path: Path, fakes: list[FakeAccountServer]
) -> None:
    b = make_container(devices, "c", objects=1)
    await fakes[0].server.close()
    await fakes[1].server.close()
    upd = make_updater(devices, swift_dir, tmp_path, conn_timeout=0.5, node_timeout=1)
    stats = await upd.update_pass()
    assert stats.failures == 1
    assert reported(b)[2] == 0
    await upd.close()


async def test_no_account_anywhere_quarantines(
    devices: Path, swift_dir: Path, tmp_path: Path, fakes: list[FakeAccountServer]
) -> None:
    b = make_container(devices, "orphan", objects=1)
    for f in fakes:
        f.status = 404
    upd = make_updater(devices, swift_dir, tmp_path)
    stats = await upd.update_pass()
    assert stats.quarantines == 1
    assert not os.path.exists(b.db_file)
    assert list((devices / "sda" / "quarantined").rglob("*.db"))
    await upd.close()


async def test_auto_created_container_skipped(
    devices: Path, swift_dir: Path, tmp_path: Path, fakes: list[FakeAccountServer]
) -> None:
    make_container(devices, "auto", objects=1, put_ts=0)
    upd = make_updater(devices, swift_dir, tmp_path)
    stats = await upd.update_pass()
    assert stats.successes == stats.failures == 0
    assert all(not f.requests for f in fakes)
    await upd.close()


async def test_rate_limit_and_many_containers(
    devices: Path, swift_dir: Path, tmp_path: Path, fakes: list[FakeAccountServer]
) -> None:
    for i in range(10):
        make_container(devices, f"c{i}", objects=1, part=str(i % 3))
    fake = FakeTime()
    upd = make_updater(devices, swift_dir, tmp_path, fake, containers_per_second=5, concurrency=2)
    stats = await upd.update_pass()
    assert stats.successes == 10
    # 10 containers at 5/s with 1 s of burst credit: at least ~1 s slept.
    assert sum(fake.sleeps) >= 1.0
    assert sorted(r[1] for r in fakes[0].requests) == sorted(
        f"/sda/0/AUTH_a/c{i}" for i in range(10)
    )
    await upd.close()


async def test_missing_device_and_ring(devices: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    upd = make_updater(devices, empty, tmp_path)
    stats = await upd.update_pass()
    assert stats.successes == 0
    await upd.close()


def test_needs_report() -> None:
    info = {
        "put_timestamp": ts(2),
        "delete_timestamp": "0",
        "object_count": 1,
        "bytes_used": 3,
        "reported_put_timestamp": ts(2),
        "reported_delete_timestamp": "0",
        "reported_object_count": 1,
        "reported_bytes_used": 3,
    }
    assert not needs_report(info)
    for key, value in (
        ("put_timestamp", ts(3)),
        ("delete_timestamp", ts(3)),
        ("object_count", 2),
        ("bytes_used", 4),
    ):
        assert needs_report({**info, key: value})


def test_config_names_and_errors(tmp_path: Path) -> None:
    conf = load_config(str(ROOT / "etc" / "container-updater.yaml"), ContainerUpdaterConfig)
    assert (conf.interval, conf.concurrency, conf.node_timeout, conf.conn_timeout) == (
        300,
        4,
        3,
        0.5,
    )
    assert conf.containers_per_second == 50
    assert conf.account_suppression_time == 60
    bad = tmp_path / "bad.yaml"
    bad.write_text("concurrency: 0\n")
    with pytest.raises(ConfigError):
        load_config(str(bad), ContainerUpdaterConfig)
    bad.write_text("no_such_setting: 1\n")
    with pytest.raises(ConfigError):
        load_config(str(bad), ContainerUpdaterConfig)


async def test_main_once_end_to_end(
    devices: Path, swift_dir: Path, tmp_path: Path, fakes: list[FakeAccountServer]
) -> None:
    (swift_dir / "swiftlite.yaml").write_text(
        "hash_path_prefix: ''\nhash_path_suffix: endcap\n"
        "policies:\n  - index: 0\n    name: gold\n    default: true\n"
    )
    b = make_container(devices, "cli", objects=2)
    conf = tmp_path / "container-updater.yaml"
    conf.write_text(
        f"devices: {devices}\nmount_check: false\nswift_dir: {swift_dir}\n"
        f"recon_cache_path: {tmp_path / 'recon'}\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "swiftlite.container.updater",
        str(conf),
        "once",
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert b"Container update sweep completed" in err
    assert all(len(f.requests) == 1 for f in fakes)
    assert reported(b)[2:] == (2, 20)


async def test_no_blocking_calls_in_the_loop(
    devices: Path, swift_dir: Path, tmp_path: Path, fakes: list[FakeAccountServer]
) -> None:
    from blockbuster import blockbuster_ctx

    b = make_container(devices, "c", objects=2)
    fakes[2].status = 500
    upd = make_updater(devices, swift_dir, tmp_path)
    with blockbuster_ctx():
        stats = await upd.update_pass()
    assert stats.successes == 1
    assert reported(b)[2] == 2
    await upd.close()


async def test_stalled_device_does_not_hold_up_another(
    devices: Path,
    swift_dir: Path,
    tmp_path: Path,
    fakes: list[FakeAccountServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    from swiftlite.container import updater as updater_mod

    (devices / "sdb").mkdir()
    make_container(devices, "fast", objects=1)
    slow = ContainerBroker(
        ContainerBroker.db_path(str(devices), "sdb", "0", "AUTH_a", "slow"),
        account="AUTH_a",
        container="slow",
    )
    slow.initialize(ts(1), storage_policy_index=0)
    release = threading.Event()
    real = updater_mod.read_info

    def stalling(db_file: str) -> dict[str, Any] | None:
        if "/sdb/" in db_file:
            release.wait(30)
        return real(db_file)

    monkeypatch.setattr(updater_mod, "read_info", stalling)
    upd = make_updater(devices, swift_dir, tmp_path, concurrency=2)
    sweep = asyncio.create_task(upd.update_pass())
    try:
        # sda's container is reported while sdb's disk hangs.
        for _ in range(500):
            if fakes[0].requests:
                break
            await asyncio.sleep(0.01)
        assert [r[1] for r in fakes[0].requests] == ["/sda/0/AUTH_a/fast"]
        assert not sweep.done()
    finally:
        release.set()
    stats = await sweep
    assert stats.successes == 2
    await upd.close()


async def test_reports_go_to_the_replication_network(
    devices: Path, swift_dir: Path, tmp_path: Path, fakes: list[FakeAccountServer]
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    devs: list[dict[str, Any] | None] = [
        {
            "id": i,
            "region": 1,
            "zone": i + 1,
            "ip": "127.0.0.1",
            "port": dead,
            "replication_ip": "127.0.0.1",
            "replication_port": f.port,
            "device": f"sd{'abc'[i]}",
            "weight": 100.0,
            "meta": "",
        }
        for i, f in enumerate(fakes)
    ]
    RingData([array.array("H", [i]) for i in range(3)], devs, 32).save(
        str(swift_dir / "account.ring.gz")
    )
    make_container(devices, "c", objects=1)
    upd = make_updater(devices, swift_dir, tmp_path)
    stats = await upd.update_pass()
    assert stats.successes == 1
    assert all(len(f.requests) == 1 for f in fakes)
    await upd.close()


async def test_report_matches_swifts_container_updater(
    devices: Path,
    swift_dir: Path,
    tmp_path: Path,
    fakes: list[FakeAccountServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Swift's ContainerUpdater, run on the same DB, sends the same report
    and records the same reported values."""
    swift_updater = pytest.importorskip("swift.container.updater")
    import swift.common.utils

    monkeypatch.setattr(swift.common.utils, "HASH_PATH_PREFIX", b"")
    monkeypatch.setattr(swift.common.utils, "HASH_PATH_SUFFIX", b"endcap")
    b = make_container(devices, "oracle", objects=3)
    b.delete_object("o1", ts(40))
    b.put_object("o2", ts(41), 1234, "text/plain", "etag")
    b.get_info()  # fold the (swiftlite JSON) pending file in first
    b.close()
    keys = (
        "X-Put-Timestamp",
        "X-Delete-Timestamp",
        "X-Object-Count",
        "X-Bytes-Used",
        "X-Account-Override-Deleted",
        "X-Backend-Storage-Policy-Index",
    )

    def sent() -> list[tuple[str, str, dict[str, str]]]:
        out = [
            (f.requests[-1][0], f.requests[-1][1], {k: f.requests[-1][2][k] for k in keys})
            for f in fakes
        ]
        for f in fakes:
            f.requests.clear()
        return out

    theirs_upd = swift_updater.ContainerUpdater(
        {"devices": str(devices), "mount_check": "false", "swift_dir": str(swift_dir)}
    )
    await asyncio.to_thread(theirs_upd.process_container, b.db_file)
    theirs = sent()
    theirs_reported = reported(b)
    b.reported("0", "0", 0, 0)
    b.close()
    upd = make_updater(devices, swift_dir, tmp_path)
    stats = await upd.update_pass()
    assert stats.successes == 1
    assert sent() == theirs
    assert reported(b) == theirs_reported
    await upd.close()
