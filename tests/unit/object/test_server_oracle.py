"""The same request sequences against Swift's ObjectController and ours.

Swift's object server runs in-process (swob ``Request.blank``) on its own
tmp devices; statuses, the backend headers the proxy relies on, and bodies
of successful reads must agree.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from swiftlite.common.timestamp import Timestamp
from swiftlite.object import ranges
from swiftlite.object.server import ObjectServer
from tests.unit.object import objsrv_helpers as helpers

# The shared fixtures, made visible to pytest in this module.
devices = helpers.devices
make_client = helpers.make_client
server = helpers.server

Server = tuple[ObjectServer, TestClient[Any, Any]]

COMPARED = (
    "X-Backend-Timestamp",
    "X-Backend-Data-Timestamp",
    "X-Backend-Content-Type",
    "X-Timestamp",
    "Etag",
    "Last-Modified",
    "Content-Range",
    "X-Object-Meta-Color",
    "X-Object-Meta-Shape",
    "X-Object-Sysmeta-Kind",
    "X-Object-Transient-Sysmeta-Tmp",
    "Content-Disposition",
    "X-Delete-At",
)

Step = tuple[str, str, dict[str, str], bytes]


def scenarios(t: list[str], lm: list[str]) -> dict[str, list[Step]]:
    """Request sequences; ``t`` are increasing timestamps, ``lm`` their HTTP dates."""
    o = "/sda/1/a/c/o"
    ctype = {"Content-Type": "text/plain"}
    put0 = ("PUT", o, {"X-Timestamp": t[1], **ctype, "X-Object-Meta-Color": "red"}, b"0123456789")
    da = str(int(float(Timestamp(t[1]))) + 100)
    after = Timestamp(int(da) + 1).internal
    return {
        "basic": [put0, ("GET", o, {}, b""), ("HEAD", o, {}, b"")],
        "put_conflicts": [
            put0,
            ("PUT", o, {"X-Timestamp": t[1], **ctype}, b"x"),
            ("PUT", o, {"X-Timestamp": t[0], **ctype}, b"x"),
            ("PUT", o, {"X-Timestamp": t[2], **ctype, "If-None-Match": "*"}, b"x"),
            ("PUT", o, {"X-Timestamp": t[2], **ctype, "ETag": "0" * 32}, b"x"),
            ("GET", o, {}, b""),
        ],
        "put_if_none_match_absent": [
            ("PUT", o, {"X-Timestamp": t[1], **ctype, "If-None-Match": "*"}, b"abc"),
            ("GET", o, {}, b""),
        ],
        "put_bad_requests": [
            ("PUT", o, {**ctype}, b"x"),
            ("PUT", o, {"X-Timestamp": "garbage", **ctype}, b"x"),
            ("PUT", o, {"X-Timestamp": t[1]}, b"x"),
            ("PUT", o, {"X-Timestamp": t[1], **ctype, "X-Delete-At": "100"}, b"x"),
            ("PUT", o, {"X-Timestamp": t[1], **ctype, "X-Delete-At": "x"}, b"x"),
            ("PUT", o, {"X-Timestamp": t[1], **ctype, "X-Object-Meta-" + "n" * 129: "v"}, b"x"),
        ],
        "delete": [
            ("DELETE", o, {"X-Timestamp": t[0]}, b""),
            ("GET", o, {}, b""),
            put0,
            ("DELETE", o, {"X-Timestamp": t[0]}, b""),
            ("DELETE", o, {"X-Timestamp": t[2]}, b""),
            ("DELETE", o, {"X-Timestamp": t[3]}, b""),
            ("HEAD", o, {}, b""),
            ("DELETE", o, {}, b""),
        ],
        "if_delete_at": [
            ("DELETE", o, {"X-Timestamp": t[0], "X-If-Delete-At": da}, b""),
            ("PUT", o, {"X-Timestamp": t[1], **ctype, "X-Delete-At": da}, b"x"),
            ("DELETE", o, {"X-Timestamp": t[0], "X-If-Delete-At": da}, b""),
            ("DELETE", o, {"X-Timestamp": t[2], "X-If-Delete-At": str(int(da) + 1)}, b""),
            ("DELETE", o, {"X-Timestamp": t[2], "X-If-Delete-At": "bad"}, b""),
            ("DELETE", o, {"X-Timestamp": t[2], "X-If-Delete-At": da}, b""),
        ],
        "expired": [
            ("PUT", o, {"X-Timestamp": t[1], **ctype, "X-Delete-At": da}, b"x"),
            ("GET", o, {"X-Timestamp": after}, b""),
            ("HEAD", o, {"X-Timestamp": after}, b""),
            ("POST", o, {"X-Timestamp": after}, b""),
            ("DELETE", o, {"X-Timestamp": after}, b""),
        ],
        "ranges": [
            put0,
            ("GET", o, {"Range": "bytes=2-4"}, b""),
            ("GET", o, {"Range": "bytes=-3"}, b""),
            ("GET", o, {"Range": "bytes=8-"}, b""),
            ("GET", o, {"Range": "bytes=0-0,5-6"}, b""),
            ("GET", o, {"Range": "bytes=10-"}, b""),
            ("GET", o, {"Range": "bytes=-0"}, b""),
            ("GET", o, {"Range": "bytes=5-2"}, b""),
            ("GET", o, {"Range": "chars=1-2"}, b""),
            ("HEAD", o, {"Range": "bytes=2-4"}, b""),
        ],
        "conditionals": [
            ("GET", o, {"If-Match": "*"}, b""),
            put0,
            ("GET", o, {"If-Match": '"nope"'}, b""),
            ("GET", o, {"If-Match": "*"}, b""),
            ("GET", o, {"If-None-Match": "*"}, b""),
            ("HEAD", o, {"If-None-Match": '"781e5e245d69b566979b86e28d23f2c7"'}, b""),
            ("GET", o, {"If-Modified-Since": lm[1]}, b""),
            ("GET", o, {"If-Modified-Since": lm[0]}, b""),
            ("GET", o, {"If-Unmodified-Since": lm[0]}, b""),
            ("GET", o, {"If-Unmodified-Since": lm[2]}, b""),
            ("GET", o, {"If-Match": '"nope"', "Range": "bytes=1-2"}, b""),
            ("GET", o, {"If-None-Match": '"nope"', "Range": "bytes=1-2"}, b""),
        ],
        "post": [
            ("POST", o, {"X-Timestamp": t[1]}, b""),
            (
                "PUT", o,
                {"X-Timestamp": t[1], **ctype, "X-Object-Sysmeta-Kind": "k",
                 "X-Object-Meta-Color": "red", "Content-Disposition": "inline"},
                b"data",
            ),
            ("POST", o, {"X-Timestamp": t[1]}, b""),
            ("POST", o, {"X-Timestamp": t[3], "X-Object-Meta-Shape": "round",
                         "X-Object-Transient-Sysmeta-Tmp": "t",
                         "X-Object-Sysmeta-Kind": "changed"}, b""),
            ("GET", o, {}, b""),
            ("POST", o, {"X-Timestamp": t[2]}, b""),
            # an older POST that only brings a newer content-type
            ("POST", o, {"X-Timestamp": t[2], "Content-Type": "image/gif"}, b""),
            ("HEAD", o, {}, b""),
            ("POST", o, {"X-Timestamp": t[4], "Content-Type": "a/b",
                         "Content-Type-Timestamp": t[0]}, b""),
            ("HEAD", o, {}, b""),
            ("POST", o, {"X-Timestamp": t[5], "X-Delete-At": "5"}, b""),
            ("POST", o, {}, b""),
        ],  # fmt: skip
    }


class SwiftSide:
    def __init__(self, root: str) -> None:
        from swift.common import utils
        from swift.obj import server as objserver

        os.makedirs(os.path.join(root, "sda"))
        self.app = objserver.ObjectController(
            {"devices": root, "mount_check": "false"},
            logger=utils.get_logger({}, log_route="oracle"),
        )

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        from swift.common.swob import Request

        kwargs: dict[str, Any] = {"method": method, "headers": dict(headers)}
        if method == "PUT":
            kwargs["body"] = body
        resp = Request.blank(path, **kwargs).get_response(self.app)
        return resp.status_int, resp.headers, resp.body


@pytest.fixture
def swift_side(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> SwiftSide:
    from swift.common import utils

    monkeypatch.setattr(utils, "HASH_PATH_SUFFIX", b"endcap")
    monkeypatch.setattr(utils, "HASH_PATH_PREFIX", b"")
    return SwiftSide(str(tmp_path / "swift"))


NAMES = list(scenarios(["0"] * 10, ["x"] * 10))


@pytest.mark.parametrize("name", NAMES)
async def test_matches_swift(name: str, server: Server, swift_side: SwiftSide) -> None:
    _srv, client = server
    base = time.time() - 50
    t = [Timestamp(base + i * 10).internal for i in range(10)]
    lm = [ranges.http_date(Timestamp(x).ceil) for x in t]
    for i, (method, path, headers, body) in enumerate(scenarios(t, lm)[name]):
        s_status, s_headers, s_body = swift_side.request(method, path, headers, body)
        kwargs: dict[str, Any] = {"headers": headers, "skip_auto_headers": ("Content-Type",)}
        if method == "PUT":
            kwargs["data"] = body
        resp = await client.request(method, path, **kwargs)
        o_body = await resp.read()
        where = f"{name} step {i}: {method} {headers}"
        assert resp.status == s_status, f"{where}: swift {s_status} {s_body[:200]!r}"
        for key in COMPARED:
            assert resp.headers.get(key) == s_headers.get(key), f"{where}: header {key}"
        if s_status in (200, 416) or (s_status == 206 and "Content-Range" in s_headers):
            assert o_body == s_body, where
            assert resp.headers.get("Content-Type") == s_headers.get("Content-Type"), where
        if s_status == 206 and "Content-Range" not in s_headers:
            # multipart: the boundary is random, so compare the length only
            assert len(o_body) == len(s_body), where
        if s_status == 400:
            assert o_body == s_body, where
