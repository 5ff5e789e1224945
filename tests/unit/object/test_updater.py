"""Object updater against fake container servers on free ports."""

from __future__ import annotations

import array
import asyncio
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from swiftlite.common.config import ClusterConfig, StoragePolicy
from swiftlite.common.timestamp import Timestamp
from swiftlite.object import updates
from swiftlite.object.daemon_config import ObjectUpdaterConfig
from swiftlite.object.updater import ObjectUpdater
from swiftlite.ring.ring_io import RingData


class FakeContainerServer:
    """Answers every request with ``status`` (or what ``route`` says)."""

    def __init__(self, status: int = 201) -> None:
        self.status = status
        self.requests: list[tuple[str, str, CIMultiDict[str]]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay = 0.0
        self.route: Any = None
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.server = TestServer(app, host="127.0.0.1")

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.raw_path, CIMultiDict(request.headers)))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.route is not None:
                return self.route(request)  # type: ignore[no-any-return]
            return web.Response(status=self.status)
        finally:
            self.in_flight -= 1

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port


@pytest.fixture
async def fakes() -> AsyncIterator[list[FakeContainerServer]]:
    servers = [FakeContainerServer() for _ in range(3)]
    for s in servers:
        await s.server.start_server()
    try:
        yield servers
    finally:
        for s in servers:
            await s.server.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_ring(swift_dir: Path, ports: list[int]) -> None:
    """A one-partition container ring: replica i on device i at ports[i]."""
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
    RingData(rows, devs, 32).save(str(swift_dir / "container.ring.gz"))


def cluster() -> ClusterConfig:
    return ClusterConfig(
        hash_path_suffix="endcap",
        policies=[
            StoragePolicy(index=0, name="gold", default=True),
            StoragePolicy(index=1, name="silver"),
        ],
    )


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
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
def swift_dir(tmp_path: Path, fakes: list[FakeContainerServer]) -> Path:
    d = tmp_path / "etc"
    d.mkdir()
    write_ring(d, [f.port for f in fakes])
    return d


def make_updater(
    devices: Path, swift_dir: Path, tmp_path: Path, fake: FakeTime | None = None, **kw: Any
) -> ObjectUpdater:
    args: dict[str, Any] = {
        "devices": str(devices),
        "mount_check": False,
        "swift_dir": str(swift_dir),
        "recon_cache_path": str(tmp_path / "recon"),
        "objects_per_second": 0,
        "node_timeout": 5,
    }
    args.update(kw)
    fake = fake or FakeTime()
    return ObjectUpdater(ObjectUpdaterConfig(**args), cluster(), clock=fake.clock, sleep=fake.sleep)


def pending(
    devices: Path,
    obj: str = "o",
    ts: float = 1700000000.0,
    op: str = "PUT",
    policy: int = 0,
    dev: str = "sda",
    **extra: Any,
) -> str:
    t = Timestamp(ts).internal
    headers = {
        "x-timestamp": t,
        "x-trans-id": "tx-test",
        "x-backend-storage-policy-index": str(policy),
        "referer": "PUT http://localhost/sda/1/a/c/o",
        "user-agent": "object-server 1",
    }
    if op == "PUT":
        headers.update({"x-size": "3", "x-content-type": "text/plain", "x-etag": "0" * 32})
    record: dict[str, Any] = {
        "op": op,
        "account": "a",
        "container": "c",
        "obj": obj,
        "headers": headers,
        "db_state": None,
    }
    record.update(extra)
    return updates.write_async_pending(str(devices / dev), policy, "a", "c", obj, record, t)


def load(path: str) -> dict[str, Any]:
    with open(path) as fp:
        return json.load(fp)  # type: ignore[no-any-return]


async def run_pass(upd: ObjectUpdater) -> Any:
    try:
        return await upd.update_pass()
    finally:
        await upd.close()


