"""The real ``swiftlite-object-server`` process (uvloop, 2 workers) over HTTP."""

from __future__ import annotations

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
from typing import Any

import pytest

from swiftlite.common.timestamp import Timestamp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children(pid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fp:
                fields = fp.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(name))
    return out


class Node:
    def __init__(self, port: int, proc: subprocess.Popen[bytes], devices: str) -> None:
        self.port = port
        self.proc = proc
        self.devices = devices

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body or None, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()


@pytest.fixture
def node(tmp_path: Any) -> Iterator[Node]:
    devices = tmp_path / "node"
    for dev in ("sda", "sdb"):
        os.makedirs(devices / dev)
    swift_dir = tmp_path / "etc"
    os.makedirs(swift_dir)
    (swift_dir / "swiftlite.yaml").write_text("hash_path_suffix: functest\n")
    port = free_port()
    conf = tmp_path / "object-server.yaml"
    conf.write_text(
        f"bind_ip: 127.0.0.1\nbind_port: {port}\nworkers: 2\ndevices: {devices}\n"
        f"mount_check: false\nswift_dir: {swift_dir}\nlog_level: WARNING\n"
        "sendfile_min_size: 65536\n"
    )
    script = shutil.which("swiftlite-object-server")
    cmd = [script] if script else [
        sys.executable, "-c", "from swiftlite.object.server import main; raise SystemExit(main())"
    ]  # fmt: skip
    log_path = tmp_path / "server.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen([*cmd, str(conf)], stdout=log, stderr=subprocess.STDOUT)
    n = Node(port, proc, str(devices))
    try:
        for _ in range(300):
            if proc.poll() is not None:
                raise AssertionError(log_path.read_text())
            try:
                if n.request("GET", "/healthcheck")[0] == 200:
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise AssertionError("object server did not come up")
        yield n
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_console_script_is_declared() -> None:
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert eps.get("swiftlite-object-server") == "swiftlite.object.server:main"


def test_object_server_process(node: Node) -> None:
    assert len(children(node.proc.pid)) == 2
    ts = Timestamp.now().internal
    body = os.urandom(300_000)  # above sendfile_min_size: sent with sendfile
    status, headers, _ = node.request(
        "PUT", "/sda/1/a/c/o", {"X-Timestamp": ts, "Content-Type": "x/y"}, body
    )
    assert status == 201
    assert headers["etag"] == f'"{hashlib.md5(body).hexdigest()}"'
    for _ in range(6):  # fresh connections land on both workers
        status, headers, got = node.request("GET", "/sda/1/a/c/o")
        assert status == 200
        assert got == body
    status, headers, got = node.request("GET", "/sda/1/a/c/o", {"Range": "bytes=100-199,-10"})
    assert status == 206
    assert headers["content-type"].startswith("multipart/byteranges")
    assert body[100:200] in got and body[-10:] in got
    status, headers, got = node.request("HEAD", "/sda/1/a/c/o")
    assert (status, headers["content-length"], got) == (200, "300000", b"")
    small = b"tiny"
    status, _, _ = node.request(
        "PUT", "/sdb/2/a/c/small", {"X-Timestamp": ts, "Content-Type": "t/p"}, small
    )
    assert status == 201
    assert node.request("GET", "/sdb/2/a/c/small")[2] == small
    status, _, got = node.request("REPLICATE", "/sda/1")
    assert status == 200
    assert len(json.loads(got)) == 1
    ts2 = Timestamp.now().internal
    status, headers, _ = node.request("DELETE", "/sda/1/a/c/o", {"X-Timestamp": ts2})
    assert status == 204
    status, headers, _ = node.request("GET", "/sda/1/a/c/o")
    assert status == 404
    assert headers["x-backend-timestamp"] == ts2
    status, _, got = node.request("GET", "/diskio")
    assert status == 200
    assert json.loads(got)["pid"] in children(node.proc.pid)
