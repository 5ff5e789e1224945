"""Suffix hashes: invalidation, recalculation, reclaim, and Swift's exact values."""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest

from swiftlite.common.timestamp import Timestamp
from swiftlite.object import hashes as h
from swiftlite.object.diskfile import DiskFileManager

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
        assert fh.read() == suffix + "\n"
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
