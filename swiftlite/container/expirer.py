"""``swiftlite-object-expirer``: deletes objects whose X-Delete-At has passed,
driven by the container DBs (DESIGN section 6; there is no
``.expiring_objects`` account).

It lives in ``swiftlite/container/`` rather than ``swiftlite/object/`` because
it reads the local container DBs (the ``expires`` column and its index); it
never imports the object server: objects are deleted over HTTP.

Each pass walks the local container DBs. A container is handled by one
expirer only:

* by the node holding its first primary replica (index 0 in the container
  ring for the container's partition, matched by ip, ``bind_port`` and
  device), so the three replicas do not all send the same deletes;
  handoff copies are skipped;
* with ``processes`` > 1, by process ``int(hash_path(a, c), 16) % processes``.

Its due rows (``expires <= now - delay_reaping``) are read in ``expires``
order in batches. Each object gets ``DELETE /<dev>/<part>/<a>/<c>/<o>`` on
every primary object server with X-Timestamp = its X-Delete-At (as Swift's
expirer: every retry and every replica writes the same tombstone),
X-If-Delete-At, X-Backend-Clean-Expiring-Object-Queue: no and the container
update headers (so every container replica records the delete). Outcomes:

* a majority answers 2xx or 404 (deleted, or already gone): the row is
  replaced by a tombstone at that timestamp in the local DB (replication
  spreads it; the object servers' container updates do too);
* a majority answers 2xx/404/409/412 otherwise: the object changed since
  (a newer PUT or another X-Delete-At); the task is done and the row is left
  for the newer update to replace (tombstoning it could hide a live object),
  until its expiry is ``reclaim_age`` old: then it is tombstoned too, so it
  is not retried forever;
* anything else: the row stays and the next pass retries.

At most ``tasks_per_second`` deletes start per second and ``concurrency``
are in flight, over the whole pass; devices are walked side by side, so a
stalled disk holds up only its own containers. A log line and recon entries (``object_expiration_pass``,
``expired_last_pass`` in ``object.recon``) per pass.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from yarl import URL

from swiftlite.common.config import ClusterConfig, DaemonConfig, load_cluster_config
from swiftlite.common.daemon import Daemon, run_daemon
from swiftlite.common.devices import DeviceError, DeviceManager
from swiftlite.common.hashing import hash_path_digest
from swiftlite.common.ips import local_ips
from swiftlite.common.logs import set_txn_id
from swiftlite.common.node_client import NodeSessionHolder, list_devices
from swiftlite.common.ratelimit import RateLimiter
from swiftlite.common.recon import RECON_OBJECT_FILE, dump_recon
from swiftlite.common.stats import PassStats
from swiftlite.common.timestamp import Timestamp
from swiftlite.container import expirer_rows as rows_db
from swiftlite.container import updater_support as support
from swiftlite.container.daemon_config import ObjectExpirerConfig
from swiftlite.db.exceptions import DatabaseQuarantined
from swiftlite.ring.ring import Node, Ring, load_or_refresh

# What one object's deletion came to.
EXPIRED = "expired"  # deleted now, or already gone: tombstone the row
CHANGED = "changed"  # the object changed since: leave the row
FAILED = "failed"  # no majority: retry next pass


@dataclasses.dataclass
class ExpirerStats(PassStats):
    containers: int = 0
    containers_skipped: int = 0
    objects: int = 0
    expired: int = 0
    changed: int = 0
    reclaimed: int = 0
    failures: int = 0
    errors: int = 0


def owner_process(account: str, container: str, processes: int) -> int:
    """Which of ``processes`` expirer processes handles this container."""
    if processes <= 1:
        return 0
    return int.from_bytes(hash_path_digest(account, container), "big") % processes


def classify(statuses: Sequence[int | None]) -> str:
    """EXPIRED, CHANGED or FAILED from the object servers' answers."""
    quorum = len(statuses) // 2 + 1
    gone = sum(1 for s in statuses if s is not None and (200 <= s < 300 or s == 404))
    if statuses and gone >= quorum:
        return EXPIRED
    done = gone + sum(1 for s in statuses if s in (409, 412))
    if statuses and done >= quorum:
        return CHANGED
    return FAILED


