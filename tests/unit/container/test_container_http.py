"""swiftlite's container server against OpenStack Swift's, request for request.

Every request goes to both: swiftlite's aiohttp app (aiohttp test client) and
Swift's ``ContainerController`` (in-process, swob ``Request.blank``) on
separate temporary device trees with the same hash secrets and policies.
Statuses, bodies and the headers that matter must be equal.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.parse
from collections.abc import Mapping
from typing import Any

import pytest
import swift.common.utils
import swift.container.server
from aiohttp import web
from swift.common.storage_policy import StoragePolicy as SwiftPolicy
from swift.common.storage_policy import StoragePolicyCollection
from swift.common.swob import Request
from swift.container.server import ContainerController
from yarl import URL

from swiftlite.common.config import ClusterConfig, StoragePolicy, config_from_dict
from swiftlite.common.hashing import get_hash_path_secrets, set_hash_path_secrets
from swiftlite.container.config import ContainerServerConfig
from swiftlite.container.server import make_app

PREFIX, SUFFIX = "pre", "suf"


class NullLogger:
    """Swift's controller logs and emits metrics; the oracle needs neither."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def ts(n: float) -> str:
    return f"{n:016.05f}"


def interesting(headers: Mapping[str, str], ignore: tuple[str, ...] = ()) -> dict[str, str]:
    """Headers a client or proxy acts on; creation times only by presence."""
    out = {}
    for key, value in headers.items():
        if key in ignore or key in ("x-timestamp", "x-backend-timestamp"):
            out[key] = "present"
        elif key.startswith("x-container-") or key.startswith("x-backend-"):
            out[key] = value
        elif key in ("content-type", "x-put-timestamp", "last-modified", "allow"):
            out[key] = value
    # aiohttp (rightly) sends no Content-Length with a 204; Swift sends "0".
    if headers.get("content-length", "0") != "0":
        out["content-length"] = headers["content-length"]
    return out


class Pair:
    def __init__(
        self, client: Any, controller: ContainerController, roots: tuple[str, str]
    ) -> None:
        self.client = client
        self.controller = controller
        self.ours_root, self.swift_root = roots
        self.mismatches: list[str] = []

    async def ours(
        self, method: str, path: str, headers: Mapping[str, str], query: str
    ) -> tuple[int, dict[str, str], bytes]:
        url = URL(path + ("?" + query if query else ""), encoded=True)
        async with self.client.request(method, url, headers=dict(headers)) as resp:
            body = await resp.read()
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, body

    def swift(
        self, method: str, path: str, headers: Mapping[str, str], query: str
    ) -> tuple[int, dict[str, str], bytes]:
        env = {"REQUEST_METHOD": method, "QUERY_STRING": query}
        wsgi_headers = {k: v.encode("utf-8").decode("latin-1") for k, v in headers.items()}
        req = Request.blank(path, environ=env, headers=wsgi_headers)
        resp = req.get_response(self.controller)
        body = resp.body if method != "HEAD" else b""
        out = {k.lower(): v.encode("latin-1").decode("utf-8") for k, v in resp.headers.items()}
        return resp.status_int, out, body

    async def both(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        query: str = "",
        ignore: tuple[str, ...] = (),
    ) -> tuple[int, dict[str, str], bytes]:
        headers = headers or {}
        ours = await self.ours(method, path, headers, query)
        theirs = self.swift(method, path, headers, query)
        what = f"{method} {path}?{query} {dict(headers)}"
        if ours[0] != theirs[0]:
            self.mismatches.append(f"{what}: status {ours[0]} != swift {theirs[0]} {theirs[2]!r}")
        if ours[2] != theirs[2]:
            self.mismatches.append(f"{what}: body {ours[2]!r} != swift {theirs[2]!r}")
        a, b = interesting(ours[1], ignore), interesting(theirs[1], ignore)
        if a != b:
            self.mismatches.append(f"{what}: headers {a} != swift {b}")
        return ours

    def check(self) -> None:
        assert not self.mismatches, "\n".join(self.mismatches)


def make_conf(root: str, **extra: Any) -> ContainerServerConfig:
    data = {"devices": root, "mount_check": False, "log_requests": False}
    data.update(extra)
    return config_from_dict(ContainerServerConfig, data)


CLUSTER = dict(
    hash_path_prefix=PREFIX,
    hash_path_suffix=SUFFIX,
)


