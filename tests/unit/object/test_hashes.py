"""Suffix hashes: invalidation, recalculation, reclaim, and Swift's exact values."""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swiftlite.common.timestamp import Timestamp
from swiftlite.object import hashes as h
from swiftlite.object.diskfile import DiskFileManager
from swiftlite.object.diskfile_ondisk import make_on_disk_filename

BASE = int(time.time()) - 1000


def ts(n: float) -> Timestamp:
    return Timestamp(BASE + n)


@pytest.fixture
def mgr(tmp_path):
    (tmp_path / "sda").mkdir()
    return DiskFileManager(str(tmp_path), fallocate_reserve="0", fsync=False)


def put(df, body: bytes, t: Timestamp) -> None:
    with df.create(len(body)) as w:
        w.write(body)
        w.put({"X-Timestamp": t.internal, "Content-Type": "text/plain"})


def test_missing_partition_is_empty(tmp_path):
    assert h.get_hashes(str(tmp_path / "nope")) == {}


def test_put_invalidates_and_get_hashes_recalculates(mgr):
    df = mgr.get_diskfile("sda", 3, "a", "c", "o")
    put(df, b"x", ts(1))
    part = df.partition_path
    suffix = df.name_hash[-3:]
    with open(os.path.join(part, h.HASH_INVALIDATIONS_FILE)) as fh:
        # Invalidated before and after the rename (see diskfile's docstring).
        assert fh.read() == (suffix + "\n") * 2
    got = mgr.get_hashes("sda", 3)
    expected = hashlib.md5((ts(1).internal + ".data").encode()).hexdigest()
    assert got == {suffix: expected}
    # Consolidated: invalidations emptied, hashes.json valid and versioned.
    assert os.path.getsize(os.path.join(part, h.HASH_INVALIDATIONS_FILE)) == 0
    with open(os.path.join(part, h.HASH_FILE)) as fh:
        doc = json.load(fh)
    assert doc["version"] == 1 and doc["valid"] is True and doc["hashes"] == {suffix: expected}
    # A second write changes the suffix hash through invalidation alone.
    df.write_tombstone(ts(2))
    got2 = mgr.get_hashes("sda", 3)
    assert got2 == {suffix: hashlib.md5((ts(2).internal + ".ts").encode()).hexdigest()}


# -- consolidation, recalculation, listdir ------------------------------------------


def _touch(path, names):
    path.mkdir(parents=True, exist_ok=True)
    for n in names:
        (path / n).write_bytes(b"")


def _md5(*parts: str) -> str:
    return hashlib.md5("".join(parts).encode()).hexdigest()


def test_invalidate_appends_under_lock(tmp_path):
    part = tmp_path / "objects" / "0"
    part.mkdir(parents=True)
    h.invalidate_hash(str(part / "abc"))
    h.invalidate_hash(str(part / "def") + "/")
    assert (part / h.HASH_INVALIDATIONS_FILE).read_text() == "abc\ndef\n"
    assert (part / h.LOCK_FILE).exists()
    # A vanished partition is not an error.
    h.invalidate_hash(str(tmp_path / "objects" / "9" / "abc"))


def test_recalculate_and_listdir(tmp_path):
    part = tmp_path / "objects" / "0"
    _touch(part / "abc" / ("0" * 29 + "abc"), [ts(1).internal + ".data"])
    first = h.get_hashes(str(part))  # no hashes.json yet: full listing
    assert first == {"abc": _md5(ts(1).internal, ".data")}
    # A suffix created without an invalidation is only found with do_listdir.
    _touch(part / "def" / ("0" * 29 + "def"), [ts(2).internal + ".ts"])
    assert h.get_hashes(str(part)) == first
    both = h.get_hashes(str(part), do_listdir=True)
    assert both == {**first, "def": _md5(ts(2).internal, ".ts")}
    # A stale cached value is kept until the suffix is invalidated or named.
    _touch(part / "abc" / ("0" * 29 + "abc"), [ts(3).internal + ".data"])
    assert h.get_hashes(str(part)) == both
    fixed = h.get_hashes(str(part), recalculate=["abc", "zzz", "../x"])
    assert fixed["abc"] == _md5(ts(3).internal, ".data")
    assert os.listdir(part / "abc" / ("0" * 29 + "abc")) == [ts(3).internal + ".data"]
    # ...or invalidated through hashes.invalid.
    _touch(part / "def" / ("1" * 29 + "def"), [ts(4).internal + ".data"])
    h.invalidate_hash(str(part / "def"))
    got = h.get_hashes(str(part))
    assert got["def"] == _md5(ts(2).internal, ".ts", ts(4).internal, ".data")


