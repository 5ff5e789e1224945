"""swiftlite.common.listing against OpenStack Swift's own listing code.

Swift is the oracle: every parse and every byte of output is compared with what
swift.common.middleware.listing_formats, swift.common.request_helpers and the
container server's record builder produce for the same input.
"""

from __future__ import annotations

import copy
import json
import types
import urllib.parse

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from swift.common.middleware import listing_formats as swift_lf
from swift.common.request_helpers import constrain_req_limit
from swift.common.request_helpers import get_param as swift_get_param
from swift.common.swob import HTTPException, Request
from swift.common.utils import Timestamp as SwiftTimestamp
from swift.container.server import ContainerController

from swiftlite.common import listing
from swiftlite.common.timestamp import Timestamp

# Names: any Unicode except surrogates (not encodable as UTF-8), biased towards
# the characters that need escaping in XML and JSON.
NAME_CHARS = st.one_of(
    st.sampled_from(
        list("&<>\"'\t\r\n /\\;=%+?#") + ["\x01", "\x7f", "\u00e9", "\u2603", "\U0001f954"]
    ),
    st.characters(blacklist_categories=("Cs",)),
)
NAMES = st.text(NAME_CHARS, min_size=1, max_size=20)
TIMESTAMPS = st.integers(min_value=0, max_value=10**15 - 1).map(lambda r: Timestamp.from_raw(r))
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def swift_content_type(query: str, accept: str | None) -> tuple[str, object]:
    env = {"QUERY_STRING": query}
    if accept is not None:
        env["HTTP_ACCEPT"] = accept
    req = Request.blank("/sda1/p/a", environ=env)
    try:
        return "ok", swift_lf.get_listing_content_type(req)
    except HTTPException as exc:
        return "err", (exc.status_int, b"".join(exc({"REQUEST_METHOD": "GET"}, lambda *a: None)))


def ours_content_type(query: str, accept: str | None) -> tuple[str, object]:
    try:
        return "ok", listing.get_listing_content_type(listing.parse_query_string(query), accept)
    except listing.ListingError as exc:
        return "err", (exc.status, exc.body)


ACCEPTS = [
    None,
    "",
    "*/*",
    "application/json",
    "application/xml",
    "text/xml",
    "text/*",
    "text/plain;q=0.1, application/json;q=0.2",
    "application/xml;q=0.5, text/plain;q=0.4",
    "*/*;q=0.1, text/xml",
    "application/*;q=1, text/plain;q=1",
    "text/plain;q=1, application/*",
    "image/png",
    "bad",
    "text/plain;q=a",
    "text/plain;q=1;q=0.5",
    'text/plain;a="x=y"',
    "application/json;charset=utf-8",
    "  application/json  ",
    "text/html, application/xhtml+xml, application/xml;q=0.9, */*;q=0.8",
    "application/json;q=0",
]
FORMATS = [
    "",
    "format=json",
    "format=xml",
    "format=plain",
    "format=JSON",
    "format=Xml",
    "format=foo",
    "format=",
    "format=%ff",
    "format=json&format=xml",
]


@pytest.mark.parametrize("accept", ACCEPTS)
@pytest.mark.parametrize("query", FORMATS)
def test_content_type_negotiation_matches_swift(query: str, accept: str | None) -> None:
    assert ours_content_type(query, accept) == swift_content_type(query, accept)


ACCEPT_PARTS = st.sampled_from(
    [
        "text/plain",
        "application/json",
        "application/xml",
        "text/xml",
        "*/*",
        "text/*",
        "application/*",
        "image/png",
        "foo/bar",
        "*/json",
        "bad",
    ]
)
QS = st.sampled_from(["", ";q=0", ";q=0.5", ";q=1", ";q=0.9", ";level=1", ";q=1.0;x=y", ";q=x"])


@SETTINGS
@given(st.lists(st.tuples(ACCEPT_PARTS, QS), min_size=1, max_size=5))
def test_random_accept_headers_match_swift(parts: list[tuple[str, str]]) -> None:
    accept = ", ".join(t + q for t, q in parts)
    assert ours_content_type("", accept) == swift_content_type("", accept)


