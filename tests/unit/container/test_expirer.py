"""Container-driven object expirer against a real swiftlite object server."""

from __future__ import annotations

import array
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from swiftlite.common.config import ClusterConfig, ConfigError, StoragePolicy, load_config
from swiftlite.common.hashing import get_hash_path_secrets, set_hash_path_secrets
from swiftlite.common.timestamp import Timestamp
from swiftlite.container.backend import ContainerBroker
from swiftlite.container.daemon_config import ObjectExpirerConfig
from swiftlite.container.expirer import (
    CHANGED,
    EXPIRED,
    FAILED,
    ObjectExpirer,
    classify,
    owner_process,
)
from swiftlite.object.config import ObjectServerConfig
from swiftlite.object.server import ObjectServer
from swiftlite.ring.ring_io import RingData

ROOT = Path(__file__).resolve().parents[3]
DEVS = ("sda", "sdb", "sdc")
ACCOUNT = "AUTH_a"


class FakeContainerServer:
    """Takes the object servers' container updates."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, CIMultiDict[str]]] = []
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.server = TestServer(app, host="127.0.0.1")

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path, CIMultiDict(request.headers)))
        return web.Response(status=204)

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port


def write_ring(path: Path, port: int, devices: tuple[str, ...] = DEVS) -> None:
    """One partition; replica i on ``devices[i]``, all at 127.0.0.1:port."""
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
        for i, dev in enumerate(devices)
    ]
    rows = [array.array("H", [i]) for i in range(len(devices))]
    RingData(rows, devs, 32).save(str(path))


def cluster() -> ClusterConfig:
    return ClusterConfig(
        hash_path_suffix="endcap",
        policies=[
            StoragePolicy(index=0, name="gold", default=True),
            StoragePolicy(index=1, name="silver"),
        ],
    )


class Env:
    def __init__(self, tmp: Path, obj_port: int, cont: FakeContainerServer) -> None:
        self.tmp = tmp
        self.obj_port = obj_port
        self.cont = cont
        self.obj_devices = tmp / "objnode"
        self.cont_devices = tmp / "contnode"
        self.swift_dir = tmp / "etc"
        self.session = ClientSession()

    def broker(self, container: str = "c", device: str = "sda") -> ContainerBroker:
        path = ContainerBroker.db_path(str(self.cont_devices), device, "0", ACCOUNT, container)
        b = ContainerBroker(path, account=ACCOUNT, container=container)
        try:
            b.get_info()
        except Exception:
            b.initialize(Timestamp(1).internal, storage_policy_index=0)
        return b

    async def put(
        self,
        name: str,
        put_ts: float,
        delete_at: int | None,
        container: str = "c",
        policy: int = 0,
    ) -> None:
        """The object on every object device, and its row in the container DB."""
        for dev in DEVS:
            headers = {
                "X-Timestamp": Timestamp(put_ts).internal,
                "Content-Type": "text/plain",
                "Content-Length": "4",
                "X-Backend-Storage-Policy-Index": str(policy),
            }
            if delete_at is not None:
                headers["X-Delete-At"] = str(delete_at)
            async with self.session.put(
                f"http://127.0.0.1:{self.obj_port}/{dev}/0/{ACCOUNT}/{container}/{name}",
                headers=headers,
                data=b"data",
            ) as resp:
                assert resp.status == 201, await resp.text()
        self.broker(container).put_object(
            name,
            Timestamp(put_ts).internal,
            4,
            "text/plain",
            "etag",
            storage_policy_index=policy,
            expires=delete_at,
        )

    def files(self, name: str, container: str = "c") -> list[str]:
        """File names in the object's hash dirs on every device (sorted)."""
        from swiftlite.common.hashing import hash_path_digest

        digest = hash_path_digest(ACCOUNT, container, name).hex()
        out: list[str] = []
        for dev in DEVS:
            out += sorted(p.name for p in (self.obj_devices / dev).rglob(f"{digest}/*"))
        return out

    def expirer(self, **kw: Any) -> ObjectExpirer:
        args: dict[str, Any] = {
            "devices": str(self.cont_devices),
            "mount_check": False,
            "swift_dir": str(self.swift_dir),
            "recon_cache_path": str(self.tmp / "recon"),
            "bind_ip": "127.0.0.1",
            "bind_port": self.cont.port,
            "tasks_per_second": 0,
            "concurrency": 4,
        }
        extra = {k: kw.pop(k) for k in ("clock", "wall", "sleep") if k in kw}
        args.update(kw)
        return ObjectExpirer(ObjectExpirerConfig(**args), cluster(), **extra)


