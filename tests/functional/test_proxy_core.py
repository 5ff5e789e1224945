"""The proxy with real storage servers: 3 replicas over 4 devices on loopback.

One account server and one container server (each holding all 4 devices),
four object servers (one device each, so one can be stopped), and the
proxy, all real processes on free ports, driven with python-swiftclient.
"""

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
from pathlib import Path
from typing import Any

import pytest
from swiftclient import client as swift

from swiftlite.common.hashing import set_hash_path_secrets
from swiftlite.ring.builder import RingBuilder

PREFIX, SUFFIX = "proxy-core-prefix", "proxy-core-suffix"
DEVICES = ["sdb1", "sdb2", "sdb3", "sdb4"]


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


def build_ring(path: Path, ports: list[int]) -> None:
    builder = RingBuilder(6, 3, 0)
    for i, (dev, port) in enumerate(zip(DEVICES, ports, strict=True)):
        builder.add_dev(
            {"region": 1, "zone": i + 1, "ip": "127.0.0.1", "port": port, "device": dev, "weight": 100}
        )
    builder.rebalance()
    builder.get_ring().save(str(path))


class Server:
    def __init__(self, script: str, module: str, conf: Path, port: int) -> None:
        self.script, self.module, self.conf, self.port = script, module, conf, port
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = conf.with_suffix(".log")

    def start(self) -> None:
        exe = shutil.which(self.script)
        cmd = [exe] if exe else [sys.executable, "-m", self.module]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([*cmd, str(self.conf)], stdout=log, stderr=log)

    def wait_up(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                assert self.proc is not None
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"{self.script} did not start: {self.log.read_text()[-3000:]}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.etc = root / "etc"
        self.etc.mkdir()
        (self.etc / "swiftlite.yaml").write_text(
            f"hash_path_prefix: {PREFIX}\nhash_path_suffix: {SUFFIX}\n"
            "policies:\n  - {index: 0, name: gold, default: true}\n"
        )
        self.servers: dict[str, Server] = {}
        common = "bind_ip: 127.0.0.1\nworkers: 0\nmount_check: false\n"
        shared_srv = root / "srv" / "shared"
        for dev in DEVICES:
            (shared_srv / dev).mkdir(parents=True)
        for kind in ("account", "container"):
            port = free_port()
            conf = root / f"{kind}-server.yaml"
            conf.write_text(
                f"{common}bind_port: {port}\ndevices: {shared_srv}\nswift_dir: {self.etc}\n"
                "log_requests: false\n"
            )
            self.servers[kind] = Server(
                f"swiftlite-{kind}-server", f"swiftlite.{kind}.server", conf, port
            )
            build_ring(self.etc / f"{kind}.ring.gz", [port] * 4)
        obj_ports = []
        for i, dev in enumerate(DEVICES):
            port = free_port()
            srv = root / "srv" / f"obj{i}"
            (srv / dev).mkdir(parents=True)
            conf = root / f"object-server-{i}.yaml"
            conf.write_text(
                f"{common}bind_port: {port}\ndevices: {srv}\nswift_dir: {self.etc}\n"
                "log_requests: false\n"
            )
            self.servers[f"object{i}"] = Server(
                "swiftlite-object-server", "swiftlite.object.server", conf, port
            )
            obj_ports.append(port)
        build_ring(self.etc / "object.ring.gz", obj_ports)
        self.proxy_port = free_port()
        conf = root / "proxy-server.yaml"
        conf.write_text(
            f"bind_ip: 127.0.0.1\nbind_port: {self.proxy_port}\nworkers: 1\n"
            f"swift_dir: {self.etc}\naccount_autocreate: true\n"
            "node_timeout: 5\nerror_suppression_limit: 10\nlog_level: DEBUG\n"
            "pipeline: [catch_errors, gatekeeper, healthcheck, proxy_server]\n"
        )
        self.servers["proxy"] = Server(
            "swiftlite-proxy-server", "swiftlite.proxy.server", conf, self.proxy_port
        )

    def start(self) -> None:
        for server in self.servers.values():
            server.start()
        for server in self.servers.values():
            server.wait_up()

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}/v1/AUTH_test"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: Any) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("proxy-core"))
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture
def conn(cluster: Cluster) -> swift.Connection:
    return swift.Connection(preauthurl=cluster.url, preauthtoken="unused", retries=0)


