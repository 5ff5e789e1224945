"""Metadata codec: inline xattrs, chunking, tail overflow, checksums, ENOSPC."""

from __future__ import annotations

import errno
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swiftlite.object import metadata as md
from swiftlite.object.diskfile_exceptions import DiskFileBadMetadata, DiskFileNoSpace


def _file(tmp_path, data: bytes = b"") -> tuple[str, int]:
    path = str(tmp_path / "obj")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    if data:
        os.write(fd, data)
    return path, fd


def swift_limit_metadata() -> dict[str, str]:
    """Metadata at Swift's limits: 90 user items, 4096 bytes of user metadata,
    a 1024-byte name, a 256-byte content type, plus system fields."""
    meta: dict[str, str] = {
        "name": "/" + "a" * 200 + "/" + "c" * 256 + "/" + "o" * (1024 - 459),
        "X-Timestamp": "1700000000.12345",
        "Content-Type": "application/x-" + "t" * 242,
        "Content-Length": "5",
        "ETag": "5a105e8b9d40e1329780d62ea2265d8a",
        "X-Object-Sysmeta-Slo-Etag": "e" * 32,
        "Content-Disposition": "attachment; filename=" + "f" * 200,
        "X-Delete-At": "9999999999",
    }
    # 90 items whose name+value total exactly 4096 bytes (Swift counts the
    # part after X-Object-Meta-).
    budget = 4096
    for i in range(90):
        key = f"k{i:03d}"
        left = 90 - i
        value_len = (budget // left) - len(key)
        value = "v" * value_len
        budget -= len(key) + value_len
        meta["X-Object-Meta-" + key] = value
    assert budget == 0
    assert len(meta["name"]) == 1024
    return meta


def test_small_roundtrip_is_inline(tmp_path):
    path, fd = _file(tmp_path, b"hello")
    meta = {"name": "/a/c/o", "X-Timestamp": "1.00000", "Content-Length": 5}
    md.write_metadata(fd, meta)
    assert md.read_metadata(fd) == {
        "name": "/a/c/o",
        "X-Timestamp": "1.00000",
        "Content-Length": "5",
    }
    assert md.read_metadata(path)["name"] == "/a/c/o"
    doc = json.loads(os.getxattr(fd, md.METADATA_KEY))
    assert doc["v"] == 1 and "meta" in doc
    assert os.fstat(fd).st_size == 5
    os.close(fd)


def test_unicode_and_surrogates_roundtrip(tmp_path):
    _, fd = _file(tmp_path)
    meta = {
        "name": "/a/c/\u00e9\u2603",
        "X-Object-Meta-Bin": "\udcff\udc80x",
        "X-Object-Meta-\u00fc": "\u4e2d",
    }
    md.write_metadata(fd, meta)
    assert md.read_metadata(fd) == meta
    os.close(fd)


def test_swift_limits_roundtrip_on_this_filesystem(tmp_path):
    data = b"world"
    path, fd = _file(tmp_path, data)
    meta = swift_limit_metadata()
    md.write_metadata(fd, meta, data_end=len(data))
    os.close(fd)
    got, length = md.read_metadata_and_length(path)
    assert got == meta
    assert length == len(data)
    with open(path, "rb") as fh:
        assert fh.read(length) == data
    # It really did not fit inline: the xattr holds only a tail pointer.
    assert b'"tail"' in os.getxattr(path, md.METADATA_KEY)


def test_inline_enospc_falls_back_to_tail(tmp_path, monkeypatch):
    path, fd = _file(tmp_path, b"abc")
    real = os.setxattr

    def fake(target, name, value, *a):
        if name == md.METADATA_KEY and b'"meta"' in value:
            raise OSError(errno.ENOSPC, "xattr block full")
        return real(target, name, value, *a)

    monkeypatch.setattr(os, "setxattr", fake)
    md.write_metadata(fd, {"name": "/a/c/o"}, data_end=3)
    monkeypatch.undo()
    assert md.read_metadata_and_length(path) == ({"name": "/a/c/o"}, 3)
    os.close(fd)


def test_any_chunking_is_readable(tmp_path):
    _, fd = _file(tmp_path)
    meta = {"name": "/a/c/o", "X-Object-Meta-Big": "x" * 900}
    md.write_metadata(fd, meta, chunk_size=100)
    assert os.getxattr(fd, md.METADATA_KEY + "5")
    assert md.read_metadata(fd) == meta
    # Rewriting with fewer chunks drops the stale continuation chunks.
    md.write_metadata(fd, {"name": "/a/c/o"})
    with pytest.raises(OSError):
        os.getxattr(fd, md.METADATA_KEY + "1")
    assert md.read_metadata(fd) == {"name": "/a/c/o"}
    os.close(fd)


def test_rewrite_tail_to_inline_truncates(tmp_path):
    path, fd = _file(tmp_path, b"data")
    md.write_metadata(fd, swift_limit_metadata(), data_end=4)
    assert os.fstat(fd).st_size > 4
    md.write_metadata(fd, {"name": "/a/c/o"})
    assert os.fstat(fd).st_size == 4
    assert md.read_metadata_and_length(path) == ({"name": "/a/c/o"}, 4)
    os.close(fd)


@pytest.mark.parametrize(
    "corrupt",
    ["checksum", "garbage", "version", "missing", "tail_pointer", "tail_bytes"],
)
def test_bad_metadata_raises(tmp_path, corrupt):
    path, fd = _file(tmp_path, b"12345")
    big = corrupt.startswith("tail")
    md.write_metadata(fd, swift_limit_metadata() if big else {"name": "/a/c/o"}, data_end=5)
    if corrupt == "checksum":
        os.setxattr(fd, md.CHECKSUM_KEY, b"0" * 32)
    elif corrupt == "garbage":
        blob = b"\x80not json"
        os.setxattr(fd, md.METADATA_KEY, blob)
        os.setxattr(fd, md.CHECKSUM_KEY, md._checksum(blob))
    elif corrupt == "version":
        blob = b'{"v":99,"meta":{}}'
        os.setxattr(fd, md.METADATA_KEY, blob)
        os.setxattr(fd, md.CHECKSUM_KEY, md._checksum(blob))
    elif corrupt == "missing":
        os.removexattr(fd, md.METADATA_KEY)
    elif corrupt == "tail_pointer":
        os.setxattr(fd, md.METADATA_KEY, b'{"v":1,"tail":[2,7]}')
    elif corrupt == "tail_bytes":
        os.pwrite(fd, b"X", 10)
    with pytest.raises(DiskFileBadMetadata):
        md.read_metadata(path)
    os.close(fd)


def test_non_str_values_rejected(tmp_path):
    _, fd = _file(tmp_path)
    with pytest.raises(TypeError):
        md.write_metadata(fd, {"name": ["x"]})
    os.close(fd)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
@pytest.mark.parametrize("big", [False, True])
def test_enospc_becomes_disk_file_no_space(tmp_path, monkeypatch, code, big):
    _, fd = _file(tmp_path, b"abc")

    def fail(*a, **kw):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "setxattr", fail)
    if big:
        monkeypatch.setattr(os, "pwrite", fail)
    with pytest.raises(DiskFileNoSpace):
        md.write_metadata(fd, swift_limit_metadata() if big else {"name": "/a/c/o"}, data_end=3)
    os.close(fd)