def row(b: ContainerBroker, name: str) -> tuple[Any, ...]:
    with b.get() as conn:
        r = conn.execute(
            "SELECT created_at, deleted, expires FROM object WHERE name = ?", (name,)
        ).fetchone()
    return tuple(r)


@pytest.fixture(autouse=True)
def secrets() -> Iterator[None]:
    old = get_hash_path_secrets()
    set_hash_path_secrets("", "endcap")
    yield
    set_hash_path_secrets(*old)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    for dev in DEVS:
        (tmp_path / "objnode" / dev).mkdir(parents=True)
    (tmp_path / "contnode" / "sda").mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    cont = FakeContainerServer()
    await cont.server.start_server()
    srv = ObjectServer(
        ObjectServerConfig(
            devices=str(tmp_path / "objnode"),
            mount_check=False,
            log_requests=False,
            swift_dir=str(tmp_path / "etc"),
        ),
        cluster(),
    )
    obj = TestServer(srv.make_app(), host="127.0.0.1")
    await obj.start_server()
    assert obj.port is not None
    write_ring(tmp_path / "etc" / "object.ring.gz", obj.port)
    write_ring(tmp_path / "etc" / "object-1.ring.gz", obj.port)
    write_ring(tmp_path / "etc" / "container.ring.gz", cont.port)
    e = Env(tmp_path, obj.port, cont)
    try:
        yield e
    finally:
        await e.session.close()
        await obj.close()
        await cont.server.close()


async def test_past_deleted_future_untouched(env: Env) -> None:
    now = int(time.time())
    await env.put("old", now - 100, now - 50)
    await env.put("later", now - 100, now + 3600)
    await env.put("plain", now - 100, None)
    exp = env.expirer()
    stats = await exp.expire_pass()
    assert (stats.containers, stats.objects, stats.expired, stats.failures) == (1, 1, 1, 0)
    tomb = Timestamp(now - 50).internal
    # Every replica holds the same tombstone, at the X-Delete-At time.
    assert env.files("old") == [tomb + ".ts"] * 3
    assert all(f.endswith(".data") for f in env.files("later"))
    assert all(f.endswith(".data") for f in env.files("plain"))
    b = env.broker()
    assert row(b, "old")[:2] == (tomb, 1)
    assert row(b, "later")[1] == 0 and row(b, "plain")[1] == 0
    # The object servers told the container replicas too.
    deletes = [r for r in env.cont.requests if r[0] == "DELETE"]
    assert sorted(r[1] for r in deletes) == [f"/{d}/0/{ACCOUNT}/c/old" for d in DEVS]
    assert all(r[2]["X-Timestamp"] == tomb for r in deletes)
    recon = json.loads((env.tmp / "recon" / "object.recon").read_text())
    assert recon["expired_last_pass"] == 1
    # Nothing left to do.
    stats = await exp.expire_pass()
    assert stats.objects == 0
    await exp.close()


async def test_if_delete_at_mismatch_leaves_object_and_row(env: Env) -> None:
    now = int(time.time())
    await env.put("moved", now - 100, now - 50)
    # The container's row is stale: it names another X-Delete-At.
    env.broker().put_object(
        "moved", Timestamp(now - 99).internal, 4, "text/plain", "etag", expires=now - 40
    )
    exp = env.expirer()
    stats = await exp.expire_pass()
    assert (stats.changed, stats.expired) == (1, 0)
    assert all(f.endswith(".data") for f in env.files("moved"))
    assert row(env.broker(), "moved")[1] == 0
    await exp.close()


async def test_object_already_gone_row_removed(env: Env) -> None:
    now = int(time.time())
    env.broker().put_object(
        "ghost", Timestamp(now - 100).internal, 4, "text/plain", "etag", expires=now - 50
    )
    exp = env.expirer()
    stats = await exp.expire_pass()
    assert stats.expired == 1
    assert row(env.broker(), "ghost")[1] == 1
    await exp.close()


async def test_object_servers_down_row_kept_for_next_pass(env: Env) -> None:
    now = int(time.time())
    env.broker().put_object(
        "o", Timestamp(now - 100).internal, 4, "text/plain", "etag", expires=now - 50
    )
    # An object ring whose servers do not answer (a port nobody listens on).
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    write_ring(env.swift_dir / "object.ring.gz", dead)
    exp = env.expirer(conn_timeout=0.5, node_timeout=1)
    stats = await exp.expire_pass()
    assert (stats.failures, stats.expired) == (1, 0)
    assert row(env.broker(), "o")[1] == 0
    # The servers are back: the next pass finishes it.
    write_ring(env.swift_dir / "object.ring.gz", env.obj_port)
    await exp.close()
    exp = env.expirer()
    stats = await exp.expire_pass()
    assert stats.expired == 1
    assert row(env.broker(), "o")[1] == 1
    await exp.close()


