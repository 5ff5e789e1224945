"""Shared background-daemon tools: recon cache, rate limiter, local addresses."""

import asyncio
import os
import threading

from swiftlite.common.ips import local_ips
from swiftlite.common.ratelimit import RateLimiter
from swiftlite.common.recon import dump_recon, read_recon


def test_recon_merges_keys_and_survives_concurrent_writers(tmp_path):
    path = str(tmp_path / "recon")
    assert read_recon(path, "object.recon") == {}
    dump_recon(path, "object.recon", {"a": 1})
    dump_recon(path, "object.recon", {"b": {"x": 2}})
    assert read_recon(path, "object.recon") == {"a": 1, "b": {"x": 2}}

    def writer(i: int) -> None:
        for j in range(20):
            dump_recon(path, "object.recon", {f"w{i}": j})

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    doc = read_recon(path, "object.recon")
    assert all(doc[f"w{i}"] == 19 for i in range(4)) and doc["a"] == 1
    (tmp_path / "recon" / "bad.recon").write_text("{not json")
    assert read_recon(path, "bad.recon") == {}
    assert not [n for n in os.listdir(path) if n.startswith(".")]


def test_rate_limiter_asks_for_the_right_sleeps():
    now = [100.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    async def run() -> None:
        lim = RateLimiter(10, lambda: now[0], sleep, burst=0.0)
        for _ in range(5):
            await lim.consume()
        unlimited = RateLimiter(0, lambda: now[0], sleep)
        assert await unlimited.consume(1000) == 0.0

    asyncio.run(run())
    assert [round(s, 6) for s in slept] == [0.1] * 5
    # Idle time is credit for at most `burst` seconds.
    now[0] = 0.0
    slept.clear()

    async def burst() -> None:
        lim = RateLimiter(1, lambda: now[0], sleep, burst=2.0)
        now[0] = 50.0  # long idle
        for _ in range(4):
            await lim.consume()

    asyncio.run(burst())
    assert round(sum(slept), 6) == 2.0


def test_local_ips():
    assert local_ips("10.1.2.3") == {"10.1.2.3"}
    ips = local_ips("0.0.0.0")
    assert "127.0.0.1" in ips


def test_node_session_holder_and_list_devices(tmp_path):
    import logging

    from swiftlite.common.node_client import NodeSessionHolder, list_devices

    (tmp_path / "sdb").mkdir()
    (tmp_path / "sda").mkdir()

    async def run() -> None:
        holder = NodeSessionHolder(limit_per_host=4)
        first = holder.get()
        assert holder.get() is first
        assert first.auto_decompress is False
        await holder.close()
        second = holder.get()  # a closed holder makes a new session on demand
        assert second is not first
        await holder.close()
        log = logging.getLogger("t")
        assert await list_devices(str(tmp_path), log) == ["sda", "sdb"]
        assert await list_devices(str(tmp_path / "missing"), log) == []

    asyncio.run(run())
