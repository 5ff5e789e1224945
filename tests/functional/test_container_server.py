"""The real ``swiftlite-container-server`` process over HTTP on a free port:
driven by Swift's own direct client, by many parallel updaters, and killed
with SIGKILL in the middle of a stream of updates."""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(
    port: int, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def ts(n: float) -> str:
    return f"{n:016.05f}"


class Server:
    """One container server process on ``root``; start/kill/stop at will."""

    def __init__(self, root: Any, workers: int) -> None:
        self.root = root
        self.swift_dir = root / "etc"
        self.swift_dir.mkdir(exist_ok=True)
        (root / "srv" / "sda1").mkdir(parents=True, exist_ok=True)
        (self.swift_dir / "swiftlite.yaml").write_text(
            "hash_path_prefix: functional-prefix\n"
            "hash_path_suffix: functional-suffix\n"
            "policies:\n"
            "  - {index: 0, name: gold, default: true}\n"
            "  - {index: 1, name: silver}\n"
        )
        self.workers = workers
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> int:
        self.port = free_port()
        conf = self.root / "container-server.yaml"
        conf.write_text(
            f"bind_ip: 127.0.0.1\nbind_port: {self.port}\nworkers: {self.workers}\n"
            f"devices: {self.root / 'srv'}\nmount_check: false\nswift_dir: {self.swift_dir}\n"
            "log_requests: false\n"
        )
        exe = shutil.which("swiftlite-container-server")
        cmd = [exe] if exe else [sys.executable, "-m", "swiftlite.container.server"]
        self.proc = subprocess.Popen(
            [*cmd, str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                request(self.port, "OPTIONS", "/sda1/0/a/c")
                return self.port
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    out = self.proc.stdout.read() if self.proc.stdout else b""
                    self.stop()
                    pytest.fail(f"container server did not start: {out.decode(errors='replace')}")
                time.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        code = self.proc.returncode
        self.proc = None
        return code


@pytest.fixture
def server(tmp_path: Any) -> Iterator[Server]:
    srv = Server(tmp_path, workers=2)
    srv.start()
    try:
        yield srv
    finally:
        assert srv.stop() == 0


def obj_headers(t: float, size: int = 1) -> dict[str, str]:
    return {
        "X-Timestamp": ts(t),
        "X-Size": str(size),
        "X-Content-Type": "text/plain",
        "X-Etag": "d41d8cd98f00b204e9800998ecf8427e",
        "X-Backend-Storage-Policy-Index": "0",
    }


def listing(port: int, container: str = "c") -> list[str]:
    names: list[str] = []
    marker = ""
    while True:
        query = urllib.parse.urlencode({"format": "json", "marker": marker})
        status, _, body = request(port, "GET", f"/sda1/0/a/{container}?{query}")
        if status == 204:
            return names
        assert status == 200, body
        page = [o["name"] for o in json.loads(body)]
        if not page:
            return names
        names.extend(page)
        marker = page[-1]


def test_swift_direct_client_talks_to_it(server: Server) -> None:
    from swift.common import direct_client

    node = {"ip": "127.0.0.1", "port": server.port, "device": "sda1"}
    direct_client.direct_put_container(
        node, "0", "AUTH_test", "c\u00e9", headers={"X-Timestamp": ts(1)}
    )
    for i, name in enumerate(["a", "b/c", "\u2603"]):
        direct_client.direct_put_container_object(
            node,
            "0",
            "AUTH_test",
            "c\u00e9",
            name,
            headers={
                "X-Timestamp": ts(2 + i),
                "X-Size": "5",
                "X-Content-Type": "text/plain",
                "X-Etag": "etag",
                "X-Backend-Storage-Policy-Index": "0",
            },
        )
    direct_client.direct_delete_container_object(
        node, "0", "AUTH_test", "c\u00e9", "a", headers={"X-Timestamp": ts(9)}
    )
    headers = direct_client.direct_head_container(node, "0", "AUTH_test", "c\u00e9")
    assert headers["X-Container-Object-Count"] == "2"
    assert headers["X-Container-Bytes-Used"] == "10"
    resp_headers, objs = direct_client.direct_get_container(
        node, "0", "AUTH_test", "c\u00e9", delimiter="/"
    )
    assert [o.get("name", o.get("subdir")) for o in objs] == ["b/", "\u2603"]
    assert objs[1]["last_modified"] == "1970-01-01T00:00:04.000000"
    with pytest.raises(direct_client.DirectClientException) as info:
        direct_client.direct_delete_container(
            node, "0", "AUTH_test", "c\u00e9", headers={"X-Timestamp": ts(10)}
        )
    assert info.value.http_status == 409


def test_parallel_updates_across_workers_lose_none(server: Server) -> None:
    port = server.port
    assert request(port, "PUT", "/sda1/0/a/c", {"X-Timestamp": ts(1)})[0] == 201
    acked: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(60):
            name = f"w{n:02d}-{i:03d}"
            status, _, _ = request(port, "PUT", f"/sda1/0/a/c/{name}", obj_headers(10 + i))
            if status == 201:
                with lock:
                    acked.append(name)
            else:
                assert status == 503  # the device's in-flight limit

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(acked) > 800
    assert listing(port) == sorted(acked)
    status, headers, _ = request(port, "HEAD", "/sda1/0/a/c")
    assert headers["X-Container-Object-Count"] == str(len(acked))


def test_sigkill_mid_stream_loses_no_acknowledged_update(tmp_path: Any) -> None:
    """Updates stream in (crossing the pending-file cap, so batches commit
    meanwhile) until the server is killed; every 201 must survive."""
    srv = Server(tmp_path, workers=0)
    port = srv.start()
    try:
        assert request(port, "PUT", "/sda1/0/a/c", {"X-Timestamp": ts(1)})[0] == 201
        acked: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()

        def worker(n: int) -> None:
            i = 0
            while not stop.is_set():
                name = f"k{n:02d}-{i:05d}-" + "x" * 100  # long lines reach the cap sooner
                try:
                    status, _, _ = request(port, "PUT", f"/sda1/0/a/c/{name}", obj_headers(10 + i))
                except OSError:
                    return  # the server is gone
                if status == 201:
                    with lock:
                        acked.append(name)
                i += 1

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(12)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(acked) < 2500 and time.monotonic() < deadline:
            time.sleep(0.01)
        srv.kill()
        stop.set()
        for t in threads:
            t.join()
        assert len(acked) >= 2500
        port = srv.start()
        listed = set(listing(port))
        missing = [n for n in acked if n not in listed]
        assert not missing, f"{len(missing)} acknowledged updates lost"
    finally:
        srv.stop()