async def test_only_first_primary_expires(env: Env) -> None:
    now = int(time.time())
    await env.put("old", now - 100, now - 50)
    # The container's first replica is on sdb, not this node's sda.
    write_ring(env.swift_dir / "container.ring.gz", env.cont.port, ("sdb", "sda", "sdc"))
    exp = env.expirer()
    stats = await exp.expire_pass()
    assert (stats.containers, stats.containers_skipped, stats.objects) == (0, 1, 0)
    await exp.close()
    # Another node (other ip or port) is not this one either.
    write_ring(env.swift_dir / "container.ring.gz", env.cont.port)
    exp = env.expirer(bind_port=env.cont.port + 1)
    stats = await exp.expire_pass()
    assert stats.containers_skipped == 1
    await exp.close()
    assert all(f.endswith(".data") for f in env.files("old"))


async def test_batches_pass_over_rows_left_in_place(env: Env) -> None:
    now = int(time.time())
    # The first due rows are stale (412) and stay; the later ones still go.
    for i in range(3):
        await env.put(f"stale{i}", now - 100, now - 90)
        env.broker().put_object(
            f"stale{i}", Timestamp(now - 99).internal, 4, "text/plain", "etag", expires=now - 80
        )
    for i in range(4):
        env.broker().put_object(
            f"gone{i}", Timestamp(now - 100).internal, 4, "text/plain", "etag", expires=now - 10
        )
    exp = env.expirer(batch_size=2)
    stats = await exp.expire_pass()
    assert (stats.objects, stats.changed, stats.expired) == (7, 3, 4)
    await exp.close()


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_processes_split_containers_once(env: Env) -> None:
    now = int(time.time())
    names = [f"cont{i}" for i in range(12)]
    for name in names:
        env.broker(name).put_object(
            "o", Timestamp(now - 100).internal, 4, "text/plain", "etag", expires=now - 50
        )
    handled: list[str] = []
    owners = {owner_process(ACCOUNT, n, 3) for n in names}
    assert owners == {0, 1, 2}
    for process in range(3):
        fake = FakeTime()
        exp = env.expirer(
            processes=3,
            process=process,
            tasks_per_second=4,
            clock=fake.clock,
            sleep=fake.sleep,
        )
        stats = await exp.expire_pass()
        mine = [n for n in names if owner_process(ACCOUNT, n, 3) == process]
        assert stats.containers == len(mine) == stats.expired
        assert stats.containers_skipped == len(names) - len(mine)
        # Rate limited: ``len(mine)`` deletes at 4/s (1 s of burst credit).
        assert sum(fake.sleeps) >= len(mine) / 4 - 1.5
        handled += mine
        await exp.close()
    assert sorted(handled) == sorted(names)
    assert all(row(env.broker(n), "o")[1] == 1 for n in names)


def test_classify() -> None:
    assert classify([204, 204, 204]) == EXPIRED
    assert classify([204, 404, None]) == EXPIRED
    assert classify([404, 404, 503]) == EXPIRED
    assert classify([412, 412, 204]) == CHANGED
    assert classify([409, 404, 412]) == CHANGED
    assert classify([204, None, 503]) == FAILED
    assert classify([507, 507, 412]) == FAILED
    assert classify([]) == FAILED


def test_config(tmp_path: Path) -> None:
    conf = load_config(str(ROOT / "etc" / "object-expirer.yaml"), ObjectExpirerConfig)
    assert (conf.interval, conf.concurrency, conf.tasks_per_second) == (300, 1, 50)
    assert (conf.processes, conf.process) == (0, 0)
    bad = tmp_path / "bad.yaml"
    bad.write_text("processes: 2\nprocess: 2\n")
    with pytest.raises(ConfigError):
        load_config(str(bad), ObjectExpirerConfig)


