"""The layout ``swiftlite saio`` creates: configs, rings, devices, credentials."""

from __future__ import annotations

import itertools
import os
import stat
from pathlib import Path

import pytest
import yaml

from swiftlite.cli import saio_layout
from swiftlite.cli.saio_layout import DAEMONS, DEVICES, TEMPAUTH_USERS, LayoutError, prepare
from swiftlite.common.config import ClusterConfig, load_cluster_config, load_config
from swiftlite.common.hashing import get_hash_path_secrets
from swiftlite.ring import Ring


def _ports() -> itertools.count[int]:
    return itertools.count(17001)


@pytest.fixture
def layout_dir(tmp_path: Path) -> str:
    return str(tmp_path / "saio")


def _prepare(data: str, port: int | None = 18080) -> saio_layout.Layout:
    counter = _ports()
    return prepare(data, port, choose_port=lambda: next(counter))


def test_first_run_creates_everything(layout_dir: str) -> None:
    layout = _prepare(layout_dir)
    assert layout.created
    assert layout.ports == {"proxy": 18080, "object": 17001, "container": 17002, "account": 17003}
    etc = Path(layout_dir, "etc")
    for name in ("swiftlite.yaml", "credentials.yaml", "saio.yaml"):
        assert (etc / name).is_file()
    for role in ("object", "container", "account"):
        assert (etc / f"{role}.ring.gz").is_file()
        assert (etc / f"{role}.builder").is_file()
    for dev in DEVICES:
        assert Path(layout_dir, "srv", dev).is_dir()
    assert Path(layout_dir, "log").is_dir()
    # Secrets and credentials are readable by their owner only.
    for name in ("swiftlite.yaml", "credentials.yaml"):
        assert stat.S_IMODE(os.stat(etc / name).st_mode) == 0o600


def test_cluster_config_has_random_secrets(tmp_path: Path) -> None:
    a = _prepare(str(tmp_path / "a"))
    b = _prepare(str(tmp_path / "b"))
    conf_a = load_cluster_config(a.etc_dir)
    assert get_hash_path_secrets() == (
        conf_a.hash_path_prefix.encode(),
        conf_a.hash_path_suffix.encode(),
    )
    conf_b = load_config(os.path.join(b.etc_dir, "swiftlite.yaml"), ClusterConfig)
    assert len(conf_a.hash_path_prefix) >= 32 and len(conf_a.hash_path_suffix) >= 32
    assert conf_a.hash_path_prefix != conf_b.hash_path_prefix
    assert conf_a.hash_path_suffix != conf_b.hash_path_suffix
    assert conf_a.hash_path_prefix != "changeme-prefix"


def test_every_config_loads_with_its_class(layout_dir: str) -> None:
    layout = _prepare(layout_dir)
    checked = 0
    for spec in DAEMONS:
        cls = spec.config_cls()
        if cls is None:
            assert not os.path.exists(layout.config_path(spec))
            continue
        conf = load_config(layout.config_path(spec), cls)
        checked += 1
        assert conf.devices == layout.devices_dir
        assert conf.mount_check is False
        assert conf.swift_dir == layout.etc_dir
        if spec.is_server:
            assert conf.bind_ip == "127.0.0.1"
            assert conf.bind_port == layout.ports[spec.port_role or ""]
    # At least the three storage servers exist in this tree.
    assert checked >= 3


def test_storage_server_configs(layout_dir: str) -> None:
    layout = _prepare(layout_dir)
    from swiftlite.object.config import ObjectServerConfig

    conf = load_config(os.path.join(layout.etc_dir, "object-server.yaml"), ObjectServerConfig)
    assert conf.bind_port == 17001
    assert conf.workers == 1


def test_proxy_config_and_tempauth_users(layout_dir: str) -> None:
    pytest.importorskip("swiftlite.proxy.config")
    from swiftlite.proxy.config import ProxyServerConfig

    layout = _prepare(layout_dir)
    conf = load_config(os.path.join(layout.etc_dir, "proxy-server.yaml"), ProxyServerConfig)
    assert conf.bind_port == 18080
    assert conf.pipeline[-1] == "proxy_server"
    assert conf.account_autocreate
    if "tempauth" in conf.pipeline:
        assert conf.pipeline.index("cache") < conf.pipeline.index("tempauth")
        from swiftlite.proxy.middleware.tempauth import TempAuthConf

        auth = TempAuthConf(dict(conf.filters["tempauth"]))
        assert set(auth.users) == set(TEMPAUTH_USERS)
        assert auth.users["test:tester"]["key"] == "testing"
        assert ".admin" in auth.users["test:tester"]["groups"]
        assert ".admin" in auth.users["test2:tester2"]["groups"]
        assert auth.users["test:tester3"]["groups"] == []
        assert auth.users["test5:tester5"]["groups"] == ["service"]
        assert ".reseller_admin" in auth.users["test:tester6"]["groups"]


