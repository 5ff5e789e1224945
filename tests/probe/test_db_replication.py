"""Probe: real container server processes; one misses updates (it is down),
comes back, and one pass of the real ``swiftlite-container-replicator``
process makes every listing the same (rows merged, a missing DB copied whole)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.probe.conftest import ServerProc, free_port
from tests.unit.db.test_replicator_support import write_ring

PART = 0  # the ring below puts partition 0 on all three servers


def ts(n: float) -> str:
    return f"{time.time() - 100 + n:016.5f}"


def put_container(server: Any, name: str, t: str) -> None:
    status, _, body = server.request("PUT", f"/sda/{PART}/a/{name}", headers={"X-Timestamp": t})
    assert status in (201, 202), body


def put_object(server: Any, container: str, obj: str, t: str) -> None:
    headers = {
        "X-Timestamp": t,
        "X-Size": "3",
        "X-Content-Type": "text/plain",
        "X-Etag": "d41d8cd98f00b204e9800998ecf8427e",
    }
    status, _, body = server.request("PUT", f"/sda/{PART}/a/{container}/{obj}", headers=headers)
    assert status == 201, body


def listing(server: Any, container: str) -> list[str]:
    status, _, body = server.request("GET", f"/sda/{PART}/a/{container}?format=json")
    assert status == 200, (status, body)
    return [row["name"] for row in json.loads(body)]


def run_replicator(tmp_path: Path, server: Any) -> dict[str, Any]:
    swift_dir = tmp_path / "ring"
    recon = tmp_path / f"recon-{server.port}"
    conf = {
        "devices": str(server.devices),
        "mount_check": False,
        "swift_dir": str(swift_dir),
        "bind_ip": "127.0.0.1",
        "bind_port": server.port,
        "recon_cache_path": str(recon),
        "log_level": "INFO",
    }
    conf_path = tmp_path / f"container-replicator-{server.port}.yaml"
    conf_path.write_text(yaml.safe_dump(conf))
    proc = subprocess.run(
        [sys.executable, "-m", "swiftlite.container.replicator", str(conf_path), "once"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"Replication run OVER" in proc.stderr
    return json.loads((recon / "container-replicator.json").read_text())


@pytest.fixture
def start_container(tmp_path: Path) -> Iterator[Callable[..., ServerProc]]:
    """A real container server process (conftest's start_server waits for a
    /healthcheck the container server does not serve)."""
    procs: list[ServerProc] = []

    def start(name: str, port: int = 0) -> ServerProc:
        root = tmp_path / name
        devroot, etc = root / "srv", root / "etc"
        (devroot / "sda").mkdir(parents=True, exist_ok=True)
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "swiftlite.yaml").write_text(
            "hash_path_prefix: probe-prefix\nhash_path_suffix: probe-suffix\n"
        )
        settings = {
            "bind_ip": "127.0.0.1",
            "bind_port": port or free_port(),
            "workers": 0,
            "devices": str(devroot),
            "mount_check": False,
            "swift_dir": str(etc),
            "log_level": "WARNING",
        }
        conf_path = etc / "container-server.yaml"
        conf_path.write_text(yaml.safe_dump(settings))
        proc = subprocess.Popen(
            [sys.executable, "-m", "swiftlite.container.server", str(conf_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        server = ServerProc("container", int(settings["bind_port"]), root, devroot, conf_path, proc)
        procs.append(server)
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                server.request("HEAD", "/sda/0/a/probe", timeout=1)
                return server
            except (OSError, http.client.HTTPException):
                assert time.monotonic() < deadline, "container server did not come up"
                time.sleep(0.05)

    yield start
    for server in procs:
        server.kill(signal.SIGKILL)


def test_container_listings_converge_after_a_server_missed_updates(
    start_container: Callable[..., ServerProc], tmp_path: Path
) -> None:
    servers = [start_container(f"node{i}") for i in range(3)]
    swift_dir = tmp_path / "ring"
    swift_dir.mkdir()
    (swift_dir / "swiftlite.yaml").write_text(
        "hash_path_prefix: probe-prefix\nhash_path_suffix: probe-suffix\n"
    )
    write_ring(str(swift_dir / "container.ring.gz"), [s.port for s in servers], ["sda"] * 3, 3)
    for server in servers:
        put_container(server, "c", ts(0))
        put_object(server, "c", "before", ts(1))
    down = servers[2]
    port = down.port
    down.kill()
    # While it is down: rows land on two replicas only; c2 is created without it.
    for i, server in enumerate(servers[:2]):
        put_container(server, "c2", ts(2))
        put_object(server, "c2", "in-c2", ts(3))
        put_object(server, "c", f"only-on-{i}", ts(4 + i))
        put_object(server, "c", "shared", ts(6))
    back = start_container("node2", port)
    assert listing(back, "c") == ["before"]
    assert back.request("GET", f"/sda/{PART}/a/c2")[0] == 404

    stats = run_replicator(tmp_path, servers[0])
    assert stats["failure"] == 0 and stats["rsync"] == 1, stats
    stats = run_replicator(tmp_path, servers[1])
    assert stats["failure"] == 0, stats

    want = ["before", "only-on-0", "only-on-1", "shared"]
    for server in (servers[0], servers[1], back):
        assert listing(server, "c") == want
        assert listing(server, "c2") == ["in-c2"]
    # The copied DB answers HEAD with the same counts as its source.
    heads = [s.request("HEAD", f"/sda/{PART}/a/c")[1] for s in (servers[0], back)]
    assert heads[0]["X-Container-Object-Count"] == heads[1]["X-Container-Object-Count"] == "4"
    assert os.path.isdir(back.devices / "sda" / "containers" / str(PART))
