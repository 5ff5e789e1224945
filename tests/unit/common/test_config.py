import dataclasses

import pytest

from swiftlite.common import hashing
from swiftlite.common.config import (
    ClusterConfig,
    ConfigError,
    ServerConfig,
    config_from_dict,
    load_cluster_config,
    load_config,
    parse_reserve,
)


@dataclasses.dataclass
class RoleConfig(ServerConfig):
    bind_port: int = 6200
    container_update_timeout: float = 1.0
    allowed_headers: list[str] = dataclasses.field(default_factory=list)


def write(tmp_path, text, name="x.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_defaults_carry_swift_names(tmp_path):
    conf = load_config(write(tmp_path, "bind_ip: 127.0.0.1\n"), RoleConfig)
    assert conf.bind_ip == "127.0.0.1"
    assert conf.bind_port == 6200
    assert conf.workers == 1
    assert conf.devices == "/srv/node"
    assert conf.mount_check is True
    assert conf.node_timeout == 3.0
    assert conf.disk_limit == 25


def test_unknown_key_names_file_and_key(tmp_path):
    path = write(tmp_path, "bind_ip: 127.0.0.1\nmount_chek: false\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, RoleConfig)
    assert path in str(err.value)
    assert "mount_chek" in str(err.value)


def test_wrong_type_names_key(tmp_path):
    path = write(tmp_path, "workers: lots\n")
    with pytest.raises(ConfigError, match="workers"):
        load_config(path, RoleConfig)
    with pytest.raises(ConfigError, match="mount_check"):
        load_config(write(tmp_path, "mount_check: maybe\n"), RoleConfig)
    with pytest.raises(ConfigError, match="allowed_headers"):
        load_config(write(tmp_path, "allowed_headers: 3\n"), RoleConfig)


def test_swift_style_booleans_and_numbers(tmp_path):
    conf = load_config(write(tmp_path, "mount_check: 'no'\nnode_timeout: 5\nworkers: '2'\n"), RoleConfig)
    assert conf.mount_check is False
    assert conf.node_timeout == 5.0
    assert conf.workers == 2


def test_missing_required_key(tmp_path):
    @dataclasses.dataclass
    class Needs:
        must: str

    with pytest.raises(ConfigError, match="missing required key 'must'"):
        config_from_dict(Needs, {}, "f.yaml")


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "a: [\n"), RoleConfig)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(str(tmp_path / "nope.yaml"), RoleConfig)
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- 1\n"), RoleConfig)


def test_invalid_value_rejected(tmp_path):
    with pytest.raises(ConfigError, match="disk_limit"):
        load_config(write(tmp_path, "disk_limit: 0\n"), RoleConfig)


def test_cluster_config_sets_secrets(tmp_path):
    write(
        tmp_path,
        "hash_path_prefix: pre\nhash_path_suffix: suf\n"
        "policies:\n  - {index: 0, name: gold, default: true}\n  - {index: 1, name: silver, aliases: [ag]}\n"
        "constraints:\n  max_file_size: 1000\n",
        "swiftlite.yaml",
    )
    conf = load_cluster_config(str(tmp_path))
    try:
        assert hashing.get_hash_path_secrets() == (b"pre", b"suf")
        assert conf.constraints.max_file_size == 1000
        assert conf.constraints.max_meta_count == 90
        assert conf.default_policy.name == "gold"
        assert conf.get_policy("AG").index == 1
        assert conf.get_policy(1).name == "silver"
        assert conf.get_policy("1").name == "silver"
        assert conf.get_policy(None).index == 0
        assert conf.get_policy("bronze") is None
    finally:
        hashing.set_hash_path_secrets(b"", b"")


@pytest.mark.parametrize(
    "text, err",
    [
        ("hash_path_prefix: ''\n", "hash_path"),
        ("hash_path_suffix: s\npolicies:\n  - {index: 0, name: a}\n  - {index: 0, name: b}\n", "duplicate"),
        ("hash_path_suffix: s\npolicies:\n  - {index: 0, name: a, default: true}\n  - {index: 1, name: b, default: true}\n", "more than one"),
        ("hash_path_suffix: s\nconstraints: {max_file_sise: 3}\n", "max_file_sise"),
    ],
)
def test_cluster_config_errors(tmp_path, text, err):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=err):
        load_config(path, ClusterConfig)


def test_parse_reserve():
    assert parse_reserve("1%") == (1.0, True)
    assert parse_reserve("1048576") == (1048576.0, False)
    with pytest.raises(ValueError):
        parse_reserve("150%")
