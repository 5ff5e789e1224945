"""The fast listing records equal the shared formatter's, value for value."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from swiftlite.common.listing import object_record, subdir_record
from swiftlite.common.timestamp import Timestamp, encode_timestamps
from swiftlite.container.records import listing_record, meta_timestamp

CTYPES = st.sampled_from(
    ["text/plain", "a/b;swift_bytes=12", "a/b; charset=utf-8;swift_bytes=x", "x/y; q=1", ""]
)


@given(
    raw=st.integers(0, 10**15 - 1),
    offset=st.sampled_from([0, 0, 1, 255]),
    size=st.integers(0, 10**12),
    ctype=CTYPES,
)
def test_listing_record_matches_object_record(raw: int, offset: int, size: int, ctype: str) -> None:
    internal = Timestamp.from_raw(raw, offset).internal
    row = ("name\u00e9", internal, size, ctype, "etag")
    assert listing_record(row) == object_record(*row)


@given(
    base=st.integers(0, 10**14),
    d1=st.integers(0, 10**7),
    d2=st.integers(0, 10**7),
    offset=st.sampled_from([0, 3]),
)
def test_meta_timestamp(base: int, d1: int, d2: int, offset: int) -> None:
    t1 = Timestamp.from_raw(base, offset)
    t2 = Timestamp.from_raw(base + d1)
    t3 = Timestamp.from_raw(base + d1 + d2)
    encoded = encode_timestamps(t1, t2 if d1 else t1, t3 if d1 or d2 else t1)
    want = t3 if d1 or d2 else t1
    assert meta_timestamp(encoded) == want.internal


def test_subdir() -> None:
    assert listing_record(["a/", "0", 0, None, ""]) == subdir_record("a/")
