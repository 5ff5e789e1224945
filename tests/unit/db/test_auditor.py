"""The container and account DB auditors: corrupt DBs are quarantined, good
ones are left alone and still work."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from swiftlite.account.auditor import AccountAuditor
from swiftlite.account.backend import AccountBroker
from swiftlite.common.config import config_from_dict
from swiftlite.common.hashing import hash_path, set_hash_path_secrets
from swiftlite.common.timestamp import Timestamp
from swiftlite.container.auditor import ContainerAuditor
from swiftlite.container.backend import ContainerBroker
from swiftlite.db.auditor import (
    AccountAuditorConfig,
    ContainerAuditorConfig,
    DBAuditorStats,
    audit_db,
)

ETAG = "d41d8cd98f00b204e9800998ecf8427e"


@pytest.fixture(autouse=True)
def secrets() -> None:
    set_hash_path_secrets("aud-pre", "aud-suf")


def make_container(
    devices: Path, device: str, account: str, container: str, rows: int = 50
) -> Path:
    path = ContainerBroker.db_path(str(devices), device, "7", account, container)
    os.makedirs(os.path.dirname(path))
    with ContainerBroker(path, account=account, container=container) as broker:
        broker.initialize(Timestamp.now().internal)
        for i in range(rows):
            broker.put_object(f"o{i:04d}", Timestamp.now().internal, 10, "text/plain", ETAG)
        broker.get_info()  # merges the pending rows into the DB
    return Path(path)


def make_account(devices: Path, device: str, account: str, rows: int = 20) -> Path:
    digest = str(hash_path(account))
    hash_dir = devices / device / "accounts" / "3" / digest[-3:] / digest
    hash_dir.mkdir(parents=True)
    path = hash_dir / f"{digest}.db"
    with AccountBroker(str(path), account=account) as broker:
        broker.initialize(Timestamp.now().internal)
        for i in range(rows):
            broker.put_container(f"c{i}", Timestamp.now().internal, "0", 0, 0, 0)
        broker.get_info()
    return path


# Ways a DB file is found damaged in the field, each one a function of the path.
def truncate_half(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def truncate_empty(path: Path) -> None:
    os.truncate(path, 0)


def overwrite_header(path: Path) -> None:
    with open(path, "r+b") as fp:
        fp.write(b"this is not sqlite at all")


def garbage(path: Path) -> None:
    path.write_bytes(os.urandom(8192))


def drop_table(table: str) -> Any:
    def damage(path: Path) -> None:
        conn = sqlite3.connect(path)
        conn.execute(f"DROP TABLE {table}")
        conn.commit()
        conn.close()

    damage.__name__ = f"drop_{table}"
    return damage


def scribble_page(path: Path) -> None:
    """Random bytes over an interior b-tree page: only quick_check notices."""
    with open(path, "r+b") as fp:
        fp.seek(4096 * 2)
        fp.write(os.urandom(4096))


def quarantined(devices: Path, device: str, kind: str) -> list[str]:
    try:
        return sorted(os.listdir(devices / device / "quarantined" / kind))
    except FileNotFoundError:
        return []


def container_auditor(devices: Path, **conf: Any) -> ContainerAuditor:
    settings: dict[str, Any] = {
        "devices": str(devices),
        "mount_check": False,
        "recon_cache_path": str(devices.parent / "recon"),
        "containers_per_second": 0,
        "quick_check_sample": 0.0,
        "log_level": "DEBUG",
    }
    settings.update(conf)
    return ContainerAuditor(config_from_dict(ContainerAuditorConfig, settings))


CONTAINER_DAMAGE = [
    truncate_half,
    truncate_empty,
    overwrite_header,
    garbage,
    drop_table("object"),
    drop_table("container_info"),
    drop_table("policy_stat"),
]


async def test_container_auditor_quarantines_corrupt_dbs_and_keeps_good_ones(
    tmp_path: Path,
) -> None:
    devices = tmp_path / "srv"
    good = [make_container(devices, dev, "AUTH_a", f"good{dev}") for dev in ("sda", "sdb")]
    bad = {}
    for damage in CONTAINER_DAMAGE:
        path = make_container(devices, "sda", "AUTH_a", f"bad-{damage.__name__}")
        damage(path)
        bad[damage.__name__] = path
    auditor = container_auditor(devices)
    try:
        stats = await auditor.audit_pass()
    finally:
        auditor.dm.close()
    assert stats.failures == stats.quarantined == len(CONTAINER_DAMAGE), stats
    assert stats.passes == 2 and stats.errors == 0 and stats.skipped == 0
    for name, path in bad.items():
        assert not path.exists(), name
        assert not path.parent.exists(), name
    expected = sorted(path.parent.name for path in bad.values())
    assert quarantined(devices, "sda", "containers") == expected
    # The quarantined hash dir holds the DB file as it was.
    moved = devices / "sda" / "quarantined" / "containers" / bad["drop_object"].parent.name
    assert (moved / bad["drop_object"].name).is_file()
    for path in good:
        with ContainerBroker(str(path)) as broker:
            assert broker.get_info()["object_count"] == 50
    recon = json.loads((tmp_path / "recon" / "container.recon").read_text())
    assert recon["container_audits_passed"] == 2
    assert recon["container_audits_failed"] == len(CONTAINER_DAMAGE)
    assert recon["container_auditor_stats"]["quarantined"] == len(CONTAINER_DAMAGE)

    # The next pass sees only the good DBs.
    auditor = container_auditor(devices)
    try:
        again = await auditor.audit_pass()
    finally:
        auditor.dm.close()
    assert (again.passes, again.failures) == (2, 0)


async def test_quick_check_finds_damage_get_info_does_not(tmp_path: Path) -> None:
    devices = tmp_path / "srv"
    path = make_container(devices, "sda", "AUTH_a", "scribbled", rows=400)
    scribble_page(path)
    auditor = container_auditor(devices, quick_check_sample=0.0)
    try:
        # get_info alone does not read the damaged page...
        assert (await auditor.audit_pass()).passes == 1
        assert path.exists()
        # ...but the integrity check does.
        auditor.aconf.quick_check_sample = 1.0
        stats = await auditor.audit_pass()
    finally:
        auditor.dm.close()
    assert (stats.passes, stats.quarantined) == (0, 1)
    assert not path.exists()
    assert quarantined(devices, "sda", "containers") == [path.parent.name]


def test_a_second_quarantine_of_the_same_hash_keeps_the_first(tmp_path: Path) -> None:
    devices = tmp_path / "srv"
    first = make_container(devices, "sda", "AUTH_a", "twice")
    garbage(first)
    assert audit_db(ContainerBroker, str(first), False)[0] == "quarantined"
    second = make_container(devices, "sda", "AUTH_a", "twice")
    overwrite_header(second)
    verdict, reason = audit_db(ContainerBroker, str(second), False)
    assert (verdict, reason) == ("quarantined", "corrupted database")
    names = quarantined(devices, "sda", "containers")
    assert len(names) == 2 and names[0].startswith(first.parent.name)


async def test_account_auditor(tmp_path: Path) -> None:
    devices = tmp_path / "srv"
    good = make_account(devices, "sda", "AUTH_good")
    bad = [make_account(devices, "sdb", f"AUTH_bad{i}") for i in range(4)]
    truncate_half(bad[0])
    overwrite_header(bad[1])
    drop_table("account_stat")(bad[2])
    drop_table("container")(bad[3])
    conf = config_from_dict(
        AccountAuditorConfig,
        {
            "devices": str(devices),
            "mount_check": False,
            "recon_cache_path": str(tmp_path / "recon"),
            "accounts_per_second": 0,
        },
    )
    auditor = AccountAuditor(conf)
    try:
        stats = await auditor.audit_pass()
    finally:
        auditor.dm.close()
    assert (stats.passes, stats.failures, stats.errors) == (1, 4, 0)
    assert quarantined(devices, "sdb", "accounts") == sorted(p.parent.name for p in bad)
    assert quarantined(devices, "sda", "accounts") == []
    with AccountBroker(str(good)) as broker:
        assert broker.get_info()["container_count"] == 20
    recon = json.loads((tmp_path / "recon" / "account.recon").read_text())
    assert recon["account_audits_failed"] == 4


async def test_rate_limit_and_unmounted_devices(tmp_path: Path) -> None:
    devices = tmp_path / "srv"
    for i in range(6):
        make_container(devices, "sda", "AUTH_a", f"c{i}", rows=1)
    make_container(devices, "sdb", "AUTH_a", "elsewhere", rows=1)
    now = [1000.0]
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    conf = config_from_dict(
        ContainerAuditorConfig,
        {
            "devices": str(devices),
            "mount_check": True,  # tmp dirs are not mount points: all skipped
            "recon_cache_path": str(tmp_path / "recon"),
            "containers_per_second": 2,
        },
    )
    auditor = ContainerAuditor(conf, clock=lambda: now[0], sleep=fake_sleep)
    try:
        assert await auditor.audit_pass() == DBAuditorStats()
        auditor.aconf.mount_check = False
        auditor.dm.mount_check = False
        stats = await auditor.audit_pass(devices=["sda"])
    finally:
        auditor.dm.close()
    assert stats.passes == 6
    # 6 DBs at 2 per second take 3 s of (fake) time; the first is free.
    assert sum(slept) == pytest.approx(3.0)
    assert len(slept) >= 5


def test_config_defaults_and_checks() -> None:
    c = ContainerAuditorConfig()
    a = AccountAuditorConfig()
    assert (c.interval, c.containers_per_second, c.log_name) == (1800.0, 200.0, "container-auditor")
    assert (a.interval, a.accounts_per_second, a.log_name) == (1800.0, 200.0, "account-auditor")
    with pytest.raises(ValueError):
        ContainerAuditorConfig(containers_per_second=-1)
    with pytest.raises(ValueError):
        AccountAuditorConfig(quick_check_sample=2)


@pytest.mark.parametrize(
    ("role", "module", "maker"),
    [
        ("container", "swiftlite.container.auditor", "c"),
        ("account", "swiftlite.account.auditor", "a"),
    ],
)
def test_main_once_end_to_end(tmp_path: Path, role: str, module: str, maker: str) -> None:
    devices = tmp_path / "srv"
    if maker == "c":
        good = make_container(devices, "sda", "AUTH_a", "good")
        bad = make_container(devices, "sda", "AUTH_a", "bad")
    else:
        good = make_account(devices, "sda", "AUTH_good")
        bad = make_account(devices, "sda", "AUTH_bad")
    overwrite_header(bad)
    conf = tmp_path / f"{role}-auditor.yaml"
    conf.write_text(
        yaml.safe_dump(
            {
                "devices": str(devices),
                "mount_check": False,
                "recon_cache_path": str(tmp_path / "recon"),
            }
        )
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys; from {module} import main; sys.exit(main(sys.argv[1:]))",
            str(conf),
            "once",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
    )
    assert proc.returncode == 0, proc.stderr
    assert f"{role.capitalize()} audit pass completed" in proc.stderr
    assert good.exists() and not bad.exists()
    assert quarantined(devices, "sda", f"{role}s") == [bad.parent.name]
    recon = json.loads((tmp_path / "recon" / f"{role}.recon").read_text())
    assert (recon[f"{role}_audits_passed"], recon[f"{role}_audits_failed"]) == (1, 1)


def test_sample_configs_load() -> None:
    from swiftlite.common.config import load_config

    etc = Path(__file__).resolve().parents[3] / "etc"
    assert load_config(str(etc / "container-auditor.yaml"), ContainerAuditorConfig) == (
        ContainerAuditorConfig()
    )
    assert load_config(str(etc / "account-auditor.yaml"), AccountAuditorConfig) == (
        AccountAuditorConfig()
    )
