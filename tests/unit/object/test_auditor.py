"""Object auditor: checks, quarantine, expiry, tombstones, rate limits, resume, main()."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from swiftlite.common import hashing
from swiftlite.common.config import ClusterConfig, StoragePolicy
from swiftlite.common.hashing import hash_path
from swiftlite.common.ratelimit import RateLimiter
from swiftlite.common.recon import read_recon
from swiftlite.common.timestamp import Timestamp
from swiftlite.object import auditor as auditor_mod
from swiftlite.object.auditor import ALL, ZBF, ObjectAuditor
from swiftlite.object.auditor_state import load_status, save_status
from swiftlite.object.daemon_config import ObjectAuditorConfig
from swiftlite.object.diskfile import DiskFileManager
from swiftlite.object.metadata import METADATA_KEY

NOW = time.time()


def cluster() -> ClusterConfig:
    return ClusterConfig(
        hash_path_suffix="endcap",
        policies=[
            StoragePolicy(index=0, name="gold", default=True),
            StoragePolicy(index=1, name="silver"),
        ],
    )


@pytest.fixture
def devices(tmp_path: Path) -> str:
    for dev in ("sda", "sdb"):
        (tmp_path / "node" / dev).mkdir(parents=True)
    return str(tmp_path / "node")


@pytest.fixture
def mgr(devices: str) -> DiskFileManager:
    return DiskFileManager(devices, fallocate_reserve="0")


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_auditor(
    devices: str, tmp_path: Path, fake: FakeTime | None = None, **kw: Any
) -> ObjectAuditor:
    args: dict[str, Any] = {
        "devices": devices,
        "mount_check": False,
        "recon_cache_path": str(tmp_path / "recon"),
        "files_per_second": 0,
        "bytes_per_second": 0,
        "zero_byte_files_per_second": 0,
    }
    args.update(kw)
    fake = fake or FakeTime()
    aud = ObjectAuditor(ObjectAuditorConfig(**args), cluster(), clock=fake.clock, sleep=fake.sleep)
    return aud


def put(
    mgr: DiskFileManager,
    body: bytes,
    obj: str = "o",
    part: int = 3,
    dev: str = "sda",
    policy: int = 0,
    ts: float | None = None,
    **extra: str,
) -> str:
    df = mgr.get_diskfile(dev, part, "a", "c", obj, policy_index=policy)
    t = Timestamp(ts if ts is not None else NOW - 100)
    with df.create(len(body)) as w:
        w.write(body)
        meta = {
            "X-Timestamp": t.internal,
            "Content-Type": "text/plain",
            "ETag": w.etag,
            "Content-Length": str(len(body)),
        }
        meta.update(extra)
        return w.put(meta)


def quarantined(devices: str, dev: str = "sda", policy: int = 0) -> list[str]:
    qdir = os.path.join(
        devices, dev, "quarantined", "objects" if not policy else f"objects-{policy}"
    )
    return os.listdir(qdir) if os.path.isdir(qdir) else []


def invalidated(path: str) -> list[str]:
    """Suffixes listed in the partition's hashes.invalid for an object file."""
    part_dir = os.path.dirname(os.path.dirname(os.path.dirname(path)))
    try:
        with open(os.path.join(part_dir, "hashes.invalid")) as fp:
            return fp.read().split()
    except FileNotFoundError:
        return []


async def test_good_objects_pass_both_kinds(
    devices: str, mgr: DiskFileManager, tmp_path: Path
) -> None:
    put(mgr, b"hello world", "o1")
    put(mgr, b"", "empty")
    put(mgr, b"x" * 3000, "o2", part=9, dev="sdb", policy=1)
    aud = make_auditor(devices, tmp_path)
    try:
        zbf = await aud.audit_pass(ZBF)
        full = await aud.audit_pass(ALL)
    finally:
        aud.close()
    assert zbf.files_processed == 3 and zbf.quarantined == 0 and zbf.bytes_processed == 0
    assert full.files_processed == 3 and full.quarantined == 0
    assert full.bytes_processed == 11 + 3000
    assert quarantined(devices) == [] and quarantined(devices, "sdb", 1) == []
    recon = read_recon(str(tmp_path / "recon"))
    assert recon["object_auditor_stats_ALL"]["files_processed"] == 3
    assert recon["object_auditor_stats_ALL"]["devices"]["sdb"]["bytes_processed"] == 3000
    assert recon["object_auditor_stats_ZBF"]["passes"] == 3


