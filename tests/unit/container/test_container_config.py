"""The sample config loads, and the settings are checked."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from swiftlite.common.config import ConfigError, config_from_dict, load_config
from swiftlite.container.config import ContainerServerConfig

ETC = pathlib.Path(__file__).resolve().parents[3] / "etc"


def test_sample_loads() -> None:
    conf = load_config(str(ETC / "container-server.yaml"), ContainerServerConfig)
    assert conf.bind_port == 6201
    assert conf.fsync_pending is True
    assert conf.allowed_sync_hosts == ["127.0.0.1"]


def test_defaults_and_errors(tmp_path: Any) -> None:
    conf = config_from_dict(ContainerServerConfig, {})
    assert (conf.bind_port, conf.log_name, conf.max_batch) == (6201, "container-server", 1000)
    with pytest.raises(ConfigError):
        config_from_dict(ContainerServerConfig, {"max_batch": 0})
    with pytest.raises(ConfigError):
        config_from_dict(ContainerServerConfig, {"no_such_setting": 1})
