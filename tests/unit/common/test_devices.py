import asyncio
import threading

import pytest

from swiftlite.common.devices import (
    DeviceBusy,
    DeviceLocked,
    DeviceManager,
    DeviceUnavailable,
    device_error_response,
)


@pytest.fixture
def devroot(tmp_path):
    (tmp_path / "sda").mkdir()
    (tmp_path / "sdb").mkdir()
    return tmp_path


async def test_slot_limit_fails_fast(devroot):
    dm = DeviceManager(str(devroot), mount_check=False, disk_limit=2)
    async with dm.slot("sda"), dm.slot("sda"):
        assert dm.usage() == {"sda": 2}
        with pytest.raises(DeviceBusy) as err:
            async with dm.slot("sda"):
                pass
        assert err.value.in_flight == 2
        resp = device_error_response(err.value)
        assert resp.status == 503
        assert resp.headers["X-Disk-Usage"] == "2"
        # another device is unaffected
        async with dm.slot("sdb"):
            pass
    assert dm.usage() == {"sda": 0, "sdb": 0}
    dm.close()


async def test_per_kind_limit(devroot):
    dm = DeviceManager(str(devroot), mount_check=False, disk_limit=10)
    async with dm.slot("sda", kind="replication", limit=1):
        with pytest.raises(DeviceBusy):
            async with dm.slot("sda", kind="replication", limit=1):
                pass
        async with dm.slot("sda", kind="read"):
            pass
    dm.close()


async def test_check_mount_lock_and_missing(devroot):
    dm = DeviceManager(str(devroot), mount_check=True)
    with pytest.raises(DeviceUnavailable):
        await dm.acheck("sda")  # a plain directory is not a mount point
    dm2 = DeviceManager(str(devroot), mount_check=False)
    assert await dm2.acheck("sda") == str(devroot / "sda")
    with pytest.raises(DeviceUnavailable):
        await dm2.acheck("nope")
    with pytest.raises(DeviceUnavailable):
        await dm2.acheck("..")
    (devroot / "sda" / "lock_device").write_text("")
    with pytest.raises(DeviceLocked):
        await dm2.acheck("sda")
    assert device_error_response(DeviceUnavailable("sdx", "x")).status == 507
    dm.close()
    dm2.close()


async def test_stalled_device_does_not_stall_others(devroot):
    dm = DeviceManager(str(devroot), mount_check=False, disk_limit=3, threads_per_disk=1)
    release = threading.Event()

    def stall():
        release.wait(10)
        return "stalled"

    stalled = asyncio.ensure_future(dm.run("sda", stall))
    await asyncio.sleep(0.05)
    # The event loop and the other device keep working while sda is stuck.
    assert await asyncio.wait_for(dm.run("sdb", lambda: "ok"), 2) == "ok"
    release.set()
    assert await stalled == "stalled"
    dm.close()


async def test_priority_reads_before_background(devroot):
    dm = DeviceManager(str(devroot), mount_check=False, threads_per_disk=1)
    gate = threading.Event()
    order = []
    first = asyncio.ensure_future(dm.run("sda", gate.wait, 5))
    await asyncio.sleep(0.05)
    futs = [
        asyncio.ensure_future(dm.run("sda", order.append, "bg", priority="background")),
        asyncio.ensure_future(dm.run("sda", order.append, "repl", priority="replication")),
        asyncio.ensure_future(dm.run("sda", order.append, "write", priority="write")),
        asyncio.ensure_future(dm.run("sda", order.append, "read", priority="read")),
    ]
    await asyncio.sleep(0.05)
    gate.set()
    await first
    await asyncio.gather(*futs)
    assert order == ["read", "write", "repl", "bg"]
    dm.close()


async def test_exceptions_propagate_and_context_carries(devroot):
    from swiftlite.common.logs import get_txn_id, set_txn_id

    dm = DeviceManager(str(devroot), mount_check=False)

    def boom():
        raise OSError(5, "EIO")

    with pytest.raises(OSError):
        await dm.run("sda", boom)
    set_txn_id("tx123")
    assert await dm.run("sda", get_txn_id) == "tx123"
    dm.close()


async def test_space_ok(devroot):
    dm = DeviceManager(str(devroot), mount_check=False, fallocate_reserve="0%")
    assert await dm.has_space_for("sda", 1)
    dm2 = DeviceManager(str(devroot), mount_check=False, fallocate_reserve="100%")
    assert not await dm2.has_space_for("sda", 1)
    dm3 = DeviceManager(str(devroot), mount_check=False, fallocate_reserve=str(10**18))
    assert not await dm3.has_space_for("sda", 0)
    dm.close()
    dm2.close()
    dm3.close()