def test_corrupt_or_foreign_hashes_file_means_full_rehash(tmp_path):
    part = tmp_path / "objects" / "0"
    _touch(part / "abc" / ("0" * 29 + "abc"), [ts(1).internal + ".data"])
    want = {"abc": _md5(ts(1).internal, ".data")}
    for junk in (
        b"\x80garbage",
        b'{"version": 99}',
        b'{"version":1,"valid":true,"hashes":{"../../x":null}}',
    ):
        (part / h.HASH_FILE).write_bytes(junk)
        assert h.get_hashes(str(part)) == want
    # hashes.json never holds a pickle: it is JSON with a version.
    doc = json.loads((part / h.HASH_FILE).read_bytes())
    assert doc["version"] == h.HASHES_VERSION


def test_empty_suffix_dropped_and_removed(tmp_path):
    part = tmp_path / "objects" / "0"
    hd = part / "abc" / ("0" * 29 + "abc")
    _touch(hd, [ts(1).internal + ".data"])
    assert "abc" in h.get_hashes(str(part))
    (hd / (ts(1).internal + ".data")).unlink()
    h.invalidate_hash(str(part / "abc"))
    assert h.get_hashes(str(part)) == {}
    assert not (part / "abc").exists()
    assert json.loads((part / h.HASH_FILE).read_bytes())["hashes"] == {}


def test_old_lone_tombstone_reclaimed_during_rehash(tmp_path):
    part = tmp_path / "objects" / "0"
    old = Timestamp(time.time() - 8 * 86400)
    _touch(part / "abc" / ("0" * 29 + "abc"), [old.internal + ".ts"])
    _touch(part / "abc" / ("1" * 29 + "abc"), [ts(1).internal + ".ts"])
    got = h.get_hashes(str(part))
    assert got == {"abc": _md5(ts(1).internal, ".ts")}
    assert os.listdir(part / "abc") == ["1" * 29 + "abc"]
    # With a short reclaim_age the other goes too, and so does the suffix.
    assert h.get_hashes(str(part), recalculate=["abc"], reclaim_age=10) == {}
    assert not (part / "abc").exists()


def test_file_in_place_of_hash_dir_is_quarantined(tmp_path):
    dev = tmp_path / "sda"
    part = dev / "objects-1" / "0"
    (part / "abc").mkdir(parents=True)
    (part / "abc" / ("0" * 29 + "abc")).write_bytes(b"not a dir")
    _touch(part / "abc" / ("1" * 29 + "abc"), [ts(1).internal + ".data"])
    assert h.get_hashes(str(part)) == {"abc": _md5(ts(1).internal, ".data")}
    assert os.listdir(dev / "quarantined" / "objects-1") == ["0" * 29 + "abc"]


def test_concurrent_update_forces_redo(tmp_path, monkeypatch):
    part = tmp_path / "objects" / "0"
    _touch(part / "abc" / ("0" * 29 + "abc"), [ts(1).internal + ".data"])
    real = h.hash_suffix
    calls: list[str] = []

    def racing(path, *a, **kw):
        calls.append(path)
        if len(calls) == 1:
            # Another get_hashes finishes while we are hashing.
            h.write_hashes(str(part), True, {"fff": "0" * 32})
        return real(path, *a, **kw)

    monkeypatch.setattr(h, "hash_suffix", racing)
    got = h.get_hashes(str(part))
    assert len(calls) == 2  # the first result was not written: redone
    assert got == {"abc": _md5(ts(1).internal, ".data"), "fff": "0" * 32}


def test_partition_lock_times_out(tmp_path):
    part = tmp_path / "p"
    part.mkdir()
    with h.lock_partition(str(part)):
        with pytest.raises(h.PartitionLockTimeout):
            with h.lock_partition(str(part), timeout=0.05):
                pass
    with h.lock_partition(str(part), timeout=0.05):
        pass


# -- differential: the same files hashed by Swift ----------------------------------


@pytest.fixture(scope="module")
def swift_mgr():
    import logging  # noqa: PLC0415

    from swift.obj.diskfile import DiskFileManager as SwiftMgr  # noqa: PLC0415

    log = logging.getLogger("swift-oracle")
    log.setLevel(logging.CRITICAL)
    return SwiftMgr({"devices": "/nonexistent", "mount_check": "false"}, log)


def _name(ext: str, n: int, ctype: int | None) -> str:
    t = Timestamp(BASE + n)
    if ext == ".meta" and ctype is not None:
        return make_on_disk_filename(t, ext, Timestamp(BASE + ctype))
    return make_on_disk_filename(t, ext)


FIXED_CASES = {
    "data": [[_name(".data", 1, None)]],
    "ts": [[_name(".ts", 1, None)]],
    "data+meta": [[_name(".data", 1, None), _name(".meta", 2, None)]],
    "ctype-meta": [[_name(".data", 1, None), _name(".meta", 2, 2), _name(".meta", 3, None)]],
    "ctype-older": [[_name(".data", 3, None), _name(".meta", 4, 2)]],
    "superseded": [[_name(".data", 1, None), _name(".ts", 2, None), _name(".data", 3, None)]],
    "many": [
        [_name(".data", 1, None)],
        [_name(".ts", 2, None), _name(".data", 1, None)],
        [_name(".data", 1, None), _name(".meta", 3, 3), _name(".meta", 4, None)],
    ],
}


