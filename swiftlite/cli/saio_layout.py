"""The on-disk layout of ``swiftlite saio``: configs, rings, devices, credentials.

Everything lives under one data directory so that a second run (or an
operator running a daemon by hand) finds the same cluster::

    DIR/etc/swiftlite.yaml        cluster config, random hash path secrets (0600)
    DIR/etc/<daemon>.yaml         one config per daemon, dumped from its config class
    DIR/etc/<ring>.builder        builder files (object, container, account)
    DIR/etc/<ring>.ring.gz        rings: 3 replicas over d1..d4, one zone per device
    DIR/etc/credentials.yaml      tempauth users (0600)
    DIR/etc/saio.yaml             the ports chosen at first run
    DIR/srv/d1 .. d4              devices (mount_check is off)
    DIR/log/<daemon>.log          each daemon's stdout and stderr
    DIR/cache/                    recon cache of the background daemons

Configs are built as the daemons' own dataclasses and dumped, then read back
with ``load_config``: a key a daemon does not know can never be written.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import secrets
import socket
from collections.abc import Callable
from typing import Any

import yaml

from swiftlite.common.config import (
    ClusterConfig,
    StoragePolicy,
    load_cluster_config,
    load_config,
)

STATE_VERSION = 1
DEVICES = ("d1", "d2", "d3", "d4")
PART_POWER = 10
REPLICAS = 3
LOOPBACK = "127.0.0.1"
RING_ROLES = ("object", "container", "account")

# Exactly the users Swift's functional tests expect (test/sample.conf).
TEMPAUTH_USERS: dict[str, dict[str, Any]] = {
    "test:tester": {"key": "testing", "groups": [".admin"]},
    "test2:tester2": {"key": "testing2", "groups": [".admin"]},
    "test:tester3": {"key": "testing3", "groups": []},
    "test5:tester5": {"key": "testing5", "groups": ["service"]},
    "test:tester6": {"key": "testing6", "groups": [".reseller_admin"]},
}

# The proxy pipeline, outermost first, in Swift's SAIO order; a middleware
# not (yet) installed as a ``swiftlite.middleware`` entry point is left out,
# and added on a later run once it lands (unless the operator edited the
# pipeline).
PROXY_PIPELINE = (
    "catch_errors",
    "gatekeeper",
    "healthcheck",
    "proxy_logging",
    "cache",
    "listing_formats",
    "bulk",
    "tempurl",
    "ratelimit",
    "formpost",
    "tempauth",
    "staticweb",
    "copy",
    "container_quotas",
    "account_quotas",
    "slo",
    "dlo",
    "versioned_writes",
    "symlink",
)


@dataclasses.dataclass(frozen=True)
class DaemonSpec:
    """One daemon saio may run: where its code and config class live."""

    name: str  # also the config file's stem and the log file's stem
    module: str  # run as ``python -m <module> <conf>``
    config_module: str
    config_class: str
    port_role: str | None  # the role whose port it serves (HTTP servers) or works for

    @property
    def is_server(self) -> bool:
        return self.name.endswith("-server")

    def config_cls(self) -> type[Any] | None:
        """The config dataclass, or None while that code does not exist yet."""
        try:
            module = importlib.import_module(self.config_module)
        except ImportError:
            return None
        cls = getattr(module, self.config_class, None)
        return cls if isinstance(cls, type) and dataclasses.is_dataclass(cls) else None

    def available(self) -> bool:
        """True if both the daemon's module and its config class import."""
        if self.config_cls() is None:
            return False
        try:
            return importlib.util.find_spec(self.module) is not None
        except ImportError:
            return False


