"""DiskFile: write paths, open/merge rules, tombstones, quarantine, readers."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from swiftlite.common.hashing import hash_path
from swiftlite.common.timestamp import Timestamp
from swiftlite.object.diskfile import (
    DiskFileCollision,
    DiskFileDeleted,
    DiskFileDeviceUnavailable,
    DiskFileExpired,
    DiskFileManager,
    DiskFileNotExist,
    DiskFileNotOpen,
    DiskFileQuarantined,
)
from swiftlite.object.metadata import CHECKSUM_KEY, read_metadata


@pytest.fixture
def mgr(tmp_path):
    (tmp_path / "sda").mkdir()
    (tmp_path / "sdb").mkdir()
    return DiskFileManager(str(tmp_path), fallocate_reserve="0")


# Recent enough that tombstones are not reclaimable (reclaim_age is a week).
BASE = int(time.time()) - 1000


def ts(n: float) -> Timestamp:
    return Timestamp(BASE + n)


def put(df, body: bytes, t: Timestamp, **extra: str) -> str:
    with df.create(len(body)) as w:
        w.write(body)
        meta = {
            "X-Timestamp": t.internal,
            "Content-Type": "text/plain",
            "ETag": w.etag,
            "Content-Length": str(len(body)),
        }
        meta.update(extra)
        return w.put(meta)


def test_layout_and_roundtrip(mgr, tmp_path):
    df = mgr.get_diskfile("sda", 7, "a", "c", "o", policy_index=2)
    path = put(df, b"hello", ts(1), **{"X-Object-Meta-Color": "blue"})
    h = hash_path("a", "c", "o")
    assert path == f"{tmp_path}/sda/objects-2/7/{h[-3:]}/{h}/{ts(1).internal}.data"
    assert os.listdir(tmp_path / "sda" / "tmp-2") == []
    # Small metadata lives in xattrs: the file holds exactly the body.
    assert os.path.getsize(path) == 5
    assert b'"meta"' in os.getxattr(path, "user.swiftlite.meta")
    df2 = mgr.get_diskfile("sda", 7, "a", "c", "o", policy_index=2)
    with df2.open():
        meta = df2.get_metadata()
        assert meta["name"] == "/a/c/o"
        assert meta["X-Object-Meta-Color"] == "blue"
        assert meta["ETag"] == hashlib.md5(b"hello").hexdigest()
        assert df2.content_length == 5
        assert df2.data_timestamp == ts(1)
        assert df2.timestamp == ts(1)
        assert df2.data_path == path
        with df2.reader() as r:
            assert b"".join(r.iter_range(0, 5)) == b"hello"
            assert r.finish_full_read()
        fd = df2.open_fd()
        assert os.pread(fd, 5, 0) == b"hello"
        os.close(fd)


def test_not_exist_and_not_open(mgr):
    df = mgr.get_diskfile("sda", 0, "a", "c", "nope")
    with pytest.raises(DiskFileNotExist):
        df.open()
    with pytest.raises(DiskFileNotOpen):
        df.get_metadata()
    assert df.newest_timestamp() is None


def test_device_checks(tmp_path):
    (tmp_path / "sda").mkdir()
    mgr = DiskFileManager(str(tmp_path))
    with pytest.raises(DiskFileDeviceUnavailable):
        mgr.get_diskfile("missing", 0, "a", "c", "o")
    with pytest.raises(DiskFileDeviceUnavailable):
        mgr.get_diskfile("..", 0, "a", "c", "o")
    with pytest.raises(DiskFileDeviceUnavailable):
        DiskFileManager(str(tmp_path), mount_check=True).get_diskfile("sda", 0, "a", "c", "o")


def test_overwrite_keeps_only_newest(mgr):
    df = mgr.get_diskfile("sda", 0, "a", "c", "o")
    put(df, b"one", ts(1))
    put(df, b"two", ts(2))
    assert os.listdir(df.datadir) == [ts(2).internal + ".data"]
    with df.open():
        assert df.content_length == 3
        assert df.data_timestamp == ts(2)
    assert df.newest_timestamp() == ts(2)


def test_tombstone(mgr):
    df = mgr.get_diskfile("sda", 0, "a", "c", "o")
    put(df, b"x", ts(1))
    df.write_tombstone(ts(2))
    assert os.listdir(df.datadir) == [ts(2).internal + ".ts"]
    with pytest.raises(DiskFileDeleted) as info:
        df.open()
    assert info.value.timestamp == ts(2)
    assert info.value.metadata["X-Timestamp"] == ts(2).internal
    assert df.newest_timestamp() == ts(2)
    # A tombstone for an absent object is written too.
    df2 = mgr.get_diskfile("sda", 0, "a", "c", "never")
    df2.write_tombstone(ts(3))
    with pytest.raises(DiskFileDeleted):
        df2.open()


def test_fast_post_meta_merge(mgr):
    df = mgr.get_diskfile("sda", 0, "a", "c", "o")
    put(
        df,
        b"abc",
        ts(1),
        **{"X-Object-Meta-A": "1", "X-Object-Sysmeta-S": "s", "X-Static-Large-Object": "True"},
    )
    df.write_meta(
        {
            "X-Timestamp": ts(2).internal,
            "X-Object-Meta-B": "2",
            "X-Object-Sysmeta-S": "evil",
            "ETag": "evil",
            "Content-Type": "ignored",
        }
    )
    with df.open():
        meta = df.get_metadata()
        assert meta["X-Object-Meta-B"] == "2"
        assert "X-Object-Meta-A" not in meta
        assert meta["X-Object-Sysmeta-S"] == "s"
        assert meta["ETag"] == hashlib.md5(b"abc").hexdigest()
        assert meta["X-Static-Large-Object"] == "True"
        assert meta["Content-Type"] == "text/plain"
        assert meta["X-Timestamp"] == ts(2).internal
        assert df.timestamp == ts(2)
        assert df.data_timestamp == ts(1)
        assert df.get_datafile_metadata()["X-Object-Meta-A"] == "1"
        assert "name" not in (df.get_metafile_metadata() or {})


def test_ctype_meta_naming_and_merge(mgr):
    df = mgr.get_diskfile("sda", 0, "a", "c", "o")
    put(df, b"abc", ts(1))
    df.write_meta(
        {
            "X-Timestamp": ts(2).internal,
            "Content-Type": "image/png",
            "Content-Type-Timestamp": ts(2).internal,
            "X-Object-Meta-X": "1",
        }
    )
    names = sorted(os.listdir(df.datadir))
    assert names == [ts(1).internal + ".data", ts(2).internal + "+0.meta"]
    df.write_meta({"X-Timestamp": ts(3).internal, "X-Object-Meta-Y": "2"})
    assert sorted(os.listdir(df.datadir)) == [
        ts(1).internal + ".data",
        ts(2).internal + "+0.meta",
        ts(3).internal + ".meta",
    ]
    with df.open():
        meta = df.get_metadata()
        assert meta["Content-Type"] == "image/png"
        assert meta["X-Object-Meta-Y"] == "2"
        assert "X-Object-Meta-X" not in meta
        assert df.content_type_timestamp == ts(2)


def test_expired(mgr):
    df = mgr.get_diskfile("sda", 0, "a", "c", "o")
    put(df, b"abc", ts(1), **{"X-Delete-At": str(BASE + 100)})
    with df.open(now=BASE + 99):
        pass
    with pytest.raises(DiskFileExpired) as info:
        df.open(now=BASE + 100)
    assert info.value.metadata["X-Delete-At"] == str(BASE + 100)


def test_collision(mgr):
    df = mgr.get_diskfile("sda", 0, "a", "c", "o")
    put(df, b"abc", ts(1))
    other = mgr.get_diskfile("sda", 0, "a", "c", "o")
    other.name = "/a/c/other"
    with pytest.raises(DiskFileCollision):
        other.open()


def _quarantined(tmp_path, dev="sda"):
    qdir = tmp_path / dev / "quarantined" / "objects"
    return sorted(os.listdir(qdir)) if qdir.exists() else []


def test_quarantine_bad_metadata(mgr, tmp_path):
    df = mgr.get_diskfile("sda", 0, "a", "c", "o")
    path = put(df, b"abc", ts(1))
    os.setxattr(path, CHECKSUM_KEY, b"0" * 32)
    with pytest.raises(DiskFileQuarantined):
        df.open()
    assert _quarantined(tmp_path) == [df.name_hash]
    assert not os.path.exists(df.datadir)
    with pytest.raises(DiskFileNotExist):
        df.open()


def test_quarantine_size_mismatch(mgr, tmp_path):
    df = mgr.get_diskfile("sda", 0, "a", "c", "o")
    path = put(df, b"abc", ts(1))
    with open(path, "r+b") as fh:
        fh.truncate(2)
    with pytest.raises(DiskFileQuarantined):
        df.open()
    assert _quarantined(tmp_path) == [df.name_hash]
    # Quarantining again under the same hash gets a unique name.
    put(df, b"abc", ts(2))
    os.truncate(df.datadir + "/" + ts(2).internal + ".data", 1)
    with pytest.raises(DiskFileQuarantined):
        df.open()
    q = _quarantined(tmp_path)
    assert len(q) == 2 and q[0] == df.name_hash and q[1].startswith(df.name_hash + "-")


def test_quarantine_md5_mismatch_after_full_read(mgr, tmp_path):
    df = mgr.get_diskfile("sda", 0, "a", "c", "o")
    path = put(df, b"abcdef", ts(1))
    with open(path, "r+b") as fh:
        fh.write(b"X")
    with df.open():
        with df.reader() as r:
            assert r.read(3) == b"Xbc"
            assert r.read(100) == b"def"
            assert r.read(100) == b""
            assert not r.finish_full_read()
    assert _quarantined(tmp_path) == [df.name_hash]


def test_partial_read_skips_md5(mgr, tmp_path):
    df = mgr.get_diskfile("sda", 0, "a", "c", "o")
    path = put(df, b"abcdef", ts(1))
    with open(path, "r+b") as fh:
        fh.write(b"X")
    with df.open():
        with df.reader() as r:
            assert b"".join(r.iter_range(2, 4)) == b"cd"
            assert r.finish_full_read()
    assert _quarantined(tmp_path) == []


def swift_limit_metadata() -> dict[str, str]:
    """Swift's limits: 90 user items totalling 4096 bytes, 1024-byte name,
    256-byte content type, system fields (same as test_metadata's)."""
    meta = {
        "name": "/a/c/o",
        "Content-Type": "application/x-" + "t" * 242,
        "Content-Length": "5",
        "ETag": hashlib.md5(b"zzzzz").hexdigest(),
        "X-Object-Sysmeta-Slo-Etag": "e" * 32,
        "Content-Disposition": "attachment; filename=" + "f" * 200,
    }
    for i in range(90):
        key = f"k{i:03d}"
        meta["X-Object-Meta-" + key] = "v" * (45 - len(key) + (1 if i < 46 else 0))
    assert (
        sum(len(k) - 14 + len(v) for k, v in meta.items() if k.startswith("X-Object-Meta-")) == 4096
    )
    return meta


def test_large_metadata_object(mgr):
    meta = swift_limit_metadata()
    obj = "o" * (1024 - len("/a/c/"))
    df = mgr.get_diskfile("sda", 0, "a", "c", obj)
    meta["name"] = df.name
    assert len(df.name) == 1024
    body = b"z" * 5
    meta["X-Timestamp"] = ts(1).internal
    with df.create(5) as w:
        w.write(body)
        path = w.put(meta)
    assert os.path.getsize(path) > 5
    with df.open():
        got = df.get_metadata()
        assert df.content_length == 5
        for key, value in meta.items():
            assert got[key] == value
        with df.reader() as r:
            assert r.read(1 << 20) == body
            assert r.read(1) == b""
            assert r.finish_full_read()
    assert read_metadata(path)["X-Object-Meta-k089"] == meta["X-Object-Meta-k089"]


def test_concurrent_writers_newest_wins(mgr):
    import random  # noqa: PLC0415
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    stamps = [ts(1 + i / 100) for i in range(24)]
    random.Random(7).shuffle(stamps)

    def write(t: Timestamp) -> None:
        df = mgr.get_diskfile("sda", 0, "a", "c", "race")
        body = t.internal.encode() * 2000
        if int(t.raw) % 5 == 0:
            df.write_tombstone(t)
        else:
            put(df, body, t)

    for _round in range(3):
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(write, stamps))
    newest = max(stamps)
    df = mgr.get_diskfile("sda", 0, "a", "c", "race")
    names = os.listdir(df.datadir)
    assert len(names) == 1 and names[0].startswith(newest.internal)
    assert os.listdir(os.path.join(mgr.devices_root, "sda", "tmp")) == []
    if names[0].endswith(".data"):
        with df.open(), df.reader() as r:
            assert r.read(1 << 20) == newest.internal.encode() * 2000
            assert r.finish_full_read()