async def test_bad_md5_only_caught_by_full_pass(
    devices: str, mgr: DiskFileManager, tmp_path: Path
) -> None:
    path = put(mgr, b"hello world")
    with open(path, "r+b") as fp:
        fp.write(b"J")  # same size, different bytes
    aud = make_auditor(devices, tmp_path)
    try:
        assert (await aud.audit_pass(ZBF)).quarantined == 0
        assert os.path.exists(path)
        stats = await aud.audit_pass(ALL)
    finally:
        aud.close()
    assert stats.quarantined == 1
    assert not os.path.exists(path)
    h = hash_path("a", "c", "o")
    assert quarantined(devices) == [h]
    assert h[-3:] in invalidated(path)  # the replicator will bring a good copy back


async def test_size_mismatch_caught_by_fast_pass(
    devices: str, mgr: DiskFileManager, tmp_path: Path
) -> None:
    path = put(mgr, b"hello world", part=4)
    os.truncate(path, 5)
    aud = make_auditor(devices, tmp_path)
    try:
        stats = await aud.audit_pass(ZBF)
    finally:
        aud.close()
    assert stats.quarantined == 1 and stats.files_processed == 1
    assert quarantined(devices) == [hash_path("a", "c", "o")]


async def test_undecodable_metadata_quarantined(
    devices: str, mgr: DiskFileManager, tmp_path: Path
) -> None:
    path = put(mgr, b"data")
    good = put(mgr, b"fine", "other")
    os.setxattr(path, METADATA_KEY, b"\x80not json at all")
    aud = make_auditor(devices, tmp_path)
    try:
        stats = await aud.audit_pass(ZBF)
    finally:
        aud.close()
    assert stats.quarantined == 1 and stats.files_processed == 2
    assert quarantined(devices) == [hash_path("a", "c", "o")]
    assert os.path.exists(good)


async def test_missing_keys_and_zero_byte_etag(
    devices: str, mgr: DiskFileManager, tmp_path: Path
) -> None:
    df = mgr.get_diskfile("sda", 3, "a", "c", "noctype")
    with df.create(2) as w:
        w.write(b"ab")
        w.put({"X-Timestamp": Timestamp(NOW).internal})  # no Content-Type
    put(mgr, b"", "zero", ETag="0" * 32)
    aud = make_auditor(devices, tmp_path)
    try:
        stats = await aud.audit_pass(ZBF)
    finally:
        aud.close()
    assert stats.quarantined == 2
    assert sorted(quarantined(devices)) == sorted(
        [hash_path("a", "c", "noctype"), hash_path("a", "c", "zero")]
    )


async def test_expired_objects_removed_without_tombstone(
    devices: str, mgr: DiskFileManager, tmp_path: Path
) -> None:
    gone = put(mgr, b"bye", "gone", **{"X-Delete-At": str(int(NOW) - 10)})
    stays = put(mgr, b"hi", "stays", **{"X-Delete-At": str(int(NOW) + 3600)})
    aud = make_auditor(devices, tmp_path)
    try:
        stats = await aud.audit_pass(ZBF)
    finally:
        aud.close()
    assert stats.expired_removed == 1 and stats.quarantined == 0
    hash_dir = os.path.dirname(gone)
    assert not os.path.exists(hash_dir)  # no .ts left behind either
    assert hash_path("a", "c", "gone")[-3:] in invalidated(gone)
    assert os.path.exists(stays)
    assert quarantined(devices) == []


