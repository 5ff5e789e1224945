"""What every daemon that talks to storage nodes needs: an HTTP session for
backend requests, and the list of local devices.

The session has no overall connection cap (the callers bound their own
concurrency), never inflates bodies (a stored object's Content-Encoding
describes its bytes) and adds no default User-Agent or Content-Type (backend
requests carry exactly the headers the caller sets, as Swift's do).
"""

from __future__ import annotations

import asyncio
import logging
import os

import aiohttp


def node_session(limit_per_host: int = 32) -> aiohttp.ClientSession:
    """A new session for backend requests to storage nodes."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=limit_per_host),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Content-Type"),
    )


class NodeSessionHolder:
    """A lazily created :func:`node_session`, recreated after a close."""

    def __init__(self, limit_per_host: int = 32) -> None:
        self.limit_per_host = limit_per_host
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = node_session(self.limit_per_host)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def list_devices(devices_root: str, logger: logging.Logger) -> list[str]:
    """The device names under ``devices_root``, sorted (listed off the loop);
    ``[]`` with an error logged when the root cannot be listed."""
    try:
        return sorted(await asyncio.to_thread(os.listdir, devices_root))
    except OSError as exc:
        logger.error("ERROR cannot list devices in %s: %s", devices_root, exc)
        return []
