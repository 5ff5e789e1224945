"""Group commit of object updates into a container's pending file.

Many object servers update one container at once. Each request handing its
record to the device's threads separately would mean one write and one fsync
of the pending file per update; instead records for one DB queue up here and
drain tasks hand them to the device's threads in batches: one thread hop, one
append and one fsync for everything that arrived meanwhile. Up to
``max_inflight`` batches of one key run at once, so a new batch can append
while the previous one waits for its fsync. Every request still gets its own
answer (its batch's outcome) only after its record is durable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

BatchRunner = Callable[[list[Any]], Awaitable[None]]


@dataclass
class _Queue:
    items: list[tuple[Any, asyncio.Future[None]]] = field(default_factory=list)
    # Drain tasks not yet past their last look at ``items``. Kept in step
    # synchronously (never through done-callbacks, which run a loop turn
    # later): a submit must never see a finished drain as still running, or
    # its item would wait for some later submit to start a drain.
    running: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class PendingBatcher:
    """Per-key queues drained by up to ``max_inflight`` background tasks each."""

    def __init__(self, max_batch: int = 1000, max_inflight: int = 2) -> None:
        self.max_batch = max_batch
        self.max_inflight = max_inflight
        self._queues: dict[str, _Queue] = {}

    async def submit(self, key: str, item: Any, run_batch: BatchRunner) -> None:
        """Queue ``item`` under ``key``; return once its batch ran (or raise its error).

        Items of one key must be interchangeable for ``run_batch`` (same DB),
        since whichever submitter started a drain task serves later batches.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _Queue()
        queue.items.append((item, fut))
        if queue.running < self.max_inflight:
            # A task of its own, not the caller's: a request that goes away
            # must not strand the others waiting on the same batch.
            queue.running += 1
            task = loop.create_task(self._drain(key, queue, run_batch))
            queue.tasks.add(task)
            task.add_done_callback(queue.tasks.discard)
        # Not shielded: a caller that goes away cancels only its own future;
        # its item stays queued and the batch (and the others) go on.
        await fut

    async def _drain(self, key: str, queue: _Queue, run_batch: BatchRunner) -> None:
        try:
            while queue.items:
                batch = queue.items[: self.max_batch]
                del queue.items[: self.max_batch]
                try:
                    await run_batch([item for item, _ in batch])
                except BaseException as exc:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                else:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_result(None)
        finally:
            # No await between the loop's last check and here.
            queue.running -= 1
            if queue.running == 0:
                if queue.items:
                    # Cancelled with work left: fail it rather than hang it.
                    for _, fut in queue.items:
                        if not fut.done():
                            fut.set_exception(RuntimeError("container update batcher stopped"))
                    queue.items.clear()
                if self._queues.get(key) is queue:
                    del self._queues[key]

    @property
    def queued(self) -> int:
        return sum(len(q.items) for q in self._queues.values())

    async def close(self) -> None:
        tasks = [t for q in self._queues.values() for t in q.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