@pytest.mark.parametrize(
    "query",
    [
        "prefix=%ff",
        "marker=%c3%28",
        "end_marker=%80",
        "delimiter=%fe",
        "prefix=a%00b",
        "prefix=%e2%98%83",
        "prefix=a+b",
        "prefix=%2B",
        "prefix=&prefix=x",
        "prefix",
    ],
)
def test_get_param_matches_swift(query: str) -> None:
    name = query.split("=")[0]
    req = Request.blank("/sda1/p/a", environ={"QUERY_STRING": query})
    try:
        expected: object = ("ok", swift_get_param(req, name))
    except HTTPException as exc:
        expected = ("err", exc.status_int, exc.body, exc.headers["Content-Type"])
    try:
        got: object = ("ok", listing.get_param(listing.parse_query_string(query), name))
    except listing.ListingError as exc:
        got = ("err", exc.status, exc.body, exc.content_type)
    assert got == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "0",
        "1",
        "10",
        "9999",
        "10000",
        "10001",
        "99999999",
        "-1",
        "abc",
        "1.5",
        " 5",
        "\u0661",
    ],
)
def test_limit_matches_swift(value: str | None) -> None:
    query = "" if value is None else "limit=" + urllib.parse.quote(value)
    req = Request.blank("/sda1/p/a", environ={"QUERY_STRING": query})
    try:
        expected: object = ("ok", constrain_req_limit(req, 10000))
    except HTTPException as exc:
        expected = ("err", exc.status_int, exc.body)
    try:
        got: object = ("ok", listing.constrain_limit(listing.parse_query_string(query), 10000))
    except listing.ListingError as exc:
        got = ("err", exc.status, exc.body)
    assert got == expected


def test_limit_error_text() -> None:
    with pytest.raises(listing.ListingError) as info:
        listing.parse_container_listing_params("limit=10001", None)
    assert (info.value.status, info.value.body) == (412, b"Maximum limit is 10000")


def test_account_params_all_fields() -> None:
    q = "prefix=p%C3%A9&delimiter=/&reverse=on&limit=5&marker=m&end_marker=z&format=xml"
    p = listing.parse_account_listing_params(q, None)
    assert p == listing.ListingParams(
        content_type="application/xml",
        limit=5,
        marker="m",
        end_marker="z",
        prefix="p\u00e9",
        delimiter="/",
        reverse=True,
        format_given=True,
    )
    p = listing.parse_account_listing_params("", "application/json")
    assert (
        p.content_type,
        p.limit,
        p.marker,
        p.end_marker,
        p.prefix,
        p.reverse,
        p.format_given,
    ) == ("application/json", 10000, "", None, None, False, False)


@pytest.mark.parametrize(
    "value,expected",
    [
        ("t", True),
        ("yes", True),
        ("1", True),
        ("TRUE", True),
        ("on", True),
        ("false", False),
        ("", False),
        ("2", False),
        ("reverse", False),
    ],
)
def test_reverse_uses_config_true_value(value: str, expected: bool) -> None:
    assert listing.parse_container_listing_params("reverse=" + value, None).reverse is expected


def test_container_params_path_and_error_order() -> None:
    p = listing.parse_container_listing_params("path=a/b&limit=0", None)
    assert (p.path, p.limit) == ("a/b", 0)
    # marker is checked before prefix, as swift.common.request_helpers does.
    with pytest.raises(listing.ListingError) as info:
        listing.parse_container_listing_params("prefix=%ff&marker=%ff", None)
    assert info.value.body == b'"marker" parameter not valid UTF-8'
    with pytest.raises(listing.ListingError) as info:
        listing.parse_account_listing_params("prefix=%ff&marker=%ff", None)
    assert info.value.body == b'"prefix" parameter not valid UTF-8'
    # An unacceptable format is answered only after the parameters are checked.
    with pytest.raises(listing.ListingError) as info:
        listing.parse_container_listing_params("limit=20000", "image/png")
    assert info.value.status == 412
    with pytest.raises(listing.ListingError) as info:
        listing.parse_container_listing_params("", "image/png")
    assert info.value.status == 406


def test_response_content_type() -> None:
    assert listing.response_content_type("application/json") == "application/json; charset=utf-8"


# --- output formats ----------------------------------------------------------


def swift_object_record(name: str, created: str, size: int, ctype: str, etag: str) -> dict:
    fake_self = types.SimpleNamespace(logger=None)
    return ContainerController.update_object_record(fake_self, (name, created, size, ctype, etag))