def test_healthcheck_and_info(cluster: Cluster) -> None:
    status, headers, body = request(cluster.proxy_port, "GET", "/healthcheck")
    assert (status, body) == (200, b"OK")
    assert headers["X-Trans-Id"].startswith("tx")
    assert headers["X-Openstack-Request-Id"] == headers["X-Trans-Id"]
    status, headers, body = request(cluster.proxy_port, "GET", "/info")
    assert status == 200
    info = json.loads(body)
    assert info["swift"]["max_file_size"] == 5368709122
    assert info["swift"]["policies"] == [{"name": "gold", "aliases": "gold", "default": True}]
    assert "valid_api_versions" not in info["swift"]


def test_object_round_trip(conn: swift.Connection) -> None:
    conn.put_container("c1")
    etag = conn.put_object("c1", "o1", b"hello world", content_type="text/plain")
    assert etag == "5eb63bbbe01eeed093cb22bb8f5acdc3"
    headers, body = conn.get_object("c1", "o1")
    assert body == b"hello world"
    assert headers["content-type"] == "text/plain"
    assert headers["etag"].strip('"') == etag


def test_account_and_container_stat_and_listings(conn: swift.Connection) -> None:
    conn.put_container("listing", headers={"X-Container-Meta-Color": "blue"})
    names = ["a/1", "a/2", "b/1", "c"]
    for name in names:
        conn.put_object("listing", name, name.encode(), content_type="text/plain")
    headers, listing = conn.get_container("listing")
    assert [o["name"] for o in listing] == names
    assert headers["x-container-object-count"] == "4"
    assert headers["x-container-meta-color"] == "blue"
    assert headers["x-storage-policy"] == "gold"
    assert listing[0]["bytes"] == 3 and listing[0]["content_type"] == "text/plain"
    _, listing = conn.get_container("listing", prefix="a/")
    assert [o["name"] for o in listing] == ["a/1", "a/2"]
    _, listing = conn.get_container("listing", delimiter="/")
    assert [o.get("name", o.get("subdir")) for o in listing] == ["a/", "b/", "c"]
    _, listing = conn.get_container("listing", marker="a/2", limit=1)
    assert [o["name"] for o in listing] == ["b/1"]
    status, headers, body = request(
        int(conn.url.split(":")[2].split("/")[0]), "GET", "/v1/AUTH_test/listing?format=xml&prefix=c"
    )
    assert status == 200 and headers["Content-Type"] == "application/xml; charset=utf-8"
    assert b"<name>c</name>" in body
    headers, containers = conn.get_account()
    assert "listing" in [c["name"] for c in containers]
    conn.post_container("listing", {"X-Container-Meta-Color": "red"})
    assert conn.head_container("listing")["x-container-meta-color"] == "red"
    conn.post_account({"X-Account-Meta-Owner": "tester"})
    assert conn.head_account()["x-account-meta-owner"] == "tester"