async def test_main_once_end_to_end(env: Env) -> None:
    (env.swift_dir / "swiftlite.yaml").write_text(
        "hash_path_prefix: ''\nhash_path_suffix: endcap\n"
        "policies:\n  - index: 0\n    name: gold\n    default: true\n"
    )
    now = int(time.time())
    await env.put("old", now - 100, now - 50)
    await env.put("later", now - 100, now + 3600)
    conf = env.tmp / "object-expirer.yaml"
    conf.write_text(
        f"devices: {env.cont_devices}\nmount_check: false\nswift_dir: {env.swift_dir}\n"
        f"recon_cache_path: {env.tmp / 'recon'}\n"
        f"bind_ip: 127.0.0.1\nbind_port: {env.cont.port}\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "swiftlite.container.expirer",
        str(conf),
        "once",
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert b"1 objects expired" in err
    assert env.files("old") == [Timestamp(now - 50).internal + ".ts"] * 3
    assert all(f.endswith(".data") for f in env.files("later"))
    assert row(env.broker(), "old")[1] == 1
    assert row(env.broker(), "later")[1] == 0


async def test_no_blocking_calls_in_the_loop(env: Env) -> None:
    from blockbuster import blockbuster_ctx

    now = int(time.time())
    await env.put("old", now - 100, now - 50)
    env.broker().put_object(
        "ghost", Timestamp(now - 100).internal, 4, "text/plain", "etag", expires=now - 50
    )
    exp = env.expirer()
    with blockbuster_ctx():
        stats = await exp.expire_pass()
    assert stats.expired == 2
    await exp.close()


async def test_changed_row_reclaimed_after_reclaim_age(env: Env) -> None:
    now = int(time.time())
    await env.put("old", now - 800000, now - 700000)
    env.broker().put_object(
        "old", Timestamp(now - 799999).internal, 4, "text/plain", "etag", expires=now - 650000
    )
    exp = env.expirer(reclaim_age=604800)
    stats = await exp.expire_pass()
    assert (stats.changed, stats.reclaimed, stats.expired) == (1, 1, 0)
    assert row(env.broker(), "old")[1] == 1
    # The object itself is not touched (the auditor removes expired files).
    assert all(f.endswith(".data") for f in env.files("old"))
    await exp.close()


async def test_forever_mode_repeats_and_stops_on_sigterm(env: Env) -> None:
    import signal

    (env.swift_dir / "swiftlite.yaml").write_text(
        "hash_path_prefix: ''\nhash_path_suffix: endcap\n"
        "policies:\n  - index: 0\n    name: gold\n    default: true\n"
    )
    conf = env.tmp / "object-expirer.yaml"
    conf.write_text(
        f"devices: {env.cont_devices}\nmount_check: false\nswift_dir: {env.swift_dir}\n"
        f"recon_cache_path: {env.tmp / 'recon'}\ninterval: 0.2\n"
        f"bind_ip: 127.0.0.1\nbind_port: {env.cont.port}\n"
    )
    now = int(time.time())
    env.broker()  # the DB exists before the daemon starts
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "swiftlite.container.expirer",
        str(conf),
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        # An object that expires while the daemon runs is deleted by a later pass.
        await env.put("soon", now - 100, now - 1)
        for _ in range(1000):
            if env.files("soon") == [Timestamp(now - 1).internal + ".ts"] * 3:
                break
            await asyncio.sleep(0.02)
        assert env.files("soon") == [Timestamp(now - 1).internal + ".ts"] * 3
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert err.count(b"Begin object expiration pass") >= 1


async def test_concurrency_caps_deletes_in_flight(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = int(time.time())
    for i in range(12):
        env.broker().put_object(
            f"o{i}", Timestamp(now - 100).internal, 4, "text/plain", "etag", expires=now - 50
        )
    in_flight = 0
    peak = 0
    real = ObjectExpirer.expire_object

    async def counting(self: ObjectExpirer, account: str, container: str, r: Any) -> str:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await asyncio.sleep(0.01)
            return await real(self, account, container, r)
        finally:
            in_flight -= 1

    monkeypatch.setattr(ObjectExpirer, "expire_object", counting)
    exp = env.expirer(concurrency=3)
    stats = await exp.expire_pass()
    assert stats.expired == 12
    assert peak == 3
    await exp.close()


async def test_policy_of_the_row_picks_ring_and_policy(env: Env) -> None:
    now = int(time.time())
    await env.put("silver", now - 100, now - 50, policy=1)
    exp = env.expirer()
    stats = await exp.expire_pass()
    assert stats.expired == 1
    tomb = Timestamp(now - 50).internal + ".ts"
    assert env.files("silver") == [tomb] * 3
    assert all(
        p.parent.parent.parent.parent.name == "objects-1"
        for dev in DEVS
        for p in (env.obj_devices / dev).rglob(tomb)
    )
    assert row(env.broker(), "silver")[1] == 1
    await exp.close()
