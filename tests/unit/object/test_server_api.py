"""The object server's backend API: every status of PUT/GET/HEAD/DELETE/POST."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, make_mocked_request

from swiftlite.common.hashing import hash_path
from swiftlite.common.timestamp import Timestamp
from swiftlite.object.server import ObjectServer
from tests.unit.object import objsrv_helpers as helpers

# The shared fixtures, made visible to pytest in this module.
Clock = helpers.Clock
clock = helpers.clock
devices = helpers.devices
make_client = helpers.make_client
server = helpers.server

Server = tuple[ObjectServer, TestClient[Any, Any]]
OBJ = "/sda/1/a/c/o"
NO_AUTO = ("Content-Type",)


def object_dir(devices: str, obj: str = "o", policy: int = 0, dev: str = "sda") -> str:
    h = str(hash_path("a", "c", obj))
    base = "objects" if not policy else f"objects-{policy}"
    return os.path.join(devices, dev, base, "1", h[-3:], h)


async def put(
    client: TestClient[Any, Any],
    ts: str,
    body: bytes = b"hello",
    path: str = OBJ,
    **headers: str,
) -> Any:
    hdrs = {"X-Timestamp": ts, "Content-Type": "text/plain"}
    hdrs.update({k.replace("_", "-"): v for k, v in headers.items()})
    return await client.put(path, data=body, headers=hdrs)


# -- PUT -------------------------------------------------------------------------


async def test_put_then_get(server: Server, clock: Clock, devices: str) -> None:
    _srv, client = server
    ts = clock()
    resp = await put(client, ts, X_Object_Meta_Color="blue")
    assert resp.status == 201
    assert resp.headers["ETag"] == f'"{hashlib.md5(b"hello").hexdigest()}"'
    assert os.listdir(object_dir(devices)) == [f"{ts}.data"]
    resp = await client.get(OBJ)
    assert resp.status == 200
    assert await resp.read() == b"hello"
    assert resp.headers["Content-Type"] == "text/plain"
    assert resp.headers["X-Object-Meta-Color"] == "blue"
    assert resp.headers["X-Timestamp"] == Timestamp(ts).normal
    assert resp.headers["X-Backend-Timestamp"] == ts
    assert resp.headers["X-Backend-Data-Timestamp"] == ts
    assert resp.headers["Content-Length"] == "5"
    assert resp.headers["Last-Modified"].endswith("GMT")


async def test_put_chunked(server: Server, clock: Clock) -> None:
    _srv, client = server

    async def gen() -> Any:
        for piece in (b"ab", b"cd", b"e" * 10000):
            yield piece

    resp = await client.put(
        OBJ, data=gen(), headers={"X-Timestamp": clock(), "Content-Type": "a/b"}
    )
    assert resp.status == 201
    resp = await client.get(OBJ)
    assert await resp.read() == b"abcd" + b"e" * 10000


async def test_put_large_body_in_batches(server: Server, clock: Clock) -> None:
    _srv, client = server
    body = os.urandom(9 << 20)
    assert (await put(client, clock(), body)).status == 201
    resp = await client.get(OBJ)
    assert resp.status == 200
    assert await resp.read() == body


@pytest.mark.parametrize(
    "headers,status,text",
    [
        ({"X-Timestamp": None}, 400, "Missing X-Timestamp header"),
        ({"X-Timestamp": "nope"}, 400, "Invalid X-Timestamp header"),
        ({"Content-Type": None}, 400, "No content type"),
        ({"X-Delete-At": "1"}, 400, "X-Delete-At in past"),
        ({"X-Delete-At": "soon"}, 400, "Non-integer X-Delete-At"),
        ({"X-Object-Meta-" + "n" * 129: "v"}, 400, "Metadata name too long"),
        ({"ETag": "0" * 32}, 422, None),
    ],
)
async def test_put_rejections(
    server: Server, clock: Clock, headers: dict[str, Any], status: int, text: str | None
) -> None:
    _srv, client = server
    hdrs: dict[str, Any] = {"X-Timestamp": clock(), "Content-Type": "text/plain"}
    hdrs.update(headers)
    hdrs = {k: v for k, v in hdrs.items() if v is not None}
    resp = await client.put(OBJ, data=b"hello", headers=hdrs, skip_auto_headers=NO_AUTO)
    assert resp.status == status
    if text:
        assert text in await resp.text()
    assert (await client.get(OBJ)).status == 404


async def test_put_too_large_is_413(server: Server, clock: Clock) -> None:
    _srv, client = server
    req = (
        f"PUT {OBJ} HTTP/1.1\r\nHost: x\r\nX-Timestamp: {clock()}\r\n"
        "Content-Type: text/plain\r\nContent-Length: 5368709123\r\n\r\n"
    ).encode()
    out = await raw_request(client, req, close=False)
    assert out.startswith(b"HTTP/1.1 413"), out[:100]
    assert b"Your request is too large." in out


async def test_put_name_too_long(server: Server, clock: Clock) -> None:
    _srv, client = server
    resp = await put(client, clock(), path="/sda/1/a/c/" + "x" * 1025)
    assert resp.status == 400
    assert "Object name length of 1025 longer than 1024" in await resp.text()


async def test_put_409_when_not_newer(server: Server, clock: Clock) -> None:
    _srv, client = server
    older, newer = clock(), clock()
    assert (await put(client, newer)).status == 201
    for ts in (older, newer):
        resp = await put(client, ts, b"other")
        assert resp.status == 409
        assert resp.headers["X-Backend-Timestamp"] == newer
    assert await (await client.get(OBJ)).read() == b"hello"


async def test_put_409_against_newer_tombstone(server: Server, clock: Clock) -> None:
    _srv, client = server
    older, newer = clock(), clock()
    assert (await client.delete(OBJ, headers={"X-Timestamp": newer})).status == 404
    resp = await put(client, older)
    assert resp.status == 409
    assert resp.headers["X-Backend-Timestamp"] == newer


async def test_put_if_none_match(server: Server, clock: Clock) -> None:
    _srv, client = server
    assert (await put(client, clock(), If_None_Match="*")).status == 201
    assert (await put(client, clock(), If_None_Match="*")).status == 412
    etag = hashlib.md5(b"hello").hexdigest()
    assert (await put(client, clock(), If_None_Match=f'"{etag}"')).status == 412
    assert (await put(client, clock(), If_None_Match='"other"')).status == 201


async def test_put_etag_ok_and_mismatch(server: Server, clock: Clock, devices: str) -> None:
    _srv, client = server
    etag = hashlib.md5(b"hello").hexdigest()
    assert (await put(client, clock(), ETag=etag.upper())).status == 201
    assert (await put(client, clock(), b"other", ETag=etag)).status == 422
    assert await (await client.get(OBJ)).read() == b"hello"
    tmp = os.path.join(devices, "sda", "tmp")
    assert not os.path.exists(tmp) or os.listdir(tmp) == []


async def test_put_policy_dirs_and_unknown_policy(
    server: Server, clock: Clock, devices: str
) -> None:
    _srv, client = server
    ts = clock()
    resp = await put(client, ts, X_Backend_Storage_Policy_Index="1")
    assert resp.status == 201
    assert os.listdir(object_dir(devices, policy=1)) == [f"{ts}.data"]
    assert (await client.get(OBJ)).status == 404
    resp = await client.get(OBJ, headers={"X-Backend-Storage-Policy-Index": "1"})
    assert resp.status == 200
    resp = await put(client, clock(), X_Backend_Storage_Policy_Index="7")
    assert resp.status == 503
    assert "No policy with index 7" in await resp.text()


async def raw_request(client: TestClient[Any, Any], data: bytes, close: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(data)
    await writer.drain()
    if close:
        writer.write_eof()
    out = await reader.read()
    writer.close()
    return out


async def test_put_short_body_is_499(make_client: Any, clock: Clock, devices: str) -> None:
    srv, client = await make_client(log_requests=True)
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Collect()
    srv.logger.addHandler(handler)
    try:
        req = (
            f"PUT {OBJ} HTTP/1.1\r\nHost: x\r\nX-Timestamp: {clock()}\r\n"
            "Content-Type: text/plain\r\nContent-Length: 10\r\n\r\nhello"
        ).encode()
        # The client goes away mid-body: nobody reads the 499, but it is
        # logged, and nothing of the object may be left behind.
        await raw_request(client, req)
        for _ in range(200):
            if any('"PUT /sda/1/a/c/o" 499' in line for line in lines):
                break
            await asyncio.sleep(0.01)
        assert any('"PUT /sda/1/a/c/o" 499' in line for line in lines), lines
    finally:
        srv.logger.removeHandler(handler)
    assert (await client.get(OBJ)).status == 404
    tmp = os.path.join(devices, "sda", "tmp")
    assert not os.path.exists(tmp) or os.listdir(tmp) == []


async def test_put_without_length_is_411(server: Server, clock: Clock) -> None:
    _srv, client = server
    req = (
        f"PUT {OBJ} HTTP/1.1\r\nHost: x\r\nX-Timestamp: {clock()}\r\n"
        "Content-Type: text/plain\r\nConnection: close\r\n\r\n"
    ).encode()
    out = await raw_request(client, req, close=False)
    # aiohttp treats a request without Content-Length as having no body; Swift
    # answers 411 for it.
    assert out.startswith(b"HTTP/1.1 411"), out[:100]


async def test_expect_100_continue_only_after_checks(server: Server, clock: Clock) -> None:
    _srv, client = server
    newer = clock()
    assert (await put(client, newer)).status == 201
    stale = (
        f"PUT {OBJ} HTTP/1.1\r\nHost: x\r\nX-Timestamp: {Timestamp(float(Timestamp(newer)) - 5).internal}\r\n"
        "Content-Type: text/plain\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    out = await raw_request(client, stale, close=False)
    assert out.startswith(b"HTTP/1.1 409"), out[:100]
    assert b"100 Continue" not in out
    good = (
        f"PUT {OBJ} HTTP/1.1\r\nHost: x\r\nX-Timestamp: {clock()}\r\n"
        "Content-Type: text/plain\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(good)
    line = await reader.readuntil(b"\r\n\r\n")
    assert line.startswith(b"HTTP/1.1 100 Continue")
    writer.write(b"12345")
    rest = await reader.read()
    writer.close()
    assert rest.startswith(b"HTTP/1.1 201")


# -- GET / HEAD ----------------------------------------------------------------------


async def test_get_404_and_deleted_timestamp(server: Server, clock: Clock) -> None:
    _srv, client = server
    resp = await client.get(OBJ)
    assert resp.status == 404
    assert "X-Backend-Timestamp" not in resp.headers
    await put(client, clock())
    ts = clock()
    assert (await client.delete(OBJ, headers={"X-Timestamp": ts})).status == 204
    for method in ("GET", "HEAD"):
        resp = await client.request(method, OBJ)
        assert resp.status == 404
        assert resp.headers["X-Backend-Timestamp"] == ts


async def test_head(server: Server, clock: Clock) -> None:
    _srv, client = server
    body = os.urandom(10000)
    await put(client, clock(), body)
    resp = await client.head(OBJ)
    assert resp.status == 200
    assert resp.headers["Content-Length"] == "10000"
    assert resp.headers["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    assert await resp.read() == b""


async def test_expired_object_is_404(server: Server, clock: Clock) -> None:
    _srv, client = server
    ts = clock()
    delete_at = str(int(float(Timestamp(ts))) + 100)
    assert (await put(client, ts, X_Delete_At=delete_at)).status == 201
    resp = await client.get(OBJ)
    assert resp.status == 200
    assert resp.headers["X-Delete-At"] == delete_at
    # Swift opens with the request's X-Timestamp as "now".
    later = Timestamp(int(delete_at) + 1).internal
    resp = await client.get(OBJ, headers={"X-Timestamp": later})
    assert resp.status == 404
    assert resp.headers["X-Backend-Timestamp"] == ts
    assert (await client.head(OBJ, headers={"X-Timestamp": later})).status == 404
    assert (await client.post(OBJ, headers={"X-Timestamp": later})).status == 404


@pytest.mark.parametrize("size", [100, 50000])  # in-memory and sendfile paths
async def test_ranges(server: Server, clock: Clock, size: int) -> None:
    _srv, client = server
    body = os.urandom(size)
    await put(client, clock(), body)
    resp = await client.get(OBJ, headers={"Range": "bytes=10-19"})
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes 10-19/{size}"
    assert await resp.read() == body[10:20]
    resp = await client.get(OBJ, headers={"Range": "bytes=-5"})
    assert await resp.read() == body[-5:]
    resp = await client.get(OBJ, headers={"Range": "bytes=0-1,50-"})
    assert resp.status == 206
    ctype = resp.headers["Content-Type"]
    assert ctype.startswith("multipart/byteranges;boundary=")
    boundary = ctype.split("=", 1)[1].encode()
    data = await resp.read()
    assert int(resp.headers["Content-Length"]) == len(data)
    parts = data.split(b"--" + boundary)
    assert parts[-1] == b"--"
    assert parts[1].endswith(b"\r\n\r\n" + body[0:2] + b"\r\n")
    assert parts[2].endswith(b"\r\n\r\n" + body[50:] + b"\r\n")
    assert f"Content-Range: bytes 50-{size - 1}/{size}".encode() in parts[2]
    resp = await client.get(OBJ, headers={"Range": f"bytes={size}-"})
    assert resp.status == 416
    assert resp.headers["Content-Range"] == f"bytes */{size}"
    resp = await client.get(OBJ, headers={"Range": "bytes=junk"})
    assert resp.status == 200
    assert await resp.read() == body
    resp = await client.head(OBJ, headers={"Range": "bytes=0-1"})
    assert resp.status == 200
    assert resp.headers["Content-Length"] == str(size)


async def test_conditionals(server: Server, clock: Clock) -> None:
    _srv, client = server
    ts = clock()
    await put(client, ts)
    etag = hashlib.md5(b"hello").hexdigest()
    lm = (await client.head(OBJ)).headers["Last-Modified"]
    cases = [
        ({"If-Match": f'"{etag}"'}, 200),
        ({"If-Match": '"nope"'}, 412),
        ({"If-Match": "*"}, 200),
        ({"If-None-Match": f'"{etag}"'}, 304),
        ({"If-None-Match": "*"}, 304),
        ({"If-None-Match": '"nope"'}, 200),
        ({"If-Modified-Since": lm}, 304),
        ({"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}, 200),
        ({"If-Unmodified-Since": lm}, 200),
        ({"If-Unmodified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}, 412),
    ]
    for headers, status in cases:
        for method in ("GET", "HEAD"):
            resp = await client.request(method, OBJ, headers=headers)
            assert resp.status == status, (method, headers)
            if status != 200:
                assert resp.headers["ETag"] == f'"{etag}"'
    resp = await client.get("/sda/1/a/c/missing", headers={"If-Match": "*"})
    assert resp.status == 412


async def test_etag_is_at(server: Server, clock: Clock) -> None:
    _srv, client = server
    await put(client, clock(), X_Object_Sysmeta_Crypto_Etag="abc")
    hdrs = {"If-Match": "abc", "X-Backend-Etag-Is-At": "X-Object-Sysmeta-Crypto-Etag"}
    assert (await client.get(OBJ, headers=hdrs)).status == 200
    hdrs["If-Match"] = hashlib.md5(b"hello").hexdigest()
    assert (await client.get(OBJ, headers=hdrs)).status == 412


async def test_metadata_kinds(server: Server, clock: Clock) -> None:
    _srv, client = server
    headers = {
        "X-Object-Meta-A": "1",
        "X-Object-Sysmeta-B": "2",
        "X-Object-Transient-Sysmeta-C": "3",
        "Content-Disposition": "inline",
        "Content-Encoding": "gzip",
        "Cache-Control": "no-cache",
        "Content-Language": "en",
        "Expires": "never",
        "X-Robots-Tag": "none",
        "X-Object-Manifest": "c/p",
        "X-Static-Large-Object": "True",
        "X-Unknown-Header": "dropped",
    }
    await put(client, clock(), **{k.replace("-", "_"): v for k, v in headers.items()})
    resp = await client.head(OBJ)
    for key, value in headers.items():
        if key == "X-Unknown-Header":
            assert key not in resp.headers
        else:
            assert resp.headers[key] == value, key


async def test_quarantine_on_md5_mismatch(server: Server, clock: Clock, devices: str) -> None:
    _srv, client = server
    for size in (100, 50000):
        name = f"/sda/1/a/c/q{size}"
        body = os.urandom(size)
        assert (await put(client, clock(), body, path=name)).status == 201
        odir = object_dir(devices, f"q{size}")
        (data,) = os.listdir(odir)
        with open(os.path.join(odir, data), "r+b") as fp:
            fp.write(b"X")  # corrupt one byte, same size
        resp = await client.get(name)
        assert resp.status == 200
        await resp.read()
        # The quarantine happens after the body went out; wait for it.
        for _ in range(200):
            if not os.path.exists(odir):
                break
            await asyncio.sleep(0.01)
        assert not os.path.exists(odir)
        assert (await client.get(name)).status == 404
    assert os.listdir(os.path.join(devices, "sda", "quarantined", "objects"))


# -- DELETE --------------------------------------------------------------------------


async def test_delete_statuses(server: Server, clock: Clock, devices: str) -> None:
    _srv, client = server
    t_absent = clock()
    resp = await client.delete(OBJ, headers={"X-Timestamp": t_absent})
    assert resp.status == 404
    assert resp.headers["X-Backend-Timestamp"] == t_absent
    # a tombstone is written even though the object was absent
    assert os.listdir(object_dir(devices)) == [f"{t_absent}.ts"]
    t_put = clock()
    await put(client, t_put)
    t_del = clock()
    resp = await client.delete(OBJ, headers={"X-Timestamp": t_del})
    assert resp.status == 204
    assert resp.headers["X-Backend-Timestamp"] == t_del
    assert resp.headers["X-Backend-Content-Type"] == "text/plain"
    assert os.listdir(object_dir(devices)) == [f"{t_del}.ts"]
    # an older delete of a deleted object: 404, no new tombstone
    resp = await client.delete(OBJ, headers={"X-Timestamp": t_put})
    assert resp.status == 404
    assert resp.headers["X-Backend-Timestamp"] == t_del
    t_new = clock()
    await put(client, t_new)
    resp = await client.delete(OBJ, headers={"X-Timestamp": t_del})
    assert resp.status == 409
    assert resp.headers["X-Backend-Timestamp"] == t_new
    assert (await client.delete(OBJ)).status == 400


async def test_delete_if_delete_at(server: Server, clock: Clock) -> None:
    _srv, client = server
    resp = await client.delete(OBJ, headers={"X-Timestamp": clock(), "X-If-Delete-At": "1"})
    assert resp.status == 404
    ts = clock()
    delete_at = str(int(float(Timestamp(ts))) + 1000)
    await put(client, ts, X_Delete_At=delete_at)
    bad = {"X-Timestamp": clock(), "X-If-Delete-At": str(int(delete_at) + 1)}
    resp = await client.delete(OBJ, headers=bad)
    assert resp.status == 412
    assert "X-If-Delete-At and X-Delete-At do not match" in await resp.text()
    assert (await client.get(OBJ)).status == 200
    resp = await client.delete(OBJ, headers={"X-Timestamp": clock(), "X-If-Delete-At": "junk"})
    assert resp.status == 400
    resp = await client.delete(OBJ, headers={"X-Timestamp": clock(), "X-If-Delete-At": delete_at})
    assert resp.status == 204
    assert (await client.get(OBJ)).status == 404


# -- POST ----------------------------------------------------------------------------


async def test_post(server: Server, clock: Clock, devices: str) -> None:
    _srv, client = server
    resp = await client.post(OBJ, headers={"X-Timestamp": clock()}, skip_auto_headers=NO_AUTO)
    assert resp.status == 404
    t_put = clock()
    await put(
        client, t_put, X_Object_Meta_Old="1", X_Object_Sysmeta_S="keep", Content_Disposition="a"
    )
    t_post = clock()
    resp = await client.post(
        OBJ,
        headers={
            "X-Timestamp": t_post,
            "X-Object-Meta-New": "2",
            "X-Object-Sysmeta-S": "changed?",
            "X-Object-Transient-Sysmeta-T": "t",
            "Cache-Control": "max-age=5",
        },
        skip_auto_headers=NO_AUTO,
    )
    assert resp.status == 202
    assert resp.headers["X-Backend-Content-Type"] == "text/plain"
    assert resp.headers["X-Object-Sysmeta-S"] == "keep"
    assert sorted(os.listdir(object_dir(devices))) == [f"{t_put}.data", f"{t_post}.meta"]
    resp = await client.head(OBJ)
    assert resp.headers["X-Object-Meta-New"] == "2"
    assert "X-Object-Meta-Old" not in resp.headers
    assert "Content-Disposition" not in resp.headers
    assert resp.headers["Cache-Control"] == "max-age=5"
    assert resp.headers["X-Object-Sysmeta-S"] == "keep"
    assert resp.headers["X-Object-Transient-Sysmeta-T"] == "t"
    assert resp.headers["X-Timestamp"] == Timestamp(t_post).normal
    assert resp.headers["X-Backend-Data-Timestamp"] == t_put
    # not newer: 409 with the current metadata timestamp
    resp = await client.post(OBJ, headers={"X-Timestamp": t_put}, skip_auto_headers=NO_AUTO)
    assert resp.status == 409
    assert resp.headers["X-Backend-Timestamp"] == t_post
    assert (await client.post(OBJ, skip_auto_headers=NO_AUTO)).status == 400
    resp = await client.post(
        OBJ, headers={"X-Timestamp": clock(), "X-Delete-At": "5"}, skip_auto_headers=NO_AUTO
    )
    assert resp.status == 400


async def test_post_content_type(server: Server, clock: Clock) -> None:
    _srv, client = server
    await put(client, clock())
    t_post = clock()
    resp = await client.post(
        OBJ, headers={"X-Timestamp": t_post, "Content-Type": "image/png"}
    )
    assert resp.status == 202
    assert resp.headers["X-Backend-Content-Type"] == "image/png"
    resp = await client.get(OBJ)
    assert resp.headers["Content-Type"] == "image/png"
    assert await resp.read() == b"hello"


# -- other verbs and paths ------------------------------------------------------------


async def test_replicate_returns_suffix_hashes(server: Server, clock: Clock) -> None:
    srv, client = server
    await put(client, clock())
    req = make_mocked_request("REPLICATE", "/sda/1")
    resp = await srv.handle(req)
    assert resp.status == 200
    hashes = json.loads(resp.body)  # type: ignore[attr-defined]
    suffix = str(hash_path("a", "c", "o"))[-3:]
    assert list(hashes) == [suffix]
    assert len(hashes[suffix]) == 32
    req = make_mocked_request("REPLICATE", f"/sda/1/{suffix}-abc")
    resp = await srv.handle(req)
    assert json.loads(resp.body) == hashes  # type: ignore[attr-defined]
    resp = await srv.handle(make_mocked_request("REPLICATE", "/sda/99"))
    assert json.loads(resp.body) == {}  # type: ignore[attr-defined]
    resp = await srv.handle(make_mocked_request("REPLICATE", "/nodev/1"))
    assert resp.status == 507


async def test_unknown_method_and_bad_paths(server: Server, clock: Clock) -> None:
    srv, client = server
    resp = await srv.handle(make_mocked_request("FROB", OBJ))
    assert resp.status == 405
    assert (await client.get("/sda/1/a/c")).status == 400
    assert (await client.get("/sda/x/a/c/o")).status == 400
    assert (await client.get("/sda/1/a/c/o%FF")).status == 412
    assert (await client.get("/sda/1/a/c/o%00")).status == 412


async def test_healthcheck_and_diskio(server: Server) -> None:
    _srv, client = server
    resp = await client.get("/healthcheck")
    assert resp.status == 200
    assert await resp.text() == "OK"
    resp = await client.get("/diskio")
    assert resp.status == 200
    body = await resp.json()
    assert body["disk_limit"] == 25
    assert isinstance(body["in_flight"], dict)


async def test_collision_is_403(server: Server, clock: Clock, devices: str) -> None:
    _srv, client = server
    await put(client, clock())
    # Move the object's files under another name's hash dir: a "collision".
    src = object_dir(devices)
    dst = object_dir(devices, "other")
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    os.rename(src, dst)
    assert (await client.get("/sda/1/a/c/other")).status == 403


async def test_many_concurrent_puts_newest_wins(server: Server, clock: Clock, devices: str) -> None:
    _srv, client = server
    stamps = [clock() for _ in range(20)]
    bodies = {ts: os.urandom(3000 + i) for i, ts in enumerate(stamps)}
    order = list(reversed(stamps))
    results = await asyncio.gather(*(put(client, ts, bodies[ts]) for ts in order))
    statuses = {r.status for r in results}
    assert statuses <= {201, 409}
    resp = await client.get(OBJ)
    assert await resp.read() == bodies[stamps[-1]]
    assert os.listdir(object_dir(devices)) == [f"{stamps[-1]}.data"]
    assert time.time() > 0


async def test_streaming_path_with_expect(server: Server, clock: Clock, devices: str) -> None:
    """PUTs with Expect: 100-continue (as Swift's proxy sends) take the
    check-then-stream path; large bodies always do."""
    _srv, client = server
    body = os.urandom(2 << 20)
    hdrs = {"X-Timestamp": clock(), "Content-Type": "a/b", "ETag": "0" * 32}
    resp = await client.put(OBJ, data=body, headers=hdrs, expect100=True)
    assert resp.status == 422
    hdrs = {"X-Timestamp": clock(), "Content-Type": "a/b"}
    resp = await client.put(OBJ, data=b"small", headers=hdrs, expect100=True)
    assert resp.status == 201
    resp = await client.put(OBJ, data=b"small", headers=hdrs, expect100=True)
    assert resp.status == 409
    hdrs = {"X-Timestamp": clock(), "Content-Type": "a/b", "If-None-Match": "*"}
    resp = await client.put(OBJ, data=body, headers=hdrs, expect100=True)
    assert resp.status == 412
    tmp = os.path.join(devices, "sda", "tmp")
    assert not os.path.exists(tmp) or os.listdir(tmp) == []
    assert await (await client.get(OBJ)).read() == b"small"


async def test_client_gone_mid_stream_leaves_nothing(
    server: Server, clock: Clock, devices: str
) -> None:
    """A PUT whose client disconnects after several batches reached the temp
    file: the temp file goes, no object appears, no fd leaks; same for a GET
    whose client leaves during a sendfile body."""
    srv, client = server
    big = os.urandom(300_000)
    assert (await put(client, clock(), big, path="/sda/1/a/c/big")).status == 201
    fds_before = len(os.listdir("/proc/self/fd"))
    for _ in range(2):
        head = (
            f"PUT {OBJ} HTTP/1.1\r\nHost: x\r\nX-Timestamp: {clock()}\r\n"
            "Content-Type: a/b\r\nContent-Length: 20000000\r\nExpect: 100-continue\r\n\r\n"
        ).encode()
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(head)
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100")
        for _ in range(10):
            writer.write(b"x" * (1 << 20))
            await writer.drain()
        writer.close()
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(b"GET /sda/1/a/c/big HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.read(1000)
        writer.close()
    tmp = os.path.join(devices, "sda", "tmp")
    for _ in range(500):
        idle = srv.dm.usage().get("sda") == 0
        if idle and (not os.path.exists(tmp) or not os.listdir(tmp)):
            break
        await asyncio.sleep(0.01)
    assert srv.dm.usage().get("sda") == 0
    assert not os.path.exists(tmp) or os.listdir(tmp) == []
    assert (await client.get(OBJ)).status == 404
    for _ in range(500):
        if len(os.listdir("/proc/self/fd")) <= fds_before:
            break
        await asyncio.sleep(0.01)
    assert len(os.listdir("/proc/self/fd")) <= fds_before


async def test_put_x_delete_after_becomes_x_delete_at(server: Server, clock: Clock) -> None:
    _srv, client = server
    ts = clock()
    assert (await put(client, ts, X_Delete_After="60")).status == 201
    resp = await client.head(OBJ)
    assert resp.headers["X-Delete-At"] == str(int(float(Timestamp(ts)) + 60))
