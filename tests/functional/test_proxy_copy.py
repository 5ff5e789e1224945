"""Server-side copy on a real swiftlite cluster (the processes of
test_proxy_core.py, with ``copy`` in the proxy pipeline), driven with
python-swiftclient."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from swiftclient import client as swift

from tests.functional.test_proxy_core import Cluster
from tests.functional.test_proxy_core import request as raw_request


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: Any) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("proxy-copy"))
    conf = c.root / "proxy-server.yaml"
    text = conf.read_text()
    text = re.sub(
        r"pipeline: \[.*\]",
        "pipeline: [catch_errors, gatekeeper, healthcheck, cache, tempauth, copy, proxy_server]",
        text,
    )
    # Swift's order: copy after auth, so both of its subrequests are authorized.
    text += (
        "filters:\n  tempauth:\n    users:\n"
        "      'test:tester': {key: testing, groups: [.admin]}\n"
        "      'test:tester3': {key: testing3}\n"
    )
    conf.write_text(text)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def auth_url(cluster: Cluster) -> str:
    return f"http://127.0.0.1:{cluster.proxy_port}/auth/v1.0"


@pytest.fixture(scope="module")
def conn(cluster: Cluster) -> swift.Connection:
    conn = swift.Connection(auth_url(cluster), "test:tester", "testing", retries=0)
    for name in ("src", "dst", "dst2"):
        conn.put_container(name)
    return conn


def test_copy_object_and_x_copy_from(conn: swift.Connection) -> None:
    etag = conn.put_object("src", "o1", b"hello copy", content_type="text/x-greeting",
                           headers={"X-Object-Meta-Color": "blue"})
    # COPY with Destination (swiftclient's copy_object)
    resp: dict[str, Any] = {}
    conn.copy_object("src", "o1", "/dst/o1-copy", response_dict=resp)
    assert resp["status"] == 201
    hdrs = resp["headers"]
    assert hdrs["x-copied-from"] == "src/o1"
    assert hdrs["x-copied-from-account"] == "AUTH_test"
    assert hdrs["x-copied-from-last-modified"]
    assert hdrs["x-object-meta-color"] == "blue"
    assert hdrs["etag"] == etag
    headers, body = conn.get_object("dst", "o1-copy")
    assert body == b"hello copy"
    assert headers["etag"].strip('"') == etag
    assert headers["content-type"] == "text/x-greeting"
    assert headers["x-object-meta-color"] == "blue"
    # PUT with X-Copy-From, in the same container
    conn.put_object("src", "o1-again", b"", headers={"X-Copy-From": "src/o1"})
    headers, body = conn.get_object("src", "o1-again")
    assert (body, headers["x-object-meta-color"]) == (b"hello copy", "blue")
    # The source is untouched.
    assert conn.get_object("src", "o1")[1] == b"hello copy"
    # The destination containers list the copies.
    names = [o["name"] for o in conn.get_container("dst")[1]]
    assert "o1-copy" in names


def test_metadata_override_and_fresh_metadata(conn: swift.Connection) -> None:
    conn.put_object("src", "meta", b"data", content_type="text/plain",
                    headers={"X-Object-Meta-A": "1", "X-Object-Meta-B": "2"})
    conn.copy_object("src", "meta", "/dst/meta-over",
                     headers={"X-Object-Meta-B": "two", "X-Object-Meta-C": "3",
                              "Content-Type": "application/x-new"})
    headers = conn.head_object("dst", "meta-over")
    assert (headers["x-object-meta-a"], headers["x-object-meta-b"],
            headers["x-object-meta-c"]) == ("1", "two", "3")
    assert headers["content-type"] == "application/x-new"
    conn.copy_object("src", "meta", "/dst/meta-fresh", fresh_metadata=True,
                     headers={"X-Object-Meta-C": "3"})
    headers = conn.head_object("dst", "meta-fresh")
    assert "x-object-meta-a" not in headers and "x-object-meta-b" not in headers
    assert headers["x-object-meta-c"] == "3"
    assert headers["content-type"] == "text/plain"  # content type still copied


def test_cross_container_and_quoted_names(conn: swift.Connection) -> None:
    name = "dir/ä b%20c?"
    conn.put_object("src", name, b"odd name")
    conn.copy_object("src", name, "/dst2/" + name + "-copy")
    assert conn.get_object("dst2", name + "-copy")[1] == b"odd name"
    conn.put_object("dst2", "from-odd", b"",
                    headers={"X-Copy-From": "/src/" + swift.quote(name)})
    assert conn.get_object("dst2", "from-odd")[1] == b"odd name"


def test_large_object_copied_intact(conn: swift.Connection) -> None:
    data = os.urandom(5 * 1024 * 1024 + 123)
    etag = conn.put_object("src", "big", data)
    assert etag == hashlib.md5(data).hexdigest()
    resp: dict[str, Any] = {}
    conn.copy_object("src", "big", "/dst/big", response_dict=resp)
    assert resp["headers"]["etag"] == etag
    headers, body = conn.get_object("dst", "big")
    assert int(headers["content-length"]) == len(data)
    assert hashlib.md5(body).hexdigest() == etag


def test_errors(cluster: Cluster, conn: swift.Connection) -> None:
    port = cluster.proxy_port
    base = "/v1/AUTH_test"
    token = {"X-Auth-Token": conn.get_auth()[1]}

    def request(port: int, method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
        return raw_request(port, method, path, {**token, **(headers or {})}, body)

    conn.put_object("src", "err", b"x")
    status, _h, body = request(port, "COPY", f"{base}/src/err")
    assert (status, body) == (412, b"Destination header required")
    status, _h, body = request(port, "COPY", f"{base}/src/err", {"Destination": "nocontainer"})
    assert status == 412
    assert body == b"Destination header must be of the form <container name>/<object name>"
    status, _h, body = request(port, "PUT", f"{base}/dst/x", {"X-Copy-From": "bad"}, b"")
    assert status == 412
    assert body == b"X-Copy-From header must be of the form <container name>/<object name>"
    status, _h, body = request(port, "PUT", f"{base}/dst/x", {"X-Copy-From": "src/err"}, b"abc")
    assert (status, body) == (400, b"Copy requests require a zero byte body")
    # A missing source is the source GET's 404; nothing is written.
    status, _h, _b = request(port, "PUT", f"{base}/dst/x",
                             {"X-Copy-From": "src/missing", "Content-Length": "0"})
    assert status == 404
    status, _h, _b = request(port, "HEAD", f"{base}/dst/x")
    assert status == 404
    # A missing destination container: the PUT's 404.
    status, _h, _b = request(port, "COPY", f"{base}/src/err", {"Destination": "nope/x"})
    assert status == 404
    # POST is never turned into a copy.
    status, _h, _b = request(port, "POST", f"{base}/src/err",
                             {"X-Copy-From": "src/o1", "X-Object-Meta-P": "1"})
    assert status == 202
    assert conn.get_object("src", "err")[1] == b"x"


def test_delete_after_and_range(cluster: Cluster, conn: swift.Connection) -> None:
    conn.put_object("src", "expiring", b"0123456789", headers={"X-Delete-After": "3600"})
    delete_at = conn.head_object("src", "expiring")["x-delete-at"]
    conn.copy_object("src", "expiring", "/dst/expiring")
    assert conn.head_object("dst", "expiring")["x-delete-at"] == delete_at
    conn.copy_object("src", "expiring", "/dst/expiring2", headers={"X-Delete-After": "7200"})
    assert int(conn.head_object("dst", "expiring2")["x-delete-at"]) > int(delete_at)
    # A Range on the copy request copies part of the source.
    conn.put_object("dst", "part", b"", headers={"X-Copy-From": "src/expiring",
                                                 "Range": "bytes=2-4"})
    assert conn.get_object("dst", "part")[1] == b"234"


def test_acls_apply_to_source_and_destination(cluster: Cluster, conn: swift.Connection) -> None:
    """tester3 (no admin) may write "open" but read nothing: a copy from
    "src" is refused by the source GET, one from a readable container works."""
    conn.put_container("open", headers={"X-Container-Write": "test:tester3"})
    conn.put_container("readable", headers={"X-Container-Read": "test:tester3"})
    conn.put_object("readable", "r", b"readable")
    conn.put_object("src", "secret", b"secret")
    user3 = swift.Connection(auth_url(cluster), "test:tester3", "testing3", retries=0)
    with pytest.raises(swift.ClientException) as denied:
        user3.put_object("open", "stolen", b"", headers={"X-Copy-From": "src/secret"})
    assert denied.value.http_status == 403
    with pytest.raises(swift.ClientException) as missing:
        conn.head_object("open", "stolen")
    assert missing.value.http_status == 404
    user3.put_object("open", "copied", b"", headers={"X-Copy-From": "readable/r"})
    assert conn.get_object("open", "copied")[1] == b"readable"
    # Readable but not writable: the destination PUT is refused.
    with pytest.raises(swift.ClientException) as refused:
        user3.copy_object("readable", "r", "/readable/r2")
    assert refused.value.http_status == 403