def cluster() -> ClusterConfig:
    return ClusterConfig(
        **CLUSTER,
        policies=[StoragePolicy(0, "gold", default=True), StoragePolicy(1, "silver")],
    )


@pytest.fixture
async def pair(tmp_path: Any, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    old_secrets = get_hash_path_secrets()
    monkeypatch.setattr(swift.common.utils, "HASH_PATH_PREFIX", PREFIX.encode())
    monkeypatch.setattr(swift.common.utils, "HASH_PATH_SUFFIX", SUFFIX.encode())
    policies = StoragePolicyCollection(
        [SwiftPolicy(0, "gold", is_default=True), SwiftPolicy(1, "silver")]
    )
    monkeypatch.setattr(swift.container.server, "POLICIES", policies)
    ours_root = tmp_path / "ours"
    swift_root = tmp_path / "swift"
    for root in (ours_root, swift_root):
        (root / "sda1").mkdir(parents=True)
    controller = ContainerController(
        {"devices": str(swift_root), "mount_check": "false", "log_requests": "false"},
        logger=NullLogger(),
    )
    set_hash_path_secrets(PREFIX, SUFFIX)
    client = await aiohttp_client(make_app(make_conf(str(ours_root)), cluster()))
    yield Pair(client, controller, (str(ours_root), str(swift_root)))
    set_hash_path_secrets(*old_secrets)


OBJECTS = [
    # name, timestamp, size, content type, etag
    ("a", 10, 1, "text/plain", "e1"),
    ("a/b", 11, 2, "text/plain; charset=utf-8", "e2"),
    ("a/b/c", 12, 3, "application/json", "e3"),
    ("a/c", 13, 4, "image/png", "e4"),
    ("a-b", 14, 5, "text/plain", "e5"),
    ("b", 15, 6, "text/plain", "e6"),
    ("b/x", 16, 7, "text/plain", "e7"),
    ("c<&>\"'", 17, 8, "text/x&y", "e8"),
    ("caf\u00e9", 18, 9, "text/plain", "e9"),
    ("caf\u00e9/menu", 19, 10, "text/plain", "e10"),
    ("\u2603", 20, 11, "text/plain", "e11"),
    ("\U0001f954/tuber", 21, 12, "text/plain", "e12"),
    ("slo", 22, 100, "application/octet-stream;swift_bytes=12345", "e13"),
    ("tab\there", 23, 13, "text/plain", "e14"),
    ("zz", 24, 0, "", "e15"),
]


async def populate(pair: Pair, container: str = "c") -> None:
    await pair.both("PUT", f"/sda1/0/a/{container}", {"X-Timestamp": ts(1)})
    for name, t, size, ctype, etag in OBJECTS:
        await pair.both(
            "PUT",
            f"/sda1/0/a/{container}/" + urllib.parse.quote(name),
            {
                "X-Timestamp": ts(t),
                "X-Size": str(size),
                "X-Content-Type": ctype or "application/octet-stream",
                "X-Etag": etag,
                "X-Backend-Storage-Policy-Index": "0",
            },
        )
    # An overwrite with a later content-type and metadata time, and a delete.
    await pair.both(
        "PUT",
        f"/sda1/0/a/{container}/b",
        {
            "X-Timestamp": ts(15),
            "X-Size": "6",
            "X-Content-Type": "text/html",
            "X-Etag": "e6",
            "X-Content-Type-Timestamp": ts(30),
            "X-Meta-Timestamp": ts(31),
            "X-Backend-Storage-Policy-Index": "0",
        },
    )
    await pair.both(
        "PUT",
        f"/sda1/0/a/{container}/gone",
        {
            "X-Timestamp": ts(32),
            "X-Size": "1",
            "X-Content-Type": "t/p",
            "X-Etag": "x",
            "X-Backend-Storage-Policy-Index": "0",
        },
    )
    await pair.both(
        "DELETE",
        f"/sda1/0/a/{container}/gone",
        {
            "X-Timestamp": ts(33),
            "X-Backend-Storage-Policy-Index": "0",
        },
    )
    # A row in another policy never shows in this container's listing.
    await pair.both(
        "PUT",
        f"/sda1/0/a/{container}/otherpolicy",
        {
            "X-Timestamp": ts(34),
            "X-Size": "1",
            "X-Content-Type": "t/p",
            "X-Etag": "x",
            "X-Backend-Storage-Policy-Index": "1",
        },
    )


def q(**params: str) -> str:
    return urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


LISTING_QUERIES = [
    "",
    "format=json",
    "format=xml",
    "format=plain",
    "format=JSON",
    "format=bogus",
    q(limit="3"),
    q(limit="0"),
    q(limit="10000"),
    q(limit="10001"),
    q(limit="abc"),
    q(limit="-1"),
    q(marker="a/b"),
    q(marker="a/b", format="json"),
    q(end_marker="b"),
    q(marker="a", end_marker="caf\u00e9", format="json"),
    q(prefix="a"),
    q(prefix="a/", format="json"),
    q(prefix="caf\u00e9", format="xml"),
    q(delimiter="/"),
    q(delimiter="/", format="json"),
    q(delimiter="/", format="xml"),
    q(prefix="a/", delimiter="/", format="json"),
    q(delimiter="-", format="json"),
    q(delimiter="/", marker="a/"),
    q(delimiter="/", limit="2"),
    q(delimiter="/", end_marker="c"),
    q(path=""),
    q(path="a", format="json"),
    q(path="a/", format="json"),
    q(path="\U0001f954", format="json"),
    q(reverse="true"),
    q(reverse="on", format="json", limit="4"),
    q(reverse="true", marker="c", format="json"),
    q(reverse="true", end_marker="b", format="json"),
    q(reverse="true", delimiter="/", format="json"),
    q(reverse="true", prefix="a/", delimiter="/"),
    q(reverse="no"),
    q(prefix="nothing"),
    q(prefix="nothing", format="json"),
    q(prefix="nothing", format="xml"),
    "marker=%FF",
    "prefix=%C3",
    "delimiter=%FF%FE",
    "format=json&format=xml",
]


@pytest.mark.parametrize("query", LISTING_QUERIES)
async def test_listings_match_swift(pair: Pair, query: str) -> None:
    await populate(pair)
    await pair.both("GET", "/sda1/0/a/c", query=query)
    pair.check()


ACCEPTS = [
    "application/json",
    "application/xml",
    "text/xml",
    "text/plain",
    "*/*",
    "application/*",
    "text/*;q=0.5, application/json;q=0.9",
    "image/png",
    "bogus",
    "application/json;q=x",
]


@pytest.mark.parametrize("accept", ACCEPTS)
async def test_accept_header_matches_swift(pair: Pair, accept: str) -> None:
    await populate(pair)
    await pair.both("GET", "/sda1/0/a/c", {"Accept": accept})
    await pair.both("HEAD", "/sda1/0/a/c", {"Accept": accept})
    pair.check()


async def test_head_and_stats_match_swift(pair: Pair) -> None:
    await pair.both("HEAD", "/sda1/0/a/c")
    await populate(pair)
    status, headers, _ = await pair.both("HEAD", "/sda1/0/a/c")
    assert status == 204
    assert headers["x-container-object-count"] == str(len(OBJECTS))
    await pair.both("HEAD", "/sda1/0/a/c", query="format=json")
    await pair.both("GET", "/sda1/0/a/c", {"X-Backend-Storage-Policy-Index": "1"}, "format=json")
    await pair.both("GET", "/sda1/0/a/c", {"X-Backend-Storage-Policy-Index": "9"})
    pair.check()


async def test_container_lifecycle_matches_swift(pair: Pair) -> None:
    c = "/sda1/0/a/life"
    await pair.both("PUT", c, {"X-Timestamp": ts(1)})
    await pair.both("PUT", c, {"X-Timestamp": ts(2)})  # 202
    await pair.both("PUT", c, {"X-Timestamp": ts(3), "X-Backend-Storage-Policy-Index": "1"})
    await pair.both("PUT", c, {"X-Timestamp": ts(3), "X-Backend-Storage-Policy-Index": "0"})
    await pair.both(
        "PUT",
        c + "/o",
        {
            "X-Timestamp": ts(4),
            "X-Size": "3",
            "X-Content-Type": "t/p",
            "X-Etag": "e",
            "X-Backend-Storage-Policy-Index": "0",
        },
    )
    await pair.both("DELETE", c, {"X-Timestamp": ts(5)})  # 409: not empty
    await pair.both("HEAD", c)
    await pair.both("DELETE", c + "/o", {"X-Timestamp": ts(6)})
    await pair.both("DELETE", c, {"X-Timestamp": ts(4.5)})  # older than the PUT: 409? or deleted
    await pair.both("HEAD", c)
    await pair.both("DELETE", c, {"X-Timestamp": ts(7)})
    await pair.both("HEAD", c)
    await pair.both("GET", c)
    await pair.both("POST", c, {"X-Timestamp": ts(8)})
    await pair.both("DELETE", c, {"X-Timestamp": ts(9)})  # already deleted: 404
    await pair.both("DELETE", "/sda1/0/a/never", {"X-Timestamp": ts(9)})
    # Recreate after delete, in another policy.
    await pair.both("PUT", c, {"X-Timestamp": ts(10), "X-Backend-Storage-Policy-Index": "1"})
    await pair.both("HEAD", c)
    await pair.both("PUT", c, {"X-Timestamp": ts(11), "X-Backend-Storage-Policy-Index": "0"})
    # Object rows for a container that does not exist.
    await pair.both(
        "PUT",
        "/sda1/0/a/nope/o",
        {
            "X-Timestamp": ts(4),
            "X-Size": "3",
            "X-Content-Type": "t/p",
            "X-Etag": "e",
            "X-Backend-Storage-Policy-Index": "0",
        },
    )
    await pair.both("DELETE", "/sda1/0/a/nope/o", {"X-Timestamp": ts(4)})
    pair.check()


async def test_metadata_matches_swift(pair: Pair) -> None:
    c = "/sda1/0/a/meta"
    await pair.both(
        "PUT",
        c,
        {
            "X-Timestamp": ts(1),
            "X-Container-Meta-Color": "blue",
            "X-Container-Read": ".r:*",
            "X-Container-Write": "acct:user",
            "X-Container-Sysmeta-Thing": "s",
            "X-Container-Meta-Quota-Bytes": "100",
            "X-Container-Meta-Quota-Count": "7",
            "X-Container-Sync-Key": "secret",
            "X-Container-Sync-To": "http://127.0.0.1/v1/a/c",
            "X-Container-Meta-Unicode": "caf\u00e9",
            "X-Other-Header": "dropped",
        },
    )
    await pair.both("HEAD", c)
    await pair.both("GET", c)
    await pair.both("POST", c, {"X-Timestamp": ts(3), "X-Container-Meta-Color": "red"})
    await pair.both("POST", c, {"X-Timestamp": ts(2), "X-Container-Meta-Color": "old"})
    await pair.both("POST", c, {"X-Timestamp": ts(4), "X-Container-Read": ""})
    await pair.both("HEAD", c)
    await pair.both(
        "POST",
        c,
        {
            "X-Timestamp": ts(5),
            "X-Container-Meta-Other": "x",
            "X-Backend-No-Timestamp-Update": "t",
        },
    )
    await pair.both("HEAD", c)
    many = {f"X-Container-Meta-K{i}": "v" for i in range(91)}
    await pair.both("POST", c, {"X-Timestamp": ts(6), **many})
    await pair.both("POST", c, {"X-Timestamp": ts(6), "X-Container-Meta-Big": "v" * 4097})
    for bad in (
        "ftp://127.0.0.1/a",
        "http://evil.example/v1/a/c",
        "http://127.0.0.1",
        "http://127.0.0.1/a?x=1",
        "//realm/cluster/a/c",
        "//bad",
    ):
        await pair.both("POST", c, {"X-Timestamp": ts(7), "X-Container-Sync-To": bad})
        await pair.both("PUT", c, {"X-Timestamp": ts(7), "X-Container-Sync-To": bad})
    await pair.both("HEAD", c)
    await pair.both("DELETE", c, {"X-Timestamp": ts(8)})
    await pair.both("POST", c, {"X-Timestamp": ts(9), "X-Container-Meta-Color": "x"})
    await pair.both("PUT", c, {"X-Timestamp": ts(10)})
    await pair.both("HEAD", c)  # metadata was cleared by the delete
    pair.check()


async def test_bad_requests_match_swift(pair: Pair) -> None:
    await pair.both("PUT", "/sda1/0/a/c", {"X-Timestamp": ts(1)})
    for method in ("PUT", "DELETE", "POST"):
        await pair.both(method, "/sda1/0/a/c")
        await pair.both(method, "/sda1/0/a/c", {"X-Timestamp": "not-a-time"})
    await pair.both(
        "PUT", "/sda1/0/a/c", {"X-Timestamp": ts(2), "X-Backend-Storage-Policy-Index": "7"}
    )
    await pair.both(
        "PUT", "/sda1/0/a/c", {"X-Timestamp": ts(2), "X-Backend-Storage-Policy-Index": "x"}
    )
    await pair.both("GET", "/sda1/0/a")
    await pair.both("GET", "/sda1/0")
    await pair.both("POST", "/sda1/0/a/c/o", {"X-Timestamp": ts(2)})
    await pair.both("GET", "/sda1/0/a/c%00x")
    await pair.both("GET", "/sda1/0/a/c%FFx")
    await pair.both("PATCH", "/sda1/0/a/c")
    # Swift also lists REPLICATE and UPDATE, which swiftlite does not serve yet.
    await pair.both("OPTIONS", "/sda1/0/a/c", ignore=("allow",))
    await pair.both("GET", "/sda1/0/a/c\x00x".replace("\x00", "%00"))
    await pair.both("GET", "/sda1/0/a/%00res")
    await pair.both("GET", "/sda1/0/a/x%00res")
    await pair.both("GET", "/sda1/0/x%00a/c")
    await pair.both("GET", "/nodev/0/a/c")
    await pair.both("PUT", "/nodev/0/a/c", {"X-Timestamp": ts(2)})
    await pair.both("HEAD", "/nodev/0/a/c")
    pair.check()


async def test_autocreate_matches_swift(pair: Pair) -> None:
    headers = {
        "X-Timestamp": ts(5) + "_0000000000000001",
        "X-Size": "1",
        "X-Content-Type": "t/p",
        "X-Etag": "e",
    }
    await pair.both("PUT", "/sda1/0/.hidden/c/o", headers)  # no policy: 400
    await pair.both(
        "PUT", "/sda1/0/.hidden/c/o", {**headers, "X-Backend-Storage-Policy-Index": "1"}
    )
    await pair.both("HEAD", "/sda1/0/.hidden/c")
    await pair.both("GET", "/sda1/0/.hidden/c", query="format=json")
    await pair.both(
        "PUT",
        "/sda1/0/a/c2/o",
        {**headers, "X-Backend-Storage-Policy-Index": "0", "X-Backend-Auto-Create": "true"},
    )
    await pair.both("HEAD", "/sda1/0/a/c2")
    await pair.both(
        "PUT", "/sda1/0/.shards_a/c/o", {**headers, "X-Backend-Storage-Policy-Index": "0"}
    )
    pair.check()


# -- swiftlite-only behaviour --------------------------------------------------


@pytest.fixture
async def client(tmp_path: Any, aiohttp_client: Any) -> Any:
    (tmp_path / "sda1").mkdir()
    old = get_hash_path_secrets()
    set_hash_path_secrets(PREFIX, SUFFIX)
    yield await aiohttp_client(make_app(make_conf(str(tmp_path)), cluster()))
    set_hash_path_secrets(*old)


def obj_headers(t: float, size: int = 1, **extra: str) -> dict[str, str]:
    return {
        "X-Timestamp": ts(t),
        "X-Size": str(size),
        "X-Content-Type": "text/plain",
        "X-Etag": "etag",
        "X-Backend-Storage-Policy-Index": "0",
        **extra,
    }


async def test_expired_rows_hidden_at_once(client: Any) -> None:
    import time

    now = int(time.time())
    assert (await client.put("/sda1/0/a/c", headers={"X-Timestamp": ts(1)})).status == 201
    await client.put("/sda1/0/a/c/keep", headers=obj_headers(2, 10))
    await client.put("/sda1/0/a/c/old", headers=obj_headers(3, 5, **{"X-Delete-At": str(now - 1)}))
    await client.put(
        "/sda1/0/a/c/later", headers=obj_headers(4, 7, **{"X-Delete-At": str(now + 3600)})
    )
    resp = await client.get("/sda1/0/a/c")
    assert (await resp.text()).splitlines() == ["keep", "later"]
    assert resp.headers["X-Container-Object-Count"] == "2"
    assert resp.headers["X-Container-Bytes-Used"] == "17"
    resp = await client.head("/sda1/0/a/c")
    assert resp.headers["X-Container-Object-Count"] == "2"
    # Bad X-Delete-At is refused.
    bad = await client.put("/sda1/0/a/c/x", headers=obj_headers(5, **{"X-Delete-At": "soon"}))
    assert bad.status == 400


async def test_many_parallel_object_updates_lose_none(client: Any) -> None:
    assert (await client.put("/sda1/0/a/c", headers={"X-Timestamp": ts(1)})).status == 201

    async def one(i: int) -> int:
        resp = await client.put(f"/sda1/0/a/c/o{i:04d}", headers=obj_headers(10 + i, i))
        return resp.status

    statuses = await asyncio.gather(*(one(i) for i in range(300)))
    # Some may meet the device's in-flight limit (503); none may be lost after a 201.
    created = [i for i, s in enumerate(statuses) if s == 201]
    assert set(statuses) <= {201, 503}
    assert len(created) > 25
    resp = await client.get("/sda1/0/a/c", params={"format": "json"})
    names = [o["name"] for o in json.loads(await resp.read())]
    assert names == [f"o{i:04d}" for i in created]


async def test_object_updates_are_group_committed(client: Any, tmp_path: Any) -> None:
    """Concurrent updates share pending-file appends; no SQLite write per PUT."""
    from swiftlite.container.backend import ContainerBroker
    from swiftlite.db import pending

    assert (await client.put("/sda1/0/a/c", headers={"X-Timestamp": ts(1)})).status == 201
    calls = []
    real = pending.append_entries

    def counting(path: str, entries: list[Any], fsync: bool) -> int:
        calls.append(len(entries))
        return real(path, entries, fsync)

    pending.append_entries = counting  # type: ignore[assignment]
    try:
        results = await asyncio.gather(
            *(client.put(f"/sda1/0/a/c/g{i}", headers=obj_headers(10 + i)) for i in range(20))
        )
    finally:
        pending.append_entries = real  # type: ignore[assignment]
    assert all(r.status == 201 for r in results)
    assert sum(calls) == 20
    assert len(calls) < 20  # at least some appends carried several records
    db = ContainerBroker.db_path(str(tmp_path), "sda1", "0", "a", "c")
    with ContainerBroker(db, skip_commits=True).get() as conn:
        assert conn.execute("SELECT count(*) FROM object").fetchone()[0] == 0
    assert os.path.getsize(db + ".pending") > 0


async def test_account_updates_sent(
    tmp_path: Any, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    seen: list[tuple[str, str, dict[str, str]]] = []
    status = {"code": 201}

    async def account_handler(request: web.Request) -> web.Response:
        seen.append((request.method, request.raw_path, dict(request.headers)))
        return web.Response(status=status["code"])

    acct_app = web.Application()
    acct_app.router.add_route("*", "/{tail:.*}", account_handler)
    acct = await aiohttp_server(acct_app)
    (tmp_path / "sda1").mkdir()
    set_hash_path_secrets(PREFIX, SUFFIX)
    client = await aiohttp_client(make_app(make_conf(str(tmp_path)), cluster()))
    host = f"127.0.0.1:{acct.port}"
    hdrs = {
        "X-Timestamp": ts(1),
        "X-Account-Host": f"{host},{host}",
        "X-Account-Device": "sdx,sdy",
        "X-Account-Partition": "7",
        "X-Trans-Id": "tx123",
    }
    resp = await client.put("/sda1/0/a/caf%C3%A9", headers=hdrs)
    assert resp.status == 201
    assert sorted(s[1] for s in seen) == ["/sdx/7/a/caf%C3%A9", "/sdy/7/a/caf%C3%A9"]
    sent = seen[0][2]
    assert sent["X-Put-Timestamp"] == ts(1)
    assert sent["X-Delete-Timestamp"] == "0"
    assert (sent["X-Object-Count"], sent["X-Bytes-Used"]) == ("0", "0")
    assert sent["X-Backend-Storage-Policy-Index"] == "0"
    assert sent["X-Trans-Id"] == "tx123"
    assert sent["User-Agent"].startswith("container-server ")
    assert "X-Account-Override-Deleted" not in sent
    # Every account server says 404: the container PUT answers 404.
    status["code"] = 404
    resp = await client.put("/sda1/0/a/c2", headers={**hdrs, "X-Timestamp": ts(2)})
    assert resp.status == 404
    status["code"] = 204
    seen.clear()
    resp = await client.delete(
        "/sda1/0/a/caf%C3%A9",
        headers={**hdrs, "X-Timestamp": ts(3), "X-Account-Override-Deleted": "yes"},
    )
    assert resp.status == 204
    assert seen[0][2]["X-Delete-Timestamp"] == ts(3)
    assert seen[0][2]["X-Account-Override-Deleted"] == "yes"
    # Mismatched host and device lists: 400, as Swift.
    resp = await client.put(
        "/sda1/0/a/c3", headers={**hdrs, "X-Timestamp": ts(4), "X-Account-Device": "sdx"}
    )
    assert resp.status == 400
    # An unreachable account server is logged, not fatal.
    resp = await client.put(
        "/sda1/0/a/c4",
        headers={
            **hdrs,
            "X-Timestamp": ts(5),
            "X-Account-Host": "127.0.0.1:1",
            "X-Account-Device": "sdx",
        },
    )
    assert resp.status == 201


async def test_device_limits(tmp_path: Any, aiohttp_client: Any) -> None:
    (tmp_path / "sda1").mkdir()
    set_hash_path_secrets(PREFIX, SUFFIX)
    app = make_app(make_conf(str(tmp_path), disk_limit=1), cluster())
    client = await aiohttp_client(app)
    server = app["container_server"]
    assert (await client.put("/sda1/0/a/c", headers={"X-Timestamp": ts(1)})).status == 201
    async with server.devices.slot("sda1", kind="read"):
        resp = await client.get("/sda1/0/a/c")
        assert resp.status == 503
        assert resp.headers["X-Disk-Usage"] == "1"
    (tmp_path / "sda1" / "lock_device").write_text("")
    assert (await client.get("/sda1/0/a/c")).status == 503
    resp = await client.get("/sdz/0/a/c")
    assert resp.status == 507


async def test_corrupt_db_quarantined_not_served(client: Any, tmp_path: Any) -> None:
    from swiftlite.container.backend import ContainerBroker

    assert (await client.put("/sda1/0/a/c", headers={"X-Timestamp": ts(1)})).status == 201
    db = ContainerBroker.db_path(str(tmp_path), "sda1", "0", "a", "c")
    with open(db, "r+b") as fp:
        fp.write(b"garbage!" * 64)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.unlink(db + suffix)
    resp = await client.get("/sda1/0/a/c")
    assert resp.status == 500
    assert (await client.get("/sda1/0/a/c")).status == 404
    assert os.listdir(tmp_path / "sda1" / "quarantined" / "containers")


async def test_event_loop_never_blocks(client: Any) -> None:
    """Every verb, with blockbuster failing any blocking call made on the loop."""
    from blockbuster import blockbuster_ctx

    with blockbuster_ctx("swiftlite"):
        assert (await client.put("/sda1/0/a/c", headers={"X-Timestamp": ts(1)})).status == 201
        results = await asyncio.gather(
            *(client.put(f"/sda1/0/a/c/o{i}", headers=obj_headers(10 + i)) for i in range(20))
        )
        assert {r.status for r in results} == {201}
        assert (
            await client.delete("/sda1/0/a/c/o0", headers={"X-Timestamp": ts(50)})
        ).status == 204
        resp = await client.get("/sda1/0/a/c", params={"format": "json", "limit": "5"})
        assert resp.status == 200 and len(await resp.json()) == 5
        assert (await client.head("/sda1/0/a/c")).status == 204
        post = await client.post(
            "/sda1/0/a/c", headers={"X-Timestamp": ts(51), "X-Container-Meta-A": "b"}
        )
        assert post.status == 204
        assert (await client.put("/sda1/0/.auto/c/o", headers=obj_headers(52))).status == 201
        assert (await client.delete("/sda1/0/a/c", headers={"X-Timestamp": ts(53)})).status == 409


async def test_shard_range_requests_match_swift_for_unsharded(pair: Pair) -> None:
    await populate(pair)
    for fmt in ("", "format=json", "format=xml"):
        for extra in ({}, {"X-Backend-Record-Shard-Format": "namespace"}):
            headers = {"X-Backend-Record-Type": "shard", **extra}
            await pair.both("GET", "/sda1/0/a/c", headers, fmt)
    await pair.both("GET", "/sda1/0/a/c", {"X-Backend-Record-Type": "auto"}, "format=json")
    await pair.both("GET", "/sda1/0/a/nope", {"X-Backend-Record-Type": "shard"}, "format=json")
    pair.check()
