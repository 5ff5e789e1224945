"""Write ordering, crashes between steps, ENOSPC anywhere, fallocate_reserve."""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest

import swiftlite.object.diskfile_writer as dfmod
from swiftlite.common.hashing import get_hash_path_secrets
from swiftlite.common.timestamp import Timestamp
from swiftlite.object import diskfile_io
from swiftlite.object.diskfile import DiskFileManager, DiskFileNoSpace, DiskFileNotExist

BASE = int(time.time()) - 1000
BIG_META = {f"X-Object-Meta-K{i:02d}": "v" * 60 for i in range(80)}  # forces the tail path


def ts(n: float) -> Timestamp:
    return Timestamp(BASE + n)


@pytest.fixture
def mgr(tmp_path):
    (tmp_path / "sda").mkdir()
    return DiskFileManager(str(tmp_path), fallocate_reserve="0")


def _put(df, body: bytes, t: Timestamp, extra=None) -> str:
    w = df.create(len(body))
    w.write(body)
    meta = {"X-Timestamp": t.internal, "Content-Type": "text/plain"}
    meta.update(extra or {})
    return w.put(meta)


def _visible(df) -> tuple[bytes, str] | None:
    """The object's body and timestamp as a reader would see them, or None."""
    try:
        df.open()
    except DiskFileNotExist:
        return None
    with df:
        with df.reader() as r:
            body = b"".join(r.iter_range(0, df.content_length))
            assert r.finish_full_read(), "a visible object must be whole"
        return body, df.data_timestamp.internal


def _tmp_files(tmp_path) -> list[str]:
    d = tmp_path / "sda" / "tmp"
    return os.listdir(d) if d.exists() else []


# -- ordering ---------------------------------------------------------------------


def test_durability_order(mgr, monkeypatch):
    df = mgr.get_diskfile("sda", 1, "a", "c", "o")
    events: list[str] = []
    real_write, real_fsync, real_rename = os.write, os.fsync, os.rename
    real_setxattr, real_fsync_dir = os.setxattr, diskfile_io.fsync_dir

    def write(fd, data):
        events.append("write")
        return real_write(fd, data)

    def fsync(fd):
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        events.append(f"fsync-{kind}")
        return real_fsync(fd)

    def rename(src, dst):
        events.append("rename")
        return real_rename(src, dst)

    def setxattr(*a):
        events.append("xattr")
        return real_setxattr(*a)

    def fsync_dir(path):
        events.append(f"fsync_dir:{os.path.relpath(path, df.device_path)}")
        return real_fsync_dir(path)

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "setxattr", setxattr)
    monkeypatch.setattr(diskfile_io, "fsync_dir", fsync_dir)
    _put(df, b"payload", ts(1))
    monkeypatch.undo()
    first = events.index
    # data -> metadata -> fsync(file) -> rename -> fsync(hash dir) -> parents
    assert first("write") < first("xattr") < first("fsync-file") < first("rename")
    after = events[first("rename") :]
    rel_hash = os.path.relpath(df.datadir, df.device_path)
    assert after[1] == f"fsync_dir:{rel_hash}"
    # The hash, suffix and partition dirs were new: each parent is fsynced too.
    assert f"fsync_dir:{os.path.dirname(rel_hash)}" in after
    assert f"fsync_dir:{os.path.dirname(os.path.dirname(rel_hash))}" in after
    assert "fsync_dir:objects" in after


# -- crashes between steps (in-process) ------------------------------------------


class Crash(BaseException):
    """Stands for the process dying: no cleanup code handles a BaseException."""


