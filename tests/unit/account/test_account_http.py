"""swiftlite's account server against OpenStack Swift's, request for request.

Every request goes to both: swiftlite's aiohttp app (through the aiohttp test
client) and Swift's ``AccountController`` (in-process, swob ``Request.blank``)
on separate temporary device trees with the same hash secrets and policies.
Statuses, bodies and the headers that matter must be equal.
"""

from __future__ import annotations

import os
import random
import urllib.parse
from collections.abc import Mapping
from typing import Any

import pytest
import swift.account.utils
import swift.common.utils
from swift.account.server import AccountController
from swift.common.storage_policy import StoragePolicy as SwiftPolicy
from swift.common.storage_policy import StoragePolicyCollection
from swift.common.swob import Request
from yarl import URL

from swiftlite.account.config import AccountServerConfig
from swiftlite.account.server import make_app
from swiftlite.common.config import ClusterConfig, StoragePolicy, config_from_dict
from swiftlite.common.hashing import get_hash_path_secrets, set_hash_path_secrets

PREFIX, SUFFIX = "pre", "suf"


class NullLogger:
    """Swift's controller logs and emits metrics; the oracle needs neither."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def ts(n: float) -> str:
    return f"{n:016.05f}"


class Pair:
    """One swiftlite app and one Swift controller, driven with the same requests."""

    def __init__(self, client: Any, controller: AccountController, roots: tuple[str, str]) -> None:
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
        # A WSGI server hands Swift header values as UTF-8 bytes in latin-1 strings.
        wsgi_headers = {k: v.encode("utf-8").decode("latin-1") for k, v in headers.items()}
        req = Request.blank(path, environ=env, headers=wsgi_headers)
        resp = req.get_response(self.controller)
        body = resp.body if method != "HEAD" else b""
        # Header values come back as WSGI strings (UTF-8 bytes as latin-1).
        headers = {k.lower(): v.encode("latin-1").decode("utf-8") for k, v in resp.headers.items()}
        return resp.status_int, headers, body

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


def interesting(headers: Mapping[str, str], ignore: tuple[str, ...] = ()) -> dict[str, str]:
    """Headers a client or proxy acts on; X-Timestamp (a creation time) only by presence."""
    out = {}
    for key, value in headers.items():
        if key in ignore:
            out[key] = "present"
        elif key == "allow":
            out[key] = value
        elif key.startswith("x-account-") or key in ("content-type", "x-put-timestamp"):
            out[key] = value
        elif key == "x-timestamp":
            out[key] = "present"
    # aiohttp (rightly) sends no Content-Length with a 204; Swift sends "0".
    if headers.get("content-length", "0") != "0":
        out["content-length"] = headers["content-length"]
    return out


@pytest.fixture
async def pair(tmp_path: Any, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    old_secrets = get_hash_path_secrets()
    monkeypatch.setattr(swift.common.utils, "HASH_PATH_PREFIX", PREFIX.encode())
    monkeypatch.setattr(swift.common.utils, "HASH_PATH_SUFFIX", SUFFIX.encode())
    policies = StoragePolicyCollection(
        [SwiftPolicy(0, "gold", is_default=True), SwiftPolicy(1, "silver")]
    )
    monkeypatch.setattr(swift.account.utils, "POLICIES", policies)
    ours_root = tmp_path / "ours"
    swift_root = tmp_path / "swift"
    for root in (ours_root, swift_root):
        (root / "sda1").mkdir(parents=True)
    controller = AccountController(
        {"devices": str(swift_root), "mount_check": "false", "log_requests": "false"},
        logger=NullLogger(),
    )
    cluster = ClusterConfig(
        hash_path_prefix=PREFIX,
        hash_path_suffix=SUFFIX,
        policies=[StoragePolicy(0, "gold", default=True), StoragePolicy(1, "silver")],
    )
    set_hash_path_secrets(PREFIX, SUFFIX)
    conf = config_from_dict(
        AccountServerConfig,
        {"devices": str(ours_root), "mount_check": False, "log_requests": False},
    )
    client = await aiohttp_client(make_app(conf, cluster))
    yield Pair(client, controller, (str(ours_root), str(swift_root)))
    set_hash_path_secrets(*old_secrets)


CONTAINERS = [
    # name, put, delete, objects, bytes, policy. Container names cannot hold
    # "/", so "-" and ":" serve as delimiters here.
    ("a", 10, 0, 1, 10, 0),
    ("a-b", 11, 0, 2, 20, 1),
    ("a-b-c", 12, 0, 3, 30, 0),
    ("a:b", 13, 0, 0, 0, 0),
    ("a-c", 14, 0, 5, 50, 1),
    ("b", 15, 0, 6, 60, 0),
    ("b-", 16, 0, 7, 70, 0),
    ("b--x", 17, 0, 8, 80, 0),
    ("c<&>\"'", 18, 0, 9, 90, 0),
    ("caf\u00e9", 19, 0, 10, 100, 1),
    ("caf\u00e9-menu", 20, 0, 11, 110, 1),
    ("\u2603", 21, 0, 12, 120, 0),
    ("\U0001f954-tuber", 22, 0, 13, 130, 0),
    ("gone", 23, 24, 0, 0, 0),
    ("zz", 25, 0, 14, 140, 7),  # a policy this cluster does not know
    ("tab\there", 26, 0, 1, 1, 0),
    ("a\u00e9-x", 27, 0, 1, 1, 0),
]


async def populate(pair: Pair, account: str = "acct") -> None:
    await pair.both("PUT", f"/sda1/0/{account}", {"X-Timestamp": ts(1)})
    for name, put, delete, count, nbytes, policy in CONTAINERS:
        await pair.both(
            "PUT",
            f"/sda1/0/{account}/" + urllib.parse.quote(name),
            {
                "X-Put-Timestamp": ts(put),
                "X-Delete-Timestamp": ts(delete),
                "X-Object-Count": str(count),
                "X-Bytes-Used": str(nbytes),
                "X-Backend-Storage-Policy-Index": str(policy),
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
    q(limit="abc", format="json"),
    q(limit="-1"),
    q(marker="a-b"),
    q(marker="b", format="json"),
    q(end_marker="b"),
    q(marker="a", end_marker="caf\u00e9"),
    q(prefix="a"),
    q(prefix="a-"),
    q(prefix="caf\u00e9"),
    q(prefix="nothing"),
    q(delimiter="-"),
    q(delimiter="-", format="json"),
    q(delimiter="-", format="xml"),
    q(prefix="a-", delimiter="-"),
    q(prefix="b-", delimiter="-"),
    q(prefix="a", delimiter="-", format="json"),
    q(delimiter=":"),
    q(delimiter="-b"),
    q(delimiter="\u00e9-"),
    q(delimiter="-", marker="a"),
    q(delimiter="-", marker="a-"),
    q(delimiter="-", end_marker="b"),
    q(delimiter="-", limit="2"),
    q(reverse="on"),
    q(reverse="true", format="json"),
    q(reverse="yes", limit="2"),
    q(reverse="1", marker="c", format="json"),
    q(reverse="t", end_marker="b"),
    q(reverse="1", marker="caf\u00e9", end_marker="a"),
    q(reverse="1", delimiter="-"),
    q(reverse="1", delimiter="-", format="xml"),
    q(reverse="1", prefix="a-", delimiter="-"),
    q(reverse="1", delimiter="-", limit="1"),
    q(reverse="1", delimiter="-", end_marker="a-"),
    q(reverse="nope"),
    "prefix=%ff",
    "marker=%c3%28",
    "end_marker=%80&format=json",
    "delimiter=%fe",
    "format=%ff",
    "prefix=%ff&marker=%ff",
    "path=x&states=y&includes=z",
    "limit=20000&prefix=%ff",
]


async def test_listings_match_swift(pair: Pair) -> None:
    await populate(pair)
    for query in LISTING_QUERIES:
        await pair.both("GET", "/sda1/0/acct", query=query)
    pair.check()


ACCEPTS = [
    "application/json",
    "application/xml",
    "text/xml",
    "text/plain",
    "*/*",
    "application/*;q=0.9, text/xml;q=1",
    "image/png",
    "bad header",
    "text/plain;q=x",
]


async def test_accept_negotiation_matches_swift(pair: Pair) -> None:
    await populate(pair)
    for accept in ACCEPTS:
        for method in ("GET", "HEAD"):
            await pair.both(method, "/sda1/0/acct", {"Accept": accept})
            await pair.both(method, "/sda1/0/acct", {"Accept": accept}, query="format=json")
    pair.check()


async def test_empty_account_listings(pair: Pair) -> None:
    await pair.both("PUT", "/sda1/0/empty", {"X-Timestamp": ts(1)})
    for query in ("", "format=json", "format=xml", "format=plain"):
        await pair.both("GET", "/sda1/0/empty", query=query)
    # The account named in the XML document is the (decoded) request's.
    await pair.both("PUT", "/sda1/0/%C3%A9%26%3C", {"X-Timestamp": ts(1)})
    await pair.both("GET", "/sda1/0/%C3%A9%26%3C", query="format=xml")
    pair.check()


async def test_account_lifecycle_matches_swift(pair: Pair) -> None:
    p = "/sda1/0/life"
    await pair.both("HEAD", p)
    await pair.both("GET", p)
    await pair.both("POST", p, {"X-Timestamp": ts(1)})
    await pair.both("DELETE", p, {"X-Timestamp": ts(1)})
    await pair.both("PUT", p + "/c", {"X-Put-Timestamp": ts(2), "X-Delete-Timestamp": ts(0)})
    status = (await pair.both("PUT", p, {"X-Timestamp": ts(1), "X-Account-Meta-Color": "red"}))[0]
    assert status == 201
    assert (await pair.both("PUT", p, {"X-Timestamp": ts(2)}))[0] == 202
    # Older metadata loses, newer wins; empty values delete; sysmeta kept too.
    await pair.both(
        "POST",
        p,
        {"X-Timestamp": ts(3), "X-Account-Meta-Color": "blue", "X-Account-Sysmeta-Quota": "9"},
    )
    await pair.both("POST", p, {"X-Timestamp": ts(2.5), "X-Account-Meta-Color": "green"})
    await pair.both("POST", p, {"X-Timestamp": ts(4), "X-Account-Meta-Shape": "round"})
    await pair.both("POST", p, {"X-Timestamp": ts(5), "X-Account-Meta-Shape": ""})
    await pair.both("POST", p, {"X-Timestamp": ts(5), "X-Account-Meta-Unicode": "caf\u00e9"})
    await pair.both("POST", p, {"X-Timestamp": ts(5), "X-Account-Meta-Foo1bar": "x"})
    await pair.both("HEAD", p)
    await pair.both("GET", p, query="format=json")
    # Container reports: live, deleted, then an older report.
    hdrs = {
        "X-Put-Timestamp": ts(10),
        "X-Delete-Timestamp": ts(0),
        "X-Object-Count": "3",
        "X-Bytes-Used": "300",
        "X-Backend-Storage-Policy-Index": "1",
    }
    await pair.both("PUT", p + "/c1", hdrs)
    await pair.both("PUT", p + "/c2", {**hdrs, "X-Backend-Storage-Policy-Index": "0"})
    await pair.both("PUT", p + "/c1", {**hdrs, "X-Object-Count": "4", "X-Bytes-Used": "400"})
    await pair.both("HEAD", p)
    await pair.both(
        "PUT",
        p + "/c2",
        {
            **hdrs,
            "X-Delete-Timestamp": ts(11),
            "X-Object-Count": "0",
            "X-Bytes-Used": "0",
            "X-Backend-Storage-Policy-Index": "0",
        },
    )
    await pair.both("GET", p, query="format=json")
    await pair.both("HEAD", p)
    # Too much metadata is refused with Swift's text.
    many = {f"X-Account-Meta-K{i}": "v" for i in range(91)}
    await pair.both("POST", p, {"X-Timestamp": ts(6), **many})
    await pair.both("POST", p, {"X-Timestamp": ts(6), "X-Account-Meta-Big": "v" * 4100})
    # Delete the account: marked deleted, its listing and HEAD say so.
    assert (await pair.both("DELETE", p, {"X-Timestamp": ts(20)}))[0] == 204
    head = await pair.both("HEAD", p)
    assert head[0] == 404 and head[1]["x-account-status"] == "Deleted"
    await pair.both("GET", p)
    await pair.both("GET", p, query="format=json")
    await pair.both("DELETE", p, {"X-Timestamp": ts(21)})
    await pair.both("POST", p, {"X-Timestamp": ts(21)})
    await pair.both("PUT", p, {"X-Timestamp": ts(22)})
    await pair.both("PUT", p + "/c3", {**hdrs, "X-Put-Timestamp": ts(23)})
    await pair.both(
        "PUT", p + "/c3", {**hdrs, "X-Put-Timestamp": ts(23), "X-Account-Override-Deleted": "yes"}
    )
    pair.check()


async def test_errors_match_swift(pair: Pair) -> None:
    await pair.both("PUT", "/sda1/0/err", {"X-Timestamp": ts(1)})
    for method in ("PUT", "POST", "DELETE"):
        await pair.both(method, "/sda1/0/err")
        await pair.both(method, "/sda1/0/err", {"X-Timestamp": "not-a-time"})
        await pair.both(method, "/sda1/0/err", {"X-Timestamp": "-1"})
    for method in ("GET", "HEAD", "PUT", "POST", "DELETE"):
        headers = {"X-Timestamp": ts(2)}
        await pair.both(method, "/sda1/0", headers)
        await pair.both(method, "/sda1", headers)
        await pair.both(method, "/sda1/0/err/c/o", headers)
        await pair.both(method, "/sda1/0/a%00b", headers)
        await pair.both(method, "/sda1/0/%00a", headers)
        await pair.both(method, "/sda1/0/%ff", headers)
        await pair.both(method, "/nodev/0/err", headers)
        await pair.both(method, "/sd%20a/0/err", headers)
        await pair.both(method, "/sda1/0/err/", headers)
        await pair.both(method, "/sda1//err", headers)
        await pair.both(method, "/sda1/0//", headers)
        await pair.both(method, "/sda1/0/err//", headers)
        await pair.both(method, "/sda1/0/a%2Fb", headers)
    await pair.both("GET", "/sda1/0/err/c")
    await pair.both("PUT", "/sda1/0/err/c/%C3%A9", {"X-Timestamp": ts(2)})
    await pair.both(
        "PUT", "/sda1/0/err/a%00b", {"X-Put-Timestamp": ts(3), "X-Delete-Timestamp": "0"}
    )
    # REPLICATE (DB replication) is not served yet, so Allow lacks it.
    allow = (await pair.both("OPTIONS", "/sda1/0/err", ignore=("allow",)))[1]["allow"]
    assert allow == "DELETE, GET, HEAD, OPTIONS, POST, PUT"
    await pair.both("COPY", "/sda1/0/err")
    await pair.both("GET", "/sda1/0/err", query="limit=10001")
    await pair.both("GET", "/sda1/0/err", query="limit=")
    await pair.both("GET", "/sda1/0/err", query="marker=zzz&end_marker=a")
    report = {
        "X-Put-Timestamp": ts(3),
        "X-Delete-Timestamp": "0",
        "X-Object-Count": "1",
        "X-Bytes-Used": "1",
    }
    await pair.both("PUT", "/sda1/0/err/c", {**report, "X-Timestamp": "junk"})
    await pair.both("PUT", "/sda1/0/err/c", {**report, "X-Timestamp": ts(3)})
    await pair.both("PUT", "/sda1/0/missing/c", report)
    # An older account PUT changes nothing but still answers 202.
    await pair.both("PUT", "/sda1/0/err", {"X-Timestamp": ts(0.5), "X-Account-Meta-X": "old"})
    await pair.both("HEAD", "/sda1/0/err", query="format=xml")
    pair.check()


async def test_auto_create_account(pair: Pair) -> None:
    hdrs = {
        "X-Put-Timestamp": ts(2),
        "X-Delete-Timestamp": ts(0),
        "X-Object-Count": "1",
        "X-Bytes-Used": "2",
    }
    await pair.both("PUT", "/sda1/0/plain/c", hdrs)
    await pair.both("PUT", "/sda1/0/.hidden/c", hdrs)
    # An auto-created account's put timestamp is "now", different on each side.
    await pair.both("GET", "/sda1/0/.hidden", query="format=json", ignore=("x-put-timestamp",))
    # A delete report answers 204.
    await pair.both(
        "PUT", "/sda1/0/.hidden/c", {**hdrs, "X-Delete-Timestamp": ts(3), "X-Object-Count": "0"}
    )
    # An auto-created account's put timestamp is "now", different on each side.
    await pair.both("GET", "/sda1/0/.hidden", query="format=json", ignore=("x-put-timestamp",))
    pair.check()


async def test_reserved_names_hidden_unless_allowed(pair: Pair) -> None:
    await pair.both("PUT", "/sda1/0/r", {"X-Timestamp": ts(1)})
    hdrs = {
        "X-Put-Timestamp": ts(2),
        "X-Delete-Timestamp": ts(0),
        "X-Object-Count": "0",
        "X-Bytes-Used": "0",
    }
    await pair.both("PUT", "/sda1/0/r/%00versions", hdrs)
    await pair.both("PUT", "/sda1/0/r/plain", hdrs)
    await pair.both("GET", "/sda1/0/r", query="format=json")
    await pair.both("GET", "/sda1/0/r", {"X-Backend-Allow-Reserved-Names": "true"}, "format=json")
    pair.check()


async def test_unmounted_device_is_507(pair: Pair) -> None:
    os.rmdir(os.path.join(pair.ours_root, "sda1"))
    status, _headers, body = await pair.ours("HEAD", "/sda1/0/a", {}, "")
    assert status == 507
    status, _headers, body = await pair.ours("GET", "/sda1/0/a", {}, "")
    assert status == 507 and b"Drive: sda1" in body


async def test_locked_device_is_503(pair: Pair) -> None:
    open(os.path.join(pair.ours_root, "sda1", "lock_device"), "w").close()
    status, _headers, _body = await pair.ours("HEAD", "/sda1/0/a", {}, "")
    assert status == 503


@pytest.mark.parametrize("seed", range(4))
async def test_random_operation_sequences_match_swift(pair: Pair, seed: int) -> None:
    """Random account operations and container-updater style reports (timestamps
    only move forward, as a container's own do), each answered like Swift."""
    rng = random.Random(seed)
    names = ["c", "c-1", "c-2", "d", "caf\u00e9", "c:x", "e-f-g"]
    last: dict[str, tuple[float, float]] = {}
    clock = 1.0
    account = f"/sda1/{seed}/rand"

    def tick() -> float:
        nonlocal clock
        clock += rng.choice([0.00001, 0.5, 1])
        return clock

    for _ in range(70):
        op = rng.choices(
            ["put_acct", "post", "report", "delete_acct", "get", "head"],
            weights=[2, 2, 10, 1, 6, 2],
        )[0]
        if op == "put_acct":
            await pair.both("PUT", account, {"X-Timestamp": ts(tick())})
        elif op == "post":
            key = rng.choice(["X-Account-Meta-A", "X-Account-Meta-B", "X-Account-Sysmeta-C"])
            value = rng.choice(["", "v1", "caf\u00e9", "x" * 50])
            await pair.both("POST", account, {"X-Timestamp": ts(tick()), key: value})
        elif op == "report":
            name = rng.choice(names)
            put, delete = last.get(name, (0.0, 0.0))
            kind = rng.choice(["create", "delete", "recount"] if put else ["create"])
            count = rng.randrange(0, 4)
            if kind == "create":
                put = tick()
            elif kind == "delete":
                delete, count = tick(), 0
            last[name] = (put, delete)
            await pair.both(
                "PUT",
                f"{account}/{urllib.parse.quote(name)}",
                {
                    "X-Put-Timestamp": ts(put),
                    "X-Delete-Timestamp": ts(delete),
                    "X-Object-Count": str(count),
                    "X-Bytes-Used": str(count * 7),
                    "X-Backend-Storage-Policy-Index": str(rng.choice([0, 1])),
                },
            )
        elif op == "delete_acct":
            await pair.both("DELETE", account, {"X-Timestamp": ts(tick())})
        elif op == "get":
            await pair.both("GET", account, query=rng.choice(LISTING_QUERIES))
        else:
            await pair.both("HEAD", account)
    await pair.both("GET", account, query="format=json")
    pair.check()
