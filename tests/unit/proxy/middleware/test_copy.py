"""copy: the subrequests (source GET, destination PUT) and answers of
swiftlite's copy middleware, compared with Swift's ServerSideCopyMiddleware
driven in-process around a tiny fake Swift holding the same objects."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import pytest
from aiohttp import web
from swift.common import swob
from swift.common.middleware import copy as swift_copy

from swiftlite.common.config import ConfigError
from swiftlite.common.http import swift_response
from swiftlite.proxy.middleware import copy as copy_mw
from swiftlite.proxy.middleware.copy_source import Pipe, SourceFailed
from swiftlite.proxy.request_body import iter_body

from .conftest import Build, make_ctx  # noqa: TID252

LAST_MODIFIED = "Tue, 01 Jan 2030 00:00:00 GMT"


def obj(body: bytes, **extra: str) -> tuple[dict[str, str], bytes]:
    headers = {
        "Content-Type": "text/x-source",
        "Etag": hashlib.md5(body).hexdigest(),
        "Last-Modified": LAST_MODIFIED,
        "X-Timestamp": "1700000000.00000",
        "Content-Length": str(len(body)),
    }
    headers.update({k.replace("_", "-"): v for k, v in extra.items()})
    return headers, body


def default_objects() -> dict[str, tuple[dict[str, str], bytes]]:
    return {
        "/v1/a/c/o": obj(b"source body", X_Object_Meta_Color="blue", X_Object_Meta_Size="L",
                         X_Object_Sysmeta_Thing="sys", X_Delete_At="4000000000",
                         Content_Disposition="inline",
                         X_Object_Transient_Sysmeta_T="t"),
        "/v1/a/c/ä b": obj(b"unicode", X_Object_Meta_U="1"),
        "/v1/other/c/o": obj(b"other account"),
        "/v1/a/c/slo": obj(b"[manifest]", X_Static_Large_Object="True",
                           X_Object_Sysmeta_Container_Update_Override_Etag="x"),
        "/v1/a/c/dlo": obj(b"", X_Object_Manifest="segs/pre"),
        "/v1/a/c/denied": ({}, b""),
    }


@dataclass
class Call:
    method: str
    path: str  # unquoted path and raw query
    headers: dict[str, str]
    body: bytes = b""
    source: str | None = None


@dataclass
class Store:
    objects: dict[str, tuple[dict[str, str], bytes]] = field(default_factory=default_objects)
    calls: list[Call] = field(default_factory=list)

    def answer_get(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if path.endswith("/denied"):
            return 403, {}, b""
        if path not in self.objects:
            return 404, {}, b""
        hdrs, body = self.objects[path]
        hdrs = dict(hdrs)
        rng = headers.get("Range")
        if rng and rng.startswith("bytes="):
            first, _, last = rng[6:].partition("-")
            body = body[int(first): int(last) + 1]
            hdrs["Content-Length"] = str(len(body))
            hdrs["Content-Range"] = f"bytes {first}-{last}/{len(self.objects[path][1])}"
            return 206, hdrs, body
        return 200, hdrs, body

    def answer_put(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        etag = hashlib.md5(body).hexdigest()
        given = {k.lower(): v for k, v in headers.items()}.get("etag")
        if given and given.strip('"') != etag:
            return 422, {}
        return 201, {"Etag": etag, "Last-Modified": LAST_MODIFIED}


# -- swiftlite side ------------------------------------------------------------


def make_inner(store: Store, stream: bool = True) -> Any:
    async def inner(request: web.Request) -> web.StreamResponse:
        raw_path, _, query = request.raw_path.partition("?")
        path = unquote(raw_path) + (f"?{query}" if query else "")
        headers = dict(request.headers)
        if request.method == "PUT":
            chunks = []
            try:
                async for chunk in iter_body(request):
                    chunks.append(chunk)
            except SourceFailed:
                store.calls.append(Call("PUT", path, headers, b"<broken>",
                                        request.get("swift.source")))
                return swift_response(499)
            body = b"".join(chunks)
            store.calls.append(Call("PUT", path, headers, body, request.get("swift.source")))
            status, out = store.answer_put(headers, body)
            return swift_response(status, b"" if status < 300 else None, out)
        store.calls.append(Call(request.method, path, headers, b"", request.get("swift.source")))
        if request.method != "GET":
            return swift_response(202, b"")
        status, hdrs, body = store.answer_get(unquote(raw_path), headers)
        if status >= 300 or not stream:
            return swift_response(status, body if status < 300 else None, hdrs)
        out = web.StreamResponse(status=status, headers=hdrs)
        await out.prepare(request)
        for start in range(0, len(body), 4):
            await out.write(body[start: start + 4])
        await out.write_eof()
        return out

    return inner


@dataclass
class Result:
    status: int
    headers: dict[str, str]
    body: bytes
    calls: list[Call]


async def run_swiftlite(build: Build, method: str, path: str, headers: dict[str, str],
                        body: bytes = b"", store: Store | None = None, stream: bool = True,
                        max_file_size: int | None = None) -> Result:
    store = store or Store()
    client, ctx = await build(["copy"], make_inner(store, stream))
    if max_file_size is not None:
        ctx.cluster.constraints.max_file_size = max_file_size
    # aiohttp's client would add a Content-Type the Swift side never sees
    resp = await client.request(method, path, headers=headers, data=body or None,
                                skip_auto_headers=["Content-Type"])
    data = await resp.read()
    return Result(resp.status, dict(resp.headers), data, store.calls)


# -- Swift side ----------------------------------------------------------------


class FakeSwift:
    """A WSGI app answering as the proxy would, recording every call."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __call__(self, env: dict[str, Any], start_response: Any) -> Any:
        req = swob.Request(env)
        raw = swob.wsgi_to_str(req.path_info)
        path = raw + (f"?{req.query_string}" if req.query_string else "")
        headers = dict(req.headers)
        if req.method == "PUT":
            body = req.body
            self.store.calls.append(Call("PUT", path, headers, body, env.get("swift.source")))
            status, out = self.store.answer_put(headers, body)
            resp = swob.Response(status=status, headers=out, body=b"" if status < 300 else None)
            if status >= 300:
                resp = swob.status_map[status]()
            return resp(env, start_response)
        self.store.calls.append(Call(req.method, path, headers, b"", env.get("swift.source")))
        if req.method != "GET":
            return swob.Response(status=202, body=b"")(env, start_response)
        status, hdrs, body = self.store.answer_get(raw, headers)
        if status >= 300:
            return swob.status_map[status]()(env, start_response)
        return swob.Response(status=status, headers=hdrs, body=body)(env, start_response)