class ObjectExpirer(Daemon):
    """The daemon; clocks, rings and this host's ips are injectable for tests."""

    def __init__(
        self,
        conf: ObjectExpirerConfig,
        cluster: ClusterConfig | None = None,
        *,
        container_ring: Ring | None = None,
        object_rings: dict[int, Ring] | None = None,
        ips: set[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        super().__init__(conf)
        self.econf = conf
        # Loading the cluster file also installs the hash path secrets.
        self.cluster = cluster if cluster is not None else load_cluster_config(conf.swift_dir)
        self.container_ring = container_ring
        self.object_rings: dict[int, Ring] = dict(object_rings or {})
        self.ips = ips
        self.clock = clock
        self.wall = wall
        self.sleep = sleep
        self.dm = DeviceManager(
            conf.devices, mount_check=conf.mount_check, threads_per_disk=conf.threads_per_disk
        )
        self._sessions = NodeSessionHolder(limit_per_host=32)

    def reload(self, conf: DaemonConfig) -> None:
        assert isinstance(conf, ObjectExpirerConfig)
        super().reload(conf)
        self.econf = conf
        self.ips = None

    # -- setup ---------------------------------------------------------------

    async def _load_ring(self, current: Ring | None, name: str) -> Ring:
        return await load_or_refresh(current, self.econf.swift_dir, name)

    async def load_rings(self) -> bool:
        """Container ring and each policy's object ring; False when one is missing."""
        try:
            self.container_ring = await self._load_ring(self.container_ring, "container")
            for policy in self.cluster.policies:
                name = "object" if policy.index == 0 else f"object-{policy.index}"
                self.object_rings[policy.index] = await self._load_ring(
                    self.object_rings.get(policy.index), name
                )
        except Exception as exc:
            self.logger.error("ERROR cannot load the rings: %s", exc)
            return False
        if self.ips is None:
            self.ips = await asyncio.to_thread(local_ips, self.econf.bind_ip)
        return True

    def session(self) -> aiohttp.ClientSession:
        return self._sessions.get()

    async def close(self) -> None:
        """Drop connections and disk threads (both come back on the next use)."""
        await self._sessions.close()
        self.dm.close()

    async def list_devices(self) -> list[str]:
        return await list_devices(self.econf.devices, self.logger)

    # -- ownership -----------------------------------------------------------

    def owns(self, device: str, partition: str, account: str, container: str) -> bool:
        """Is this the expirer for the container (first primary, right process)?"""
        conf = self.econf
        if owner_process(account, container, conf.processes) != conf.process:
            return False
        ring = self.container_ring
        assert ring is not None
        part, nodes = ring.get_nodes(account, container)
        if str(part) != partition or not nodes:
            # A misplaced copy (the ring moved it): the primaries handle it.
            return False
        first = min(nodes, key=lambda n: int(n.get("index", 0)))
        return (
            first["device"] == device
            and int(first["port"]) == conf.bind_port
            and str(first["ip"]) in (self.ips or set())
        )

    # -- passes --------------------------------------------------------------

    async def run_once(self) -> None:
        try:
            await self.expire_pass()
        finally:
            await self.close()

    async def expire_pass(self, devices: Sequence[str] | None = None) -> ExpirerStats:
        begin = self.clock()
        total = ExpirerStats()
        self.logger.info("Begin object expiration pass")
        if not await self.load_rings():
            return total
        names = list(devices) if devices is not None else await self.list_devices()
        limiter = RateLimiter(self.econf.tasks_per_second, self.clock, self.sleep, burst=1.0)
        # ``concurrency`` deletes in flight over the whole pass; devices are
        # walked side by side so a stalled disk holds up only its own DBs.
        slots = asyncio.Semaphore(self.econf.concurrency)
        await asyncio.gather(*(self.expire_device(d, limiter, slots, total) for d in names))
        elapsed = self.clock() - begin
        self.logger.info(
            "Pass completed in %ds; %d objects expired (%s)", int(elapsed), total.expired, total
        )
        try:
            await asyncio.to_thread(
                dump_recon,
                self.econf.recon_cache_path,
                RECON_OBJECT_FILE,
                {
                    "object_expiration_pass": elapsed,
                    "expired_last_pass": total.expired,
                    "object_expirer_stats": total.as_dict(),
                },
            )
        except OSError as exc:
            self.logger.error("cannot write recon cache %s: %s", self.econf.recon_cache_path, exc)
        return total

    async def expire_device(
        self,
        device: str,
        limiter: RateLimiter,
        slots: asyncio.Semaphore,
        stats: ExpirerStats,
    ) -> None:
        try:
            device_path = await self.dm.run(device, self.dm.check, device, priority="background")
            parts = await self.dm.run(
                device, support.container_partitions, device_path, priority="background"
            )
        except DeviceError as exc:
            self.logger.warning("Skipping %s: %s", device, exc)
            return
        except OSError as exc:
            self.logger.error("ERROR Unable to access %s: %s", device, exc)
            stats.errors += 1
            return
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
                try:
                    await self.expire_container(device, part, db_file, limiter, slots, stats)
                except Exception:
                    self.logger.exception("ERROR expiring objects of %s", db_file)
                    stats.errors += 1

    async def expire_container(
        self,
        device: str,
        partition: str,
        db_file: str,
        limiter: RateLimiter,
        slots: asyncio.Semaphore,
        stats: ExpirerStats,
    ) -> None:
        try:
            info = await self.dm.run(device, rows_db.container_info, db_file, priority="background")
        except DatabaseQuarantined as exc:
            self.logger.error("ERROR container DB quarantined: %s", exc)
            stats.errors += 1
            return
        if info is None:
            return
        account, container = str(info["account"]), str(info["container"])
        if not self.owns(device, partition, account, container):
            stats.containers_skipped += 1
            return
        stats.containers += 1
        wall = self.wall()
        now = wall - self.econf.delay_reaping
        after: rows_db.Marker | None = None
        while not self.stopping.is_set():
            page = await self.dm.run(
                device,
                rows_db.expired_page,
                db_file,
                now,
                after,
                self.econf.batch_size,
                priority="background",
            )
            if not page:
                break
            last = page[-1]
            after = (last["expires"], last["name"], last["storage_policy_index"])
            done: list[tuple[str, str, int]] = []

            async def one(row: dict[str, Any], done: list[tuple[str, str, int]]) -> None:
                try:
                    outcome = await self.expire_object(account, container, row)
                except Exception:
                    self.logger.exception(
                        "ERROR expiring %s/%s/%s", account, container, row["name"]
                    )
                    stats.errors += 1
                    return
                finally:
                    slots.release()
                stats.objects += 1
                if outcome == EXPIRED:
                    stats.expired += 1
                    done.append(
                        (
                            row["name"],
                            Timestamp(row["expires"]).internal,
                            row["storage_policy_index"],
                        )
                    )
                elif outcome == CHANGED:
                    stats.changed += 1
                    if row["expires"] < wall - self.econf.reclaim_age:
                        stats.reclaimed += 1
                        done.append(
                            (
                                row["name"],
                                Timestamp(row["expires"]).internal,
                                row["storage_policy_index"],
                            )
                        )
                else:
                    stats.failures += 1

            tasks = []
            for row in page:
                if self.stopping.is_set():
                    break
                await limiter.consume(1)
                await slots.acquire()
                tasks.append(asyncio.create_task(one(row, done)))
            if tasks:
                await asyncio.gather(*tasks)
            await self.dm.run(device, rows_db.tombstone_rows, db_file, done, priority="background")
            if len(page) < self.econf.batch_size:
                break

    # -- one object ------------------------------------------------------------

    async def expire_object(self, account: str, container: str, row: dict[str, Any]) -> str:
        policy = int(row["storage_policy_index"])
        ring = self.object_rings.get(policy)
        if ring is None:
            self.logger.error(
                "ERROR no object ring for policy %d (%s/%s/%s)",
                policy,
                account,
                container,
                row["name"],
            )
            return FAILED
        name = row["name"]
        part, nodes = ring.get_nodes(account, container, name)
        assert self.container_ring is not None
        cpart, cnodes = self.container_ring.get_nodes(account, container)
        delete_at = int(row["expires"])
        txn = f"tx{uuid.uuid4().hex[:21]}-{int(self.wall()):010x}-expirer"
        set_txn_id(txn)
        base = {
            "X-Timestamp": Timestamp(delete_at).internal,
            "X-If-Delete-At": str(delete_at),
            "X-Backend-Clean-Expiring-Object-Queue": "no",
            "X-Backend-Storage-Policy-Index": str(policy),
            "X-Trans-Id": txn,
            "User-Agent": f"object-expirer {os.getpid()}",
        }
        path = f"/{account}/{container}/{name}"
        calls = []
        for i, node in enumerate(nodes):
            headers = dict(base)
            if cnodes:
                # As the proxy does: each object server updates one
                # container replica, together all of them.
                cnode = cnodes[i % len(cnodes)]
                headers["X-Container-Host"] = f"{cnode['ip']}:{cnode['port']}"
                headers["X-Container-Device"] = str(cnode["device"])
                headers["X-Container-Partition"] = str(cpart)
            calls.append(self.delete(node, part, path, headers))
        statuses = await asyncio.gather(*calls)
        outcome = classify(statuses)
        self.logger.debug("Expiring %s: %s %s", path, outcome, statuses)
        return outcome

    async def delete(self, node: Node, part: int, path: str, headers: dict[str, str]) -> int | None:
        """One DELETE to an object server: its status, or None when it did not answer."""
        ip = str(node["ip"])
        port = node["port"]
        if ":" in ip and not ip.startswith("["):
            ip = f"[{ip}]"
        url = URL(
            f"http://{ip}:{port}{support.node_url_path(node['device'], part, path)}", encoded=True
        )
        timeout = aiohttp.ClientTimeout(
            total=self.econf.conn_timeout + self.econf.node_timeout,
            sock_connect=self.econf.conn_timeout,
        )
        where = f"{ip}:{port}/{node['device']}"
        try:
            async with self.session().delete(url, headers=headers, timeout=timeout) as resp:
                await resp.read()
                if resp.status >= 500 or resp.status in (400, 401, 403, 507):
                    self.logger.info("ERROR expiring %s on %s: %d", path, where, resp.status)
                return resp.status
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            self.logger.info("ERROR with remote server %s: %r", where, exc)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """``swiftlite-object-expirer <conf.yaml> [once] [-v]``."""
    return run_daemon(ObjectExpirer, ObjectExpirerConfig, argv, prog="swiftlite-object-expirer")


if __name__ == "__main__":
    raise SystemExit(main())