async def test_expired_object_with_newer_put_keeps_the_new_file(
    devices: str, mgr: DiskFileManager
) -> None:
    from swiftlite.object import auditor_checks as checks
    from swiftlite.object.diskfile import DiskFileExpired

    old = put(mgr, b"old", ts=NOW - 100, **{"X-Delete-At": str(int(NOW) - 10)})
    df = mgr.get_diskfile("sda", 3, "a", "c", "o")
    with pytest.raises(DiskFileExpired) as info:
        df.open()
    new = put(mgr, b"new", ts=NOW - 50)  # lands between the open and the removal
    # The state changed since the open: nothing is removed.
    assert not checks.remove_expired_object(df, info.value)
    assert os.path.exists(new)
    assert not os.path.exists(old)  # superseded by the new PUT's own cleanup


async def test_reclaimable_tombstone_invalidates_suffix(
    devices: str, mgr: DiskFileManager, tmp_path: Path
) -> None:
    # Written by a manager that keeps old tombstones (its own cleanup would
    # otherwise reclaim it at once).
    keeper = DiskFileManager(devices, reclaim_age=10**9, fallocate_reserve="0")
    old = keeper.get_diskfile("sda", 3, "a", "c", "old")
    old.write_tombstone(Timestamp(NOW - 30 * 86400))
    young = mgr.get_diskfile("sda", 5, "a", "c", "young")
    young.write_tombstone(Timestamp(NOW - 10))
    for part in ("3", "5"):
        inv = os.path.join(devices, "sda", "objects", part, "hashes.invalid")
        if os.path.exists(inv):
            os.unlink(inv)
    aud = make_auditor(devices, tmp_path)
    try:
        stats = await aud.audit_pass(ALL)
    finally:
        aud.close()
    assert stats.tombstones_invalidated == 1
    with open(os.path.join(devices, "sda", "objects", "3", "hashes.invalid")) as fp:
        assert fp.read().split() == [hash_path("a", "c", "old")[-3:]]
    assert not os.path.exists(os.path.join(devices, "sda", "objects", "5", "hashes.invalid"))


async def test_rate_limiter_sleeps() -> None:
    fake = FakeTime()
    lim = RateLimiter(20, fake.clock, fake.sleep)
    for _ in range(4):
        await lim.consume(1)
    assert fake.sleeps == pytest.approx([0.05, 0.05, 0.05, 0.05])
    # Time that passed without work is credit: no sleep while under the rate...
    fake.now += 10
    assert await lim.consume(1) == 0.0
    # ...but at most 5 s of it (100 units at 20/s), not the whole 10 s.
    for _ in range(99):
        assert await lim.consume(1) < 1e-6
    assert await lim.consume(1) == pytest.approx(0.05)
    unlimited = RateLimiter(0, fake.clock, fake.sleep)
    assert await unlimited.consume(10**9) == 0.0


async def test_pass_respects_files_and_bytes_per_second(
    devices: str, mgr: DiskFileManager, tmp_path: Path
) -> None:
    for i in range(4):
        put(mgr, b"z" * 1000, f"o{i}", part=i)
    fake = FakeTime()
    aud = make_auditor(
        devices, tmp_path, fake, files_per_second=20, bytes_per_second=1000, disk_chunk_size=400
    )
    try:
        stats = await aud.audit_pass(ALL, devices=["sda"])
    finally:
        aud.close()
    assert stats.files_processed == 4 and stats.bytes_processed == 4000
    # 4000 bytes at 1000/s: the pass asked for (about) 4 s of sleep in total,
    # spread over the chunks, and never ran ahead of either rate.
    assert sum(fake.sleeps) == pytest.approx(4.0)
    assert fake.now - 1000.0 == pytest.approx(4.0)
    assert all(s > 0 for s in fake.sleeps)

    fake2 = FakeTime()
    zbf = make_auditor(devices, tmp_path, fake2, zero_byte_files_per_second=2)
    try:
        await zbf.audit_pass(ZBF, devices=["sda"])
    finally:
        zbf.close()
    assert fake2.sleeps == pytest.approx([0.5, 0.5, 0.5, 0.5])