def test_open_by_hash(mgr):
    df = mgr.get_diskfile("sda", 0, "a", "c", "o")
    put(df, b"abc", ts(1))
    byhash = mgr.get_diskfile_from_hash("sda", 0, df.name_hash)
    with byhash.open():
        assert byhash.name == "/a/c/o"
        assert byhash.content_length == 3
    # A file whose stored name does not hash to its dir is quarantined.
    wrong = "0" * 29 + df.name_hash[-3:]
    os.rename(df.datadir, os.path.join(df.suffix_path, wrong))
    with pytest.raises(DiskFileQuarantined):
        mgr.get_diskfile_from_hash("sda", 0, wrong).open()


def test_big_metadata_on_meta_and_tombstone(mgr):
    df = mgr.get_diskfile("sda", 0, "a", "c", "o")
    put(df, b"abc", ts(1))
    big = {f"X-Object-Meta-K{i:02d}": "v" * 44 for i in range(90)}
    df.write_meta({"X-Timestamp": ts(2).internal, **big})
    with df.open():
        assert df.get_metadata()["X-Object-Meta-K89"] == "v" * 44
        assert df.content_length == 3
    df.write_tombstone(ts(3), extra_metadata=big)
    with pytest.raises(DiskFileDeleted) as info:
        df.open()
    assert info.value.metadata["X-Object-Meta-K00"] == "v" * 44


