"""Typed YAML configuration.

Every daemon reads one YAML file into a dataclass whose field names are Swift's
setting names with Swift's defaults, so an operator's knowledge carries over.
A key the dataclass does not know, a missing required key or a value of the
wrong type stops the daemon at start-up with a message naming the file and the
key: a typo must never be silently ignored.

The cluster file ``swiftlite.yaml`` (in ``swift_dir``, like Swift's
``/etc/swift/swift.conf``) holds the hash path secrets, storage policies and
constraints.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from swiftlite.common.hashing import set_hash_path_secrets

T = TypeVar("T")

CLUSTER_FILE = "swiftlite.yaml"
DEFAULT_SWIFT_DIR = "/etc/swiftlite"


class ConfigError(Exception):
    """A configuration problem, with the file and key it concerns."""


TRUE_VALUES = {"true", "1", "yes", "on", "t", "y"}
FALSE_VALUES = {"false", "0", "no", "off", "f", "n"}


def config_true_value(value: Any) -> bool:
    """Swift's notion of a true setting or query value."""
    return value is True or (isinstance(value, str) and value.lower() in TRUE_VALUES)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check (and gently coerce) one YAML value against a field's type hint."""
    origin = get_origin(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_hint,) = get_args(hint) or (Any,)
        return [_coerce(v, item_hint, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        key_hint, val_hint = get_args(hint) or (Any, Any)
        return {
            _coerce(k, key_hint, where): _coerce(v, val_hint, f"{where}.{k}")
            for k, v in value.items()
        }
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return _build(hint, value, where)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in TRUE_VALUES | FALSE_VALUES:
            return value.lower() in TRUE_VALUES
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if hint is str:
        if isinstance(value, bool) or value is None or isinstance(value, list | dict):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def _build(cls: type[T], data: dict[str, Any], where: str) -> T:
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        key = str(key)
        if key not in fields or not fields[key].init:
            known = ", ".join(sorted(n for n, f in fields.items() if f.init))
            raise ConfigError(f"{where}: unknown key {key!r} (known keys: {known})")
        kwargs[key] = _coerce(value, hints[key], f"{where}: key {key!r}")
    for name, field in fields.items():
        if (
            field.init
            and name not in kwargs
            and field.default is dataclasses.MISSING
            and field.default_factory is dataclasses.MISSING
        ):
            raise ConfigError(f"{where}: missing required key {name!r}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def read_yaml(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fp:
            data = yaml.safe_load(fp)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def load_config(path: str, cls: type[T]) -> T:
    """Read ``path`` into dataclass ``cls``, failing loudly on any bad key."""
    conf = _build(cls, read_yaml(path), path)
    if hasattr(conf, "__post_load__"):
        conf.__post_load__(path)
    return conf


def config_from_dict(cls: type[T], data: dict[str, Any], where: str = "<config>") -> T:
    """Build a config from a mapping (tests, generated configs)."""
    return _build(cls, data, where)


def parse_reserve(value: str | int | float) -> tuple[float, bool]:
    """``fallocate_reserve``: ``"1%"`` → (1.0, True); ``"1048576"`` → (1048576.0, False)."""
    text = str(value).strip()
    if text.endswith("%"):
        pct = float(text[:-1])
        if not 0 <= pct <= 100:
            raise ValueError(f"fallocate_reserve percentage out of range: {value!r}")
        return pct, True
    return float(text), False


@dataclasses.dataclass
class ServerConfig:
    """Settings every storage server shares; role configs extend it."""

    bind_port: int = 0
    bind_ip: str = "0.0.0.0"
    workers: int = 1
    devices: str = "/srv/node"
    mount_check: bool = True
    swift_dir: str = DEFAULT_SWIFT_DIR
    log_name: str = "swiftlite"
    log_level: str = "INFO"
    log_file: str | None = None
    node_timeout: float = 3.0
    conn_timeout: float = 0.5
    disk_limit: int = 25
    threads_per_disk: int = 4
    fallocate_reserve: str = "1%"
    max_clients: int = 1024

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValueError("workers must be >= 0")
        if self.disk_limit < 1:
            raise ValueError("disk_limit must be >= 1")
        if self.threads_per_disk < 1:
            raise ValueError("threads_per_disk must be >= 1")
        parse_reserve(self.fallocate_reserve)


@dataclasses.dataclass
class DaemonConfig:
    """Settings every background daemon shares; daemon configs extend it."""

    devices: str = "/srv/node"
    mount_check: bool = True
    swift_dir: str = DEFAULT_SWIFT_DIR
    log_name: str = "swiftlite"
    log_level: str = "INFO"
    log_file: str | None = None
    interval: float = 30.0
    node_timeout: float = 10.0
    conn_timeout: float = 0.5


@dataclasses.dataclass
class Constraints:
    """Swift's ``[swift-constraints]`` with Swift's defaults."""

    max_file_size: int = 5368709122
    max_meta_name_length: int = 128
    max_meta_value_length: int = 256
    max_meta_count: int = 90
    max_meta_overall_size: int = 4096
    max_header_size: int = 8192
    max_request_line: int = 8192
    max_object_name_length: int = 1024
    container_listing_limit: int = 10000
    account_listing_limit: int = 10000
    max_account_name_length: int = 256
    max_container_name_length: int = 256
    extra_header_count: int = 0
    valid_api_versions: list[str] = dataclasses.field(default_factory=lambda: ["v1", "v1.0"])
    auto_create_account_prefix: str = "."

    @property
    def max_header_count(self) -> int:
        """Swift's cap on request headers: metadata items plus room for the rest."""
        return self.max_meta_count + 36 + self.extra_header_count


@dataclasses.dataclass
class StoragePolicy:
    index: int
    name: str
    default: bool = False
    deprecated: bool = False
    aliases: list[str] = dataclasses.field(default_factory=list)
    policy_type: str = "replication"

    def __post_init__(self) -> None:
        if self.index < 0:
            raise ValueError(f"policy index must be >= 0, got {self.index}")
        if not self.name:
            raise ValueError("policy name must not be empty")
        if self.policy_type != "replication":
            raise ValueError(f"policy {self.name}: only replication policies are supported")

    def ring_name(self) -> str:
        return "object" if self.index == 0 else f"object-{self.index}"


@dataclasses.dataclass
class ClusterConfig:
    """``swiftlite.yaml``: what every node of a cluster must agree on."""

    hash_path_prefix: str = ""
    hash_path_suffix: str = ""
    policies: list[StoragePolicy] = dataclasses.field(
        default_factory=lambda: [StoragePolicy(index=0, name="Policy-0", default=True)]
    )
    constraints: Constraints = dataclasses.field(default_factory=Constraints)

    def __post_init__(self) -> None:
        if not self.hash_path_prefix and not self.hash_path_suffix:
            raise ValueError("at least one of hash_path_prefix and hash_path_suffix must be set")
        if not self.policies:
            self.policies = [StoragePolicy(index=0, name="Policy-0", default=True)]
        indexes = [p.index for p in self.policies]
        if len(set(indexes)) != len(indexes):
            raise ValueError("duplicate storage policy index")
        names = [n.lower() for p in self.policies for n in [p.name, *p.aliases]]
        if len(set(names)) != len(names):
            raise ValueError("duplicate storage policy name or alias")
        defaults = [p for p in self.policies if p.default]
        if len(defaults) > 1:
            raise ValueError("more than one default storage policy")
        if not defaults:
            # Swift: with a single policy (or policy 0 present) that one is default.
            if len(self.policies) == 1:
                self.policies[0].default = True
            else:
                raise ValueError("no default storage policy")
        if any(p.default and p.deprecated for p in self.policies):
            raise ValueError("the default storage policy cannot be deprecated")

    @property
    def default_policy(self) -> StoragePolicy:
        return next(p for p in self.policies if p.default)

    def get_policy(self, index_or_name: int | str | None) -> StoragePolicy | None:
        if index_or_name is None or index_or_name == "":
            return self.default_policy
        for p in self.policies:
            if isinstance(index_or_name, int):
                if p.index == index_or_name:
                    return p
            else:
                text = str(index_or_name)
                if text.isdigit() and p.index == int(text):
                    return p
                if text.lower() in (n.lower() for n in [p.name, *p.aliases]):
                    return p
        return None


def cluster_config_path(swift_dir_or_file: str) -> str:
    if os.path.isdir(swift_dir_or_file):
        return os.path.join(swift_dir_or_file, CLUSTER_FILE)
    return swift_dir_or_file


def load_cluster_config(swift_dir_or_file: str = DEFAULT_SWIFT_DIR) -> ClusterConfig:
    """Load ``swiftlite.yaml`` and install its hash path secrets process-wide."""
    path = cluster_config_path(swift_dir_or_file)
    conf = load_config(path, ClusterConfig)
    set_hash_path_secrets(conf.hash_path_prefix, conf.hash_path_suffix)
    return conf


__all__ = [
    "ClusterConfig",
    "ConfigError",
    "Constraints",
    "DaemonConfig",
    "ServerConfig",
    "StoragePolicy",
    "config_from_dict",
    "config_true_value",
    "load_cluster_config",
    "load_config",
    "parse_reserve",
    "read_yaml",
]

# typing is imported for get_type_hints to resolve forward references.
_ = typing