def test_credentials_file(layout_dir: str) -> None:
    layout = _prepare(layout_dir)
    with open(layout.credentials_path, encoding="utf-8") as fp:
        creds = yaml.safe_load(fp)
    assert creds["auth_url"] == "http://127.0.0.1:18080/auth/v1.0"
    assert {u: v["key"] for u, v in creds["users"].items()} == {
        "test:tester": "testing",
        "test2:tester2": "testing2",
        "test:tester3": "testing3",
        "test5:tester5": "testing5",
        "test:tester6": "testing6",
    }


@pytest.mark.parametrize("role", ["object", "container", "account"])
def test_rings_give_three_distinct_devices(layout_dir: str, role: str) -> None:
    layout = _prepare(layout_dir)
    load_cluster_config(layout.etc_dir)
    ring = Ring(layout.etc_dir, ring_name=role)
    assert ring.replica_count == 3
    assert ring.partition_count == 1024
    devs = [d for d in ring.devs if d]
    assert sorted(d["device"] for d in devs) == list(DEVICES)
    assert len({d["zone"] for d in devs}) == 4
    assert {(d["ip"], d["port"]) for d in devs} == {("127.0.0.1", layout.ports[role])}
    for part in range(ring.partition_count):
        nodes = ring.get_part_nodes(part)
        assert len({n["device"] for n in nodes}) == 3
    part, nodes = ring.get_nodes("AUTH_test", "c", "o")
    assert 0 <= part < 1024 and len({n["id"] for n in nodes}) == 3


def test_second_run_reuses_everything(layout_dir: str) -> None:
    first = _prepare(layout_dir)
    etc = Path(first.etc_dir)
    before = {p.name: p.read_bytes() for p in etc.iterdir() if p.is_file()}
    second = prepare(layout_dir, None, choose_port=lambda: pytest.fail("chose a new port"))
    assert not second.created
    assert second.ports == first.ports
    after = {p.name: p.read_bytes() for p in etc.iterdir() if p.is_file()}
    assert after == before  # secrets, rings and configs untouched


def test_second_run_with_other_proxy_port(layout_dir: str) -> None:
    first = _prepare(layout_dir)
    secrets_before = Path(first.etc_dir, "swiftlite.yaml").read_bytes()
    ring_before = Path(first.etc_dir, "object.ring.gz").read_bytes()
    second = _prepare(layout_dir, port=18099)
    assert second.ports["proxy"] == 18099
    assert second.ports["object"] == first.ports["object"]
    assert Path(first.etc_dir, "swiftlite.yaml").read_bytes() == secrets_before
    assert Path(first.etc_dir, "object.ring.gz").read_bytes() == ring_before
    assert second.auth_url == "http://127.0.0.1:18099/auth/v1.0"
    proxy_conf = yaml.safe_load(Path(first.etc_dir, "proxy-server.yaml").read_text())
    assert proxy_conf["bind_port"] == 18099
    creds = yaml.safe_load(Path(first.credentials_path).read_text())
    assert creds["auth_url"] == second.auth_url


def test_missing_config_is_added_on_later_run(layout_dir: str) -> None:
    first = _prepare(layout_dir)
    path = Path(first.etc_dir, "object-server.yaml")
    path.unlink()
    _prepare(layout_dir, port=None)
    assert path.is_file()


def test_broken_config_is_reported(layout_dir: str) -> None:
    first = _prepare(layout_dir)
    path = Path(first.etc_dir, "object-server.yaml")
    path.write_text(path.read_text() + "no_such_setting: 1\n")
    with pytest.raises(LayoutError, match="no_such_setting"):
        _prepare(layout_dir, port=None)


