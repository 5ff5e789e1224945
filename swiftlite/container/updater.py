"""``swiftlite-container-updater``: reports container stats to the account
servers (Swift's container updater, swift-internals 4.4).

Each pass walks every device's ``containers/<part>/<suffix>/<hash>/<hash>.db``.
A container whose put or delete timestamp, object count or bytes used differ
from what it last reported is sent, as Swift does, to every account replica
the account ring names (on its replication ip and port, as Swift's updater):
``PUT /<dev>/<part>/<account>/<container>`` with
X-Put-Timestamp, X-Delete-Timestamp, X-Object-Count, X-Bytes-Used,
X-Account-Override-Deleted: yes and X-Backend-Storage-Policy-Index. When a
majority answers 2xx the values are recorded in the DB as reported, so an
unchanged container is not sent again; otherwise the next pass retries.

As in Swift: a container whose put timestamp is 0 (auto-created, stats not
yet known) is skipped; after a failed report its account is left alone for
``account_suppression_time`` seconds; when every account replica answers
404 the account does not exist anywhere and the DB is quarantined.

Counts leave out expired rows (the broker hides them), so an account's
totals drop when objects expire, before the expirer deletes them.

All SQLite work runs in the device's own threads. As in Swift,
``concurrency`` devices are swept at once, each one container after the
other at most ``containers_per_second`` per second, so a stalled disk holds
up only its own containers. A log line and a recon entry
(``container_updater_sweep`` and stats in ``container.recon``) per pass.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from yarl import URL

from swiftlite.common.config import ClusterConfig, DaemonConfig, load_cluster_config
from swiftlite.common.daemon import Daemon, run_daemon
from swiftlite.common.devices import DeviceError, DeviceManager
from swiftlite.common.logs import set_txn_id
from swiftlite.common.node_client import NodeSessionHolder, list_devices
from swiftlite.common.ratelimit import RateLimiter
from swiftlite.common.recon import RECON_CONTAINER_FILE, dump_recon
from swiftlite.common.stats import PassStats
from swiftlite.common.timestamp import Timestamp
from swiftlite.container import updater_support as support
from swiftlite.container.backend import ContainerBroker
from swiftlite.container.daemon_config import ContainerUpdaterConfig
from swiftlite.db.exceptions import DatabaseQuarantined, LockTimeout
from swiftlite.ring.ring import Node, Ring, load_or_refresh


@dataclasses.dataclass
class ContainerUpdaterStats(PassStats):
    successes: int = 0
    failures: int = 0
    no_changes: int = 0
    suppressed: int = 0
    quarantines: int = 0
    errors: int = 0


def read_info(db_file: str) -> dict[str, Any] | None:
    """The container's info (blocking); None when the DB is gone or busy."""
    broker = ContainerBroker(db_file, stale_reads_ok=True)
    try:
        return broker.get_info()
    except (LockTimeout, FileNotFoundError):
        return None
    finally:
        broker.close()


def record_reported(db_file: str, info: dict[str, Any]) -> None:
    """Remember what the accounts were told (blocking)."""
    broker = ContainerBroker(db_file)
    try:
        broker.reported(
            info["put_timestamp"],
            info["delete_timestamp"],
            int(info["object_count"]),
            int(info["bytes_used"]),
        )
    finally:
        broker.close()


def quarantine_db(db_file: str, reason: str) -> None:
    """Move the DB aside (blocking): its account exists on no replica."""
    broker = ContainerBroker(db_file)
    try:
        broker.quarantine(reason)
    except DatabaseQuarantined:
        pass
    finally:
        broker.close()


def _ts(value: Any) -> Timestamp:
    try:
        return Timestamp(value or 0)
    except ValueError:
        return Timestamp(0)


def needs_report(info: dict[str, Any]) -> bool:
    """Anything changed since the last successful report? (Swift's test.)"""
    return (
        _ts(info["put_timestamp"]) > _ts(info.get("reported_put_timestamp"))
        or _ts(info["delete_timestamp"]) > _ts(info.get("reported_delete_timestamp"))
        or int(info["object_count"]) != int(info.get("reported_object_count") or 0)
        or int(info["bytes_used"]) != int(info.get("reported_bytes_used") or 0)
    )


