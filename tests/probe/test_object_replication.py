"""Probe: three real object server processes, a lost replica, one replicator pass.

The replicator runs as its own process (``python -m swiftlite.object.replicator
<conf> once``) against servers started from their YAML configs, so this is the
path an operator takes: wipe a device's objects, run a pass, the replica is
back (tombstones included).
"""

from __future__ import annotations

import array
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from swiftlite.common import hashing
from swiftlite.ring.ring import Ring
from swiftlite.ring.ring_io import RingData

REPO = Path(__file__).resolve().parents[2]
PREFIX, SUFFIX = "probe-prefix", "probe-suffix"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    def __init__(self, name: str, port: int, devices: Path, etc: Path, cmd: list[str]) -> None:
        self.name, self.port, self.devices, self.etc, self.cmd = name, port, devices, etc, cmd
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=dict(os.environ, AIOHTTP_NO_EXTENSIONS="1"),
            cwd=str(REPO),
        )
        self.wait_ready()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"{self.name} exited {self.proc.returncode}: {err}")
            try:
                if self.request("GET", "/healthcheck")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{self.name} did not come up")


@pytest.fixture
def make_nodes(tmp_path: Path) -> Iterator:
    procs: list[Proc] = []

    def make(count: int) -> list[Proc]:
        for i in range(count):
            root = tmp_path / f"node{i}"
            devices, etc = root / "srv", root / "etc"
            (devices / f"sd{i}").mkdir(parents=True)
            etc.mkdir(parents=True)
            (etc / "swiftlite.yaml").write_text(
                f"hash_path_prefix: {PREFIX}\nhash_path_suffix: {SUFFIX}\n"
            )
            port = free_port()
            conf = etc / "object-server.yaml"
            conf.write_text(
                yaml.safe_dump(
                    {
                        "bind_ip": "127.0.0.1",
                        "bind_port": port,
                        "workers": 0,
                        "devices": str(devices),
                        "mount_check": False,
                        "swift_dir": str(etc),
                        "log_level": "WARNING",
                    }
                )
            )
            cmd = [sys.executable, "-m", "swiftlite.object.server", str(conf)]
            node = Proc(f"node{i}", port, devices, etc, cmd)
            procs.append(node)
            node.start()
        return procs

    try:
        yield make
    finally:
        for node in procs:
            node.kill()


def write_ring(path: Path, nodes: list[Proc]) -> Ring:
    """Part power 2, three replicas; partition p on devices p, p+1, p+2 (mod n)."""
    devs: list[dict | None] = [
        {
            "id": i,
            "region": 1,
            "zone": i + 1,
            "ip": "127.0.0.1",
            "port": n.port,
            "replication_ip": "127.0.0.1",
            "replication_port": n.port,
            "device": f"sd{i}",
            "weight": 1.0,
            "meta": "",
        }
        for i, n in enumerate(nodes)
    ]
    count = len(nodes)
    rows = [array.array("H", [(p + r) % count for p in range(4)]) for r in range(3)]
    RingData(rows, devs, 30).save(str(path))
    return Ring(str(path))


def put(node: Proc, device: str, part: int, name: str, body: bytes, t: float) -> None:
    status, _, _ = node.request(
        "PUT",
        f"/{device}/{part}/AUTH_a/c/{name}",
        body=body,
        headers={
            "X-Timestamp": f"{t:016.5f}",
            "Content-Type": "application/octet-stream",
            "Content-Length": str(len(body)),
        },
    )
    assert status == 201


def run_replicator(node: Proc, recon: Path) -> dict:
    conf = node.etc / "object-replicator.yaml"
    conf.write_text(
        yaml.safe_dump(
            {
                "devices": str(node.devices),
                "mount_check": False,
                "swift_dir": str(node.etc),
                "bind_ip": "127.0.0.1",
                "bind_port": node.port,
                "recon_cache_path": str(recon),
                "concurrency": 2,
                "log_level": "INFO",
            }
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "swiftlite.object.replicator", str(conf), "once"],
        capture_output=True,
        timeout=120,
        cwd=str(REPO),
    )
    assert done.returncode == 0, done.stderr.decode()
    assert b"pass done" in done.stderr
    return json.loads((recon / "object-replicator.json").read_text())


