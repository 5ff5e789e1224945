"""An average-rate limiter for background passes (Hummingbird's
``rateLimitSleep``, Swift's ``ratelimit_sleep``).

After counting ``n`` more units it sleeps until the work done is no more than
``elapsed * rate``, so a pass keeps an average rate. Idle time is credit for at
most ``burst`` seconds (Swift's ``rate_buffer``): after a stall (a slow
listing, a disk that hung) the limiter does not let a long burst through to
"catch up". Clock and sleep are injectable so tests check the sleeps asked
for instead of timing them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


class RateLimiter:
    """At most ``rate`` units per second on average (0 or less: unlimited)."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        burst: float = 5.0,
    ) -> None:
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.burst = burst
        # When the work counted so far is due to be done at ``rate``.
        self.due = clock()

    async def consume(self, n: float = 1.0) -> float:
        """Count ``n`` units; sleep as long as the rate needs. Seconds slept."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        self.due = max(self.due, now - self.burst) + n / self.rate
        wait = self.due - now
        if wait <= 0:
            return 0.0
        await self.sleep(wait)
        return wait
