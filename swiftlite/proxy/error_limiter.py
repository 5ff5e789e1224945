"""Skip backend nodes that keep failing (Swift's error limiting).

Each exception, timeout or 5xx counts against a node; once a node's count
exceeds ``suppression_limit`` it is skipped until ``suppression_interval``
seconds pass after its last error. A 507 (unmounted or full disk) limits the
node at once. State is per proxy worker, as in Swift.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any


def node_key(node: Mapping[str, Any]) -> str:
    return f"{node['ip']}:{node['port']}/{node['device']}"


class ErrorLimiter:
    def __init__(
        self,
        suppression_interval: float = 60.0,
        suppression_limit: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.suppression_interval = suppression_interval
        self.suppression_limit = suppression_limit
        self._clock = clock
        # node key -> (error count, time of the last error)
        self._stats: dict[str, tuple[int, float]] = {}

    def is_limited(self, node: Mapping[str, Any]) -> bool:
        key = node_key(node)
        stats = self._stats.get(key)
        if stats is None:
            return False
        count, last = stats
        if self._clock() - last > self.suppression_interval:
            del self._stats[key]
            return False
        return count > self.suppression_limit

    def increment(self, node: Mapping[str, Any]) -> bool:
        """Count one error; True when this error tipped the node into limiting."""
        key = node_key(node)
        count, _last = self._stats.get(key, (0, 0.0))
        count += 1
        self._stats[key] = (count, self._clock())
        return count == self.suppression_limit + 1

    def limit(self, node: Mapping[str, Any]) -> None:
        """Limit a node at once (a 507)."""
        self._stats[node_key(node)] = (self.suppression_limit + 1, self._clock())

    def count(self, node: Mapping[str, Any]) -> int:
        return self._stats.get(node_key(node), (0, 0.0))[0]
