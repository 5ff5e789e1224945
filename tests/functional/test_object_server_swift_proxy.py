"""OpenStack Swift's own proxy (in-process) driving swiftlite object servers.

Four real ``swiftlite-object-server`` processes (one device each, 3 replicas)
plus swiftlite's account and container servers, rings written by swiftlite's
builder in Swift's format; Swift's ``proxy.server.Application`` then serves
client requests through them: 100-continue PUTs with container updates,
GETs with ranges, POST, HEAD, listings and DELETE.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from swiftlite.ring.builder import RingBuilder

DEVICES = ["sdb1", "sdb2", "sdb3", "sdb4"]
PREFIX, SUFFIX = "swift-proxy-prefix", "swift-proxy-suffix"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_ring(path: Path, ports: list[int]) -> None:
    builder = RingBuilder(6, 3, 0)
    for i, (dev, port) in enumerate(zip(DEVICES, ports, strict=True)):
        builder.add_dev(
            {"region": 1, "zone": i + 1, "ip": "127.0.0.1", "port": port, "device": dev, "weight": 100}
        )
    builder.rebalance()
    builder.get_ring().save(str(path))


class Proc:
    def __init__(self, kind: str, conf: Path, port: int) -> None:
        self.kind, self.conf, self.port = kind, conf, port
        exe = shutil.which(f"swiftlite-{kind}-server")
        cmd = [exe] if exe else [sys.executable, "-m", f"swiftlite.{kind}.server"]
        self.log = open(conf.with_suffix(".log"), "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([*cmd, str(conf)], stdout=self.log, stderr=self.log)

    def wait_up(self) -> None:
        for _ in range(600):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        pytest.fail(f"{self.kind} server did not start: {self.conf.with_suffix('.log').read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def swift_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "swiftlite.yaml").write_text(
        f"hash_path_prefix: {PREFIX}\nhash_path_suffix: {SUFFIX}\n"
    )
    common = "bind_ip: 127.0.0.1\nworkers: 0\nmount_check: false\nlog_requests: false\n"
    procs: list[Proc] = []
    try:
        shared = tmp_path / "shared"
        for dev in DEVICES:
            (shared / dev).mkdir(parents=True)
        for kind in ("account", "container"):
            port = free_port()
            conf = tmp_path / f"{kind}-server.yaml"
            conf.write_text(f"{common}bind_port: {port}\ndevices: {shared}\nswift_dir: {etc}\n")
            procs.append(Proc(kind, conf, port))
            build_ring(etc / f"{kind}.ring.gz", [port] * 4)
        ports = []
        for i, dev in enumerate(DEVICES):
            port = free_port()
            (tmp_path / f"obj{i}" / dev).mkdir(parents=True)
            conf = tmp_path / f"object-server-{i}.yaml"
            conf.write_text(
                f"{common}bind_port: {port}\ndevices: {tmp_path / f'obj{i}'}\nswift_dir: {etc}\n"
            )
            procs.append(Proc("object", conf, port))
            ports.append(port)
        build_ring(etc / "object.ring.gz", ports)
        for proc in procs:
            proc.wait_up()

        from swift.common import utils
        from swift.proxy.server import Application

        monkeypatch.setattr(utils, "HASH_PATH_PREFIX", PREFIX.encode())
        monkeypatch.setattr(utils, "HASH_PATH_SUFFIX", SUFFIX.encode())
        yield Application(
            {"swift_dir": str(etc), "account_autocreate": "true", "node_timeout": "5"},
            logger=utils.get_logger({}, log_route="swift-proxy"),
        )
    finally:
        for proc in procs:
            proc.stop()


def test_swift_proxy_drives_swiftlite_object_servers(swift_app: Any) -> None:
    from swift.common.swob import Request

    def call(method: str, path: str, **kwargs: Any) -> Any:
        return Request.blank("/v1/AUTH_test" + path, method=method, **kwargs).get_response(
            swift_app
        )

    assert call("PUT", "/c").status_int == 201
    body = b"0123456789" * 1000
    resp = call(
        "PUT", "/c/o", body=body, headers={"Content-Type": "text/plain", "X-Object-Meta-A": "b"}
    )
    assert resp.status_int == 201
    etag = resp.headers["Etag"]
    resp = call("GET", "/c/o")
    assert (resp.status_int, resp.body, resp.headers["X-Object-Meta-A"]) == (200, body, "b")
    resp = call("GET", "/c/o", headers={"Range": "bytes=5-14"})
    assert (resp.status_int, resp.body) == (206, body[5:15])
    resp = call("GET", "/c/o", headers={"If-None-Match": etag})
    assert resp.status_int == 304
    assert call("POST", "/c/o", headers={"X-Object-Meta-C": "d"}).status_int == 202
    resp = call("HEAD", "/c/o")
    assert resp.headers["X-Object-Meta-C"] == "d"
    assert "X-Object-Meta-A" not in resp.headers
    resp = call("GET", "/c", headers={"Accept": "application/json"})
    assert resp.status_int == 200
    assert b'"name": "o"' in resp.body and b'"bytes": 10000' in resp.body
    resp = call("PUT", "/c/o", body=b"new", headers={"Content-Type": "a/b", "If-None-Match": "*"})
    assert resp.status_int == 412
    # an older write loses on every object server (409): Swift's proxy says 202
    resp = call(
        "PUT", "/c/o", body=b"old", headers={"Content-Type": "a/b", "X-Timestamp": "1000000000.00000"}
    )
    assert resp.status_int == 202
    assert call("GET", "/c/o").body == body
    assert call("DELETE", "/c/o").status_int == 204
    assert call("GET", "/c/o").status_int == 404
    assert call("DELETE", "/c/o").status_int == 404
    resp = call("GET", "/c", headers={"Accept": "application/json"})
    assert resp.body == b"[]"