def test_object_post_head_delete_and_errors(conn: swift.Connection) -> None:
    conn.put_container("objs")
    conn.put_object("objs", "thing", b"x" * 1000, headers={"X-Object-Meta-Kind": "test"})
    headers = conn.head_object("objs", "thing")
    assert headers["content-length"] == "1000"
    assert headers["x-object-meta-kind"] == "test"
    assert headers["accept-ranges"] == "bytes"
    conn.post_object("objs", "thing", {"X-Object-Meta-Kind": "changed"})
    assert conn.head_object("objs", "thing")["x-object-meta-kind"] == "changed"
    headers, body = conn.get_object("objs", "thing", headers={"Range": "bytes=10-19"})
    assert body == b"x" * 10 and headers["content-range"] == "bytes 10-19/1000"
    with pytest.raises(swift.ClientException) as err:
        conn.get_object("objs", "thing", headers={"If-None-Match": headers["etag"]})
    assert err.value.http_status == 304
    conn.delete_object("objs", "thing")
    with pytest.raises(swift.ClientException) as err:
        conn.head_object("objs", "thing")
    assert err.value.http_status == 404
    with pytest.raises(swift.ClientException) as err:
        conn.put_object("nosuchcontainer", "o", b"data")
    assert err.value.http_status == 404
    # A non-empty container refuses deletion; an empty one goes.
    conn.put_object("objs", "left", b"1")
    with pytest.raises(swift.ClientException) as err:
        conn.delete_container("objs")
    assert err.value.http_status == 409
    conn.delete_object("objs", "left")
    conn.delete_container("objs")
    with pytest.raises(swift.ClientException) as err:
        conn.head_container("objs")
    assert err.value.http_status == 404


def test_bad_requests(cluster: Cluster) -> None:
    port = cluster.proxy_port
    status, _, body = request(port, "GET", "/v1/AUTH_test/c%FF")
    assert (status, body) == (412, b"Invalid UTF8 or contains NULL")
    status, _, body = request(port, "GET", "/v1/AUTH_test/c%00")
    assert status == 412
    status, _, body = request(port, "PUT", "/v1/AUTH_test/" + "c" * 257)
    assert (status, body) == (400, b"Container name length of 257 longer than 256")
    status, _, body = request(
        port, "PUT", "/v1/AUTH_test/meta", {"X-Container-Meta-" + "n" * 129: "v"}
    )
    assert status == 400 and body.startswith(b"Metadata name too long")
    status, _, _ = request(port, "GET", "/v2/AUTH_test")
    assert status == 400
    status, headers, _ = request(port, "PUT", "/v1/AUTH_test")
    assert status == 405 and headers["Allow"] == "GET, HEAD, POST"
    # Internal headers are stripped both ways.
    request(port, "PUT", "/v1/AUTH_test/gk", {"Content-Length": "0"})
    status, headers, _ = request(
        port, "HEAD", "/v1/AUTH_test/gk", {"X-Backend-Storage-Policy-Index": "7"}
    )
    assert status == 204
    assert not [h for h in headers if h.lower().startswith("x-backend-")]


def test_expiry_headers(conn: swift.Connection) -> None:
    conn.put_container("exp")
    conn.put_object("exp", "o", b"1", headers={"X-Delete-After": "1000"})
    delete_at = int(conn.head_object("exp", "o")["x-delete-at"])
    assert abs(delete_at - (time.time() + 1000)) < 60
    with pytest.raises(swift.ClientException) as err:
        conn.put_object("exp", "o2", b"1", headers={"X-Delete-At": "100"})
    assert err.value.http_status == 400 and b"X-Delete-At in past" in err.value.http_response_content


def test_handoffs_when_an_object_server_is_down(cluster: Cluster, conn: swift.Connection) -> None:
    conn.put_container("ha")
    set_hash_path_secrets(PREFIX, SUFFIX)
    from swiftlite.ring.ring import Ring

    ring = Ring(str(cluster.etc), ring_name="object")
    _part, nodes = ring.get_nodes("AUTH_test", "ha", "survivor")
    victim = f"object{DEVICES.index(nodes[0]['device'])}"
    cluster.servers[victim].stop()
    try:
        payload = b"y" * 200_000
        conn.put_object("ha", "survivor", payload)
        for _ in range(3):
            _, body = conn.get_object("ha", "survivor")
            assert body == payload
    finally:
        cluster.servers[victim].start()
        cluster.servers[victim].wait_up()
    _, body = conn.get_object("ha", "survivor")
    assert body == payload