def test_corrupt_tombstone_is_quarantined(mgr, tmp_path):
    df = mgr.get_diskfile("sda", 0, "a", "c", "o")
    df.write_tombstone(ts(1))
    os.setxattr(os.path.join(df.datadir, ts(1).internal + ".ts"), CHECKSUM_KEY, b"x" * 32)
    with pytest.raises(DiskFileQuarantined):
        df.open()
    assert _quarantined(tmp_path) == [df.name_hash]


def test_hash_dir_is_a_file(mgr, tmp_path):
    df = mgr.get_diskfile("sda", 0, "a", "c", "o")
    os.makedirs(df.suffix_path)
    with open(df.datadir, "wb") as fh:
        fh.write(b"oops")
    with pytest.raises(DiskFileQuarantined):
        df.open()
    assert _quarantined(tmp_path) == [df.name_hash]


@pytest.mark.parametrize(
    ("field", "value"),
    [("Content-Length", "abc"), ("X-Delete-At", "soon"), ("Content-Length", None), ("name", None)],
)
def test_bad_system_metadata_quarantines(mgr, tmp_path, field, value):
    from swiftlite.object.metadata import write_metadata  # noqa: PLC0415

    df = mgr.get_diskfile("sda", 0, "a", "c", "o")
    path = put(df, b"abc", ts(1))
    meta = read_metadata(path)
    if value is None:
        del meta[field]
    else:
        meta[field] = value
    fd = os.open(path, os.O_RDWR)
    write_metadata(fd, meta)
    os.close(fd)
    with pytest.raises(DiskFileQuarantined):
        df.open()
    assert _quarantined(tmp_path) == [df.name_hash]