async def test_resume_from_saved_status(devices: str, mgr: DiskFileManager, tmp_path: Path) -> None:
    put(mgr, b"one", "o1", part=3)
    put(mgr, b"two", "o2", part=5)
    put(mgr, b"six", "o3", part=6)
    datadir = os.path.join(devices, "sda", "objects")
    # A previous run stopped with partitions 5 and 6 left.
    assert save_status(datadir, ALL, ["5", "6"], min_interval=0)
    aud = make_auditor(devices, tmp_path)
    try:
        first = await aud.audit_pass(ALL, devices=["sda"])
        assert first.files_processed == 2
        assert load_status(datadir, ALL) == []
        # A finished walk: the next pass covers everything.
        second = await aud.audit_pass(ALL, devices=["sda"])
        assert second.files_processed == 3
        # The ZBF status is separate from the ALL one.
        assert load_status(datadir, ZBF) is None
    finally:
        aud.close()


async def test_stop_mid_pass_keeps_remaining_partitions(
    devices: str, mgr: DiskFileManager, tmp_path: Path
) -> None:
    for part in (1, 2, 3):
        put(mgr, b"x", f"o{part}", part=part)
    fake = FakeTime()
    aud = make_auditor(devices, tmp_path, fake, files_per_second=1)
    aud.status_interval = 0.0
    calls = 0

    async def sleep_then_stop(seconds: float) -> None:
        nonlocal calls
        calls += 1
        fake.now += seconds
        if calls == 2:  # while about to audit the second partition's object
            aud.stopping.set()

    aud.sleep = sleep_then_stop
    try:
        stats = await aud.audit_pass(ALL, devices=["sda"])
    finally:
        aud.close()
    assert stats.files_processed == 2
    datadir = os.path.join(devices, "sda", "objects")
    assert load_status(datadir, ALL) == ["2", "3"]
    recon = read_recon(str(tmp_path / "recon"))
    assert recon["object_auditor_stats_ALL"]["completed"] is False


async def test_unreadable_status_falls_back_to_listing(
    devices: str, mgr: DiskFileManager, tmp_path: Path
) -> None:
    put(mgr, b"one", part=8)
    datadir = os.path.join(devices, "sda", "objects")
    with open(os.path.join(datadir, "auditor_status_ALL.json"), "w") as fp:
        fp.write("{not json")
    aud = make_auditor(devices, tmp_path)
    try:
        assert (await aud.audit_pass(ALL, devices=["sda"])).files_processed == 1
    finally:
        aud.close()


async def test_no_blocking_calls_in_the_loop(
    devices: str, mgr: DiskFileManager, tmp_path: Path
) -> None:
    from blockbuster import blockbuster_ctx

    path = put(mgr, b"hello world")
    with open(path, "r+b") as fp:
        fp.write(b"J")
    put(mgr, b"ok", "fine", part=7)
    aud = make_auditor(devices, tmp_path)
    try:
        with blockbuster_ctx():
            stats = await aud.audit_pass(ALL)
    finally:
        aud.close()
    assert stats.quarantined == 1 and stats.files_processed == 2


def test_config_defaults_and_errors(tmp_path: Path) -> None:
    from swiftlite.common.config import ConfigError, load_config

    conf = ObjectAuditorConfig()
    assert (conf.files_per_second, conf.bytes_per_second, conf.zero_byte_files_per_second) == (
        20.0,
        10000000.0,
        50.0,
    )
    assert (conf.concurrency, conf.interval, conf.log_time) == (1, 30.0, 3600.0)
    bad = tmp_path / "bad.yaml"
    bad.write_text("mode: sometimes\n")
    with pytest.raises(ConfigError, match="mode"):
        load_config(str(bad), ObjectAuditorConfig)
    bad.write_text("files_per_secnd: 3\n")
    with pytest.raises(ConfigError, match="files_per_secnd"):
        load_config(str(bad), ObjectAuditorConfig)


