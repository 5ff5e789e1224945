"""Differential: the same PUT/POST/DELETE sequences through Swift's DiskFile and ours.

Both must leave the same file names, open to the same state (not found /
deleted at T / metadata merged the same way) and hash their suffix the same.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swiftlite.common.timestamp import Timestamp
from swiftlite.object import hashes
from swiftlite.object.diskfile import DiskFileDeleted, DiskFileManager, DiskFileNotExist

BASE = int(time.time()) - 5000

swift_diskfile = pytest.importorskip("swift.obj.diskfile")


@pytest.fixture(scope="module")
def swift_policy():
    from swift.common.storage_policy import POLICIES  # noqa: PLC0415

    return POLICIES[0]


def _swift_mgr(root: str):
    log = logging.getLogger("swift-oracle")
    log.setLevel(logging.CRITICAL)
    return swift_diskfile.DiskFileManager({"devices": root, "mount_check": "false"}, log)


USER_META = [{}, {"X-Object-Meta-Color": "blue"}, {"X-Object-Meta-A": "1", "X-Object-Meta-B": "2"}]
SYSMETA = [{}, {"X-Object-Sysmeta-Thing": "s1"}]
CTYPES = ["text/plain", "image/png", "application/json"]

put_op = st.tuples(
    st.just("put"),
    st.integers(0, 30),
    st.sampled_from([b"", b"abc", b"hello world"]),
    st.sampled_from(CTYPES),
    st.sampled_from(range(len(USER_META))),
    st.sampled_from(range(len(SYSMETA))),
)
post_op = st.tuples(
    st.just("post"),
    st.integers(0, 30),
    st.sampled_from(range(len(USER_META))),
    st.one_of(st.none(), st.sampled_from(CTYPES)),
    st.sampled_from([{}, {"X-Object-Sysmeta-Thing": "from-post"}]),
)
delete_op = st.tuples(st.just("delete"), st.integers(0, 30))


def _ts(n: int) -> str:
    return Timestamp(BASE + n).internal


def _apply(op, ours, theirs) -> None:
    kind, n = op[0], op[1]
    t = _ts(n)
    if kind == "put":
        _, _, body, ctype, um, sm = op
        meta = {
            "X-Timestamp": t,
            "Content-Type": ctype,
            "Content-Length": str(len(body)),
            "ETag": hashlib.md5(body).hexdigest(),
            **USER_META[um],
            **SYSMETA[sm],
        }
        with ours.create(len(body)) as w:
            w.write(body)
            w.put(dict(meta))
        with theirs.create() as w:
            w.write(body)
            w.put(dict(meta))
    elif kind == "post":
        _, _, um, ctype, sm = op
        meta = {"X-Timestamp": t, **USER_META[um], **sm}
        if ctype:
            meta["Content-Type"] = ctype
            meta["Content-Type-Timestamp"] = t
        ours.write_meta(dict(meta))
        theirs.write_metadata(dict(meta))
    else:
        ours.write_tombstone(t)
        theirs.delete(t)


def _state(df, deleted_exc, notexist_exc):
    try:
        df.open()
    except deleted_exc as exc:
        return ("deleted", exc.timestamp.internal)
    except notexist_exc:
        return ("missing",)
    try:
        return (
            "ok",
            dict(df.get_metadata()),
            df.data_timestamp.internal,
            df.timestamp.internal,
            df.content_length,
            df.content_type_timestamp.internal,
        )
    finally:
        # Swift's DiskFile closes through its context manager.
        df.__exit__(None, None, None)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.one_of(put_op, post_op, delete_op), min_size=1, max_size=6))
def test_same_sequences_same_outcome(tmp_path_factory, swift_policy, ops):
    root = tmp_path_factory.mktemp("diff")
    (root / "ours" / "sda").mkdir(parents=True)
    (root / "swift" / "sda").mkdir(parents=True)
    mgr = DiskFileManager(str(root / "ours"), fsync=False, fallocate_reserve="0")
    smgr = _swift_mgr(str(root / "swift"))
    ours = mgr.get_diskfile("sda", 0, "a", "c", "o")
    theirs = smgr.get_diskfile("sda", "0", "a", "c", "o", policy=swift_policy)
    for op in ops:
        _apply(op, ours, theirs)
    assert sorted(os.listdir(ours.datadir)) == sorted(os.listdir(theirs._datadir))
    fresh_ours = mgr.get_diskfile("sda", 0, "a", "c", "o")
    fresh_theirs = smgr.get_diskfile("sda", "0", "a", "c", "o", policy=swift_policy)
    got = _state(fresh_ours, DiskFileDeleted, DiskFileNotExist)
    want = _state(fresh_theirs, swift_diskfile.DiskFileDeleted, swift_diskfile.DiskFileNotExist)
    assert got == want
    suffix = ours.name_hash[-3:]
    mine = hashes.hash_suffix(os.path.join(mgr.partition_path("sda", 0), suffix))
    swifts = smgr._hash_suffix(os.path.dirname(theirs._datadir))
    assert mine == swifts


def test_known_sequence(tmp_path, swift_policy):
    """A readable instance of the property: PUT, ctype POST, plain POST."""
    ops = [
        ("put", 1, b"abc", "text/plain", 1, 1),
        ("post", 2, 2, "image/png", {}),
        ("post", 3, 0, None, {"X-Object-Sysmeta-Thing": "from-post"}),
    ]
    (tmp_path / "ours" / "sda").mkdir(parents=True)
    (tmp_path / "swift" / "sda").mkdir(parents=True)
    mgr = DiskFileManager(str(tmp_path / "ours"), fsync=False, fallocate_reserve="0")
    smgr = _swift_mgr(str(tmp_path / "swift"))
    ours = mgr.get_diskfile("sda", 0, "a", "c", "o")
    theirs = smgr.get_diskfile("sda", "0", "a", "c", "o", policy=swift_policy)
    for op in ops:
        _apply(op, ours, theirs)
    got = _state(mgr.get_diskfile("sda", 0, "a", "c", "o"), DiskFileDeleted, DiskFileNotExist)
    want = _state(
        smgr.get_diskfile("sda", "0", "a", "c", "o", policy=swift_policy),
        swift_diskfile.DiskFileDeleted,
        swift_diskfile.DiskFileNotExist,
    )
    assert got == want
    assert got[0] == "ok"
    meta = got[1]
    assert meta["Content-Type"] == "image/png"
    assert meta["X-Object-Sysmeta-Thing"] == "s1"
    assert "X-Object-Meta-A" not in meta