def test_paths_helpers(mgr, tmp_path):
    h = hash_path("a", "c", "o")
    t = ts(1)
    assert mgr.async_pending_path("sda", h, t, policy_index=1) == (
        f"{tmp_path}/sda/async_pending-1/{h[-3:]}/{h}-{t.internal}"
    )
    assert mgr.partition_path("sda", 9) == f"{tmp_path}/sda/objects/9"


def test_no_fsync_mode_still_writes(tmp_path, monkeypatch):
    (tmp_path / "sda").mkdir()
    mgr = DiskFileManager(str(tmp_path), fsync=False, fallocate_reserve="0")

    def no(*a):
        raise AssertionError("fsync called")

    monkeypatch.setattr(os, "fsync", no)
    df = mgr.get_diskfile("sda", 0, "a", "c", "o")
    put(df, b"abc", ts(1))
    monkeypatch.undo()
    with df.open():
        assert df.content_length == 3


def test_writer_abort_and_context(mgr, tmp_path):
    df = mgr.get_diskfile("sda", 0, "a", "c", "o")
    with df.create(10) as w:
        w.write(b"partial")
    # Leaving the block without put() removed the temp file.
    assert os.listdir(tmp_path / "sda" / "tmp") == []
    w = df.create(None)
    w.write(b"x")
    w.abort()
    w.abort()
    assert os.listdir(tmp_path / "sda" / "tmp") == []
    with pytest.raises(DiskFileNotExist):
        df.open()


def test_put_refuses_content_length_mismatch(mgr, tmp_path):
    from swiftlite.object.diskfile import DiskFileError  # noqa: PLC0415

    df = mgr.get_diskfile("sda", 0, "a", "c", "o")
    w = df.create(5)
    w.write(b"abc")
    with pytest.raises(DiskFileError):
        w.put({"X-Timestamp": ts(1).internal, "Content-Length": "5"})
    assert os.listdir(tmp_path / "sda" / "tmp") == []
    with pytest.raises(DiskFileNotExist):
        df.open()