OBJ = st.tuples(
    NAMES,
    TIMESTAMPS,
    st.integers(min_value=0, max_value=2**62),
    st.one_of(
        st.sampled_from(
            [
                "",
                "text/plain",
                "application/octet-stream;swift_bytes=123",
                "text/plain; charset=utf-8;swift_bytes=5",
                "a/b;swift_bytes=x",
                'a/b; x="q;r"; swift_bytes=7; y',
                "text/html;;",
            ]
        ),
        NAMES,
    ),
    st.one_of(st.just(""), st.text("0123456789abcdef", min_size=32, max_size=32)),
)
ENTRY = st.one_of(OBJ, NAMES.map(lambda n: ("subdir", n)))


@SETTINGS
@given(st.lists(ENTRY, max_size=8), NAMES)
def test_container_listing_formats_match_swift(entries: list, container: str) -> None:
    ours, theirs = [], []
    for entry in entries:
        if entry[0] == "subdir":
            ours.append(listing.subdir_record(entry[1]))
            theirs.append({"subdir": entry[1]})
        else:
            name, ts, size, ctype, etag = entry
            ours.append(listing.object_record(name, ts.internal, size, ctype, etag))
            theirs.append(swift_object_record(name, ts.internal, size, ctype, etag))
    assert listing.listing_json(ours) == json.dumps(theirs).encode("ascii")
    assert listing.listing_text(ours) == swift_lf.listing_to_text(theirs)
    assert listing.container_listing_xml(ours, container) == swift_lf.container_to_xml(
        copy.deepcopy(theirs), container
    )
    for ctype in ("application/json", "application/xml", "text/xml", "text/plain"):
        body = listing.format_container_listing(ours, ctype, container)
        assert body == (
            swift_lf.container_to_xml(copy.deepcopy(theirs), container)
            if ctype.endswith("xml")
            else json.dumps(theirs).encode()
            if ctype.endswith("json")
            else swift_lf.listing_to_text(theirs)
        )


CONT = st.tuples(
    NAMES,
    st.integers(min_value=0, max_value=2**62),
    st.integers(min_value=0, max_value=2**62),
    TIMESTAMPS,
    st.one_of(st.none(), st.sampled_from(["gold", "Policy-0", "a&b<c>", "\u2603"])),
)


@SETTINGS
@given(st.lists(st.one_of(CONT, NAMES.map(lambda n: ("subdir", n))), max_size=8), NAMES)
def test_account_listing_formats_match_swift(entries: list, account: str) -> None:
    ours, theirs = [], []
    for entry in entries:
        if entry[0] == "subdir":
            ours.append(listing.subdir_record(entry[1]))
            theirs.append({"subdir": entry[1]})
        else:
            name, count, nbytes, ts, policy = entry
            ours.append(listing.container_record(name, count, nbytes, ts.internal, policy))
            # swift.account.utils.account_listing_response builds exactly this.
            rec = {
                "name": name,
                "count": count,
                "bytes": nbytes,
                "last_modified": SwiftTimestamp(ts.internal).isoformat,
            }
            if policy is not None:
                rec["storage_policy"] = policy
            theirs.append(rec)
    assert listing.listing_json(ours) == json.dumps(theirs).encode("ascii")
    assert listing.listing_text(ours) == swift_lf.listing_to_text(theirs)
    assert listing.account_listing_xml(ours, account) == swift_lf.account_to_xml(
        copy.deepcopy(theirs), account
    )
    assert listing.format_account_listing(ours, "text/xml", account) == swift_lf.account_to_xml(
        copy.deepcopy(theirs), account
    )


def test_exact_xml_shapes() -> None:
    assert listing.container_listing_xml([], "c") == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<container name="c" />'
    )
    assert listing.account_listing_xml([], 'a"&') == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<account name="a&quot;&amp;">\n</account>'
    )
    body = listing.account_listing_xml(
        [listing.container_record("x<", 1, 2, "1.00000", "gold"), listing.subdir_record("d/")], "a"
    )
    assert body == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<account name="a">\n'
        b"<container><name>x&lt;</name><count>1</count><bytes>2</bytes>"
        b"<last_modified>1970-01-01T00:00:01.000000</last_modified>"
        b"<storage_policy>gold</storage_policy></container>\n"
        b'<subdir name="d/" />\n</account>'
    )


def test_json_key_order_is_swifts() -> None:
    rec = listing.object_record("o", "1.00000", 3, "text/plain", "e" * 32)
    assert list(rec) == ["bytes", "hash", "name", "content_type", "last_modified"]
    assert listing.listing_json([rec]).startswith(b'[{"bytes": 3, "hash": "eeee')


