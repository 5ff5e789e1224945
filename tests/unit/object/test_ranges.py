"""Range and conditional-request logic, checked against Swift's swob."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given, settings
from swift.common import swob

from swiftlite.object import ranges

range_item = st.one_of(
    st.tuples(st.integers(0, 120), st.integers(0, 120)).map(lambda t: f"{t[0]}-{t[1]}"),
    st.integers(0, 120).map(lambda n: f"{n}-"),
    st.integers(0, 120).map(lambda n: f"-{n}"),
    st.sampled_from(["", "-", "abc", "5", "x-1", "1-x", "--0", " 3 - 4 ", "+2-3"]),
)
range_header = st.one_of(
    st.lists(range_item, min_size=1, max_size=12).map(lambda xs: "bytes=" + ",".join(xs)),
    st.sampled_from(["", "bytes=", "bits=0-1", "BYTES=0-1", "bytes=0-1,,2-3"]),
)


def swob_ranges(header: str, length: int) -> list[tuple[int, int]] | None:
    try:
        rng = swob.Range(header)
    except ValueError:
        return None
    return rng.ranges_for_length(length)


@settings(max_examples=400, deadline=None)
@given(range_header, st.integers(0, 100))
def test_ranges_match_swob(header: str, length: int) -> None:
    expected = swob_ranges(header, length)
    specs = ranges.parse_range(header)
    if expected is None:
        assert specs is None or not specs
        return
    assert specs is not None
    assert ranges.ranges_for_length(specs, length) == expected


def test_egregious_ranges_are_unsatisfiable() -> None:
    many = "bytes=" + ",".join(f"{i}-{i}" for i in range(51))
    assert ranges.decide_ranges(many, 100).status == 416
    overlapping = "bytes=0-50,10-60,20-70,30-80"
    assert ranges.decide_ranges(overlapping, 100).status == 416
    backwards = "bytes=" + ",".join(f"{i}-{i}" for i in range(16, 0, -2))
    assert ranges.decide_ranges(backwards, 100).status == 416


def test_decide_ranges() -> None:
    assert ranges.decide_ranges(None, 10) == ranges.RangeDecision(200)
    assert ranges.decide_ranges("bytes=junk", 10) == ranges.RangeDecision(200)
    assert ranges.decide_ranges("bytes=20-", 10).status == 416
    assert ranges.decide_ranges("bytes=-5", 0).status == 200
    assert ranges.decide_ranges("bytes=0-", 0).status == 416
    assert ranges.decide_ranges("bytes=2-3,-2", 10) == ranges.RangeDecision(206, ((2, 4), (8, 10)))


def test_multipart_layout_matches_swob() -> None:
    body = bytes(range(100))
    rngs = [(0, 10), (50, 51), (90, 100)]
    plan = ranges.plan_multipart(rngs, len(body), "text/plain", boundary="ab" * 16)
    out = b""
    for head, start, stop in plan.parts:
        out += head + body[start:stop] + b"\r\n"
    out += plan.trailer
    expected = b"".join(
        swob.multi_range_iterator(
            rngs, b"text/plain", b"ab" * 16, len(body), lambda s, e: [body[s:e]]
        )
    )
    assert out == expected
    assert plan.content_length == len(out)
    assert plan.content_type == "multipart/byteranges;boundary=" + "ab" * 16


etags = st.sampled_from(["abc", '"abc"', "def", "*", "abc, def", '"def", "abc"', ""])
dates = st.sampled_from(
    [
        None,
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:36 GMT",
        "Sun, 06 Nov 1994 08:49:38 GMT",
        "garbage",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(st.none(), etags),
    st.one_of(st.none(), etags),
    dates,
    dates,
    st.booleans(),
)
def test_conditionals_match_swob(
    if_match: str | None,
    if_none_match: str | None,
    ims: str | None,
    ius: str | None,
    exists: bool,
) -> None:
    headers: dict[str, str] = {}
    if if_match is not None:
        headers["If-Match"] = if_match
    if if_none_match is not None:
        headers["If-None-Match"] = if_none_match
    if ims is not None:
        headers["If-Modified-Since"] = ims
    if ius is not None:
        headers["If-Unmodified-Since"] = ius
    lm = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT
    req = swob.Request.blank("/", headers=headers)
    if exists:
        resp = swob.Response(request=req, conditional_response=True, conditional_etag="abc")
        resp.last_modified = lm
    else:
        resp = swob.HTTPNotFound(request=req, conditional_response=True)
    expected = resp._get_conditional_response_status()
    got = ranges.conditional_status(
        headers,
        exists=exists,
        etag="abc" if exists else None,
        last_modified=lm if exists else None,
    )
    assert got == expected


def test_http_date_round_trip() -> None:
    assert ranges.http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert ranges.parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777
    assert ranges.parse_http_date("nonsense") is None
