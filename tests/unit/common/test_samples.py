"""Every sample config in etc/ must load with the config class it documents."""

import pathlib

from swiftlite.common import hashing
from swiftlite.common.config import ClusterConfig, load_config

ETC = pathlib.Path(__file__).resolve().parents[3] / "etc"


def test_cluster_sample_loads():
    conf = load_config(str(ETC / "swiftlite.yaml"), ClusterConfig)
    assert conf.default_policy.index == 0
    assert conf.constraints.max_file_size == 5368709122
    hashing.set_hash_path_secrets(b"", b"")


def test_object_server_sample_loads():
    from swiftlite.object.config import ObjectServerConfig

    conf = load_config(str(ETC / "object-server.yaml"), ObjectServerConfig)
    assert conf.bind_port == 6200
    assert conf.tmp_max_age == 86400