# Servers first: background daemons talk to them. Daemons whose code is not
# in the tree yet are skipped (and picked up by a later run once they land).
DAEMONS: tuple[DaemonSpec, ...] = (
    DaemonSpec("account-server", "swiftlite.account.server", "swiftlite.account.config",
               "AccountServerConfig", "account"),
    DaemonSpec("container-server", "swiftlite.container.server", "swiftlite.container.config",
               "ContainerServerConfig", "container"),
    DaemonSpec("object-server", "swiftlite.object.server", "swiftlite.object.config",
               "ObjectServerConfig", "object"),
    DaemonSpec("proxy-server", "swiftlite.proxy.server", "swiftlite.proxy.config",
               "ProxyServerConfig", "proxy"),
    DaemonSpec("object-replicator", "swiftlite.object.replicator",
               "swiftlite.object.replicator_config", "ObjectReplicatorConfig", "object"),
    DaemonSpec("object-auditor", "swiftlite.object.auditor", "swiftlite.object.daemon_config",
               "ObjectAuditorConfig", None),
    DaemonSpec("object-updater", "swiftlite.object.updater", "swiftlite.object.daemon_config",
               "ObjectUpdaterConfig", None),
    DaemonSpec("object-expirer", "swiftlite.container.expirer",
               "swiftlite.container.daemon_config", "ObjectExpirerConfig", "container"),
    DaemonSpec("container-updater", "swiftlite.container.updater",
               "swiftlite.container.daemon_config", "ContainerUpdaterConfig", None),
    DaemonSpec("container-replicator", "swiftlite.container.replicator",
               "swiftlite.container.replicator", "ContainerReplicatorConfig", "container"),
    DaemonSpec("account-replicator", "swiftlite.account.replicator",
               "swiftlite.account.replicator", "AccountReplicatorConfig", "account"),
    DaemonSpec("container-auditor", "swiftlite.container.auditor", "swiftlite.db.auditor",
               "ContainerAuditorConfig", None),
    DaemonSpec("account-auditor", "swiftlite.account.auditor", "swiftlite.db.auditor",
               "AccountAuditorConfig", None),
    DaemonSpec("account-reaper", "swiftlite.account.reaper", "swiftlite.account.daemon_config",
               "AccountReaperConfig", "account"),
)


class LayoutError(Exception):
    """The data directory cannot be used (bad state file, config that fails to load)."""


@dataclasses.dataclass
class Layout:
    data_dir: str
    created: bool
    ports: dict[str, int]  # role -> port: proxy, account, container, object

    @property
    def etc_dir(self) -> str:
        return os.path.join(self.data_dir, "etc")

    @property
    def devices_dir(self) -> str:
        return os.path.join(self.data_dir, "srv")

    @property
    def log_dir(self) -> str:
        return os.path.join(self.data_dir, "log")

    @property
    def cache_dir(self) -> str:
        return os.path.join(self.data_dir, "cache")

    @property
    def credentials_path(self) -> str:
        return os.path.join(self.etc_dir, "credentials.yaml")

    @property
    def auth_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports['proxy']}/auth/v1.0"

    def config_path(self, spec: DaemonSpec) -> str:
        return os.path.join(self.etc_dir, f"{spec.name}.yaml")

    def log_path(self, spec: DaemonSpec) -> str:
        return os.path.join(self.log_dir, f"{spec.name}.log")


