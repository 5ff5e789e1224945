"""Which storage policy a container PUT asks the container servers for."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from swiftlite.common.config import ClusterConfig, StoragePolicy
from swiftlite.proxy.controllers.container import ContainerController
from swiftlite.proxy.request_body import HTTPError


def policy_headers(headers: dict[str, str]) -> dict[str, str]:
    cluster = ClusterConfig(
        hash_path_prefix="p", hash_path_suffix="s",
        policies=[StoragePolicy(0, "gold", default=True), StoragePolicy(1, "silver"),
                  StoragePolicy(2, "old", deprecated=True)],
    )
    # _policy_headers reads only the app's cluster config and the headers.
    fake_self: Any = SimpleNamespace(app=SimpleNamespace(cluster=cluster))
    request: Any = SimpleNamespace(headers=headers)
    return ContainerController._policy_headers(fake_self, request)


def test_absent_or_empty_policy_header_means_default() -> None:
    # Swift's test_container.py test_create_container_gets_default_policy_by_default
    # sends an empty X-Storage-Policy.
    assert policy_headers({}) == {"X-Backend-Storage-Policy-Default": "0"}
    assert policy_headers({"X-Storage-Policy": ""}) == {"X-Backend-Storage-Policy-Default": "0"}


def test_named_policy_and_refusals() -> None:
    assert policy_headers({"X-Storage-Policy": "silver"}) == {
        "X-Backend-Storage-Policy-Index": "1"}
    for name in ("nope", "old"):
        with pytest.raises(HTTPError):
            policy_headers({"X-Storage-Policy": name})