async def test_success_everywhere_removes_the_record(
    devices: Path, swift_dir: Path, tmp_path: Path, fakes: list[FakeContainerServer]
) -> None:
    path = pending(devices)
    stats = await run_pass(make_updater(devices, swift_dir, tmp_path))
    assert stats.successes == 1 and stats.unlinks == 1 and stats.failures == 0
    assert not os.path.exists(path)
    assert not os.path.exists(os.path.dirname(path))  # emptied suffix dir removed
    for i, f in enumerate(fakes):
        assert len(f.requests) == 1
        method, raw_path, headers = f.requests[0]
        assert method == "PUT"
        assert raw_path == f"/sd{'abc'[i]}/0/a/c/o"
        assert headers["X-Timestamp"] == Timestamp(1700000000.0).internal
        assert headers["X-Size"] == "3" and headers["X-Etag"] == "0" * 32
        assert headers["X-Trans-Id"] == "tx-test"
        assert headers["User-Agent"].startswith("object-updater ")
        assert headers["X-Backend-Accept-Redirect"] == "true"
        assert headers["X-Backend-Storage-Policy-Index"] == "0"
    recon = load(str(tmp_path / "recon" / "object.recon"))
    assert recon["object_updater_stats"]["successes"] == 1
    assert "object_updater_sweep" in recon


async def test_partial_success_then_retry_only_the_failed_node(
    devices: Path, swift_dir: Path, tmp_path: Path, fakes: list[FakeContainerServer]
) -> None:
    path = pending(devices, op="DELETE")
    fakes[1].status = 503
    stats = await run_pass(make_updater(devices, swift_dir, tmp_path))
    assert stats.failures == 1 and stats.successes == 0
    record = load(path)
    assert sorted(record["successes"]) == [0, 2]
    assert record["version"] == 1 and record["op"] == "DELETE"
    assert [len(f.requests) for f in fakes] == [1, 1, 1]

    # Still down: nothing new to record, the others are not asked again.
    stats = await run_pass(make_updater(devices, swift_dir, tmp_path))
    assert stats.failures == 1
    assert [len(f.requests) for f in fakes] == [1, 2, 1]

    fakes[1].status = 204
    stats = await run_pass(make_updater(devices, swift_dir, tmp_path))
    assert stats.successes == 1
    assert [len(f.requests) for f in fakes] == [1, 3, 1]
    assert fakes[1].requests[-1][0] == "DELETE"
    assert not os.path.exists(path)


async def test_only_the_newest_record_per_object_is_sent(
    devices: Path, swift_dir: Path, tmp_path: Path, fakes: list[FakeContainerServer]
) -> None:
    old = pending(devices, ts=1700000000.0)
    new = pending(devices, ts=1700000005.0, op="DELETE")
    other = pending(devices, obj="other", ts=1700000001.0)
    assert os.path.dirname(old) == os.path.dirname(new)
    stats = await run_pass(make_updater(devices, swift_dir, tmp_path))
    assert stats.outdated_unlinks == 1 and stats.successes == 2
    for p in (old, new, other):
        assert not os.path.exists(p)
    sent = sorted((m, p, h["X-Timestamp"]) for m, p, h in fakes[0].requests)
    assert sent == [
        ("DELETE", "/sda/0/a/c/o", Timestamp(1700000005.0).internal),
        ("PUT", "/sda/0/a/c/other", Timestamp(1700000001.0).internal),
    ]


async def test_unreachable_node_and_stale_success_ids(
    devices: Path, tmp_path: Path, fakes: list[FakeContainerServer]
) -> None:
    swift_dir = tmp_path / "etc2"
    swift_dir.mkdir()
    dead = free_port()
    write_ring(swift_dir, [fakes[0].port, dead, fakes[2].port])
    # Node 7 succeeded once but is no longer in the ring: it does not count.
    path = pending(devices, successes=[7])
    stats = await run_pass(make_updater(devices, swift_dir, tmp_path, conn_timeout=2))
    assert stats.failures == 1
    assert sorted(load(path)["successes"]) == [0, 2, 7]
    assert len(fakes[0].requests) == 1 and len(fakes[2].requests) == 1


async def test_other_policy_and_bad_records(
    devices: Path, swift_dir: Path, tmp_path: Path, fakes: list[FakeContainerServer]
) -> None:
    p1 = pending(devices, obj="p1", policy=1)
    # Undecodable record: moved aside, never retried.
    bad_dir = devices / "sda" / "async_pending" / "abc"
    bad_dir.mkdir(parents=True)
    bad = bad_dir / ("f" * 29 + "abc-1700000000.00000")
    bad.write_bytes(b"\x80\x02pickle?")
    # A name without a timestamp is reported and left alone.
    odd = bad_dir / "no_timestamp_here"
    odd.write_text("{}")
    # A dir for a policy the cluster does not have.
    (devices / "sda" / "async_pending-9" / "123").mkdir(parents=True)
    stats = await run_pass(make_updater(devices, swift_dir, tmp_path))
    assert stats.successes == 1 and stats.quarantines == 1 and stats.errors == 1
    assert not os.path.exists(p1)
    assert fakes[0].requests[0][2]["X-Backend-Storage-Policy-Index"] == "1"
    assert os.listdir(devices / "sda" / "quarantined" / "objects") == [bad.name]
    assert odd.exists()


