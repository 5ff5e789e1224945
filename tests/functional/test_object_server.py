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


def test_sigkill_mid_put_leaves_no_object(node: Node) -> None:
    """Kill the whole server (parent and workers) with SIGKILL while a PUT is
    half sent: no object becomes visible, only a temp file remains, and the
    diskfile layer's temp cleanup removes it."""
    from swiftlite.object.diskfile import DiskFileManager

    ts = Timestamp.now().internal
    sock = socket.create_connection(("127.0.0.1", node.port))
    sock.sendall(
        (
            f"PUT /sda/1/a/c/half HTTP/1.1\r\nHost: x\r\nX-Timestamp: {ts}\r\n"
            "Content-Type: a/b\r\nContent-Length: 50000000\r\n\r\n"
        ).encode()
    )
    chunk = b"x" * (1 << 20)
    for _ in range(12):  # past the first write batch: the temp file has data
        sock.sendall(chunk)
    tmp = os.path.join(node.devices, "sda", "tmp")
    for _ in range(500):
        if os.path.isdir(tmp) and any(
            os.path.getsize(os.path.join(tmp, f)) > 0 for f in os.listdir(tmp)
        ):
            break
        time.sleep(0.01)
    pids = [node.proc.pid, *children(node.proc.pid)]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    node.proc.wait(timeout=30)
    for pid in pids[1:]:
        for _ in range(500):
            if not os.path.exists(f"/proc/{pid}"):
                break
            time.sleep(0.01)
    sock.close()
    objects = os.path.join(node.devices, "sda", "objects")
    data_files = [f for _d, _s, files in os.walk(objects) for f in files if f.endswith(".data")]
    assert data_files == []
    assert os.listdir(tmp), "the interrupted PUT's temp file should still be there"
    mgr = DiskFileManager(node.devices, mount_check=False)
    assert mgr.cleanup_temp_files("sda", max_age=0) >= 1
    assert os.listdir(tmp) == []


def test_swift_direct_client_drives_it(node: Node) -> None:
    """Swift's own backend client (direct_client over bufferedhttp) against
    the real server: the wire protocol Swift's proxy and daemons speak."""
    from swift.common import direct_client
    from swift.common.exceptions import ClientException

    snode = {"ip": "127.0.0.1", "port": node.port, "device": "sda"}
    ts = Timestamp.now()
    body = os.urandom(200_000)
    etag = direct_client.direct_put_object(
        snode, 3, "AUTH_a", "c", "o", body, content_type="a/b",
        headers={"X-Timestamp": ts.internal, "X-Object-Meta-Color": "red"},
    )  # fmt: skip
    assert etag == hashlib.md5(body).hexdigest()
    # chunked (contents as an iterable, no length)
    direct_client.direct_put_object(
        snode, 3, "AUTH_a", "c", "chunked", iter([b"ab", b"cd"]), content_type="a/b",
        headers={"X-Timestamp": ts.internal},
    )  # fmt: skip
    headers = direct_client.direct_head_object(snode, 3, "AUTH_a", "c", "o")
    assert headers["X-Object-Meta-Color"] == "red"
    assert headers["Content-Length"] == "200000"
    headers, got = direct_client.direct_get_object(snode, 3, "AUTH_a", "c", "o")
    assert got == body
    _, got = direct_client.direct_get_object(snode, 3, "AUTH_a", "c", "chunked")
    assert got == b"abcd"
    t_post = Timestamp.now()
    direct_client.direct_post_object(
        snode, 3, "AUTH_a", "c", "o", {"X-Timestamp": t_post.internal, "X-Object-Meta-A": "b"}
    )
    headers = direct_client.direct_head_object(snode, 3, "AUTH_a", "c", "o")
    assert headers["X-Object-Meta-A"] == "b"
    t_del = Timestamp.now()
    direct_client.direct_delete_object(
        snode, 3, "AUTH_a", "c", "o", headers={"X-Timestamp": t_del.internal}
    )
    with pytest.raises(ClientException) as info:
        direct_client.direct_head_object(snode, 3, "AUTH_a", "c", "o")
    assert info.value.http_status == 404
    assert info.value.http_headers["X-Backend-Timestamp"] == t_del.internal