def test_bad_state_file_is_reported(layout_dir: str) -> None:
    first = _prepare(layout_dir)
    Path(first.etc_dir, "saio.yaml").write_text("version: 99\nports: {}\n")
    with pytest.raises(LayoutError, match="version"):
        _prepare(layout_dir)


def test_dump_config_rejects_what_does_not_load(tmp_path: Path) -> None:
    from swiftlite.object.config import ObjectServerConfig

    conf = ObjectServerConfig()
    conf.workers = -1  # __post_init__ refuses this when the file is read back
    with pytest.raises(LayoutError):
        saio_layout.dump_config(conf, str(tmp_path / "x.yaml"), "test")


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", "/x/data")
    assert saio_layout.default_data_dir() == "/x/data/swiftlite-saio"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", "/home/u")
    assert saio_layout.default_data_dir() == "/home/u/.local/share/swiftlite-saio"


def test_unavailable_daemon_is_detected() -> None:
    spec = saio_layout.DaemonSpec(
        "nope-server", "swiftlite.nope.server", "swiftlite.nope.config", "NopeConfig", "object"
    )
    assert spec.config_cls() is None
    assert not spec.available()
    assert all(s.available() for s in DAEMONS if s.name == "object-server")


def _pipeline(layout: saio_layout.Layout) -> list[str]:
    data = yaml.safe_load(Path(layout.etc_dir, "proxy-server.yaml").read_text())
    return list(data["pipeline"])


def test_new_middleware_joins_a_generated_pipeline(
    layout_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("swiftlite.proxy.config")
    monkeypatch.setattr(saio_layout, "_available_middleware", lambda: ["catch_errors"])
    first = _prepare(layout_dir)
    assert _pipeline(first) == ["catch_errors", "proxy_server"]
    monkeypatch.setattr(
        saio_layout, "_available_middleware", lambda: ["catch_errors", "cache", "tempauth"]
    )
    second = _prepare(layout_dir, port=None)
    assert _pipeline(second) == ["catch_errors", "cache", "tempauth", "proxy_server"]
    data = yaml.safe_load(Path(second.etc_dir, "proxy-server.yaml").read_text())
    assert set(data["filters"]["tempauth"]["users"]) == set(TEMPAUTH_USERS)


def test_hand_edited_pipeline_is_left_alone(
    layout_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("swiftlite.proxy.config")
    monkeypatch.setattr(saio_layout, "_available_middleware", lambda: ["catch_errors"])
    first = _prepare(layout_dir)
    path = Path(first.etc_dir, "proxy-server.yaml")
    data = yaml.safe_load(path.read_text())
    data["pipeline"] = ["gatekeeper", "proxy_server"]
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setattr(saio_layout, "_available_middleware", lambda: ["catch_errors", "cache"])
    for _ in range(2):
        _prepare(layout_dir, port=None)
        assert _pipeline(first) == ["gatekeeper", "proxy_server"]


def test_second_storage_policy_with_its_ring(layout_dir: str) -> None:
    # Swift's functional tests of storage policies need a second policy.
    layout = _prepare(layout_dir)
    cluster = load_cluster_config(layout.etc_dir)
    assert [(p.index, p.name, p.default) for p in cluster.policies] == [
        (0, "Policy-0", True), (1, "Policy-1", False)]
    ring = Ring(layout.etc_dir, ring_name="object-1")
    assert ring.replica_count == 3
    assert {(d["ip"], d["port"]) for d in ring.devs if d} == {
        ("127.0.0.1", layout.ports["object"])}
    # Removed, it comes back on the next run, like the other rings.
    os.unlink(os.path.join(layout.etc_dir, "object-1.ring.gz"))
    _prepare(layout_dir)
    assert Path(layout.etc_dir, "object-1.ring.gz").is_file()


def test_tempauth_serves_service_accounts(layout_dir: str) -> None:
    # Swift's tests.py TestServiceToken: SERVICE_ accounts need a user token
    # plus a service token of group "service".
    from swiftlite.proxy.config import ProxyServerConfig

    layout = _prepare(layout_dir)
    conf = load_config(os.path.join(layout.etc_dir, "proxy-server.yaml"), ProxyServerConfig)
    tempauth = conf.filters["tempauth"]
    assert tempauth["reseller_prefix"] == "AUTH, SERVICE"
    assert tempauth["SERVICE_require_group"] == "service"
    assert TEMPAUTH_USERS["test5:tester5"]["groups"] == ["service"]
