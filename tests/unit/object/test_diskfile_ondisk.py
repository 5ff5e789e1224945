"""Swift's file-selection rules: table-driven, then differential against Swift."""

from __future__ import annotations

import logging
import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swiftlite.common.timestamp import Timestamp, encode_timestamps
from swiftlite.object.diskfile_ondisk import (
    cleanup_ondisk_files,
    get_ondisk_files,
    make_on_disk_filename,
    parse_on_disk_filename,
)

T = {n: Timestamp(1700000000 + n).internal for n in range(10)}


def ctype_meta(meta_n: int, ctype_n: int) -> str:
    return encode_timestamps(Timestamp(T[meta_n]), Timestamp(T[ctype_n]), explicit=True) + ".meta"


def summary(files: list[str]) -> dict[str, object]:
    r = get_ondisk_files(files)
    return {
        "data": r.data.filename if r.data else None,
        "meta": r.meta.filename if r.meta else None,
        "ctype": r.ctype.filename if r.ctype else None,
        "ts": r.ts.filename if r.ts else None,
        "obsolete": sorted(i.filename for i in r.obsolete),
        "reclaim": sorted(i.filename for i in r.possible_reclaim),
        "unexpected": sorted(r.unexpected),
    }


D = {n: T[n] + ".data" for n in T}
M = {n: T[n] + ".meta" for n in T}
TS = {n: T[n] + ".ts" for n in T}

# (files, data, meta, ctype, ts, obsolete)
CASES = [
    ([], None, None, None, None, []),
    ([D[1]], D[1], None, None, None, []),
    ([D[1], D[2]], D[2], None, None, None, [D[1]]),
    ([D[1], TS[2]], None, None, None, TS[2], [D[1]]),
    ([TS[1], D[2]], D[2], None, None, None, [TS[1]]),
    ([TS[1], TS[3], TS[2]], None, None, None, TS[3], [TS[1], TS[2]]),
    ([D[1], M[2], M[3]], D[1], M[3], None, None, [M[2]]),
    ([D[2], M[1], M[2]], D[2], None, None, None, [M[1], M[2]]),
    ([D[1], M[3], TS[2]], None, None, None, TS[2], [D[1]]),
    ([D[3], M[4], TS[2], D[1]], D[3], M[4], None, None, [D[1], TS[2]]),
    # content-type .meta older than the newest .meta is kept for its ctype
    ([D[1], ctype_meta(2, 2), M[3]], D[1], M[3], ctype_meta(2, 2), None, []),
    # ...but not when the newest .meta carries a newer ctype itself
    ([D[1], ctype_meta(2, 2), ctype_meta(3, 3)], D[1], ctype_meta(3, 3), ctype_meta(3, 3), None,
     [ctype_meta(2, 2)]),
    # ctype not newer than the data: no ctype file reported
    ([D[3], ctype_meta(4, 2)], D[3], ctype_meta(4, 2), None, None, []),
    # two .meta at one timestamp: the one with the newer ctype wins alone
    ([D[1], ctype_meta(4, 2), ctype_meta(4, 3)], D[1], ctype_meta(4, 3), ctype_meta(4, 3), None,
     [ctype_meta(4, 2)]),
    # the ctype .meta keeps out older ones
    ([D[1], ctype_meta(3, 3), M[2], M[4]], D[1], M[4], ctype_meta(3, 3), None, [M[2]]),
]  # fmt: skip


@pytest.mark.parametrize(("files", "data", "meta", "ctype", "ts", "obsolete"), CASES)
def test_selection_table(files, data, meta, ctype, ts, obsolete):
    got = summary(files)
    assert (got["data"], got["meta"], got["ctype"], got["ts"]) == (data, meta, ctype, ts)
    assert got["obsolete"] == sorted(obsolete)


def test_meta_without_data_is_possible_reclaim():
    got = summary([TS[1], M[2]])
    assert got["ts"] == TS[1] and got["meta"] is None and got["reclaim"] == [M[2]]
    got = summary([M[2]])
    assert got["ts"] is None and got["reclaim"] == [M[2]]


def test_unexpected_files():
    got = summary([D[1], "junk", ".1.data.Xy095a", "12.x", "notatime.data"])
    assert got["data"] == D[1]
    assert got["unexpected"] == sorted(["junk", ".1.data.Xy095a", "12.x", "notatime.data"])


def test_filename_roundtrip():
    t, c = Timestamp(T[2]), Timestamp(T[1])
    name = make_on_disk_filename(t, ".meta", c)
    assert name == T[2] + "-186a0.meta"
    info = parse_on_disk_filename(name)
    assert info.timestamp == t and info.ctype_timestamp == c and info.ext == ".meta"
    off = Timestamp(T[1], offset=5)
    assert make_on_disk_filename(off, ".data") == T[1] + "_0000000000000005.data"
    assert parse_on_disk_filename(T[1] + "_0000000000000005.data").timestamp == off


# -- differential: Swift's own get_ondisk_files ---------------------------------


