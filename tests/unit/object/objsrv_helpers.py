"""Fixtures for the object server tests (imported by test_server_*.py; not a
conftest, so the storage tests beside them stay unaffected)."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from swiftlite.common.config import ClusterConfig, StoragePolicy
from swiftlite.common.timestamp import Timestamp
from swiftlite.object.config import ObjectServerConfig
from swiftlite.object.server import ObjectServer


def cluster_config() -> ClusterConfig:
    return ClusterConfig(
        hash_path_suffix="endcap",
        policies=[
            StoragePolicy(index=0, name="gold", default=True),
            StoragePolicy(index=1, name="silver"),
        ],
    )


class Clock:
    """Increasing timestamps near now (tombstones older than reclaim_age vanish)."""

    def __init__(self) -> None:
        self.base = time.time()
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return Timestamp(self.base + self.n).internal


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def devices(tmp_path: Any) -> str:
    for dev in ("sda", "sdb"):
        os.makedirs(tmp_path / "node" / dev)
    return str(tmp_path / "node")


ServerFactory = Callable[..., "ObjectServer"]


@pytest.fixture
async def make_client(
    devices: str,
) -> AsyncIterator[Callable[..., Any]]:
    clients: list[TestClient[Any, Any]] = []

    async def factory(**overrides: Any) -> tuple[ObjectServer, TestClient[Any, Any]]:
        args: dict[str, Any] = {
            "devices": devices,
            "mount_check": False,
            "sendfile_min_size": 4096,
            "log_requests": False,
        }
        args.update(overrides)
        srv = ObjectServer(ObjectServerConfig(**args), cluster_config())
        client: TestClient[Any, Any] = TestClient(TestServer(srv.make_app(), host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return srv, client

    yield factory
    for client in clients:
        await client.close()


@pytest.fixture
async def server(make_client: Callable[..., Any]) -> tuple[ObjectServer, TestClient[Any, Any]]:
    return await make_client()  # type: ignore[no-any-return]