def test_sample_config_loads() -> None:
    from swiftlite.common.config import load_config

    here = Path(__file__).resolve().parents[3] / "etc" / "object-auditor.yaml"
    conf = load_config(str(here), ObjectAuditorConfig)
    assert conf.log_name == "object-auditor"


@pytest.fixture
def restore_globals() -> Any:
    secrets = hashing.get_hash_path_secrets()
    policy = asyncio.get_event_loop_policy()
    yield
    hashing.set_hash_path_secrets(*secrets)
    asyncio.set_event_loop_policy(policy)


def test_main_once_end_to_end(tmp_path: Path, restore_globals: Any) -> None:
    swift_dir = tmp_path / "etc"
    swift_dir.mkdir()
    (swift_dir / "swiftlite.yaml").write_text("hash_path_suffix: e2e-secret\n")
    devices = tmp_path / "srv"
    (devices / "sda").mkdir(parents=True)
    hashing.set_hash_path_secrets("", "e2e-secret")
    mgr = DiskFileManager(str(devices), fallocate_reserve="0")
    bad = put(mgr, b"corrupt me", "bad")
    with open(bad, "r+b") as fp:
        fp.write(b"C")
    good = put(mgr, b"keep me", "good", part=11)
    gone = put(mgr, b"old news", "expired", part=12, **{"X-Delete-At": str(int(NOW) - 5)})
    conf = tmp_path / "object-auditor.yaml"
    recon = tmp_path / "recon"
    conf.write_text(
        f"devices: {devices}\nmount_check: false\nswift_dir: {swift_dir}\n"
        f"recon_cache_path: {recon}\nfiles_per_second: 0\nbytes_per_second: 0\n"
    )
    assert auditor_mod.main([str(conf), "once"]) == 0
    assert not os.path.exists(bad) and os.path.exists(good) and not os.path.exists(gone)
    with open(recon / "object.recon") as fp:
        stats = json.load(fp)["object_auditor_stats_ALL"]
    assert stats["files_processed"] == 3
    assert stats["quarantined"] == 1 and stats["expired_removed"] == 1
    assert stats["bytes_processed"] == len(b"corrupt me") + len(b"keep me")


