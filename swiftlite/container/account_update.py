"""Telling the account servers about a container PUT or DELETE.

Swift's container server does this inline, before answering the proxy: one
``PUT /<adev>/<apart>/<a>/<c>`` per (X-Account-Host, X-Account-Device) pair
with the container's timestamps and stats. If every account server answers
404 the container request answers 404 too (the account does not exist);
other failures are logged and left to the container updater.
"""

from __future__ import annotations

import asyncio
import logging
import os
import urllib.parse
from collections.abc import Mapping
from typing import Any

import aiohttp
from yarl import URL


class AccountUpdateError(ValueError):
    """X-Account-Host and X-Account-Device list different numbers of nodes."""


def account_targets(headers: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(host:port, device, partition) triples named by the request, in order."""
    hosts = [h.strip() for h in headers.get("X-Account-Host", "").split(",")]
    devices = [d.strip() for d in headers.get("X-Account-Device", "").split(",")]
    partition = headers.get("X-Account-Partition", "")
    if len(hosts) != len(devices):
        raise AccountUpdateError(
            "different numbers of hosts and devices in request: "
            f"{headers.get('X-Account-Host', '')!r} vs {headers.get('X-Account-Device', '')!r}"
        )
    if not partition:
        return []
    return [(h, d, partition) for h, d in zip(hosts, devices, strict=True)]


def account_update_headers(
    info: Mapping[str, Any], request_headers: Mapping[str, str], referer: str
) -> dict[str, str]:
    headers = {
        "X-Put-Timestamp": str(info["put_timestamp"]),
        "X-Delete-Timestamp": str(info["delete_timestamp"]),
        "X-Object-Count": str(info["object_count"]),
        "X-Bytes-Used": str(info["bytes_used"]),
        "X-Trans-Id": request_headers.get("X-Trans-Id", "-"),
        "X-Backend-Storage-Policy-Index": str(info["storage_policy_index"]),
        "User-Agent": f"container-server {os.getpid()}",
        "Referer": referer,
    }
    if request_headers.get("X-Account-Override-Deleted", "no").lower() == "yes":
        headers["X-Account-Override-Deleted"] = "yes"
    return headers


class AccountUpdater:
    """Sends the updates over one shared HTTP session per worker."""

    def __init__(self, conn_timeout: float, node_timeout: float, logger: logging.Logger) -> None:
        self.conn_timeout = conn_timeout
        self.node_timeout = node_timeout
        self.logger = logger
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=self.conn_timeout + self.node_timeout,
                    sock_connect=self.conn_timeout,
                    sock_read=self.node_timeout,
                ),
                auto_decompress=False,
            )
        return self._session

    async def _one(
        self, host: str, device: str, partition: str, path: str, headers: dict[str, str]
    ) -> int | None:
        ip, _, port = host.rpartition(":")
        full = urllib.parse.quote(f"/{device}/{partition}{path}")
        url = URL.build(scheme="http", host=ip.strip("[]"), port=int(port), encoded=True).with_path(
            full, encoded=True
        )
        try:
            async with self._get_session().put(url, headers=headers, data=b"") as resp:
                await resp.read()
                if resp.status == 404:
                    return 404
                if not 200 <= resp.status < 300:
                    self.logger.error(
                        "ERROR Account update failed with %s/%s (will retry later): Response %s %s",
                        host,
                        device,
                        resp.status,
                        resp.reason,
                    )
                return resp.status
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            self.logger.error(
                "ERROR account update failed with %s/%s (will retry later): %r", host, device, exc
            )
            return None

    async def update(
        self,
        targets: list[tuple[str, str, str]],
        account: str,
        container: str,
        headers: dict[str, str],
    ) -> bool:
        """Send to every target; True when all of them answered 404."""
        if not targets:
            return False
        path = f"/{account}/{container}"
        results = await asyncio.gather(*(self._one(h, d, p, path, headers) for h, d, p in targets))
        return all(r == 404 for r in results)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