def test_autocreated_account_looks_empty(cluster: Cluster) -> None:
    port = cluster.proxy_port
    status, headers, body = request(port, "GET", "/v1/AUTH_fresh?format=json")
    assert (status, body) == (200, b"[]")
    assert headers["X-Account-Container-Count"] == "0"
    status, _, body = request(port, "GET", "/v1/AUTH_fresh")
    assert (status, body) == (204, b"")
    # Its first container creates it for real.
    assert request(port, "PUT", "/v1/AUTH_fresh/c", {"Content-Length": "0"})[0] == 201
    status, headers, body = request(port, "GET", "/v1/AUTH_fresh")
    assert (status, body) == (200, b"c\n")


def test_writes_survive_a_locked_container_device(cluster: Cluster, conn: swift.Connection) -> None:
    set_hash_path_secrets(PREFIX, SUFFIX)
    from swiftlite.ring.ring import Ring

    ring = Ring(str(cluster.etc), ring_name="container")
    _part, nodes = ring.get_nodes("AUTH_test", "locked")
    lock = cluster.root / "srv" / "shared" / nodes[0]["device"] / "lock_device"
    lock.write_text("")
    try:
        conn.put_container("locked")
        conn.put_object("locked", "o", b"data")
        for _ in range(3):
            _, listing = conn.get_container("locked")
            assert [o["name"] for o in listing] == ["o"]
        assert conn.get_object("locked", "o")[1] == b"data"
    finally:
        lock.unlink()


def test_chunked_upload_and_if_none_match(conn: swift.Connection) -> None:
    conn.put_container("chunks")
    parts = [b"a" * 70000, b"b" * 70000, b"c" * 5]
    etag = conn.put_object("chunks", "big", iter(parts))
    headers, body = conn.get_object("chunks", "big")
    assert body == b"".join(parts) and headers["etag"].strip('"') == etag
    with pytest.raises(swift.ClientException) as err:
        conn.put_object("chunks", "big", b"again", headers={"If-None-Match": "*"})
    assert err.value.http_status == 412
    with pytest.raises(swift.ClientException) as err:
        conn.put_object("chunks", "other", b"x", headers={"If-None-Match": "abc"})
    assert err.value.http_status == 400


def test_client_expect_100_continue(cluster: Cluster) -> None:
    request(cluster.proxy_port, "PUT", "/v1/AUTH_test/expect", {"Content-Length": "0"})
    with socket.create_connection(("127.0.0.1", cluster.proxy_port), timeout=30) as sock:
        sock.sendall(
            b"PUT /v1/AUTH_test/expect/o HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\nContent-Type: text/plain\r\n\r\n"
        )
        interim = sock.recv(100)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"hello")
        final = b""
        while b"\r\n\r\n" not in final:
            final += sock.recv(4096)
        assert final.startswith(b"HTTP/1.1 201")
    # A request refused before its body is read gets no 100 Continue.
    with socket.create_connection(("127.0.0.1", cluster.proxy_port), timeout=30) as sock:
        sock.sendall(
            b"PUT /v1/AUTH_test/nosuch/o HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        answer = sock.recv(100)
        assert answer.startswith(b"HTTP/1.1 404")


def test_unicode_and_reserved_characters_in_names(conn: swift.Connection) -> None:
    container = "caf\u00e9 \u2713"
    names = ["\u00fcn\u00ef/c\u00f8d\u00e9", "sp ace?&#%", "plus+sign"]
    conn.put_container(container)
    for name in names:
        conn.put_object(container, name, name.encode())
        assert conn.get_object(container, name)[1] == name.encode()
    assert [o["name"] for o in conn.get_container(container)[1]] == sorted(names)
    assert container in [c["name"] for c in conn.get_account()[1]]
    listing = conn.get_container(container, delimiter="/")[1]
    assert [o.get("subdir", o.get("name")) for o in listing] == [
        "plus+sign", "sp ace?&#%", "\u00fcn\u00ef/"
    ]