@pytest.fixture(scope="module")
def swift_mgr():
    from swift.obj.diskfile import DiskFileManager as SwiftMgr  # noqa: PLC0415

    log = logging.getLogger("swift-oracle")
    log.setLevel(logging.CRITICAL)
    return SwiftMgr({"devices": "/nonexistent", "mount_check": "false"}, log)


def swift_summary(mgr, files: list[str]) -> dict[str, object]:
    r = mgr.get_ondisk_files(list(files), "", verify=False)

    def name(key):
        info = r.get(key)
        return info["filename"] if info else None

    return {
        "data": name("data_info"),
        "meta": name("meta_info"),
        "ctype": name("ctype_info"),
        "ts": name("ts_info"),
        "obsolete": sorted(i["filename"] for i in r.get("obsolete", [])),
        "reclaim": sorted(i["filename"] for i in r.get("possible_reclaim", [])),
        "unexpected": sorted(os.path.basename(p) for p in r.get("unexpected", [])),
    }


def _file_name(spec: tuple[str, int, int, int | None]) -> str:
    ext, n, offset, ctype = spec
    t = Timestamp(1700000000 + n, offset=offset)
    if ext == ".meta" and ctype is not None:
        return make_on_disk_filename(t, ext, Timestamp(1700000000 + ctype))
    return make_on_disk_filename(t, ext)


file_specs = st.tuples(
    st.sampled_from([".data", ".ts", ".meta"]),
    st.integers(0, 5),
    st.sampled_from([0, 0, 0, 1]),
    st.one_of(st.none(), st.integers(0, 5)),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(file_specs, max_size=7))
def test_selection_matches_swift(swift_mgr, specs):
    files = sorted({_file_name(s) for s in specs}, reverse=True)
    assert summary(files) == swift_summary(swift_mgr, files)


@pytest.mark.parametrize(("files", "data", "meta", "ctype", "ts", "obsolete"), CASES)
def test_table_matches_swift(swift_mgr, files, data, meta, ctype, ts, obsolete):
    assert summary(files) == swift_summary(swift_mgr, files)


# -- cleanup and reclaim ------------------------------------------------------------

WEEK = 604800


def _touch(d, names):
    d.mkdir(parents=True, exist_ok=True)
    for n in names:
        (d / n).write_bytes(b"")


def test_cleanup_removes_obsolete(tmp_path):
    d = tmp_path / "h"
    _touch(d, [D[1], D[2], M[3], M[1]])
    r = cleanup_ondisk_files(str(d), WEEK, now=1700000010)
    assert sorted(os.listdir(d)) == [D[2], M[3]]
    assert r.files == [M[3], D[2]]


def test_lone_tombstone_reclaimed_after_reclaim_age(tmp_path):
    d = tmp_path / "h"
    _touch(d, [TS[1]])
    ts_time = 1700000001
    cleanup_ondisk_files(str(d), WEEK, now=ts_time + WEEK)  # exactly reclaim_age: kept
    assert os.listdir(d) == [TS[1]]
    r = cleanup_ondisk_files(str(d), WEEK, now=ts_time + WEEK + 1)
    assert r.ts is None and r.files == []
    assert not d.exists()  # the emptied hash dir goes too


def test_data_never_reclaimed_and_stray_meta_reclaimed(tmp_path):
    d = tmp_path / "h"
    _touch(d, [D[1]])
    cleanup_ondisk_files(str(d), WEEK, now=1700000000 + 10 * WEEK)
    assert os.listdir(d) == [D[1]]
    e = tmp_path / "e"
    _touch(e, [TS[1], M[2]])
    cleanup_ondisk_files(str(e), WEEK, now=1700000001 + WEEK - 5)
    assert sorted(os.listdir(e)) == sorted([TS[1], M[2]])
    cleanup_ondisk_files(str(e), WEEK, now=1700000002 + WEEK + 1)
    assert not e.exists()


def test_cleanup_missing_dir_is_empty(tmp_path):
    assert cleanup_ondisk_files(str(tmp_path / "nope")).files == []


@settings(max_examples=100, deadline=None)
@given(st.lists(file_specs, max_size=6), st.sampled_from([0, 1, 3, 10**4]))
def test_cleanup_matches_swift(swift_mgr, tmp_path_factory, specs, age_days):
    # Swift reads the clock itself, so place files relative to real time.
    now = time.time()
    base = now - age_days * 86400 - 100
    files = set()
    for ext, n, off, ctype in specs:
        t = Timestamp(base + n, offset=off)
        c = Timestamp(base + ctype) if (ext == ".meta" and ctype is not None) else None
        files.add(make_on_disk_filename(t, ext, c))
    root = tmp_path_factory.mktemp("c")
    ours, theirs = root / "ours", root / "theirs"
    _touch(ours, files)
    _touch(theirs, files)
    cleanup_ondisk_files(str(ours), 2 * 86400)
    swift_mgr.reclaim_age = 2 * 86400
    swift_mgr.cleanup_ondisk_files(str(theirs))
    left_ours = sorted(os.listdir(ours)) if ours.exists() else None
    left_theirs = sorted(os.listdir(theirs)) if theirs.exists() else None
    assert left_ours == left_theirs