CRASH_POINTS = ["data", "xattr", "tail", "fsync", "invalidate", "rename", "dir_fsync"]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_crash_between_steps_never_shows_partial_object(mgr, monkeypatch, tmp_path, point):
    df = mgr.get_diskfile("sda", 1, "a", "c", "o")
    _put(df, b"old version", ts(1))
    new_body = b"new" * 1000
    extra = BIG_META if point == "tail" else None

    w = df.create(len(new_body))

    def crash(*a, **kw):
        raise Crash(point)

    with pytest.raises(Crash):
        if point == "data":
            # Half the body is in the temp file when the process dies.
            w.write(new_body[:1000])
            monkeypatch.setattr(os, "write", crash)
            w.write(new_body[1000:])
        else:
            w.write(new_body)
            target, name = {
                "xattr": (os, "setxattr"),
                "tail": (os, "pwrite"),
                "fsync": (os, "fsync"),
                "invalidate": (dfmod, "invalidate_hash"),
                "rename": (os, "rename"),
                "dir_fsync": (diskfile_io, "fsync_dir"),
            }[point]
            monkeypatch.setattr(target, name, crash)
            w.put({"X-Timestamp": ts(2).internal, "Content-Type": "x", **(extra or {})})
    monkeypatch.undo()

    seen = _visible(mgr.get_diskfile("sda", 1, "a", "c", "o"))
    if point == "dir_fsync":
        # The rename happened: the new object is visible, and it is whole.
        assert seen == (new_body, ts(2).internal)
    else:
        assert seen == (b"old version", ts(1).internal)
        # The crash left its temp file; the periodic sweep removes it.
        assert len(_tmp_files(tmp_path)) == 1
        assert mgr.cleanup_temp_files("sda", max_age=3600) == 0
        assert mgr.cleanup_temp_files("sda", max_age=-1) == 1
        assert _tmp_files(tmp_path) == []