def _compare_with_swift(swift_mgr, tmp_path, hash_dirs: list[list[str]]) -> str:
    ours = tmp_path / "ours" / "objects" / "0" / "abc"
    theirs = tmp_path / "theirs" / "objects" / "0" / "abc"
    for i, files in enumerate(hash_dirs):
        name = f"{i:029x}abc"
        _touch(ours / name, files)
        _touch(theirs / name, files)
    try:
        mine = h.hash_suffix(str(ours))
    except h._PathNotDir:
        mine = None
    try:
        swifts = swift_mgr._hash_suffix(str(theirs))
    except Exception as exc:  # Swift's PathNotDir
        assert type(exc).__name__ == "PathNotDir"
        swifts = None
    assert mine == swifts

    def left(root):
        if not root.exists():
            return None
        return {d: sorted(os.listdir(root / d)) for d in sorted(os.listdir(root))}

    assert left(ours) == left(theirs)
    return mine or ""


@pytest.mark.parametrize("case", sorted(FIXED_CASES))
def test_suffix_hash_matches_swift(swift_mgr, tmp_path, case):
    _compare_with_swift(swift_mgr, tmp_path, FIXED_CASES[case])


def test_simple_suffix_hash_is_md5_of_names(swift_mgr, tmp_path):
    got = _compare_with_swift(swift_mgr, tmp_path, FIXED_CASES["data+meta"])
    assert got == _md5(Timestamp(BASE + 2).internal, ".meta", Timestamp(BASE + 1).internal, ".data")
    got = _compare_with_swift(swift_mgr, tmp_path / "2", FIXED_CASES["ctype-meta"])
    want = _md5(
        Timestamp(BASE + 3).internal, ".meta", Timestamp(BASE + 1).internal, ".data",
        Timestamp(BASE + 2).internal, "_ctype",
    )  # fmt: skip
    assert got == want


_spec = st.tuples(
    st.sampled_from([".data", ".ts", ".meta"]),
    st.integers(0, 4),
    st.one_of(st.none(), st.integers(0, 4)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(_spec, min_size=1, max_size=5), min_size=1, max_size=4), st.booleans())
def test_suffix_hash_matches_swift_random(swift_mgr, tmp_path_factory, dirs, old):
    hash_dirs = []
    for spec in dirs:
        files = {_name(ext, n - (10**6 if old else 0), c) for ext, n, c in spec}
        hash_dirs.append(sorted(files))
    _compare_with_swift(swift_mgr, tmp_path_factory.mktemp("s"), hash_dirs)


def test_partition_hashes_match_swift(swift_mgr, tmp_path):
    """Whole-partition get_hashes against Swift's own (same files, two device trees)."""
    from swift.common.storage_policy import POLICIES  # noqa: PLC0415

    layout = {
        "abc": FIXED_CASES["many"],
        "123": FIXED_CASES["ctype-meta"],
        "fff": [[_name(".ts", -(10**6), None)]],  # reclaimable: suffix vanishes
    }
    for root in ("ours", "theirs"):
        for suffix, hash_dirs in layout.items():
            for i, files in enumerate(hash_dirs):
                _touch(
                    tmp_path / root / "sda" / "objects" / "5" / suffix / f"{i:029x}{suffix}", files
                )
    mine = h.get_hashes(str(tmp_path / "ours" / "sda" / "objects" / "5"))
    swift_mgr.devices = str(tmp_path / "theirs")
    _, theirs = swift_mgr._get_hashes("sda", "5", POLICIES[0])
    assert mine == theirs
    assert set(mine) == {"abc", "123"}


def test_rehash_racing_a_put_does_not_hide_the_new_file(mgr, monkeypatch):
    import swiftlite.object.diskfile_writer as writer_mod  # noqa: PLC0415

    df = mgr.get_diskfile("sda", 3, "a", "c", "o")
    put(df, b"x", ts(1))
    mgr.get_hashes("sda", 3)
    real_rename = os.rename

    def rename_after_rehash(src, dst):
        if dst.endswith(".data"):
            # REPLICATE arrives between the writer's invalidation and its rename.
            mgr.get_hashes("sda", 3)
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename_after_rehash)
    put(df, b"y", ts(2))
    monkeypatch.undo()
    del writer_mod
    want = hashlib.md5((ts(2).internal + ".data").encode()).hexdigest()
    assert mgr.get_hashes("sda", 3) == {df.name_hash[-3:]: want}


def test_stale_hashes_temp_files_swept_on_listdir(tmp_path):
    part = tmp_path / "objects" / "0"
    part.mkdir(parents=True)
    stale = part / ".hashes.json.deadbeef"
    fresh = part / ".hashes.json.cafe"
    stale.write_bytes(b"{")
    fresh.write_bytes(b"{")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    assert h.get_hashes(str(part), do_listdir=True) == {}
    assert not stale.exists() and fresh.exists()
