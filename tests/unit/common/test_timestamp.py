"""Timestamp strings and ordering: identical to Swift's on random input."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swiftlite.common import timestamp as ts

swift_ts = pytest.importorskip("swift.common.utils.timestamp")

MAX_OFFSET = 16**16 - 1
# Up to (and a little past) the largest timestamp Swift accepts.
seconds = st.one_of(
    st.floats(min_value=0, max_value=1e10 + 1, allow_nan=False),
    st.integers(min_value=0, max_value=10**10),
    st.sampled_from([0, 1e-5, 0.000005, 0.000015, 9999999999.99999, 9999999999.999995]),
    # Realistic "now"-ish values with every fractional digit pattern.
    st.integers(min_value=1_000_000_000_00000, max_value=2_000_000_000_00000).map(
        lambda r: r / 1e5
    ),
)
offsets = st.one_of(st.just(0), st.integers(min_value=0, max_value=MAX_OFFSET), st.integers(1, 300))
deltas = st.one_of(st.just(0), st.integers(min_value=-(10**6), max_value=10**6))


def _both(ours: Any, theirs: Any) -> tuple[Any, Any] | None:
    """Build both; they must both fail (ValueError) or both succeed."""
    try:
        expected = theirs()
    except ValueError:
        with pytest.raises(ValueError):
            ours()
        return None
    return ours(), expected


def _same(ours: ts.Timestamp, theirs: Any) -> None:
    assert ours.raw == theirs.raw
    assert ours.offset == theirs.offset
    assert ours.normal == theirs.normal
    assert ours.internal == theirs.internal
    assert ours.short == theirs.short
    assert ours.isoformat == theirs.isoformat
    assert ours.ceil == theirs.ceil()
    assert float(ours) == float(theirs)
    assert int(ours) == int(theirs)
    assert bool(ours) == bool(theirs)
    assert repr(ours) == f"Timestamp({theirs.internal!r})"


@settings(max_examples=500, deadline=None)
@given(value=seconds, offset=offsets, delta=deltas)
def test_from_number(value, offset, delta):
    built = _both(
        lambda: ts.Timestamp(value, offset=offset, delta=delta),
        lambda: swift_ts.Timestamp(value, offset=offset, delta=delta),
    )
    if built:
        _same(*built)


@settings(max_examples=500, deadline=None)
@given(value=seconds, offset=offsets, extra=st.integers(0, 5))
def test_from_strings_and_other_timestamps(value, offset, extra):
    try:
        swift_value = swift_ts.Timestamp(value, offset=offset)
    except ValueError:
        return  # out of range: covered by test_from_number
    for text in (swift_value.internal, swift_value.short, swift_value.normal, repr(swift_value)):
        built = _both(
            lambda text=text: ts.Timestamp(text, offset=extra),
            lambda text=text: swift_ts.Timestamp(text, offset=extra),
        )
        if built is None:
            continue  # both refused (offset past the maximum)
        _same(*built)
        assert ts.Timestamp(text.encode("ascii")) == ts.Timestamp(text)
    ours = ts.Timestamp(swift_value.internal)
    built = _both(
        lambda: ts.Timestamp(ours, offset=extra),
        lambda: swift_ts.Timestamp(swift_value, offset=extra),
    )
    if built is not None:
        _same(*built)
    assert ts.normalize_timestamp(swift_value.normal) == swift_ts.normalize_timestamp(
        swift_value.normal
    )


@settings(max_examples=300, deadline=None)
@given(
    a=st.tuples(seconds, offsets),
    b=st.tuples(seconds, offsets),
    near=st.booleans(),
)
def test_ordering_matches_swift(a, b, near):
    if near:  # same second, so the offset decides
        b = (a[0], b[1])
    pair = _both(
        lambda: ts.Timestamp(a[0], offset=a[1]), lambda: swift_ts.Timestamp(a[0], offset=a[1])
    )
    other = _both(
        lambda: ts.Timestamp(b[0], offset=b[1]), lambda: swift_ts.Timestamp(b[0], offset=b[1])
    )
    if not pair or not other:
        return
    (x, sx), (y, sy) = pair, other
    assert (x == y) == (sx == sy)
    assert (x < y) == (sx < sy)
    assert (x > y) == (sx > sy)
    assert (x <= y) == (sx <= sy)
    assert (hash(x) == hash(y)) or (x != y)
    # Against the other side's strings and floats, as Swift allows.
    assert (x == sy.internal) == (sx == sy.internal)
    assert (x < sy.internal) == (sx < sy.internal)
    if not sy.offset:
        assert (x == float(sy)) == (sx == float(sy))
    # Sorting timestamps sorts their internal strings.
    assert sorted([x, y]) == sorted([x, y], key=lambda t: t.internal)
    assert x != None  # noqa: E711 - Swift's comparison with None
    assert not (x < None)  # noqa: E711


def test_bounds_like_swift():
    for bad in (-1, -0.00001, 1e10, 1e10 + 5, "-1", "10000000000"):
        with pytest.raises(ValueError):
            swift_ts.Timestamp(bad)
        with pytest.raises(ValueError):
            ts.Timestamp(bad)
    for bad_offset in (-1, MAX_OFFSET + 1):
        with pytest.raises(ValueError):
            swift_ts.Timestamp(1, offset=bad_offset)
        with pytest.raises(ValueError):
            ts.Timestamp(1, offset=bad_offset)
    for garbage in ("abc", "1.5_xyz", ""):
        with pytest.raises(ValueError):
            swift_ts.Timestamp(garbage)
        with pytest.raises(ValueError):
            ts.Timestamp(garbage)
    # check_bounds=False admits what Swift admits.
    assert (
        ts.Timestamp(1e10, check_bounds=False).normal
        == swift_ts.Timestamp(1e10, check_bounds=False).normal
    )


optional_ts = st.one_of(st.none(), st.tuples(seconds, st.just(0)))


@settings(max_examples=500, deadline=None)
@given(
    t1=st.tuples(seconds, offsets),
    t2=optional_ts,
    t3=optional_ts,
    explicit=st.booleans(),
    decode_explicit=st.booleans(),
)
def test_encode_decode_timestamps(t1, t2, t3, explicit, decode_explicit):
    if t2 is None:
        t3 = None
    specs = [t for t in (t1, t2, t3) if t is not None]
    ours_list, theirs_list = [], []
    for value, offset in specs:
        built = _both(
            lambda v=value, o=offset: ts.Timestamp(v, offset=o),
            lambda v=value, o=offset: swift_ts.Timestamp(v, offset=o),
        )
        if built is None:
            return
        ours_list.append(built[0])
        theirs_list.append(built[1])
    encoded = swift_ts.encode_timestamps(*theirs_list, explicit=explicit)
    assert ts.encode_timestamps(*ours_list, explicit=explicit) == encoded
    decoded = _both(
        lambda: ts.decode_timestamps(encoded, explicit=decode_explicit),
        lambda: swift_ts.decode_timestamps(encoded, explicit=decode_explicit),
    )
    if decoded is None:
        return
    for ours, theirs in zip(*decoded, strict=True):
        if theirs is None:
            assert ours is None
        else:
            _same(ours, theirs)


def test_encode_timestamps_examples():
    t1 = ts.Timestamp("1400000000.00001_000000000000000a")
    t2 = ts.Timestamp("1400000000.00005")
    t3 = ts.Timestamp("1399999999.99990")
    s1, s2, s3 = (swift_ts.Timestamp(t.internal) for t in (t1, t2, t3))
    cases = [(t1,), (t1, t1), (t1, t2), (t1, t2, t3), (t1, t1, t3), (t1, t2, t2)]
    for case in cases:
        theirs = tuple({id(t1): s1, id(t2): s2, id(t3): s3}[id(t)] for t in case)
        for explicit in (False, True):
            encoded = swift_ts.encode_timestamps(*theirs, explicit=explicit)
            assert ts.encode_timestamps(*case, explicit=explicit) == encoded
            for decode_explicit in (False, True):
                expected = swift_ts.decode_timestamps(encoded, explicit=decode_explicit)
                got = ts.decode_timestamps(encoded, explicit=decode_explicit)
                assert [None if t is None else t.internal for t in got] == [
                    None if t is None else t.internal for t in expected
                ]
    assert ts.encode_timestamps(t1, t2, t3) == "1400000000.00001_a+4-f"


@settings(max_examples=300, deadline=None)
@given(value=seconds)
def test_last_modified_round_trip(value):
    built = _both(lambda: ts.Timestamp(value), lambda: swift_ts.Timestamp(value))
    if not built:
        return
    ours, theirs = built
    iso = theirs.isoformat
    expected = swift_ts.last_modified_date_to_timestamp(iso)
    got = ts.last_modified_date_to_timestamp(iso)
    assert got.internal == expected.internal


def test_now():
    before = swift_ts.Timestamp.now()
    now = ts.Timestamp.now()
    after = swift_ts.Timestamp.now()
    assert before.raw <= now.raw <= after.raw
    assert ts.Timestamp.now(offset=3).offset == 3