def default_data_dir() -> str:
    """``$XDG_DATA_HOME/swiftlite-saio``, else ``~/.local/share/swiftlite-saio``."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return os.path.join(base, "swiftlite-saio")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _write_private(path: str, text: str, mode: int = 0o644) -> None:
    """Write a file atomically with ``mode`` set before any byte is in it."""
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fp:
            fp.write(text)
        os.chmod(tmp, mode)  # the umask may have narrowed it
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def dump_config(conf: Any, path: str, header: str, mode: int = 0o644) -> None:
    """Dump a config dataclass as YAML, then check it loads back as the same class."""
    data = dataclasses.asdict(conf)
    text = f"# {header}\n" + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    _write_private(path, text, mode)
    try:
        load_config(path, type(conf))
    except Exception as exc:  # noqa: BLE001 - any failure means a bad generated file
        raise LayoutError(f"generated {path} does not load: {exc}") from exc


# -- per-daemon settings -------------------------------------------------------


def _available_middleware() -> list[str]:
    from swiftlite.proxy.pipeline import load_factory

    names = []
    for name in PROXY_PIPELINE:
        try:
            load_factory(name)
        except Exception:  # noqa: BLE001 - not installed (yet): leave it out
            continue
        names.append(name)
    return names


def _proxy_settings(layout: Layout) -> dict[str, Any]:
    pipeline = _available_middleware()
    filters: dict[str, dict[str, Any]] = {}
    if "tempauth" in pipeline:
        # SERVICE_ accounts need a user's token plus a service token (group
        # "service"), as in Swift's SAIO proxy-server.conf and test.conf.
        filters["tempauth"] = {
            "users": {u: dict(s) for u, s in TEMPAUTH_USERS.items()},
            "reseller_prefix": "AUTH, SERVICE",
            "SERVICE_require_group": "service",
        }
    return {
        # One worker: without memcached each worker keeps its own token cache.
        "workers": 1,
        "account_autocreate": True,
        "allow_account_management": True,
        "pipeline": [*pipeline, "proxy_server"],
        "filters": filters,
    }


def _settings_for(spec: DaemonSpec, layout: Layout) -> dict[str, Any]:
    common: dict[str, Any] = {
        "devices": layout.devices_dir,
        "mount_check": False,
        "swift_dir": layout.etc_dir,
    }
    if spec.is_server:
        common.update(bind_ip=LOOPBACK, bind_port=layout.ports[spec.port_role or ""], workers=1)
        if spec.name == "proxy-server":
            common.update(_proxy_settings(layout))
        return common
    common["recon_cache_path"] = layout.cache_dir
    if spec.port_role is not None:
        # The replicator finds its local devices in the ring by ip and port.
        common.update(bind_ip=LOOPBACK, bind_port=layout.ports[spec.port_role])
    return common


def _build_config(spec: DaemonSpec, cls: type[Any], layout: Layout) -> Any:
    """The daemon's dataclass with saio's settings, keeping only fields it has."""
    names = {f.name for f in dataclasses.fields(cls)}
    settings = {k: v for k, v in _settings_for(spec, layout).items() if k in names}
    return cls(**settings)


# -- rings ---------------------------------------------------------------------


def build_ring(etc_dir: str, role: str, port: int, name: str | None = None) -> None:
    """``<name>.builder`` and ``<name>.ring.gz`` (name defaults to the role):
    3 replicas, d1..d4 one zone each, on the role's port."""
    name = name or role
    from swiftlite.ring.builder import RingBuilder

    builder = RingBuilder(PART_POWER, REPLICAS, 0)
    for zone, device in enumerate(DEVICES, start=1):
        builder.add_dev(
            {"region": 1, "zone": zone, "ip": LOOPBACK, "port": port,
             "device": device, "weight": 100.0}
        )
    builder.rebalance(seed=1)
    builder.save(os.path.join(etc_dir, f"{name}.builder"), backup=False)
    builder.get_ring().save(os.path.join(etc_dir, f"{name}.ring.gz"))


# -- the whole layout --------------------------------------------------------------


def _state_path(data_dir: str) -> str:
    return os.path.join(data_dir, "etc", "saio.yaml")