def _fs_type(path: str) -> str:
    best, kind = "", ""
    with open("/proc/mounts") as fh:
        for line in fh:
            _dev, mnt, fstype = line.split()[:3]
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, kind = mnt, fstype
    return kind


def test_real_xattr_exhaustion_falls_back_to_tail(tmp_path):
    """No mocks: ask for inline storage of Swift-limit metadata; where the
    filesystem refuses (ext4's ~4 KiB xattr space) the tail takes it."""
    path, fd = _file(tmp_path, b"body")
    meta = swift_limit_metadata()
    md.write_metadata(fd, meta, data_end=4, inline_limit=1 << 20)
    os.close(fd)
    assert md.read_metadata_and_length(path) == (meta, 4)
    if _fs_type(str(tmp_path)) == "ext4":
        assert b'"tail"' in os.getxattr(path, md.METADATA_KEY)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    meta=st.dictionaries(st.text(max_size=40), st.text(max_size=300), max_size=30),
    data=st.binary(max_size=64),
    chunk=st.sampled_from([7, 254, 65536]),
    limit=st.sampled_from([0, 100, md.INLINE_LIMIT]),
    rewrite=st.booleans(),
)
def test_roundtrip_property(tmp_path, meta, data, chunk, limit, rewrite):
    path = str(tmp_path / "prop")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for name in os.listxattr(fd):
            os.removexattr(fd, name)
        os.write(fd, data)
        if rewrite:
            # An earlier, different record must not leak into the new one.
            md.write_metadata(fd, {"old": "x" * 5000}, data_end=len(data))
        md.write_metadata(fd, meta, data_end=len(data), chunk_size=chunk, inline_limit=limit)
        assert md.read_metadata_and_length(fd) == (meta, len(data))
        assert os.pread(fd, len(data), 0) == data
    finally:
        os.close(fd)


def test_partial_inline_record_is_freed_before_tail(tmp_path):
    """Many small chunks exhaust ext4's xattr block midway; the fallback must
    first drop the chunks already written or the pointer itself won't fit."""
    path, fd = _file(tmp_path, b"abc")
    meta = {"name": "/a/c/o", "X-Object-Meta-Big": "b" * 2800}
    md.write_metadata(fd, meta, data_end=3, chunk_size=7)
    assert md.read_metadata_and_length(fd) == (meta, 3)
    if _fs_type(str(tmp_path)) == "ext4":
        assert b'"tail"' in os.getxattr(fd, md.METADATA_KEY)
        assert md.METADATA_KEY + "1" not in os.listxattr(fd)
    os.close(fd)


def test_checksum_enospc_falls_back_too(tmp_path, monkeypatch):
    path, fd = _file(tmp_path, b"abc")
    real = os.setxattr
    state = {"failed": False}

    def fake(target, name, value, *a):
        if name == md.CHECKSUM_KEY and not state["failed"]:
            state["failed"] = True
            raise OSError(errno.ENOSPC, "xattr block full")
        return real(target, name, value, *a)

    monkeypatch.setattr(os, "setxattr", fake)
    md.write_metadata(fd, {"name": "/a/c/o"}, data_end=3)
    monkeypatch.undo()
    assert state["failed"]
    assert md.read_metadata_and_length(path) == ({"name": "/a/c/o"}, 3)
    os.close(fd)