def test_wiped_device_is_restored_by_one_pass(make_nodes, tmp_path: Path) -> None:
    hashing.set_hash_path_secrets(PREFIX, SUFFIX)
    nodes = make_nodes(3)
    for node in nodes:
        ring = write_ring(node.etc / "object.ring.gz", nodes)
    bodies = {f"obj-{i}": os.urandom(100 + i * 37) for i in range(30)}
    big = os.urandom(3 * 1024 * 1024 + 5)  # streamed in chunks, not in one piece
    bodies["big"] = big
    t = time.time() - 10
    for name, body in bodies.items():
        part, primaries = ring.get_nodes("AUTH_a", "c", name)
        assert len(primaries) == 3
        for dev in primaries:
            status, _, _ = nodes[dev["id"]].request(
                "PUT",
                f"/{dev['device']}/{part}/AUTH_a/c/{name}",
                body=body,
                headers={
                    "X-Timestamp": f"{t:016.5f}",
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(len(body)),
                },
            )
            assert status == 201
    # One object is deleted everywhere: its tombstone must come back too.
    part, primaries = ring.get_nodes("AUTH_a", "c", "obj-0")
    for dev in primaries:
        status, _, _ = nodes[dev["id"]].request(
            "DELETE",
            f"/{dev['device']}/{part}/AUTH_a/c/obj-0",
            headers={"X-Timestamp": f"{t + 1:016.5f}"},
        )
        assert status == 204
    # Lose node 1's replica of everything.
    shutil.rmtree(nodes[1].devices / "sd1" / "objects")
    for name in bodies:
        part, _ = ring.get_nodes("AUTH_a", "c", name)
        assert nodes[1].request("HEAD", f"/sd1/{part}/AUTH_a/c/{name}")[0] == 404

    stats = run_replicator(nodes[0], tmp_path / "recon")

    for name, body in bodies.items():
        part, _ = ring.get_nodes("AUTH_a", "c", name)
        status, headers, got = nodes[1].request("GET", f"/sd1/{part}/AUTH_a/c/{name}")
        if name == "obj-0":
            assert status == 404
            assert float(headers["X-Backend-Timestamp"]) == pytest.approx(t + 1, abs=1e-4)
        else:
            assert status == 200, name
            assert hashlib.md5(got).hexdigest() == hashlib.md5(body).hexdigest()
    assert stats["in_progress"] is False
    assert stats["partitions_done"] == stats["partitions_total"] == 4
    # Every file node 1 lost came from node 0 (30 .data - 1 deleted + big + 1 .ts).
    assert stats["files_sent"] == len(bodies)
    assert stats["errors"] == 0


def test_node_down_during_put_gets_it_and_handoff_drains(make_nodes, tmp_path: Path) -> None:
    """A primary is down while objects are written (the proxy would send its
    replica to a handoff); it comes back; one pass on the handoff's node puts
    every replica home and removes the handoff copies."""
    hashing.set_hash_path_secrets(PREFIX, SUFFIX)
    nodes = make_nodes(4)
    for node in nodes:
        ring = write_ring(node.etc / "object.ring.gz", nodes)
    down = nodes[3]
    down.kill()
    t = time.time() - 10
    written: dict[str, tuple[int, bytes, int]] = {}
    handoff_ids: set[int] = set()
    for i in range(40):
        name = f"h-{i}"
        part, primaries = ring.get_nodes("AUTH_a", "c", name)
        if down.name not in {nodes[d["id"]].name for d in primaries}:
            continue
        body = os.urandom(64 + i)
        handoff = next(iter(ring.get_more_nodes(part)))
        handoff_ids.add(handoff["id"])
        for dev in primaries:
            target = handoff if dev["id"] == 3 else dev
            put(nodes[target["id"]], target["device"], part, name, body, t)
        written[name] = (part, body, handoff["id"])
    assert written
    down.start()
    for node_id in handoff_ids:
        stats = run_replicator(nodes[node_id], tmp_path / f"recon{node_id}")
        assert stats["errors"] == 0 and stats["handoff_partitions"] >= 1
    for name, (part, body, h) in written.items():
        status, _, got = down.request("GET", f"/sd3/{part}/AUTH_a/c/{name}")
        assert status == 200 and got == body
        assert nodes[h].request("HEAD", f"/sd{h}/{part}/AUTH_a/c/{name}")[0] == 404
        assert not (nodes[h].devices / f"sd{h}" / "objects" / str(part)).exists()
    for node_id in handoff_ids:
        leftovers = list((nodes[node_id].devices / f"sd{node_id}").glob("objects/*/*/*/*.data"))
        # Only the partitions this node is a primary for may hold data.
        for path in leftovers:
            part = int(path.parts[-4])
            assert node_id in {d["id"] for d in ring.get_part_nodes(part)}