async def test_shard_redirect_is_followed_at_once(
    devices: Path, swift_dir: Path, tmp_path: Path, fakes: list[FakeContainerServer]
) -> None:
    def route(request: web.Request) -> web.Response:
        if request.path.startswith(("/sda/0/a/c/", "/sdb/0/a/c/", "/sdc/0/a/c/")):
            return web.Response(
                status=301,
                headers={
                    "Location": "/.shards_a/c-shard%201/o",
                    "X-Backend-Location-Is-Quoted": "true",
                    "X-Backend-Redirect-Timestamp": Timestamp(1700000100.0).internal,
                },
            )
        return web.Response(status=201)

    for f in fakes:
        f.route = route
    path = pending(devices)
    stats = await run_pass(make_updater(devices, swift_dir, tmp_path))
    assert stats.redirects == 1 and stats.successes == 1
    assert not os.path.exists(path)
    for i, f in enumerate(fakes):
        dev = f"sd{'abc'[i]}"
        assert [p for _m, p, _h in f.requests] == [
            f"/{dev}/0/a/c/o",
            f"/{dev}/0/.shards_a/c-shard%201/o",  # the immediate retry
        ]


async def test_redirect_failure_is_saved_in_the_record(
    devices: Path, swift_dir: Path, tmp_path: Path, fakes: list[FakeContainerServer]
) -> None:
    def route(request: web.Request) -> web.Response:
        if "/.shards_a/" in request.path:
            return web.Response(status=503)
        return web.Response(
            status=301,
            headers={
                "Location": "/.shards_a/shard1/o",
                "X-Backend-Redirect-Timestamp": Timestamp(1700000100.0).internal,
            },
        )

    for f in fakes:
        f.route = route
    path = pending(devices)
    stats = await run_pass(make_updater(devices, swift_dir, tmp_path))
    assert stats.redirects == 1 and stats.failures == 1
    record = load(path)
    assert record["container_path"] == ".shards_a/shard1"
    assert record["redirect_history"] == [".shards_a/shard1"]
    assert "successes" not in record
    # The next pass goes straight to the shard.
    for f in fakes:
        f.requests.clear()
        f.route = None
    stats = await run_pass(make_updater(devices, swift_dir, tmp_path))
    assert stats.successes == 1
    assert [r[1] for r in fakes[0].requests] == ["/sda/0/.shards_a/shard1/o"]


async def test_rate_limit_and_concurrency(
    devices: Path, swift_dir: Path, tmp_path: Path, fakes: list[FakeContainerServer]
) -> None:
    for i in range(6):
        pending(devices, obj=f"o{i}")
    for f in fakes:
        f.delay = 0.02
    fake = FakeTime()
    upd = make_updater(devices, swift_dir, tmp_path, fake, objects_per_second=10, concurrency=2)
    stats = await run_pass(upd)
    assert stats.successes == 6
    assert fake.sleeps == pytest.approx([0.1] * 6)
    assert all(f.max_in_flight <= 2 for f in fakes)


async def test_missing_ring_keeps_records(devices: Path, tmp_path: Path) -> None:
    path = pending(devices)
    empty = tmp_path / "no-ring"
    empty.mkdir()
    stats = await run_pass(make_updater(devices, empty, tmp_path))
    assert stats.successes == 0
    assert os.path.exists(path)


async def test_no_blocking_calls_in_the_loop(
    devices: Path, swift_dir: Path, tmp_path: Path, fakes: list[FakeContainerServer]
) -> None:
    from blockbuster import blockbuster_ctx

    done = pending(devices, obj="x")
    fakes[2].status = 500
    part = pending(devices, obj="y")
    upd = make_updater(devices, swift_dir, tmp_path)
    await upd.get_ring()  # the first ring load happens in a thread anyway
    with blockbuster_ctx():
        stats = await run_pass(upd)
    assert stats.failures == 2
    assert os.path.exists(done) and os.path.exists(part)


