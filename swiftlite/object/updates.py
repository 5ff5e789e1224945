"""Container updates sent by the object server, and async_pending records.

After an object write is durable the object server tells every container
replica the proxy named (``X-Container-Host``/``-Device``/``-Partition``) about
it, as Swift does.  It waits at most ``container_update_timeout`` for those
updates before answering the proxy, so one slow container server cannot slow
object writes down; the updates carry on in the background.  An update that
fails (an error status, a connection error, a timeout) leaves an
*async_pending record* that the object updater retries later.

Async pending record, format version 1 (JSON, never pickle), stored at
``<dev>/async_pending[-N]/<suffix>/<hash>-<timestamp>``::

    {"version": 1, "op": "PUT" | "DELETE",
     "account": str, "container": str, "obj": str,
     "headers": {lower-case header: str, ...},   # the update's headers
     "db_state": str | null,                     # X-Container-Root-Db-State
     "container_path": "a/c"}                    # only for shard redirects

``<hash>`` is the object's name hash, ``<suffix>`` its last three characters
and ``<timestamp>`` the update's ``x-meta-timestamp`` (POST) or
``x-timestamp``: a newer record for the same object sorts after an older one,
so the updater can keep only the newest.  A record is written to
``<dev>/tmp[-N]``, fsynced, then renamed into place and the directory fsynced,
so a reader never sees a partial record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import aiohttp
from yarl import URL

from swiftlite.common.devices import DeviceManager
from swiftlite.common.hashing import hash_path
from swiftlite.common.node_client import node_session

ASYNC_PENDING_VERSION = 1


def policy_dir(base: str, policy_index: int) -> str:
    """``objects``/``async_pending``/``tmp`` name for a policy (``-N`` for N > 0)."""
    return base if not policy_index else f"{base}-{policy_index}"


@dataclass(frozen=True)
class UpdateTarget:
    host: str  # ip:port
    device: str
    partition: str


def container_targets(headers: Mapping[str, str]) -> list[UpdateTarget] | None:
    """The container replicas to update, from the proxy's headers.

    Returns None when the host and device lists differ in length (a proxy
    bug worth logging) and [] when no update was asked for.
    """
    hosts = [h.strip() for h in headers.get("X-Container-Host", "").split(",")]
    devices = [d.strip() for d in headers.get("X-Container-Device", "").split(",")]
    partition = headers.get("X-Container-Partition", "").strip()
    if len(hosts) != len(devices):
        return None
    if not partition:
        return []
    return [UpdateTarget(h, d, partition) for h, d in zip(hosts, devices, strict=True) if h and d]


def container_path_override(headers: Mapping[str, str]) -> str | None:
    """``account/container`` of a shard the update must go to, if the proxy named one."""
    path = headers.get("X-Backend-Quoted-Container-Path")
    path = unquote(path) if path else headers.get("X-Backend-Container-Path")
    if not path:
        return None
    parts = path.split("/")
    if len(parts) != 2 or not all(parts):
        return None
    return path


def async_pending_path(
    device_path: str, policy_index: int, account: str, container: str, obj: str, timestamp: str
) -> str:
    ohash = str(hash_path(account, container, obj))
    return os.path.join(
        device_path,
        policy_dir("async_pending", policy_index),
        ohash[-3:],
        f"{ohash}-{timestamp}",
    )


def write_async_pending(
    device_path: str,
    policy_index: int,
    account: str,
    container: str,
    obj: str,
    record: Mapping[str, Any],
    timestamp: str,
) -> str:
    """Atomically write one async_pending record; blocking (use DeviceManager.run)."""
    dest = async_pending_path(device_path, policy_index, account, container, obj, timestamp)
    tmp_dir = os.path.join(device_path, policy_dir("tmp", policy_index))
    os.makedirs(tmp_dir, exist_ok=True)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    body = json.dumps({"version": ASYNC_PENDING_VERSION, **record}, sort_keys=True).encode()
    fd, tmp_path = tempfile.mkstemp(dir=tmp_dir, prefix=".async-")
    try:
        with os.fdopen(fd, "wb") as fp:
            fp.write(body)
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(tmp_path, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_path)
        raise
    dfd = os.open(os.path.dirname(dest), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return dest


def read_async_pending(path: str) -> dict[str, Any]:
    """Load a record written by :func:`write_async_pending`; blocking."""
    with open(path, "rb") as fp:
        record = json.loads(fp.read())
    if not isinstance(record, dict) or record.get("version") != ASYNC_PENDING_VERSION:
        raise ValueError(f"{path}: unsupported async_pending record")
    return record


class ContainerUpdater:
    """Sends container updates for one object server process."""

    def __init__(
        self,
        dm: DeviceManager,
        *,
        conn_timeout: float,
        node_timeout: float,
        update_timeout: float,
        logger: logging.Logger,
    ) -> None:
        self.dm = dm
        self.conn_timeout = conn_timeout
        self.node_timeout = node_timeout
        self.update_timeout = update_timeout
        self.logger = logger
        self._session: aiohttp.ClientSession | None = None
        self._background: set[asyncio.Task[None]] = set()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = node_session(limit_per_host=64)
        return self._session

    async def close(self, wait: float | None = None) -> None:
        """Let background updates finish (up to ``wait`` s), then close."""
        pending = set(self._background)
        if pending:
            done, still = await asyncio.wait(
                pending, timeout=self.node_timeout + self.conn_timeout if wait is None else wait
            )
            for task in still:
                task.cancel()
            if still:
                await asyncio.gather(*still, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def in_flight(self) -> int:
        return len(self._background)

    async def update(
        self,
        op: str,
        account: str,
        container: str,
        obj: str,
        request_headers: Mapping[str, str],
        headers_out: dict[str, str],
        objdevice: str,
        policy_index: int,
        referer: str = "-",
    ) -> None:
        """Send ``op`` for a/c/o to every named container replica.

        Returns once all updates are done or ``update_timeout`` has passed,
        whichever comes first; failures become an async_pending record.
        """
        targets = container_targets(request_headers)
        if targets is None:
            self.logger.error(
                "ERROR Container update failed: different numbers of hosts and "
                'devices in request: "%s" vs "%s"',
                request_headers.get("X-Container-Host", ""),
                request_headers.get("X-Container-Device", ""),
            )
            return
        if not targets:
            return
        contpath = container_path_override(request_headers)
        headers = {k.lower(): str(v) for k, v in headers_out.items()}
        headers["x-trans-id"] = request_headers.get("X-Trans-Id", "-")
        headers["referer"] = referer
        headers["x-backend-storage-policy-index"] = str(policy_index)
        headers["user-agent"] = f"object-server {os.getpid()}"
        record: dict[str, Any] = {
            "op": op,
            "account": account,
            "container": container,
            "obj": obj,
            "headers": headers,
            "db_state": request_headers.get("X-Container-Root-Db-State"),
        }
        if contpath:
            record["container_path"] = contpath
        task = asyncio.get_running_loop().create_task(
            self._send_all(targets, record, objdevice, policy_index)
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        # shield: the wait may time out (or the request be cancelled) while
        # the updates themselves must go on.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), self.update_timeout)

    async def _send_all(
        self,
        targets: list[UpdateTarget],
        record: dict[str, Any],
        objdevice: str,
        policy_index: int,
    ) -> None:
        results = await asyncio.gather(
            *(self._send_one(t, record) for t in targets), return_exceptions=True
        )
        if all(r is True for r in results):
            return
        timestamp = record["headers"].get("x-meta-timestamp") or record["headers"]["x-timestamp"]
        try:
            await self.dm.run(
                objdevice,
                write_async_pending,
                self.dm.device_path(objdevice),
                policy_index,
                record["account"],
                record["container"],
                record["obj"],
                record,
                timestamp,
                priority="write",
            )
        except Exception:
            self.logger.exception(
                "ERROR writing async_pending for %s/%s/%s",
                record["account"],
                record["container"],
                record["obj"],
            )

    async def _send_one(self, target: UpdateTarget, record: dict[str, Any]) -> bool:
        if record.get("container_path"):
            path = f"/{record['container_path']}/{record['obj']}"
        else:
            path = f"/{record['account']}/{record['container']}/{record['obj']}"
        ip, _, port = target.host.rpartition(":")
        if ":" in ip and not ip.startswith("["):
            ip = f"[{ip}]"
        full = quote(f"/{target.device}/{target.partition}{path}", safe="/")
        url = URL(f"http://{ip}:{port}{full}", encoded=True)
        timeout = aiohttp.ClientTimeout(
            total=self.conn_timeout + self.node_timeout, sock_connect=self.conn_timeout
        )
        try:
            # No automatic redirects: a shard 301 must reach the code below,
            # which leaves it to the updater (a followed 301 would PUT the row
            # to the shard without the updater's bookkeeping).
            async with self._get_session().request(
                record["op"],
                url,
                headers=record["headers"],
                timeout=timeout,
                allow_redirects=False,
            ) as resp:
                await resp.read()
                if 200 <= resp.status < 300:
                    return True
                if resp.status == 301:
                    # Shard redirects are the updater's job: it follows the
                    # Location on its retry.
                    self.logger.info(
                        "Container update for %s redirected to %s",
                        path,
                        resp.headers.get("Location"),
                    )
                else:
                    self.logger.error(
                        "ERROR Container update failed (saving for async update later): "
                        "%d response from %s/%s",
                        resp.status,
                        target.host,
                        target.device,
                    )
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            self.logger.error(
                "ERROR container update failed with %s/%s (saving for async update later): %r",
                target.host,
                target.device,
                exc,
            )
        return False
