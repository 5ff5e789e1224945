"""The order in which a request tries backend nodes.

Primaries first (shuffled by default, so reads spread over replicas), then
the ring's handoffs, at most ``request_node_count`` nodes in all; nodes the
error limiter has suppressed are skipped and, as in Swift, do not use up
the count: with two primaries down a read still gets its full set of tries.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from swiftlite.proxy.error_limiter import ErrorLimiter
from swiftlite.ring.ring import Ring

Node = dict[str, Any]


class NodeTimings:
    """How long each node took to answer a read, for ``sorting_method: timing``.

    Swift keys timings by IP; on an all-in-one box every node shares one IP,
    so swiftlite keys them by ip:port. A timing is forgotten after
    ``expiry`` seconds, so a node that was slow once gets another chance.
    """

    def __init__(self, expiry: float = 300.0, clock: Callable[[], float] = time.monotonic):
        self.expiry = expiry
        self._clock = clock
        self._timings: dict[str, tuple[float, float]] = {}  # key -> (seconds, expires)

    @staticmethod
    def _key(node: Mapping[str, Any]) -> str:
        return f"{node['ip']}:{node['port']}"

    def record(self, node: Mapping[str, Any], seconds: float) -> None:
        self._timings[self._key(node)] = (round(seconds, 3), self._clock() + self.expiry)

    def get(self, node: Mapping[str, Any]) -> float:
        """The node's last timing, or -1 (unknown: try it first, as Swift does)."""
        timing, expires = self._timings.get(self._key(node), (-1.0, 0.0))
        return timing if expires > self._clock() else -1.0

    def sort(self, nodes: list[Node]) -> None:
        nodes.sort(key=self.get)


class NodeIter:
    """Iterates nodes for one partition. Safe to share between several
    concurrent consumers (object PUT slots pull from one iterator)."""

    def __init__(
        self,
        ring: Ring,
        partition: int,
        limiter: ErrorLimiter,
        node_count: int | None = None,
        primaries: list[Node] | None = None,
        sorting_method: str = "shuffle",
        rng: random.Random | None = None,
        timings: NodeTimings | None = None,
    ) -> None:
        self.ring = ring
        self.partition = partition
        self.limiter = limiter
        self.primaries = primaries if primaries is not None else ring.get_part_nodes(partition)
        if sorting_method == "shuffle":
            (rng or random).shuffle(self.primaries)
        elif sorting_method == "timing" and timings is not None:
            # Shuffle first so nodes with equal (or no) timings share the load.
            (rng or random).shuffle(self.primaries)
            timings.sort(self.primaries)
        replicas = len(self.primaries)
        self.node_count = node_count if node_count is not None else 2 * replicas
        self.handoffs_used = 0
        self._gen = self._generate()

    def _generate(self) -> Iterator[Node]:
        emitted = 0
        for node in self.primaries:
            if emitted >= self.node_count:
                return
            if not self.limiter.is_limited(node):
                emitted += 1
                yield node
        for node in self.ring.get_more_nodes(self.partition):
            if emitted >= self.node_count:
                return
            if not self.limiter.is_limited(node):
                emitted += 1
                self.handoffs_used += 1
                yield node

    def __iter__(self) -> Iterator[Node]:
        return self

    def __next__(self) -> Node:
        return next(self._gen)