@SETTINGS
@given(st.integers(min_value=0, max_value=10**15 - 1), st.integers(0, 2**20))
def test_last_modified_matches_swift(raw: int, offset: int) -> None:
    ts = Timestamp.from_raw(raw, offset)
    expected = SwiftTimestamp(ts.internal).isoformat
    assert listing.last_modified(ts.internal) == expected
    assert listing.last_modified(ts) == expected
    assert listing.last_modified(ts.normal) == expected


@pytest.mark.parametrize("whole", [0, 1700000000, 2**31, 2**32 - 1, 2**32, 9999999999])
def test_last_modified_every_fraction_of_a_second(whole: int) -> None:
    """The integer fast path must agree with Swift's float arithmetic for every
    fraction, including the last second where a double still resolves 1 µs."""
    for frac in range(0, 100000, 7 if whole in (2**32 - 1, 2**32) else 997):
        internal = f"{whole:010d}.{frac:05d}"
        assert listing.last_modified(internal) == SwiftTimestamp(internal).isoformat, internal


# --- the proxy's reformatting, against Swift's ListingFilter -------------------


class _NullLogger:
    def __getattr__(self, name: str) -> object:
        return lambda *args, **kwargs: None


def swift_listing_filter(body: bytes, path: str, query: str, allow_reserved: bool) -> tuple:
    from swift.common.middleware.listing_formats import ListingFilter

    def app(env: dict, start_response: object) -> list[bytes]:
        start_response(  # type: ignore[operator]
            "200 OK",
            [
                ("Content-Type", "application/json; charset=utf-8"),
                ("Content-Length", str(len(body))),
            ],
        )
        return [body]

    headers = {"X-Backend-Allow-Reserved-Names": "true"} if allow_reserved else {}
    req = Request.blank(path, environ={"QUERY_STRING": query}, headers=headers)
    resp = req.get_response(ListingFilter(app, {}, logger=_NullLogger()))
    return resp.status_int, resp.body, resp.headers["Content-Type"]


def ours_listing_filter(body: bytes, path: str, query: str, allow_reserved: bool) -> tuple:
    parts = [urllib.parse.unquote(part) for part in path.split("/")]
    account, container = parts[2], (parts[3] if len(parts) > 3 else None)
    ctype = listing.get_listing_content_type(listing.parse_query_string(query), None)
    out = listing.reformat_listing(body, ctype, account, container, allow_reserved)
    if out is None:
        return 200, body, "application/json; charset=utf-8"
    return (200 if out else 204), out, listing.response_content_type(ctype)


OBJ_RECORD = OBJ.map(lambda t: listing.object_record(t[0], t[1].internal, t[2], t[3], t[4]))
CONT_RECORD = CONT.map(lambda t: listing.container_record(t[0], t[1], t[2], t[3].internal, t[4]))
ODD_RECORD = st.sampled_from(
    [
        {"subdir": "\x00hidden/"},
        {"name": "\x00v", "count": 1, "bytes": 1, "last_modified": "x"},
        {"name": "x"},
        {"other": 1},
        {},
    ]
)
SUBDIR = st.one_of(NAMES, NAMES.map(lambda n: "\x00" + n)).map(listing.subdir_record)
GOOD_OR_ODD = st.one_of(
    st.lists(st.one_of(OBJ_RECORD, SUBDIR), max_size=6),
    st.lists(st.one_of(CONT_RECORD, SUBDIR), max_size=6),
    st.lists(st.one_of(OBJ_RECORD, CONT_RECORD, ODD_RECORD), max_size=4),
)


@SETTINGS
@given(
    st.one_of(
        GOOD_OR_ODD.map(lambda r: json.dumps(r).encode()),
        st.sampled_from([b"", b"not json", b"{}", b"[1, 2]", b'"x"', b"[]", b"null"]),
    ),
    st.sampled_from(["/v1/a", "/v1/a/c", "/v1/caf%C3%A9/%3Cc%3E", "/v1/%26%22"]),
    st.sampled_from(["", "format=json", "format=xml", "format=plain"]),
    st.booleans(),
)
@example(b'[{"subdir": "\\u0000hidden/"}, {"subdir": "x/"}]', "/v1/a", "format=json", False)
@example(b"[]", "/v1/caf%C3%A9/%3Cc%3E", "format=xml", False)
def test_reformat_listing_matches_swift_listing_filter(
    body: bytes, path: str, query: str, allow_reserved: bool
) -> None:
    assert ours_listing_filter(body, path, query, allow_reserved) == swift_listing_filter(
        body, path, query, allow_reserved
    )