def test_receiver_writes_by_hash_with_senders_name(mgr, tmp_path):
    from swiftlite.object.diskfile import DiskFileError  # noqa: PLC0415

    src = mgr.get_diskfile("sda", 0, "a", "c", "o")
    path = put(src, b"abc", ts(1))
    meta = read_metadata(path)
    dst = mgr.get_diskfile_from_hash("sdb", 0, src.name_hash)
    with dst.create(3) as w:
        w.write(b"abc")
        w.put(meta)
    with dst.open():
        assert dst.name == "/a/c/o"
        assert dst.get_metadata() == meta
    # A name that does not hash to the dir is refused, leaving nothing.
    other = mgr.get_diskfile_from_hash("sdb", 0, "f" * 29 + src.name_hash[-3:])
    w = other.create(3)
    w.write(b"abc")
    with pytest.raises(DiskFileError):
        w.put(meta)
    assert os.listdir(tmp_path / "sdb" / "tmp") == []


def test_verify_file(mgr):
    from swiftlite.object.diskfile import DiskFileBadMetadata, verify_file  # noqa: PLC0415

    df = mgr.get_diskfile("sda", 0, "a", "c", "o")
    path = put(df, b"abc", ts(1))
    assert verify_file(path)["name"] == "/a/c/o"
    df.write_meta({"X-Timestamp": ts(2).internal})
    assert verify_file(os.path.join(df.datadir, ts(2).internal + ".meta"))["name"] == "/a/c/o"
    os.truncate(path, 2)
    with pytest.raises(DiskFileBadMetadata):
        verify_file(path)
    df.write_tombstone(ts(3))
    tomb = os.path.join(df.datadir, ts(3).internal + ".ts")
    assert verify_file(tomb)["X-Timestamp"] == ts(3).internal
    moved = os.path.join(df.suffix_path, "0" * 29 + df.name_hash[-3:])
    os.makedirs(moved)
    os.rename(tomb, os.path.join(moved, ts(3).internal + ".ts"))
    with pytest.raises(DiskFileBadMetadata):
        verify_file(os.path.join(moved, ts(3).internal + ".ts"))


def test_yield_hashes(mgr):
    a = mgr.get_diskfile("sda", 4, "a", "c", "o1")
    b = mgr.get_diskfile("sda", 4, "a", "c", "o2")
    put(a, b"1", ts(1))
    a.write_meta({"X-Timestamp": ts(2).internal})
    b.write_tombstone(ts(3))
    got = {h: files for h, files in mgr.yield_hashes("sda", 4)}
    assert set(got) == {a.name_hash, b.name_hash}
    assert got[a.name_hash].data is not None and got[a.name_hash].meta is not None
    assert got[b.name_hash].ts is not None and got[b.name_hash].data is None
    only = list(mgr.yield_hashes("sda", 4, suffixes=[a.name_hash[-3:]]))
    assert [h for h, _ in only] == sorted(
        {a.name_hash} | ({b.name_hash} if b.name_hash[-3:] == a.name_hash[-3:] else set())
    )
    assert list(mgr.yield_hashes("sda", 99)) == []


def test_open_relists_when_meta_vanishes(mgr, monkeypatch):
    import swiftlite.object.diskfile as dfmod  # noqa: PLC0415

    df = mgr.get_diskfile("sda", 0, "a", "c", "o")
    put(df, b"abc", ts(1))
    df.write_meta({"X-Timestamp": ts(2).internal, "X-Object-Meta-A": "old"})
    real = dfmod.read_metadata_and_length
    state = {"raced": False}

    def racing(source):
        if isinstance(source, str) and source.endswith(".meta") and not state["raced"]:
            state["raced"] = True
            # A newer POST lands and cleans up the .meta we were about to read.
            df.write_meta({"X-Timestamp": ts(3).internal, "X-Object-Meta-A": "new"})
        return real(source)

    monkeypatch.setattr(dfmod, "read_metadata_and_length", racing)
    with df.open():
        assert df.get_metadata()["X-Object-Meta-A"] == "new"


def test_suffix_path_is_a_file_gives_not_exist_not_500(mgr):
    df = mgr.get_diskfile("sda", 0, "a", "c", "o")
    os.makedirs(df.partition_path)
    with open(df.suffix_path, "wb") as fh:
        fh.write(b"junk")
    with pytest.raises(DiskFileNotExist):
        df.open()


@pytest.mark.parametrize("part", ["..", "1/../2", "-1", "", "\u0663"])
def test_bad_partition_refused(mgr, part):
    with pytest.raises(ValueError):
        mgr.get_diskfile("sda", part, "a", "c", "o")
    with pytest.raises(ValueError):
        mgr.partition_path("sda", part)