def run_swift(method: str, path: str, headers: dict[str, str], body: bytes = b"",
              store: Store | None = None) -> Result:
    store = store or Store()
    mw = swift_copy.ServerSideCopyMiddleware(FakeSwift(store), {})
    req = swob.Request.blank(swob.str_to_wsgi(path), environ={"REQUEST_METHOD": method},
                             headers=headers, body=body)
    resp = req.get_response(mw)
    return Result(resp.status_int, dict(resp.headers), resp.body, store.calls)


# -- comparing -----------------------------------------------------------------

KEPT = ("x-object-meta-", "x-object-sysmeta-", "x-object-transient-sysmeta-")
KEPT_NAMES = {"content-type", "etag", "x-delete-at", "x-delete-after", "x-object-manifest",
              "content-disposition", "x-newest", "range", "x-fresh-metadata", "if-match"}
ANSWER = ("x-copied-from",) + KEPT
ANSWER_NAMES = {"x-delete-at", "etag"}


def kept(headers: dict[str, str], prefixes: tuple[str, ...], names: set[str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()
            if k.lower().startswith(prefixes) or k.lower() in names}


def summary(result: Result) -> dict[str, Any]:
    calls = [(c.method, c.path, kept(c.headers, KEPT, KEPT_NAMES), c.body, c.source)
             for c in result.calls]
    out: dict[str, Any] = {"status": result.status, "calls": calls,
                           "answer": kept(result.headers, ANSWER, ANSWER_NAMES)}
    if result.status >= 300:
        out["body"] = result.body
        out["content-type"] = result.headers.get("Content-Type")
    return out


CASES: list[tuple[str, str, str, dict[str, str], bytes]] = [
    # id, method, path, headers, body
    ("copy-no-destination", "COPY", "/v1/a/c/o", {}, b""),
    ("copy-empty-destination", "COPY", "/v1/a/c/o", {"Destination": ""}, b""),
    ("copy-bad-destination", "COPY", "/v1/a/c/o", {"Destination": "nocontainer"}, b""),
    ("copy-destination-slash", "COPY", "/v1/a/c/o", {"Destination": "/c2/"}, b""),
    ("copy-empty-dest-account", "COPY", "/v1/a/c/o",
     {"Destination": "c2/o2", "Destination-Account": ""}, b""),
    ("copy-slash-dest-account", "COPY", "/v1/a/c/o",
     {"Destination": "c2/o2", "Destination-Account": "x/y"}, b""),
    ("put-bad-copy-from", "PUT", "/v1/a/c2/o2", {"X-Copy-From": "bad"}, b""),
    ("put-copy-from-slash", "PUT", "/v1/a/c2/o2", {"X-Copy-From": "/c/"}, b""),
    ("put-with-body", "PUT", "/v1/a/c2/o2", {"X-Copy-From": "c/o"}, b"abc"),
    ("put-slash-src-account", "PUT", "/v1/a/c2/o2",
     {"X-Copy-From": "c/o", "X-Copy-From-Account": "a/b"}, b""),
    ("source-missing", "PUT", "/v1/a/c2/o2", {"X-Copy-From": "c/missing"}, b""),
    ("source-denied", "COPY", "/v1/a/c/denied", {"Destination": "c2/o2"}, b""),
    ("copy", "COPY", "/v1/a/c/o", {"Destination": "/c2/o2"}, b""),
    ("copy-unquoted-destination", "COPY", "/v1/a/c/o", {"Destination": "c2/o2/deeper"}, b""),
    ("put-copy-from", "PUT", "/v1/a/c2/o2", {"X-Copy-From": "/c/o"}, b""),
    ("put-empty-src-account", "PUT", "/v1/a/c2/o2",
     {"X-Copy-From": "c/o", "X-Copy-From-Account": ""}, b""),
    ("meta-override", "PUT", "/v1/a/c2/o2",
     {"X-Copy-From": "c/o", "X-Object-Meta-Color": "red", "X-Object-Meta-New": "n",
      "Content-Type": "text/x-new", "Content-Disposition": "attachment"}, b""),
    ("fresh-metadata", "COPY", "/v1/a/c/o",
     {"Destination": "c2/o2", "X-Fresh-Metadata": "true", "X-Object-Meta-New": "n"}, b""),
    ("fresh-metadata-false", "COPY", "/v1/a/c/o",
     {"Destination": "c2/o2", "X-Fresh-Metadata": "no"}, b""),
    ("delete-after", "COPY", "/v1/a/c/o", {"Destination": "c2/o2", "X-Delete-After": "60"}, b""),
    ("delete-at", "COPY", "/v1/a/c/o", {"Destination": "c2/o2", "X-Delete-At": "4100000000"},
     b""),
    ("cross-account-copy", "COPY", "/v1/a/c/o",
     {"Destination": "c2/o2", "Destination-Account": "b"}, b""),
    ("cross-account-put", "PUT", "/v1/a/c2/o2",
     {"X-Copy-From": "c/o", "X-Copy-From-Account": "other"}, b""),
    ("quoted-names", "COPY", "/v1/a/c/%C3%A4%20b", {"Destination": "c2/%C3%BC%20x%3F"}, b""),
    ("quoted-copy-from", "PUT", "/v1/a/c2/%C3%BC",
     {"X-Copy-From": "c/%C3%A4%20b"}, b""),
    ("range", "PUT", "/v1/a/c2/o2", {"X-Copy-From": "c/o", "Range": "bytes=2-5"}, b""),
    ("slo-manifest-get", "PUT", "/v1/a/c2/o2?multipart-manifest=get",
     {"X-Copy-From": "c/slo"}, b""),
    ("dlo-manifest-get", "COPY", "/v1/a/c/dlo?multipart-manifest=get",
     {"Destination": "c2/o2"}, b""),
    ("dlo", "COPY", "/v1/a/c/dlo", {"Destination": "c2/o2"}, b""),
    ("version-id-dropped", "PUT", "/v1/a/c2/o2?version-id=1&x=y", {"X-Copy-From": "c/o"}, b""),
    ("not-an-object-path", "PUT", "/v1/a/c2", {"X-Copy-From": "c/o"}, b""),
    ("post-not-a-copy", "POST", "/v1/a/c/o", {"X-Copy-From": "c/o"}, b""),
]


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "plain"])
@pytest.mark.parametrize(("method", "path", "headers", "body"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_same_as_swift(build: Build, method: str, path: str, headers: dict[str, str],
                             body: bytes, stream: bool) -> None:
    ours = await run_swiftlite(build, method, path, headers, body, stream=stream)
    theirs = run_swift(method, path, headers, body)
    ours_summary, theirs_summary = summary(ours), summary(theirs)
    # Subrequests (paths, metadata, ETag, body, SSC tag), status, answer
    # headers, and for errors the body and its type.
    assert ours_summary == theirs_summary


def test_cases_cover_the_rules() -> None:
    """The table exercises success and every error path at least once."""
    statuses = {run_swift(m, p, h, b).status for _id, m, p, h, b in CASES}
    assert {201, 202, 400, 403, 404, 412} <= statuses


async def test_x_copied_from_headers(build: Build) -> None:
    result = await run_swiftlite(build, "COPY", "/v1/a/c/o",
                                 {"Destination": "c2/o2", "Destination-Account": "b"})
    assert result.status == 201
    assert result.headers["X-Copied-From"] == "c/o"
    assert result.headers["X-Copied-From-Account"] == "a"
    assert result.headers["X-Copied-From-Last-Modified"] == LAST_MODIFIED
    assert result.headers["X-Object-Meta-Color"] == "blue"
    get, put = result.calls
    assert (get.method, get.path, get.source) == ("GET", "/v1/a/c/o", "SSC")
    assert get.headers["X-Newest"] == "true"
    assert (put.method, put.path, put.source) == ("PUT", "/v1/b/c2/o2", "SSC")
    assert put.body == b"source body"
    assert put.headers["Etag"] == hashlib.md5(b"source body").hexdigest()
    assert "Content-Length" not in put.headers  # streamed: chunked


@pytest.mark.parametrize("stream", [True, False])
async def test_too_large(build: Build, monkeypatch: pytest.MonkeyPatch, stream: bool) -> None:
    monkeypatch.setattr(swift_copy, "MAX_FILE_SIZE", 5)
    ours = await run_swiftlite(build, "COPY", "/v1/a/c/o", {"Destination": "c2/o2"},
                               max_file_size=5, stream=stream)
    theirs = run_swift("COPY", "/v1/a/c/o", {"Destination": "c2/o2"})
    assert ours.status == theirs.status == 413
    assert ours.body == theirs.body
    assert [c.method for c in ours.calls] == ["GET"]  # nothing written


async def test_etag_mismatch_is_refused(build: Build) -> None:
    store = Store()
    headers, body = store.objects["/v1/a/c/o"]
    store.objects["/v1/a/c/o"] = ({**headers, "Etag": "0" * 32}, body)
    result = await run_swiftlite(build, "COPY", "/v1/a/c/o", {"Destination": "c2/o2"},
                                 store=store)
    assert result.status == 422
    assert "X-Copied-From" not in result.headers


async def test_short_source_is_not_stored(build: Build) -> None:
    """A source that ends before its Content-Length breaks the PUT body."""
    store = Store()
    headers, body = store.objects["/v1/a/c/o"]
    store.objects["/v1/a/c/o"] = ({**headers, "Content-Length": str(len(body) + 10)}, body)
    result = await run_swiftlite(build, "COPY", "/v1/a/c/o", {"Destination": "c2/o2"},
                                 store=store)
    assert result.status == 499
    assert result.calls[-1].body == b"<broken>"


async def test_source_that_stops_mid_body(build: Build) -> None:
    """The GET gives up without ending its body: the PUT body breaks."""
    calls: list[str] = []

    async def inner(request: web.Request) -> web.StreamResponse:
        calls.append(request.method)
        if request.method == "GET":
            out = web.StreamResponse(headers={"Content-Length": "100", "Etag": "x"})
            await out.prepare(request)
            await out.write(b"partial")
            return out  # no write_eof: as the proxy's GET when no node can resume
        try:
            async for _chunk in iter_body(request):
                pass
        except SourceFailed:
            return swift_response(499)
        return swift_response(201, b"")

    client, _ctx = await build(["copy"], inner)
    resp = await client.request("COPY", "/v1/a/c/o", headers={"Destination": "c/o2"})
    assert resp.status == 499
    assert calls == ["GET", "PUT"]


async def test_destination_failure_stops_the_source(build: Build) -> None:
    """A PUT refused before reading the body: the source GET is stopped,
    not left blocked on a full buffer."""
    big = b"x" * (1 << 20)
    gets_done: list[str] = []

    async def inner(request: web.Request) -> web.StreamResponse:
        if request.method == "GET":
            out = web.StreamResponse(headers={"Content-Length": str(len(big) * 8)})
            await out.prepare(request)
            try:
                for _ in range(8):
                    await out.write(big)
                await out.write_eof()
            finally:
                gets_done.append("ended")
            return out
        return swift_response(404)

    client, _ctx = await build(["copy"], inner, filters={"copy": {"source_buffer_bytes": 65536}})
    resp = await client.request("COPY", "/v1/a/c/o", headers={"Destination": "c/o2"})
    assert resp.status == 404
    assert gets_done == ["ended"]


async def test_big_source_streamed_with_bounded_buffer(build: Build) -> None:
    chunk = bytes(range(256)) * 256  # 64 KiB
    count = 64  # 4 MiB
    high_water: list[int] = []

    async def inner(request: web.Request) -> web.StreamResponse:
        if request.method == "GET":
            out = web.StreamResponse(headers={"Content-Length": str(len(chunk) * count)})
            await out.prepare(request)
            writer: Any = request._payload_writer
            for _ in range(count):
                await out.write(chunk)
                high_water.append(writer.pipe._size)
            await out.write_eof()
            return out
        digest = hashlib.md5()
        async for piece in iter_body(request):
            digest.update(piece)
            await asyncio.sleep(0)
        return swift_response(201, b"", {"Etag": digest.hexdigest()})

    client, _ctx = await build(["copy"], inner, filters={"copy": {"source_buffer_bytes": 131072}})
    resp = await client.request("PUT", "/v1/a/c/o2", headers={"X-Copy-From": "c/o"})
    assert resp.status == 201
    assert resp.headers["Etag"] == hashlib.md5(chunk * count).hexdigest()
    # Never more than the buffer bound plus one chunk held at once.
    assert max(high_water) <= 131072 + len(chunk)


async def test_pipe_blocks_when_full_and_fails_when_closed() -> None:
    pipe = Pipe(4)
    await pipe.put(b"abcd")
    blocked = asyncio.ensure_future(pipe.put(b"e"))
    await asyncio.sleep(0)
    assert not blocked.done()
    assert await pipe.get() == b"abcd"
    await blocked
    pipe.close()
    with pytest.raises(ConnectionResetError):
        await pipe.put(b"f")


def test_settings() -> None:
    ctx = make_ctx(["copy"])
    copy_mw.factory({"yield_frequency": 10}, ctx)
    with pytest.raises(ConfigError):
        copy_mw.factory({"bogus": 1}, ctx)
    with pytest.raises(ConfigError):
        copy_mw.factory({"source_buffer_bytes": "lots"}, ctx)
    with pytest.raises(ConfigError):
        copy_mw.factory({"source_buffer_bytes": 0}, ctx)


async def test_streamed_source_error_is_relayed(build: Build) -> None:
    """A source answer other than a success that was streamed (a 304 to the
    client's If-None-Match, sent on to the source) is the copy's answer."""
    calls: list[str] = []

    async def inner(request: web.Request) -> web.StreamResponse:
        calls.append(request.method)
        out = web.StreamResponse(status=304, headers={"Etag": '"abc"'})
        await out.prepare(request)
        await out.write_eof()
        return out

    client, _ctx = await build(["copy"], inner)
    resp = await client.request("PUT", "/v1/a/c/o2",
                                headers={"X-Copy-From": "c/o", "If-None-Match": '"abc"'})
    assert resp.status == 304
    assert resp.headers["Etag"] == '"abc"'
    assert calls == ["GET"]
