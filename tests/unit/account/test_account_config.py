"""The account server's config: the sample loads, mistakes stop start-up."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from swiftlite.account.config import AccountServerConfig
from swiftlite.common.config import ConfigError, load_config

SAMPLE = pathlib.Path(__file__).resolve().parents[3] / "etc" / "account-server.yaml"


def test_sample_loads_with_swift_defaults() -> None:
    conf = load_config(str(SAMPLE), AccountServerConfig)
    assert conf.bind_port == 6202
    assert conf.mount_check is True
    assert conf.disk_limit == 25 and conf.threads_per_disk == 4
    assert conf.fallocate_reserve == "1%"


@pytest.mark.parametrize(
    "text,key",
    [
        ("bind_prot: 6202\n", "bind_prot"),
        ("pending_timeout: soon\n", "pending_timeout"),
        ("pending_timeout: 0\n", "pending_timeout"),
    ],
)
def test_mistakes_name_the_key(tmp_path: Any, text: str, key: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path), AccountServerConfig)
    assert str(path) in str(info.value)
    assert key in str(info.value)