def _read_state(data_dir: str) -> dict[str, Any] | None:
    """``saio.yaml``: ports (and the proxy pipeline saio last wrote), or None."""
    path = _state_path(data_dir)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as fp:
            state = yaml.safe_load(fp)
        if state.get("version") != STATE_VERSION:
            raise LayoutError(f"{path}: unsupported version {state.get('version')!r}")
        ports = {str(k): int(v) for k, v in state["ports"].items()}
        pipeline = [str(n) for n in state.get("proxy_pipeline") or []]
    except (OSError, yaml.YAMLError, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise LayoutError(f"{path}: cannot read saio state: {exc}") from exc
    missing = {"proxy", *RING_ROLES} - set(ports)
    if missing:
        raise LayoutError(f"{path}: no port for {', '.join(sorted(missing))}")
    return {"ports": ports, "proxy_pipeline": pipeline}


def _write_state(data_dir: str, ports: dict[str, int], pipeline: list[str]) -> None:
    text = "# swiftlite saio: ports chosen at first run (kept in configs and rings)\n"
    text += "# and the proxy pipeline saio generated (updated while left unedited)\n"
    state = {"version": STATE_VERSION, "ports": ports, "proxy_pipeline": pipeline}
    text += yaml.safe_dump(state, sort_keys=True)
    _write_private(_state_path(data_dir), text)


def _write_cluster(etc_dir: str) -> None:
    conf = ClusterConfig(
        hash_path_prefix=secrets.token_hex(16),
        hash_path_suffix=secrets.token_hex(16),
        # A second replication policy (object-1.ring.gz, same devices), as
        # Swift's SAIO has: Swift's functional tests of storage policies
        # (create in a policy, change refused, cross-policy copy) need two.
        policies=[StoragePolicy(index=0, name="Policy-0", default=True),
                  StoragePolicy(index=1, name="Policy-1")],
    )
    path = os.path.join(etc_dir, "swiftlite.yaml")
    dump_config(conf, path, "swiftlite saio cluster config: keep the secrets secret", 0o600)


def _write_credentials(layout: Layout) -> None:
    users = {
        user: {"key": spec["key"], "groups": list(spec["groups"])}
        for user, spec in TEMPAUTH_USERS.items()
    }
    text = "# swiftlite saio: tempauth users (as Swift's functional tests expect)\n"
    text += yaml.safe_dump({"auth_url": layout.auth_url, "users": users}, sort_keys=False)
    _write_private(layout.credentials_path, text, 0o600)


def _update_proxy(path: str, layout: Layout, generated: list[str]) -> list[str]:
    """Keep an existing proxy config current: ``--port``, and the pipeline
    (with tempauth's users) when saio wrote it and middleware landed since.
    Returns the pipeline saio now owns: the old one if the operator changed it
    (so it is never touched again), else what the file holds."""
    from swiftlite.proxy.config import ProxyServerConfig

    conf = load_config(path, ProxyServerConfig)
    changed = conf.bind_port != layout.ports["proxy"]
    conf.bind_port = layout.ports["proxy"]
    fresh = _proxy_settings(layout)
    if conf.pipeline != generated:
        owned = generated  # edited by hand: leave it alone, now and later
    elif conf.pipeline != fresh["pipeline"]:
        conf.pipeline = fresh["pipeline"]
        for name, settings in fresh["filters"].items():
            conf.filters.setdefault(name, settings)
        conf.filters = {k: v for k, v in conf.filters.items() if k in conf.pipeline}
        changed = True
        owned = list(conf.pipeline)
    else:
        owned = generated
    if changed:
        dump_config(conf, path, "swiftlite saio: proxy-server config")
    return owned


def prepare(
    data_dir: str,
    proxy_port: int | None = None,
    choose_port: Callable[[], int] = free_port,
) -> Layout:
    """Create the layout on first run; reuse it (adding configs of daemons that
    landed since) afterwards. ``proxy_port`` None keeps the stored one (8080 at
    first run)."""
    data_dir = os.path.abspath(data_dir)
    state = _read_state(data_dir)
    ports = state["ports"] if state else None
    created = state is None
    generated_pipeline: list[str] = state["proxy_pipeline"] if state else []
    for sub in ("etc", "log", "cache", "srv", *(os.path.join("srv", d) for d in DEVICES)):
        os.makedirs(os.path.join(data_dir, sub), exist_ok=True)
    if ports is None:
        ports = {"proxy": proxy_port or 8080}
        for role in RING_ROLES:
            ports[role] = choose_port()
    elif proxy_port is not None:
        ports["proxy"] = proxy_port
    layout = Layout(data_dir=data_dir, created=created, ports=ports)
    etc = layout.etc_dir

    if not os.path.exists(os.path.join(etc, "swiftlite.yaml")):
        _write_cluster(etc)
    load_cluster_config(etc)  # also proves the file loads
    for role in RING_ROLES:
        if not os.path.exists(os.path.join(etc, f"{role}.ring.gz")):
            build_ring(etc, role, ports[role])
    for policy in load_cluster_config(etc).policies:
        if policy.index and not os.path.exists(os.path.join(etc, f"object-{policy.index}.ring.gz")):
            build_ring(etc, "object", ports["object"], f"object-{policy.index}")
    for spec in DAEMONS:
        cls = spec.config_cls()
        if cls is None:
            continue
        path = layout.config_path(spec)
        if not os.path.exists(path):
            conf = _build_config(spec, cls, layout)
            dump_config(conf, path, f"swiftlite saio: {spec.name} config")
            if spec.name == "proxy-server":
                generated_pipeline = list(conf.pipeline)
        elif spec.name == "proxy-server":
            generated_pipeline = _update_proxy(path, layout, generated_pipeline)
        else:
            try:
                load_config(path, cls)
            except Exception as exc:  # noqa: BLE001
                raise LayoutError(f"{path} does not load: {exc}") from exc
    if not os.path.exists(layout.credentials_path) or proxy_port is not None:
        _write_credentials(layout)
    # Written last: its presence marks a complete first run.
    _write_state(data_dir, ports, generated_pipeline)
    return layout
