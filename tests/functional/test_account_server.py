"""The real ``swiftlite-account-server`` process, over HTTP on a free port."""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
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
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


@pytest.fixture
def account_server(tmp_path: Any) -> Iterator[int]:
    swift_dir = tmp_path / "etc"
    swift_dir.mkdir()
    (tmp_path / "srv" / "sda1").mkdir(parents=True)
    (swift_dir / "swiftlite.yaml").write_text(
        "hash_path_prefix: functional-prefix\n"
        "hash_path_suffix: functional-suffix\n"
        "policies:\n"
        "  - {index: 0, name: gold, default: true}\n"
        "  - {index: 1, name: silver}\n"
    )
    port = free_port()
    conf = tmp_path / "account-server.yaml"
    conf.write_text(
        f"bind_ip: 127.0.0.1\nbind_port: {port}\nworkers: 2\n"
        f"devices: {tmp_path / 'srv'}\nmount_check: false\nswift_dir: {swift_dir}\n"
        "log_requests: false\n"
    )
    exe = shutil.which("swiftlite-account-server")
    cmd = [exe] if exe else [sys.executable, "-m", "swiftlite.account.server"]
    proc = subprocess.Popen([*cmd, str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                request(port, "OPTIONS", "/sda1/0/a")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read() if proc.stdout else b""
                    pytest.fail(f"account server did not start: {out.decode(errors='replace')}")
                time.sleep(0.05)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
    assert proc.returncode == 0


def test_account_server_process(account_server: int) -> None:
    port = account_server
    ts = "0000000001.00000"
    assert request(port, "HEAD", "/sda1/0/AUTH_test")[0] == 404
    status, _, _ = request(
        port, "PUT", "/sda1/0/AUTH_test", {"X-Timestamp": ts, "X-Account-Meta-Owner": "me"}
    )
    assert status == 201
    for i, name in enumerate(["photos", "caf%C3%A9", "docs"]):
        status, _, _ = request(
            port,
            "PUT",
            f"/sda1/0/AUTH_test/{name}",
            {
                "X-Put-Timestamp": f"00000000{10 + i}.00000",
                "X-Delete-Timestamp": "0",
                "X-Object-Count": str(i + 1),
                "X-Bytes-Used": str(100 * (i + 1)),
                "X-Backend-Storage-Policy-Index": str(i % 2),
            },
        )
        assert status == 201
    status, headers, body = request(port, "GET", "/sda1/0/AUTH_test?format=json")
    assert status == 200
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    listing = json.loads(body)
    assert [c["name"] for c in listing] == ["caf\u00e9", "docs", "photos"]
    assert listing[0] == {
        "name": "caf\u00e9",
        "count": 2,
        "bytes": 200,
        "last_modified": "1970-01-01T00:00:11.000000",
        "storage_policy": "silver",
    }
    assert headers["X-Account-Container-Count"] == "3"
    assert headers["X-Account-Object-Count"] == "6"
    assert headers["X-Account-Storage-Policy-Gold-Bytes-Used"] == "400"
    assert headers["X-Account-Meta-Owner"] == "me"
    status, headers, body = request(port, "GET", "/sda1/0/AUTH_test?prefix=d&format=xml")
    assert body == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<account name="AUTH_test">\n'
        b"<container><name>docs</name><count>3</count><bytes>300</bytes>"
        b"<last_modified>1970-01-01T00:00:12.000000</last_modified>"
        b"<storage_policy>gold</storage_policy></container>\n</account>"
    )
    assert request(port, "GET", "/sda1/0/AUTH_test?limit=10001")[0] == 412
    status, _, _ = request(port, "DELETE", "/sda1/0/AUTH_test", {"X-Timestamp": "2.0"})
    assert status == 204
    status, headers, _ = request(port, "HEAD", "/sda1/0/AUTH_test")
    assert status == 404 and headers["X-Account-Status"] == "Deleted"
    assert request(port, "HEAD", "/nodev/0/AUTH_test")[0] == 507
