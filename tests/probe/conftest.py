"""Probe-test fixtures: real swiftlite server processes on loopback.

Each server gets its own data directory (devices, swift_dir with the cluster
file) under the test's tmp_path, binds 127.0.0.1 on a free port, and is
always killed when the test ends, whatever happened.
"""

from __future__ import annotations

import dataclasses
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class ServerProc:
    role: str
    port: int
    root: Path
    devices: Path
    conf_path: Path
    proc: subprocess.Popen

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.role} server exited with {self.proc.returncode}: "
                    f"{self.proc.stderr.read().decode() if self.proc.stderr else ''}"
                )
            try:
                status, _, _ = self.request("GET", "/healthcheck", timeout=1)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{self.role} server did not come up on {self.port}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            # The whole process group: workers die with the parent.
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator:
    procs: list[ServerProc] = []

    def start(
        role: str,
        devices: tuple[str, ...] = ("sda", "sdb"),
        name: str = "node1",
        **conf: object,
    ) -> ServerProc:
        root = tmp_path / name
        devroot = root / "srv"
        etc = root / "etc"
        for dev in devices:
            (devroot / dev).mkdir(parents=True, exist_ok=True)
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "swiftlite.yaml").write_text(
            "hash_path_prefix: probe-prefix\nhash_path_suffix: probe-suffix\n"
        )
        port = int(conf.pop("bind_port", 0)) or free_port()  # type: ignore[call-overload]
        settings = {
            "bind_ip": "127.0.0.1",
            "bind_port": port,
            "workers": 0,
            "devices": str(devroot),
            "mount_check": False,
            "swift_dir": str(etc),
            "log_level": "WARNING",
        }
        settings.update(conf)
        conf_path = etc / f"{role}-server.yaml"
        conf_path.write_text(yaml.safe_dump(settings))
        proc = subprocess.Popen(
            [sys.executable, "-m", f"swiftlite.{role}.server", str(conf_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        server = ServerProc(role, port, root, devroot, conf_path, proc)
        procs.append(server)
        server.wait_ready()
        return server

    yield start
    for server in procs:
        try:
            server.kill()
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