# -- a real process killed with SIGKILL mid-PUT ------------------------------------

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from swiftlite.object import diskfile_io
    from swiftlite.object.diskfile import DiskFileManager

    from swiftlite.common.hashing import set_hash_path_secrets

    root, point, t = sys.argv[1], sys.argv[2], sys.argv[3]
    # The parent's secrets: other tests in its process may have set some.
    set_hash_path_secrets(bytes.fromhex(sys.argv[4]), bytes.fromhex(sys.argv[5]))
    mgr = DiskFileManager(root, fallocate_reserve="0")
    df = mgr.get_diskfile("sda", 1, "a", "c", "o")
    def die(*a, **kw):
        os.kill(os.getpid(), signal.SIGKILL)
    w = df.create(1 << 20)
    w.write(b"n" * (1 << 19))
    if point == "data":
        die()
    w.write(b"n" * (1 << 19))
    if point == "fsync":
        os.fsync = die
    elif point == "rename":
        os.rename = die
    elif point == "dir_fsync":
        diskfile_io.fsync_dir = die
    w.put({"X-Timestamp": t, "Content-Type": "x"})
    """
)


@pytest.mark.parametrize("point", ["data", "fsync", "rename", "dir_fsync"])
def test_sigkill_mid_put(mgr, tmp_path, point):
    df = mgr.get_diskfile("sda", 1, "a", "c", "o")
    _put(df, b"old", ts(1))
    proc = subprocess.run(
        [
            sys.executable, "-c", CHILD, str(tmp_path), point, ts(2).internal,
            *(secret.hex() for secret in get_hash_path_secrets()),
        ],  # fmt: skip
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    seen = _visible(mgr.get_diskfile("sda", 1, "a", "c", "o"))
    if point == "dir_fsync":
        assert seen == (b"n" * (1 << 20), ts(2).internal)
    else:
        assert seen == (b"old", ts(1).internal)
        assert mgr.cleanup_temp_files("sda", max_age=-1) == 1
    assert _tmp_files(tmp_path) == []


# -- ENOSPC anywhere: DiskFileNoSpace, nothing left behind ------------------------


def _enospc(*a, **kw):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _edquot(*a, **kw):
    raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))


ENOSPC_POINTS = ["create", "fallocate", "write", "setxattr", "tail", "fsync", "mkdir", "rename"]


@pytest.mark.parametrize("point", ENOSPC_POINTS)
@pytest.mark.parametrize("fail", [_enospc, _edquot])
def test_enospc_anywhere(mgr, monkeypatch, tmp_path, point, fail):
    df = mgr.get_diskfile("sda", 1, "a", "c", "o")
    body = b"x" * 4096
    extra = BIG_META if point == "tail" else {}
    other = mgr.get_diskfile("sda", 1, "a", "c", "other")

    def run() -> None:
        w = df.create(len(body))
        if point == "write":
            monkeypatch.setattr(os, "write", fail)
        w.write(body)
        if point in ("setxattr", "tail", "fsync", "mkdir", "rename"):
            target = {"setxattr": "setxattr", "tail": "pwrite", "fsync": "fsync",
                      "mkdir": "mkdir", "rename": "rename"}[point]  # fmt: skip
            monkeypatch.setattr(os, target, fail)
        w.put({"X-Timestamp": ts(1).internal, **extra})

    if point == "create":
        real_open = os.open

        def open_(path, flags, *a, **kw):
            if flags & os.O_CREAT and "/tmp/" in path:
                fail()
            return real_open(path, flags, *a, **kw)

        monkeypatch.setattr(os, "open", open_)
    elif point == "fallocate":
        code = errno.ENOSPC if fail is _enospc else errno.EDQUOT

        def fallocate(*a):
            ctypes.set_errno(code)
            return -1

        monkeypatch.setattr(diskfile_io, "_fallocate", fallocate)
    if point == "mkdir":
        # Another object's dirs exist: only this object's new hash dir fails.
        _put(other, b"y", ts(0))
    with pytest.raises(DiskFileNoSpace):
        run()
    monkeypatch.undo()
    assert _tmp_files(tmp_path) == []
    with pytest.raises(DiskFileNotExist):
        df.open()
    assert not os.path.exists(df.datadir)


def test_enospc_keeps_previous_version(mgr, monkeypatch, tmp_path):
    df = mgr.get_diskfile("sda", 1, "a", "c", "o")
    _put(df, b"keep me", ts(1))
    w = df.create(10)
    w.write(b"0123456789")
    monkeypatch.setattr(os, "setxattr", _enospc)
    with pytest.raises(DiskFileNoSpace):
        w.put({"X-Timestamp": ts(2).internal})
    monkeypatch.undo()
    assert _visible(df) == (b"keep me", ts(1).internal)
    assert _tmp_files(tmp_path) == []


# -- fallocate_reserve ------------------------------------------------------------


class FakeStatvfs:
    def __init__(self, blocks: int, avail: int, frsize: int = 4096) -> None:
        self.f_blocks, self.f_bavail, self.f_frsize = blocks, avail, frsize


@pytest.mark.parametrize(
    ("reserve", "avail_blocks", "size", "ok"),
    [
        ("1%", 2000, 0, True),  # 2% free
        ("1%", 999, 0, False),  # < 1% free
        ("1%", 1100, 200 * 4096, False),  # would drop below 1% after the write
        ("0", 0, 10, True),  # disabled
        (str(10 * 4096), 11, 4096, True),
        (str(10 * 4096), 11, 2 * 4096, False),
    ],
)
def test_fallocate_reserve(tmp_path, monkeypatch, reserve, avail_blocks, size, ok):
    (tmp_path / "sda").mkdir()
    mgr = DiskFileManager(str(tmp_path), fallocate_reserve=reserve)
    monkeypatch.setattr(os, "fstatvfs", lambda fd: FakeStatvfs(100000, avail_blocks))
    df = mgr.get_diskfile("sda", 1, "a", "c", "o")
    if ok:
        df.create(size).abort()
    else:
        with pytest.raises(DiskFileNoSpace):
            df.create(size)
        if size == 0:
            with pytest.raises(DiskFileNoSpace):
                df.write_meta({"X-Timestamp": ts(1).internal})
    # Tombstones bypass the reserve, as in Swift.
    df.write_tombstone(ts(2))
    assert _tmp_files(tmp_path) == []
