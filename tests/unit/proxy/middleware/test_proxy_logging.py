"""proxy_logging: Swift's access-log line, field by field, compared with the
line Swift's own ProxyLoggingMiddleware writes for the same request."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from swiftlite.common.config import ConfigError
from swiftlite.common.logs import TxnIdFilter
from swiftlite.proxy.middleware import proxy_logging as pl
from swiftlite.proxy.pipeline import build_pipeline

from .conftest import Build, make_app, make_ctx  # noqa: TID252

# Fields that differ by nature between two runs: times and durations.
TIMING = {2, 15, 18, 19}


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self._lines: list[str] = []
        self.threads: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        self.threads.add(threading.current_thread().name)
        self._lines.append(self.format(record))

    @property
    def lines(self) -> list[str]:
        pl.WRITER.flush()  # lines are written by the access-log thread
        return self._lines


@pytest.fixture
def access_log() -> Iterator[tuple[str, Lines]]:
    name = f"access-{uuid.uuid4().hex[:8]}"
    handler = Lines()
    handler.setFormatter(logging.Formatter("%(message)s%(txn_suffix)s"))
    handler.addFilter(TxnIdFilter())  # as the proxy's own handler does
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield name, handler
    finally:
        logger.removeHandler(handler)


def inner_for(status: int, body: bytes, headers: dict[str, str] | None = None) -> Any:
    async def inner(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(status=status, body=body, headers=headers or {})

    return inner


# -- against Swift -------------------------------------------------------------


class _SwiftLogger:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.logger = logging.getLogger("h11-swift-access")

    def info(self, msg: str, *args: Any) -> None:
        self.lines.append(msg % args if args else msg)

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def swift_line(method: str, path: str, headers: dict[str, str], body: bytes,
               status: int, resp_body: bytes, resp_headers: dict[str, str],
               env: dict[str, Any], conf: dict[str, str]) -> str:
    from swift.common.middleware.proxy_logging import ProxyLoggingMiddleware
    from swift.common.registry import register_sensitive_header, register_sensitive_param
    from swift.common.swob import Request, Response

    # What Swift's proxy_logging and tempurl factories register.
    register_sensitive_param("temp_url_sig")
    register_sensitive_header("x-auth-token")
    register_sensitive_header("x-storage-token")

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        environ["wsgi.input"].read()
        environ.update(env)
        return Response(status=status, body=resp_body, headers=resp_headers)(
            environ, start_response)

    logger = _SwiftLogger()
    mw = ProxyLoggingMiddleware(app, conf, logger=logger)
    environ = {"REQUEST_METHOD": method, "SERVER_PROTOCOL": "HTTP/1.1",
               "REMOTE_ADDR": "127.0.0.1"}
    req = Request.blank(path, environ=environ, headers=headers, body=body)
    b"".join(mw(req.environ, lambda *a: None))
    assert len(logger.lines) == 1
    return logger.lines[0]


CASES = [
    ("GET", "/v1/AUTH_a/c/o", {}, b"", 200, b"hello", {}, {}),
    ("HEAD", "/v1/AUTH_a/c/o", {}, b"", 200, b"", {"Content-Length": "9"}, {}),
    ("PUT", "/v1/AUTH_a/c/o%20x%E2%98%83", {"Etag": "abc", "Content-Type": "x/y"},
     b"12345", 201, b"", {"X-Backend-Storage-Policy-Index": "1"}, {}),
    ("GET", "/v1/AUTH_a/c?format=json&prefix=a%20b", {"Referer": "http://x.com/a b?c",
     "X-Auth-Token": "AUTH_tk0123456789abcdef0123456789"}, b"", 404, b"nope", {}, {}),
    ("GET", "/v1/AUTH_a/c/o?temp_url_sig=0123456789abcdef0123&temp_url_expires=1", {},
     b"", 401, b"", {}, {}),
    ("POST", "/v1/AUTH_a/c", {"X-Forwarded-For": "10.1.2.3, 10.0.0.1"}, b"", 204, b"", {},
     {"swift.source": "SLO", "swift.log_info": ["one", "two"],
      "swift.access_logging": {"user_id": "test:tester"}}),
    ("DELETE", "/v1/AUTH_a/c/o", {"X-Cluster-Client-Ip": "10.9.9.9"}, b"", 204, b"", {}, {}),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
async def test_line_matches_swift(build: Build, access_log: tuple[str, Lines],
                                  case: tuple[Any, ...]) -> None:
    method, path, headers, body, status, resp_body, resp_headers, env = case
    name, lines = access_log
    headers = {"User-Agent": "h11-test/1.0", **headers}

    async def inner(request: web.Request) -> web.StreamResponse:
        await request.read()
        for key, value in env.items():
            request[key] = value
        return web.Response(status=status, body=resp_body or None, headers=resp_headers)

    client, _ctx = await build(["proxy_logging"], inner,
                               filters={"proxy_logging": {"access_log_name": name}})
    resp = await client.request(method, path, headers=headers, data=body or None,
                                skip_auto_headers=["Content-Type"] if not body else ())
    assert resp.status == status
    assert len(lines.lines) == 1
    ours = lines.lines[0].split(" ")
    theirs = swift_line(method, path, headers, body, status, resp_body, resp_headers, env,
                        {}).split(" ")
    assert len(ours) == len(theirs) == 22
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        if i not in TIMING:
            assert a == b, (i, ours, theirs)


# -- through the pipeline ----------------------------------------------------------


async def test_fields_in_a_full_pipeline(build: Build, access_log: tuple[str, Lines]) -> None:
    name, lines = access_log
    users = {"test:tester": {"key": "testing", "groups": [".admin"]}}
    client, _ctx = await build(
        ["catch_errors", "proxy_logging", "cache", "tempauth"], inner_for(200, b"abc"),
        filters={"proxy_logging": {"access_log_name": name, "reveal_sensitive_prefix": 8},
                 "tempauth": {"users": users}},
    )
    resp = await client.get("/auth/v1.0", headers={"X-Auth-User": "test:tester",
                                                   "X-Auth-Key": "testing"})
    token = resp.headers["X-Auth-Token"]
    resp = await client.get("/v1/AUTH_test/c/o", headers={"X-Auth-Token": token})
    assert resp.status == 200
    assert len(lines.lines) == 2
    auth_line, line = (entry.split(" ") for entry in lines.lines)
    assert auth_line[3:7] == ["GET", "/auth/v1.0", "HTTP/1.1", "200"]
    assert auth_line[21] == "test:tester"
    assert line[0] == line[1] == "127.0.0.1"
    assert line[3:7] == ["GET", "/v1/AUTH_test/c/o", "HTTP/1.1", "200"]
    assert line[9] == token[:8] + "..."
    assert line[10:12] == ["-", "3"]
    assert line[13] == resp.headers["X-Trans-Id"]
    assert line[21] == "test:tester"
    # No " (txn: ...)" tail: the line still splits into its 22 fields.
    assert len(line) == 22


async def test_streamed_response_bytes(build: Build, access_log: tuple[str, Lines]) -> None:
    name, lines = access_log

    async def inner(request: web.Request) -> web.StreamResponse:
        out = web.StreamResponse(headers={"Content-Length": "30000"})
        await out.prepare(request)
        for _ in range(3):
            await out.write(b"x" * 10000)
        await out.write_eof()
        return out

    client, _ctx = await build(["catch_errors", "proxy_logging"], inner,
                               filters={"proxy_logging": {"access_log_name": name}})
    resp = await client.get("/v1/a/c/o")
    assert len(await resp.read()) == 30000
    fields = lines.lines[0].split(" ")
    assert fields[6] == "200" and fields[11] == "30000"
    # Written off the event loop's thread.
    assert lines.threads == {"access-log"}


async def test_errors_logged_as_500(build: Build, access_log: tuple[str, Lines]) -> None:
    name, lines = access_log

    async def inner(request: web.Request) -> web.StreamResponse:
        raise RuntimeError("boom")

    client, _ctx = await build(["catch_errors", "proxy_logging"], inner,
                               filters={"proxy_logging": {"access_log_name": name}})
    resp = await client.put("/v1/a/c/o", data=b"body")
    assert resp.status == 500
    fields = lines.lines[0].split(" ")
    assert fields[3] == "PUT" and fields[6] == "500" and fields[10] == "4"


async def test_client_gone_logged_as_499(build: Build, access_log: tuple[str, Lines]) -> None:
    name, lines = access_log

    async def inner(request: web.Request) -> web.StreamResponse:
        raise ConnectionResetError()

    client, _ctx = await build(["catch_errors", "proxy_logging"], inner,
                               filters={"proxy_logging": {"access_log_name": name}})
    await client.get("/v1/a/c/o")
    assert lines.lines[0].split(" ")[6] == "499"


async def test_twice_in_pipeline_logs_subrequests(aiohttp_client: Any,
                                                  access_log: tuple[str, Lines]) -> None:
    """Outer copy: the client request, once. Inner copy: subrequests."""
    name, lines = access_log
    ctx = make_ctx(["proxy_logging"], {"proxy_logging": {"access_log_name": name}})
    outer_mw = pl.factory({"access_log_name": name}, ctx)
    inner_mw = pl.factory({"access_log_name": name}, ctx)

    async def final(request: web.Request) -> web.StreamResponse:
        got = b""
        from swiftlite.proxy.request_body import iter_body

        async for chunk in iter_body(request):
            got += chunk
        return web.Response(text=f"{request.path}:{len(got)}")

    async def body() -> Any:
        yield b"12"
        yield b"345"

    async def middle(request: web.Request) -> web.StreamResponse:
        sub = ctx.make_subrequest(request, "PUT", "/v1/a/c/copy", body=body(),
                                  swift_source="COPY")
        await inner_mw(sub, final)
        return await inner_mw(request, final)

    async def entry(request: web.Request) -> web.StreamResponse:
        return await outer_mw(request, middle)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", entry)
    client = await aiohttp_client(app)
    resp = await client.get("/v1/a/c/o")
    assert await resp.text() == "/v1/a/c/o:0"
    assert len(lines.lines) == 2
    sub, main = (entry.split(" ") for entry in lines.lines)
    assert (sub[3], sub[4], sub[10], sub[16]) == ("PUT", "/v1/a/c/copy", "5", "COPY")
    assert (main[3], main[4], main[16]) == ("GET", "/v1/a/c/o", "-")


async def test_headers_and_template(build: Build, access_log: tuple[str, Lines]) -> None:
    name, lines = access_log
    client, _ctx = await build(
        ["proxy_logging"], inner_for(202, b""),
        filters={"proxy_logging": {
            "access_log_name": name, "access_log_headers": True,
            "access_log_headers_only": "x-auth-token, x-foo",
            "log_msg_template": "{method} {path} {status_int} {headers} {end_time.Y} "
                                "{start_time.iso8601} {account} {container} {object}",
            "access_log_statsd_host": "ignored", "log_statsd_port": 8125,
        }},
    )
    await client.post("/v1/a/c/o/x", headers={"X-Foo": "b ar", "X-Auth-Token": "t" * 40})
    fields = lines.lines[0].split(" ")
    assert fields[:3] == ["POST", "/v1/a/c/o/x", "202"]
    assert fields[3] == "X-Foo:%20b%20ar%0AX-Auth-Token:%20" + "t" * 16 + "..."
    assert len(fields[4]) == 4 and fields[4].isdigit()
    assert fields[6:] == ["a", "c", "o/x"]


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"log_msg_template": "{nope}"}, "log_msg_template"),
        ({"log_msg_template": "{end_time.bogus}"}, "log_msg_template"),
        ({"reveal_sensitive_prefix": "x"}, "reveal_sensitive_prefix"),
        ({"acces_log_name": "typo"}, "unknown setting"),
    ],
)
def test_bad_settings(settings: dict[str, Any], message: str) -> None:
    async def inner(request: web.Request) -> web.StreamResponse:
        return web.Response()

    ctx = make_ctx(["proxy_logging"], {"proxy_logging": settings})
    with pytest.raises(ConfigError, match=message):
        build_pipeline(inner, ctx)


def test_log_time() -> None:
    t = pl.LogTime(1700000000.123456789)
    assert t.datetime == "14/Nov/2023/22/13/20"
    assert str(t).startswith("1700000000.12345") and len(str(t).split(".")[1]) == 9
    assert (t.s, t.ms, t.us) == ("1700000000", "123", "123456")
    assert t.Y == "2023"


def test_all_three_load_by_entry_point_name() -> None:
    from swiftlite.proxy.middleware import cache, tempauth
    from swiftlite.proxy.pipeline import load_factory

    assert load_factory("cache") is cache.factory
    assert load_factory("tempauth") is tempauth.factory
    assert load_factory("proxy_logging") is pl.factory
    ctx = make_ctx(["catch_errors", "proxy_logging", "cache", "tempauth"])

    async def inner(request: web.Request) -> web.StreamResponse:
        return web.Response()

    make_app(ctx, inner)  # builds with every default setting


async def test_never_blocks_the_event_loop(build: Build, tmp_path: Any) -> None:
    """A request through all three middleware, logging to a file, with
    blockbuster raising on any blocking call made from the event loop."""
    from blockbuster import blockbuster_ctx

    log_file = tmp_path / "access.log"
    users = {"test:tester": {"key": "testing", "groups": [".admin"]}}
    client, _ctx = await build(
        ["catch_errors", "proxy_logging", "cache", "tempauth"], inner_for(200, b"abc"),
        filters={"proxy_logging": {"access_log_file": str(log_file)},
                 "tempauth": {"users": users}},
    )
    with blockbuster_ctx():
        resp = await client.get("/auth/v1.0", headers={"X-Auth-User": "test:tester",
                                                       "X-Auth-Key": "testing"})
        token = resp.headers["X-Auth-Token"]
        for _ in range(5):
            resp = await client.put("/v1/AUTH_test/c/o", data=b"12345",
                                    headers={"X-Auth-Token": token})
            assert resp.status == 200
    pl.WRITER.flush()
    assert len(log_file.read_text().splitlines()) == 6