class ContainerUpdater(Daemon):
    """The daemon; the clocks and the account ring are injectable for tests."""

    def __init__(
        self,
        conf: ContainerUpdaterConfig,
        cluster: ClusterConfig | None = None,
        *,
        ring: Ring | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        super().__init__(conf)
        self.uconf = conf
        # Loading the cluster file also installs the hash path secrets.
        self.cluster = cluster if cluster is not None else load_cluster_config(conf.swift_dir)
        self.ring = ring
        self.clock = clock
        self.wall = wall
        self.sleep = sleep
        self.dm = DeviceManager(
            conf.devices, mount_check=conf.mount_check, threads_per_disk=conf.threads_per_disk
        )
        # account -> wall time until which reports to it are held back.
        self.account_suppressions: dict[str, float] = {}
        self._sessions = NodeSessionHolder(limit_per_host=32)

    def reload(self, conf: DaemonConfig) -> None:
        assert isinstance(conf, ContainerUpdaterConfig)
        super().reload(conf)
        self.uconf = conf

    async def get_ring(self) -> Ring | None:
        """The account ring, loaded or refreshed off the event loop."""
        try:
            self.ring = await load_or_refresh(self.ring, self.uconf.swift_dir, "account")
        except Exception as exc:
            self.logger.error("ERROR cannot load the account ring: %s", exc)
        return self.ring

    def session(self) -> aiohttp.ClientSession:
        return self._sessions.get()

    async def close(self) -> None:
        """Drop connections and disk threads (both come back on the next use)."""
        await self._sessions.close()
        self.dm.close()

    async def list_devices(self) -> list[str]:
        return await list_devices(self.uconf.devices, self.logger)

    # -- passes --------------------------------------------------------------

    async def run_once(self) -> None:
        try:
            await self.update_pass()
        finally:
            # No idle connections or threads kept across the interval.
            await self.close()

    async def update_pass(self, devices: Sequence[str] | None = None) -> ContainerUpdaterStats:
        begin = self.clock()
        start_wall = self.wall()
        total = ContainerUpdaterStats()
        self.logger.info("Begin container update sweep")
        ring = await self.get_ring()
        if ring is None:
            return total
        names = list(devices) if devices is not None else await self.list_devices()
        # As Swift (a child process per device, ``concurrency`` at a time):
        # devices are swept side by side, so a stalled disk holds up only
        # its own containers.
        slots = asyncio.Semaphore(self.uconf.concurrency)

        async def one(device: str) -> None:
            async with slots:
                if not self.stopping.is_set():
                    total.add(await self.sweep_device(device, ring))

        await asyncio.gather(*(one(d) for d in names))
        elapsed = self.clock() - begin
        self.logger.info("Container update sweep completed: %.02fs, %s", elapsed, total)
        try:
            await asyncio.to_thread(
                dump_recon,
                self.uconf.recon_cache_path,
                RECON_CONTAINER_FILE,
                {
                    "container_updater_sweep": elapsed,
                    "container_updater_stats": {**total.as_dict(), "start_time": start_wall},
                },
            )
        except OSError as exc:
            self.logger.error("cannot write recon cache %s: %s", self.uconf.recon_cache_path, exc)
        return total

    async def sweep_device(self, device: str, ring: Ring) -> ContainerUpdaterStats:
        """Every container DB of one device, one after the other, rate limited."""
        stats = ContainerUpdaterStats()
        try:
            device_path = await self.dm.run(device, self.dm.check, device, priority="background")
            parts = await self.dm.run(
                device, support.container_partitions, device_path, priority="background"
            )
        except DeviceError as exc:
            self.logger.warning("Skipping %s: %s", device, exc)
            return stats
        except OSError as exc:
            self.logger.error("ERROR Unable to access %s: %s", device, exc)
            stats.errors += 1
            return stats
        begin = self.clock()
        limiter = RateLimiter(self.uconf.containers_per_second, self.clock, self.sleep, burst=1.0)
        for part in parts:
            if self.stopping.is_set():
                break
            try:
                dbs = await self.dm.run(
                    device, support.partition_dbs, device_path, part, priority="background"
                )
            except OSError as exc:
                self.logger.error("ERROR Unable to access %s/%s: %s", device, part, exc)
                stats.errors += 1
                continue
            for db_file in dbs:
                if self.stopping.is_set():
                    break
                await limiter.consume(1)
                await self._guarded(device, db_file, ring, stats)
        self.logger.info(
            "Container update sweep of %s completed: %.02fs, %s",
            device_path,
            self.clock() - begin,
            stats,
        )
        return stats

    async def _guarded(
        self, device: str, db_file: str, ring: Ring, stats: ContainerUpdaterStats
    ) -> None:
        try:
            await self.process_container(device, db_file, ring, stats)
        except Exception:
            self.logger.exception("ERROR processing container %s", db_file)
            stats.errors += 1

    # -- one container ---------------------------------------------------------

    async def process_container(
        self, device: str, db_file: str, ring: Ring, stats: ContainerUpdaterStats
    ) -> None:
        try:
            info = await self.dm.run(device, read_info, db_file, priority="background")
        except DatabaseQuarantined as exc:
            self.logger.error("ERROR container DB quarantined: %s", exc)
            stats.quarantines += 1
            return
        if info is None:
            return
        if _ts(info["put_timestamp"]) <= Timestamp(0):
            # Auto-created: its stats are not known yet.
            return
        account = info["account"]
        if self.account_suppressions.get(account, 0) > self.wall():
            stats.suppressed += 1
            return
        if not needs_report(info):
            stats.no_changes += 1
            return
        set_txn_id(None)
        part, nodes = ring.get_nodes(account)
        path = f"/{account}/{info['container']}"
        headers = {
            "X-Put-Timestamp": str(info["put_timestamp"]),
            "X-Delete-Timestamp": str(info["delete_timestamp"]),
            "X-Object-Count": str(info["object_count"]),
            "X-Bytes-Used": str(info["bytes_used"]),
            "X-Account-Override-Deleted": "yes",
            "X-Backend-Storage-Policy-Index": str(info["storage_policy_index"]),
            "User-Agent": f"container-updater {os.getpid()}",
        }
        results = await asyncio.gather(*(self.report(node, part, path, headers) for node in nodes))
        successes = sum(1 for r in results if r is not None and 200 <= r < 300)
        if nodes and successes >= len(nodes) // 2 + 1:
            stats.successes += 1
            self.logger.debug("Update report sent for %s %s", path, db_file)
            await self.dm.run(device, record_reported, db_file, info, priority="background")
        elif nodes and all(r == 404 for r in results):
            stats.failures += 1
            self.logger.warning("Update report stub for %s %s: no account replica", path, db_file)
            await self.dm.run(
                device, quarantine_db, db_file, "no account replicas exist", priority="background"
            )
            stats.quarantines += 1
        else:
            stats.failures += 1
            self.logger.debug("Update report failed for %s %s", path, db_file)
            self.account_suppressions[account] = self.wall() + self.uconf.account_suppression_time

    async def report(self, node: Node, part: int, path: str, headers: dict[str, str]) -> int | None:
        """One PUT to an account server: its status, or None when it did not answer."""
        # As Swift's updater: the account servers' replication network.
        ip = str(node.get("replication_ip") or node["ip"])
        port = node.get("replication_port") or node["port"]
        if ":" in ip and not ip.startswith("["):
            ip = f"[{ip}]"
        url = URL(
            f"http://{ip}:{port}{support.node_url_path(node['device'], part, path)}", encoded=True
        )
        timeout = aiohttp.ClientTimeout(
            total=self.uconf.conn_timeout + self.uconf.node_timeout,
            sock_connect=self.uconf.conn_timeout,
        )
        where = f"{ip}:{port}/{node['device']}"
        try:
            async with self.session().put(url, headers=headers, data=b"", timeout=timeout) as resp:
                await resp.read()
                if not 200 <= resp.status < 300 and resp.status != 404:
                    self.logger.info("ERROR account update to %s: %d", where, resp.status)
                return resp.status
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            self.logger.info("ERROR with remote server %s: %r", where, exc)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """``swiftlite-container-updater <conf.yaml> [once] [-v]``."""
    return run_daemon(
        ContainerUpdater, ContainerUpdaterConfig, argv, prog="swiftlite-container-updater"
    )


if __name__ == "__main__":
    raise SystemExit(main())
