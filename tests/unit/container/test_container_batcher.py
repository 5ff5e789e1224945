"""PendingBatcher: batching, error fan-out, callers going away."""

from __future__ import annotations

import asyncio

import pytest

from swiftlite.container.batcher import PendingBatcher


async def test_items_arriving_together_share_a_batch() -> None:
    batches: list[list[int]] = []
    gate = asyncio.Event()

    async def run(items: list[int]) -> None:
        batches.append(items)
        await gate.wait()

    b = PendingBatcher(max_batch=3)
    tasks = [asyncio.create_task(b.submit("k", i, run)) for i in range(7)]
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(*tasks)
    # All seven queued before the drain task first ran: batches of max_batch.
    assert batches == [[0, 1, 2], [3, 4, 5], [6]]
    assert b.queued == 0


async def test_errors_reach_every_item_of_the_batch_only() -> None:
    async def run(items: list[int]) -> None:
        await asyncio.sleep(0)
        if 1 in items:
            raise OSError("disk gone")

    b = PendingBatcher()
    first = asyncio.create_task(b.submit("k", 0, run))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(b.submit("k", i, run)) for i in (1, 2)]
    await first
    for t in rest:
        with pytest.raises(OSError):
            await t
    await b.submit("k", 3, run)  # the queue recovers


async def test_cancelled_caller_does_not_strand_others() -> None:
    gate = asyncio.Event()
    done: list[int] = []

    async def run(items: list[int]) -> None:
        await gate.wait()
        done.extend(items)

    b = PendingBatcher()
    leader = asyncio.create_task(b.submit("k", 0, run))
    await asyncio.sleep(0)
    follower = asyncio.create_task(b.submit("k", 1, run))
    await asyncio.sleep(0)
    leader.cancel()
    gate.set()
    await follower
    assert sorted(done) == [0, 1]
    await b.close()


async def test_two_batches_of_one_key_may_run_at_once() -> None:
    running = 0
    peak = 0
    gate = asyncio.Event()

    async def run(items: list[int]) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await gate.wait()
        running -= 1

    b = PendingBatcher(max_batch=2, max_inflight=2)
    tasks = [asyncio.create_task(b.submit("k", i, run)) for i in range(6)]
    for _ in range(3):
        await asyncio.sleep(0)
    assert peak == 2
    gate.set()
    await asyncio.gather(*tasks)
    assert b.queued == 0


async def test_one_at_a_time_when_asked() -> None:
    order: list[list[int]] = []

    async def run(items: list[int]) -> None:
        order.append(items)
        await asyncio.sleep(0)

    b = PendingBatcher(max_batch=10, max_inflight=1)
    first = asyncio.create_task(b.submit("k", 0, run))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(b.submit("k", i, run)) for i in (1, 2, 3)]
    await asyncio.gather(first, *rest)
    assert order == [[0], [1, 2, 3]]


async def test_no_item_is_stranded_between_batches() -> None:
    """Submits landing while batches finish must still be served (a 2-in-flight
    bookkeeping race once left items waiting for the next submit)."""
    import random

    rng = random.Random(7)

    async def run(items: list[int]) -> None:
        for _ in range(rng.randint(0, 2)):
            await asyncio.sleep(0)

    b = PendingBatcher(max_batch=3, max_inflight=2)

    async def submit_later(i: int) -> None:
        for _ in range(rng.randint(0, 4)):
            await asyncio.sleep(0)
        await b.submit("k", i, run)

    for _round in range(200):
        tasks = [asyncio.create_task(submit_later(i)) for i in range(rng.randint(1, 8))]
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
    assert b.queued == 0