def test_config_defaults(tmp_path: Path) -> None:
    from swiftlite.common.config import load_config

    conf = ObjectUpdaterConfig()
    assert (conf.interval, conf.concurrency, conf.updater_workers) == (300.0, 8, 1)
    assert conf.max_objects_per_second == 50.0 and conf.node_timeout == 10.0
    assert ObjectUpdaterConfig(slowdown=0.01).max_objects_per_second == pytest.approx(50.0)
    assert ObjectUpdaterConfig(slowdown=0.09, objects_per_second=7).max_objects_per_second == 7
    sample = Path(__file__).resolve().parents[3] / "etc" / "object-updater.yaml"
    assert load_config(str(sample), ObjectUpdaterConfig).log_name == "object-updater"


async def test_main_once_end_to_end(
    devices: Path, tmp_path: Path, fakes: list[FakeContainerServer]
) -> None:
    swift_dir = tmp_path / "etc"
    swift_dir.mkdir()
    write_ring(swift_dir, [f.port for f in fakes])
    (swift_dir / "swiftlite.yaml").write_text("hash_path_suffix: e2e-updater\n")
    path = pending(devices)  # the record's name hash does not matter to the updater
    conf = tmp_path / "object-updater.yaml"
    conf.write_text(
        f"devices: {devices}\nmount_check: false\nswift_dir: {swift_dir}\n"
        f"recon_cache_path: {tmp_path / 'recon'}\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "swiftlite.object.updater",
        str(conf),
        "once",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert not os.path.exists(path)
    assert [len(f.requests) for f in fakes] == [1, 1, 1]
    assert b"Object update sweep completed" in err
    recon = load(str(tmp_path / "recon" / "object.recon"))
    assert recon["object_updater_stats"]["devices"]["sda"]["successes"] == 1


async def test_forever_mode_stops_on_sigterm(
    devices: Path, tmp_path: Path, fakes: list[FakeContainerServer]
) -> None:
    import signal

    swift_dir = tmp_path / "etc"
    swift_dir.mkdir()
    write_ring(swift_dir, [f.port for f in fakes])
    (swift_dir / "swiftlite.yaml").write_text("hash_path_suffix: forever\n")
    path = pending(devices)
    conf = tmp_path / "object-updater.yaml"
    conf.write_text(
        f"devices: {devices}\nmount_check: false\nswift_dir: {swift_dir}\n"
        f"recon_cache_path: {tmp_path / 'recon'}\ninterval: 0.2\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "swiftlite.object.updater",
        str(conf),
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    sweeps = 0
    try:
        while sweeps < 2:
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            assert line, "the updater exited early"
            if "Object update sweep completed:" in line:
                sweeps += 1
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    assert not os.path.exists(path)
    assert [len(f.requests) for f in fakes] == [1, 1, 1]  # sent once, not again


async def test_a_stalled_device_does_not_hold_up_another(
    devices: Path,
    swift_dir: Path,
    tmp_path: Path,
    fakes: list[FakeContainerServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    from swiftlite.object import updater_records

    (devices / "sdb").mkdir()
    stuck = pending(devices, obj="stuck", dev="sda")
    free = pending(devices, obj="free", dev="sdb")
    release = threading.Event()
    real_scan = updater_records.scan_prefix

    def scan(prefix_path: str, policy_index: int) -> Any:
        if "/sda/" in prefix_path:
            release.wait(30)  # a disk that does not answer
        return real_scan(prefix_path, policy_index)

    monkeypatch.setattr(updater_records, "scan_prefix", scan)
    upd = make_updater(devices, swift_dir, tmp_path, updater_workers=2)
    task = asyncio.create_task(upd.update_pass())
    try:
        while os.path.exists(free):
            assert not task.done()
            await asyncio.sleep(0.01)
        assert os.path.exists(stuck)
    finally:
        release.set()
        stats = await task
        await upd.close()
    assert stats.successes == 2 and not os.path.exists(stuck)


async def test_unmounted_devices_are_skipped(
    devices: Path, swift_dir: Path, tmp_path: Path, fakes: list[FakeContainerServer]
) -> None:
    path = pending(devices)
    stats = await run_pass(make_updater(devices, swift_dir, tmp_path, mount_check=True))
    assert stats.successes == 0 and stats.errors == 0
    assert os.path.exists(path) and fakes[0].requests == []
