"""``swiftlite saio`` end to end: start the cluster as a user would, use it,
SIGTERM it, and check nothing is left running or listening."""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import yaml

from swiftlite.common.config import load_cluster_config
from swiftlite.common.timestamp import Timestamp
from swiftlite.ring import Ring

# Generous safety limits (not measurements): a slow CI box may take a while
# to import and start a dozen Python processes.
READY_LIMIT = 120.0
STOP_LIMIT = 60.0
DAEMON_LINE = re.compile(r"^\s+(\S+)\s+pid (\d+)\s+(port (\d+)|background)\s+log (\S+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(
    port: int, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def pids_using(data_dir: str) -> list[int]:
    """Processes whose command line names the data dir (daemons and their workers)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path("/proc", entry, "cmdline").read_bytes()
            status = Path("/proc", entry, "status").read_text()
        except OSError:
            continue
        if data_dir.encode() in cmdline and "State:\tZ" not in status:
            found.append(int(entry))
    return found


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


class Saio:
    def __init__(self, data_dir: str, port: int) -> None:
        exe = shutil.which("swiftlite")
        cmd = [exe] if exe else [sys.executable, "-m", "swiftlite.cli.main"]
        self.data_dir = data_dir
        self.port = port
        self.proc = subprocess.Popen(
            [*cmd, "saio", "--data", data_dir, "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        assert self.proc.stdout is not None
        threading.Thread(target=_pump, args=(self.proc.stdout, self.lines), daemon=True).start()
        self.daemons: dict[str, dict[str, Any]] = {}
        self.rest: list[str] | None = None

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_LIMIT
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail("saio never said Ready:\n" + "".join(self.output))
            if line is None:
                pytest.fail("saio exited before Ready:\n" + "".join(self.output))
            self.output.append(line)
            match = DAEMON_LINE.match(line)
            if match:
                self.daemons[match.group(1)] = {
                    "pid": int(match.group(2)),
                    "port": int(match.group(4)) if match.group(4) else None,
                    "log": match.group(5),
                }
            if line.startswith("Ready."):
                return

    def text(self) -> str:
        return "".join(self.output)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.rest is not None:  # stopped already (by the test, then the fixture)
            return self.proc.wait()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(STOP_LIMIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail("saio did not stop after SIGTERM")
        finally:
            # Whatever saio left behind (it should be nothing) must not outlive the test.
            for pid in pids_using(self.data_dir):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            rest: list[str] = []
            while (line := self.lines.get(timeout=10)) is not None:
                rest.append(line)
            self.rest = rest


@pytest.fixture
def saio_run(tmp_path: Path) -> Iterator[Saio]:
    run = Saio(str(tmp_path / "saio"), free_port())
    try:
        run.wait_ready()
        yield run
    finally:
        run.stop()


def _object_roundtrip(run: Saio) -> None:
    """PUT and GET one object straight on the object server, placed by the saio ring."""
    etc = os.path.join(run.data_dir, "etc")
    load_cluster_config(etc)  # installs the cluster's secrets for the ring lookup
    ring = Ring(etc, ring_name="object")
    part, nodes = ring.get_nodes("AUTH_saio", "c", "o")
    node = nodes[0]
    assert node["port"] == run.daemons["object-server"]["port"]
    path = f"/{node['device']}/{part}/AUTH_saio/c/o"
    body = b"saio object body"
    status, _, _ = request(node["port"], "PUT", path, {
        "X-Timestamp": Timestamp.now().internal,
        "Content-Type": "text/plain",
        "Content-Length": str(len(body)),
    }, body)
    assert status == 201
    status, headers, got = request(node["port"], "GET", path)
    assert status == 200 and got == body
    assert Path(run.data_dir, "srv", node["device"], "objects", str(part)).is_dir()


def _proxy_roundtrip(run: Saio) -> None:
    port = run.daemons["proxy-server"]["port"]
    assert port == run.port
    status, _, body = request(port, "GET", "/info")
    assert status == 200
    assert "swift" in json.loads(body)
    assert f"Auth URL: http://127.0.0.1:{port}/auth/v1.0" in run.text()
    proxy_conf = yaml.safe_load(Path(run.data_dir, "etc", "proxy-server.yaml").read_text())
    if "tempauth" not in proxy_conf["pipeline"]:
        return  # tempauth not in this tree yet
    status, headers, _ = request(port, "GET", "/auth/v1.0",
                                 {"X-Auth-User": "test:tester", "X-Auth-Key": "testing"})
    assert status == 200
    token = headers["X-Auth-Token"]
    url = headers["X-Storage-Url"]
    assert url.startswith(f"http://127.0.0.1:{port}/v1/AUTH_test")
    path = url.split(str(port), 1)[1]
    auth = {"X-Auth-Token": token}
    status, _, _ = request(port, "PUT", f"{path}/saio-c", auth)
    assert status in (201, 202)
    status, _, _ = request(port, "PUT", f"{path}/saio-c/o", {**auth, "Content-Length": "5"},
                           b"hello")
    assert status == 201
    status, _, got = request(port, "GET", f"{path}/saio-c/o", auth)
    assert status == 200 and got == b"hello"
    status, _, _ = request(port, "GET", f"{path}/saio-c/o")
    assert status == 401
    _swiftclient_roundtrip(port)


def _swiftclient_roundtrip(port: int) -> None:
    """What a new user does first: python-swiftclient with the printed credentials."""
    from swiftclient import client as swift

    url, token = swift.get_auth(f"http://127.0.0.1:{port}/auth/v1.0", "test2:tester2", "testing2")
    swift.put_container(url, token, "photos")
    for name in ("2024/a.jpg", "2024/b.jpg", "2025/c.jpg", "top.txt"):
        swift.put_object(url, token, "photos", name, contents=name.encode())
    _, listing = swift.get_container(url, token, "photos", prefix="2024/")
    assert [o["name"] for o in listing] == ["2024/a.jpg", "2024/b.jpg"]
    _, listing = swift.get_container(url, token, "photos", delimiter="/")
    assert [o.get("subdir", o.get("name")) for o in listing] == ["2024/", "2025/", "top.txt"]
    _, body = swift.get_object(url, token, "photos", "2025/c.jpg")
    assert body == b"2025/c.jpg"
    swift.delete_object(url, token, "photos", "top.txt")
    with pytest.raises(swift.ClientException) as err:
        swift.get_object(url, token, "photos", "top.txt")
    assert err.value.http_status == 404


def test_saio_starts_serves_and_stops(saio_run: Saio) -> None:
    run = saio_run
    text = run.text()
    assert f"data directory {run.data_dir} (created)" in text
    for name in ("account-server", "container-server", "object-server"):
        assert name in run.daemons, text
    for name, info in run.daemons.items():
        assert Path(info["log"]).parent == Path(run.data_dir, "log")
        if info["port"] is not None:
            assert request(info["port"], "GET", "/healthcheck")[0] < 500, name
    _object_roundtrip(run)
    if "proxy-server" in run.daemons:
        _proxy_roundtrip(run)
    else:
        assert "no client endpoint yet" in text

    ports = [i["port"] for i in run.daemons.values() if i["port"] is not None]
    assert run.stop() == 0
    assert "swiftlite saio: stopped" in "".join(run.rest or [])
    for name, info in run.daemons.items():
        with pytest.raises(ProcessLookupError):
            # saio reaped its children, so a leftover pid would be a live process.
            os.kill(info["pid"], 0)
        assert name
    assert pids_using(run.data_dir) == []
    for port in ports:
        assert not listening(port), port


def test_second_run_reuses_the_data(tmp_path: Path) -> None:
    data = str(tmp_path / "saio")
    port = free_port()
    first = Saio(data, port)
    try:
        first.wait_ready()
    finally:
        assert first.stop() == 0
    secrets = Path(data, "etc", "swiftlite.yaml").read_bytes()
    second = Saio(data, port)
    try:
        second.wait_ready()
        assert f"data directory {data} (reused)" in second.text()
        assert first.daemons.keys() == second.daemons.keys()
        for name, info in first.daemons.items():
            assert second.daemons[name]["port"] == info["port"]
        _object_roundtrip(second)
    finally:
        assert second.stop() == 0
    assert Path(data, "etc", "swiftlite.yaml").read_bytes() == secrets


def test_sigint_stops_too(tmp_path: Path) -> None:
    run = Saio(str(tmp_path / "saio"), free_port())
    try:
        run.wait_ready()
    finally:
        assert run.stop(signal.SIGINT) == 0
    assert pids_using(run.data_dir) == []


def test_daemon_failing_at_start_stops_the_rest(tmp_path: Path) -> None:
    """The proxy's port is taken: saio shows the proxy's log, stops every
    other daemon and exits non-zero."""
    pytest.importorskip("swiftlite.proxy.server")
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        run = Saio(str(tmp_path / "saio"), port)
        try:
            status = run.proc.wait(READY_LIMIT)
        finally:
            run.stop()
        text = run.text() + "".join(run.rest or [])
    assert status == 1, text
    assert "proxy-server exited at start-up" in text
    assert "proxy-server.log" in text
    assert "Ready." not in text
    assert pids_using(run.data_dir) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_killed_saio_leaves_no_daemon(tmp_path: Path) -> None:
    """Even a SIGKILLed saio (no chance to clean up) takes its daemons along."""
    run = Saio(str(tmp_path / "saio"), free_port())
    try:
        run.wait_ready()
        ports = [i["port"] for i in run.daemons.values() if i["port"] is not None]
        run.proc.kill()
        run.proc.wait()
        deadline = time.monotonic() + STOP_LIMIT
        while pids_using(run.data_dir) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pids_using(run.data_dir) == []
        for port in ports:
            assert not listening(port), port
    finally:
        run.stop()
