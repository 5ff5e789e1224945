import logging
import os
import time

from swiftlite.common.devices import DeviceManager
from swiftlite.object.diskfile import DiskFileManager
from swiftlite.object.tmp_sweep import sweep_all


def make(path, age):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    t = time.time() - age
    os.utime(path, (t, t))
    return path


async def test_sweep_all_removes_only_old_temp_files(tmp_path):
    old = make(tmp_path / "sda" / "tmp" / "a.tmp", 100)
    old_policy = make(tmp_path / "sda" / "tmp-1" / "b.tmp", 100)
    young = make(tmp_path / "sda" / "tmp" / "c.tmp", 1)
    data = make(tmp_path / "sda" / "objects" / "0" / "abc" / "x.data", 100)
    make(tmp_path / "sdb" / "tmp" / "b.tmp", 100)
    (tmp_path / "sdc").mkdir()
    (tmp_path / "sdc" / "lock_device").write_text("")
    locked = make(tmp_path / "sdc" / "tmp" / "c.tmp", 100)
    dm = DeviceManager(str(tmp_path), mount_check=False)
    mgr = DiskFileManager(str(tmp_path), mount_check=False)
    try:
        assert await sweep_all(dm, mgr, [0, 1], 50, logging.getLogger("t")) == 3
    finally:
        dm.close()
    assert not old.exists() and not old_policy.exists()
    assert young.exists() and data.exists()
    assert locked.exists()  # a locked device is left alone
