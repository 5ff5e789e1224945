"""Low-level, durability-ordered file operations used by the diskfile.

Everything here blocks; the object server calls it from the device's own
thread pool (DeviceManager.run), never from the event loop.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os

from swiftlite.object.diskfile_exceptions import DiskFileNoSpace

_FALLOC_FL_KEEP_SIZE = 1
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)

_libc: ctypes.CDLL | None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    _fallocate = _libc.fallocate
    _fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    _fallocate.restype = ctypes.c_int
except (OSError, AttributeError):  # pragma: no cover - non-glibc platforms
    _libc = None


def fallocate(fd: int, size: int) -> None:
    """Reserve ``size`` bytes without changing the file size (KEEP_SIZE).

    KEEP_SIZE matters: ``st_size`` must keep counting only written bytes,
    because the metadata tail and the size check rely on it. Filesystems
    without fallocate are tolerated; ENOSPC/EDQUOT raise DiskFileNoSpace.
    """
    if size <= 0 or _libc is None:
        return
    if _fallocate(fd, _FALLOC_FL_KEEP_SIZE, 0, size) != 0:
        err = ctypes.get_errno()
        if err in _NO_SPACE:
            raise DiskFileNoSpace(f"fallocate of {size} bytes failed")
        if err in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return
        raise OSError(err, os.strerror(err))


def parse_reserve(value: str | int | float) -> tuple[float, bool]:
    """``fallocate_reserve``: ``"1%"`` -> (1.0, True); ``"1073741824"`` -> (bytes, False)."""
    if isinstance(value, int | float):
        return float(value), False
    text = value.strip()
    if text.endswith("%"):
        return float(text[:-1]), True
    return float(text), False


def has_space_for(fd: int, size: int, reserve: float, is_percent: bool) -> bool:
    """Whether writing ``size`` more bytes keeps free space above the reserve."""
    if reserve <= 0:
        return True
    st = os.fstatvfs(fd)
    if is_percent:
        if st.f_blocks == 0:
            return True
        free_blocks = st.f_bavail - (size + st.f_frsize - 1) // st.f_frsize
        return free_blocks * 100.0 / st.f_blocks >= reserve
    return st.f_bavail * st.f_frsize - size >= reserve


def fsync_dir(path: str) -> None:
    """fsync a directory so a rename/creation inside it is durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs_count(path: str) -> list[str]:
    """``mkdir -p`` that returns the directories it created, outermost first.

    The caller fsyncs each one's parent, so a new hash dir survives a crash
    together with the file renamed into it.
    """
    try:
        os.mkdir(path)
    except FileExistsError:
        return []
    except FileNotFoundError:
        created = makedirs_count(os.path.dirname(path))
        try:
            os.mkdir(path)
        except FileExistsError:
            return created
        return [*created, path]
    return [path]


def write_all(fd: int, data: bytes | bytearray | memoryview) -> int:
    view = memoryview(data)
    total = len(view)
    while view:
        view = view[os.write(fd, view) :]
    return total