async def test_forever_mode_runs_both_passes_and_stops_on_sigterm(
    tmp_path: Path, restore_globals: Any
) -> None:
    import signal
    import sys

    swift_dir = tmp_path / "etc"
    swift_dir.mkdir()
    (swift_dir / "swiftlite.yaml").write_text("hash_path_suffix: forever\n")
    devices = tmp_path / "srv"
    (devices / "sda").mkdir(parents=True)
    hashing.set_hash_path_secrets("", "forever")
    put(DiskFileManager(str(devices), fallocate_reserve="0"), b"steady")
    conf = tmp_path / "object-auditor.yaml"
    conf.write_text(
        f"devices: {devices}\nmount_check: false\nswift_dir: {swift_dir}\n"
        f"recon_cache_path: {tmp_path / 'recon'}\ninterval: 0.2\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "swiftlite.object.auditor",
        str(conf),
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    seen: set[str] = set()
    try:
        while seen != {"ZBF", "ALL"}:
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            assert line, "the auditor exited early"
            for kind in ("ZBF", "ALL"):
                if f"Object audit ({kind}) pass completed" in line:
                    assert "1 files" in line and "0 quarantined" in line
                    seen.add(kind)
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0


def test_status_file_is_swifts(tmp_path: Path) -> None:
    """Swift's auditor reads our status file and we read Swift's."""
    swift_diskfile = pytest.importorskip("swift.obj.diskfile")
    ours = tmp_path / "ours"
    theirs = tmp_path / "theirs"
    for d in (ours, theirs):
        (d / "7").mkdir(parents=True)
        (d / "12").mkdir()
    assert save_status(str(ours), ALL, ["12", "7"], min_interval=0)
    assert swift_diskfile.get_auditor_status(str(ours), None, ALL) == ["12", "7"]
    swift_diskfile.update_auditor_status(str(theirs), None, ["7"], ZBF)
    assert load_status(str(theirs), ZBF) == ["7"]
    assert load_status(str(theirs), ALL) is None


async def test_a_stalled_device_does_not_hold_up_another(
    devices: str, mgr: DiskFileManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from swiftlite.object import auditor_checks

    bad_a = put(mgr, b"abc", "on-sda", dev="sda")
    bad_b = put(mgr, b"abc", "on-sdb", dev="sdb")
    for path in (bad_a, bad_b):
        os.truncate(path, 1)
    release = threading.Event()
    real_list = auditor_checks.list_object_hashes

    def list_hashes(partition_path: str) -> list[str]:
        if "/sda/" in partition_path:
            release.wait(30)  # a disk that does not answer
        return real_list(partition_path)

    monkeypatch.setattr(auditor_checks, "list_object_hashes", list_hashes)
    aud = make_auditor(devices, tmp_path, concurrency=2)
    task = asyncio.create_task(aud.audit_pass(ZBF))
    try:
        while os.path.exists(bad_b):
            assert not task.done()
            await asyncio.sleep(0.01)
        assert os.path.exists(bad_a)
    finally:
        release.set()
        stats = await task
        aud.close()
    assert stats.quarantined == 2


async def test_unmounted_devices_are_skipped(
    devices: str, mgr: DiskFileManager, tmp_path: Path
) -> None:
    path = put(mgr, b"abc")
    os.truncate(path, 1)
    aud = make_auditor(devices, tmp_path, mount_check=True)
    try:
        stats = await aud.audit_pass(ALL)
    finally:
        aud.close()
    assert stats.files_processed == 0 and stats.errors == 0
    assert os.path.exists(path)


async def test_file_in_place_of_a_hash_dir_is_quarantined(
    devices: str, mgr: DiskFileManager, tmp_path: Path
) -> None:
    h = hash_path("a", "c", "not-a-dir")
    suffix_dir = Path(devices) / "sda" / "objects" / "3" / h[-3:]
    suffix_dir.mkdir(parents=True)
    (suffix_dir / h).write_bytes(b"junk")
    (suffix_dir / "not-a-hash").mkdir()  # not hash-shaped: left alone
    aud = make_auditor(devices, tmp_path)
    try:
        stats = await aud.audit_pass(ZBF)
    finally:
        aud.close()
    assert stats.files_processed == 1 and stats.quarantined == 1
    assert quarantined(devices) == [h]
    assert (suffix_dir / "not-a-hash").is_dir()


async def test_progress_every_log_time(
    devices: str, mgr: DiskFileManager, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    put(mgr, b"one", "o1", part=1)
    put(mgr, b"two", "o2", part=2)
    fake = FakeTime()
    aud = make_auditor(devices, tmp_path, fake, log_time=10, files_per_second=0.1)
    aud.logger.propagate = True  # let caplog see the daemon's lines
    try:
        with caplog.at_level("INFO", logger=aud.logger.name):
            await aud.audit_pass(ALL, devices=["sda"])
    finally:
        aud.logger.propagate = False
        aud.close()
    # 10 s per file at 0.1/s: a progress line after each file (log_time 10 s).
    # Distinct lines: in a full run another capture handler may see each
    # record twice; what matters is one line per log_time, in order.
    progress = list(
        dict.fromkeys(
            r.getMessage() for r in caplog.records if "Object audit (ALL) progress" in r.getMessage()
        )
    )
    assert len(progress) == 2
    assert "2 files" in progress[-1]
    recon = read_recon(str(tmp_path / "recon"))
    assert recon["object_auditor_stats_ALL_progress"]["files_processed"] == 2
