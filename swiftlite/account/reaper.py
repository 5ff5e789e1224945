"""``swiftlite-account-reaper``: empties deleted accounts (Swift's
``swift/account/reaper.py`` behaviour).

Each pass walks every local device's ``accounts/<part>/<suffix>/<hash>/<hash>.db``.
An account partition is worked on only where this host holds one of its
primaries: the partition's primary nodes in the account ring are searched
for one with this host's address (``bind_ip``, or any local address for
0.0.0.0), ``bind_port`` and this device. Its position in that list (the
*container shard*) splits the account's containers among the replicas, as
Swift does: the replica at position ``i`` reaps the containers with
``int(md5(name)) % replicas == i``, so each container is reaped by exactly
one node (the first local match wins when one host holds several replicas;
Swift's "partition's first local device"). A copy on a handoff device is
left alone.

An account is reaped when its DB is marked deleted (status DELETED, or a
delete timestamp newer than its put timestamp), still lists containers, and
its delete timestamp is more than ``delay_reaping`` seconds old. Then, for
each of its containers (``sqrt(concurrency)`` containers at a time):

* the container's objects are listed from a container server
  (``GET /<dev>/<part>/<a>/<c>?format=json&marker=...``; the last primary
  first, as Swift, then the others when it does not answer), page after
  page, and every object is deleted on every object node of its policy's
  ring (``DELETE`` with ``X-Timestamp`` now, ``X-Backend-Storage-Policy-Index``
  and ``X-Container-Host/-Device/-Partition`` so each object server removes
  the container row too), ``sqrt(concurrency)`` objects at a time;
* then the container is deleted on every container node (``DELETE`` with
  ``X-Timestamp``, ``X-Account-Host/-Device/-Partition`` and
  ``X-Account-Override-Deleted: yes``, so each container server removes the
  account row).

An object (a container) counts as deleted when more nodes answered 2xx than
not, as remaining when none did and as possibly remaining otherwise (Swift's
bookkeeping, 404 included among the failures). What is left is tried again
on the next pass. A log line per account and per pass, a warning when an
account still holds containers ``reap_warn_after`` seconds after
``delay_reaping`` ran out, and the pass totals as JSON in the recon cache
(``account.recon``: ``account_reaper_pass_completed`` and
``account_reaper_stats``).

Every request goes to the node's replication ip and port (its client-facing
ones when the ring has none), as Swift's reaper does; the ``X-Account-Host``
and ``X-Container-Host`` headers name the client-facing ones, as Swift.
SQLite work runs in the device's own threads (``DeviceManager.run``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from swiftlite.account.backend import AccountBroker
from swiftlite.account.daemon_config import AccountReaperConfig
from swiftlite.common.config import ClusterConfig, DaemonConfig, load_cluster_config
from swiftlite.common.daemon import Daemon, run_daemon
from swiftlite.common.devices import DeviceError, DeviceManager
from swiftlite.common.ips import local_ips
from swiftlite.common.logs import set_txn_id
from swiftlite.common.node_client import NodeSessionHolder
from swiftlite.common.recon import dump_recon
from swiftlite.common.timestamp import Timestamp
from swiftlite.db.auditor import partition_dbs, partitions
from swiftlite.db.exceptions import DatabaseQuarantined, LockTimeout
from swiftlite.ring.ring import Node, Ring

DATADIR = "accounts"
RECON_FILE = "account.recon"
# Containers read from the account DB per batch (Swift's container_limit),
# times the replica count since each replica keeps only its share.
CONTAINER_BATCH = 1000


@dataclasses.dataclass
class ReaperStats:
    accounts: int = 0
    containers_deleted: int = 0
    objects_deleted: int = 0
    containers_remaining: int = 0
    objects_remaining: int = 0
    containers_possibly_remaining: int = 0
    objects_possibly_remaining: int = 0
    containers_failures: int = 0
    objects_failures: int = 0
    errors: int = 0
    # status class (2, 4, 5) -> answers seen; Swift's stats_return_codes.
    return_codes: dict[int, int] = dataclasses.field(default_factory=dict)

    def add(self, other: ReaperStats) -> None:
        for f in dataclasses.fields(self):
            if f.name == "return_codes":
                for code, n in other.return_codes.items():
                    self.return_codes[code] = self.return_codes.get(code, 0) + n
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def code(self, status: int) -> None:
        self.return_codes[status // 100] = self.return_codes.get(status // 100, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["return_codes"] = {str(k): v for k, v in sorted(self.return_codes.items())}
        return doc

    def summary(self) -> str:
        """Swift's per-account wording: only the non-zero counts."""
        parts = [
            f", {getattr(self, name)} {name.replace('_', ' ')}"
            for name in (
                "containers_deleted",
                "objects_deleted",
                "containers_remaining",
                "objects_remaining",
                "containers_possibly_remaining",
                "objects_possibly_remaining",
            )
            if getattr(self, name)
        ]
        if self.return_codes:
            codes = ", ".join(f"{n} {c}xxs" for c, n in sorted(self.return_codes.items()))
            parts.append(f", return codes: {codes}")
        return "".join(parts)


def container_shard(name: str, replicas: int) -> int:
    """Which account replica reaps this container (Swift's md5 split)."""
    return int(hashlib.md5(name.encode("utf-8"), usedforsecurity=False).hexdigest(), 16) % replicas


def classify(successes: int, failures: int) -> str:
    if successes > failures:
        return "deleted"
    if not successes:
        return "remaining"
    return "possibly_remaining"


def read_deleted_account(db_file: str) -> dict[str, Any] | None:
    """The info of a deleted account that still lists containers (blocking);
    None for a live or empty one, or a DB that is busy or gone."""
    broker = AccountBroker(db_file, stale_reads_ok=True)
    try:
        if not os.path.exists(db_file):
            return None
        if not broker.is_status_deleted() or broker.empty():
            return None
        return broker.get_info()
    except (LockTimeout, FileNotFoundError):
        return None
    finally:
        broker.close()


def list_containers(db_file: str, limit: int, marker: str) -> list[str]:
    """Up to ``limit`` container names after ``marker`` (blocking)."""
    broker = AccountBroker(db_file, stale_reads_ok=True)
    try:
        rows = broker.list_containers_iter(limit, marker, None, None, None, allow_reserved=True)
        return [r[0] for r in rows]
    finally:
        broker.close()


def node_url(node: Mapping[str, Any], part: int | str, path: str, query: str = "") -> URL:
    """The node's URL on the replication network (replication ip and port,
    falling back to the client-facing ones), as Swift's reaper talks to the
    storage servers."""
    ip = str(node.get("replication_ip") or node["ip"])
    port = node.get("replication_port") or node["port"]
    if ":" in ip and not ip.startswith("["):
        ip = f"[{ip}]"
    quoted = quote(f"/{node['device']}/{part}{path}", safe="/")
    return URL(f"http://{ip}:{port}{quoted}{query}", encoded=True)


class AccountReaper(Daemon):
    """The daemon; rings, addresses and clocks are injectable for tests."""

    def __init__(
        self,
        conf: AccountReaperConfig,
        cluster: ClusterConfig | None = None,
        *,
        ips: set[str] | None = None,
        wall: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(conf)
        self.rconf = conf
        # Loading the cluster file also installs the hash path secrets.
        self.cluster = cluster if cluster is not None else load_cluster_config(conf.swift_dir)
        self.ips = ips
        self.wall = wall
        self.clock = clock
        self.rings: dict[str, Ring] = {}
        self.dm = DeviceManager(
            conf.devices, mount_check=conf.mount_check, threads_per_disk=conf.threads_per_disk
        )
        self._sessions = NodeSessionHolder(limit_per_host=32)

    def reload(self, conf: DaemonConfig) -> None:
        assert isinstance(conf, AccountReaperConfig)
        super().reload(conf)
        self.rconf = conf
        self.ips = None

    @property
    def concurrency(self) -> int:
        # Swift: containers and objects are each sqrt(concurrency) wide.
        return max(1, int(math.sqrt(self.rconf.concurrency)))

    # -- setup -----------------------------------------------------------------

    async def ring(self, name: str) -> Ring:
        """A ring loaded (or refreshed) off the event loop; raises when missing."""
        ring = self.rings.get(name)
        if ring is None:
            # reload_time inf: lookups never stat the file; refreshed per pass.
            ring = await asyncio.to_thread(Ring, self.rconf.swift_dir, name, math.inf)
            self.rings[name] = ring
        return ring

    async def refresh_rings(self) -> bool:
        try:
            for name in ("account", "container"):
                if name in self.rings:
                    await self.rings[name].reload_async()
                else:
                    await self.ring(name)
            for name, ring in self.rings.items():
                if name.startswith("object"):
                    await ring.reload_async()
        except Exception as exc:
            self.logger.error("ERROR cannot load the rings: %s", exc)
            return False
        if self.ips is None:
            self.ips = await asyncio.to_thread(local_ips, self.rconf.bind_ip)
        return True

    def session(self) -> aiohttp.ClientSession:
        return self._sessions.get()

    async def close(self) -> None:
        """Drop connections and disk threads (both come back on the next use)."""
        await self._sessions.close()
        self.dm.close()

    def timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=self.rconf.conn_timeout + self.rconf.node_timeout,
            sock_connect=self.rconf.conn_timeout,
        )

    def local_shard(self, device: str, nodes: Sequence[Node]) -> int | None:
        """This device's position among the partition's primaries, or None."""
        for index, node in enumerate(nodes):
            if (
                str(node["ip"]) in (self.ips or set())
                and int(node["port"]) == self.rconf.bind_port
                and node["device"] == device
            ):
                return index
        return None

    # -- passes ----------------------------------------------------------------

    async def run_once(self) -> None:
        try:
            await self.reap_pass()
        finally:
            # No idle connections or threads kept across the interval.
            await self.close()

    async def reap_pass(self, devices: Sequence[str] | None = None) -> ReaperStats:
        begin = self.clock()
        start_wall = self.wall()
        total = ReaperStats()
        self.logger.info("Begin account reaper pass")
        if not await self.refresh_rings():
            return total
        if devices is None:
            try:
                devices = sorted(await asyncio.to_thread(os.listdir, self.rconf.devices))
            except OSError as exc:
                self.logger.error("ERROR cannot list devices in %s: %s", self.rconf.devices, exc)
                devices = []
        for device in devices:
            if self.stopping.is_set():
                break
            try:
                await self.reap_device(device, total)
            except DeviceError as exc:
                self.logger.warning("Skipping %s: %s", device, exc)
            except Exception:
                self.logger.exception("ERROR reaping device %s", device)
                total.errors += 1
        elapsed = self.clock() - begin
        self.logger.info(
            "Account reaper pass completed: %.02fs, %s", elapsed, json.dumps(total.as_dict())
        )
        try:
            await asyncio.to_thread(
                dump_recon,
                self.rconf.recon_cache_path,
                RECON_FILE,
                {
                    "account_reaper_pass_completed": elapsed,
                    "account_reaper_stats": {**total.as_dict(), "start_time": start_wall},
                },
            )
        except OSError as exc:
            self.logger.error("cannot write recon cache %s: %s", self.rconf.recon_cache_path, exc)
        return total

    async def reap_device(self, device: str, total: ReaperStats) -> None:
        device_path = await self.dm.run(device, self.dm.check, device, priority="background")
        parts = await self.dm.run(device, partitions, device_path, DATADIR, priority="background")
        account_ring = await self.ring("account")
        for part in parts:
            if self.stopping.is_set():
                return
            # A partition the ring does not have (left from a larger part
            # power) has no primaries, so it is never ours.
            nodes = account_ring.get_part_nodes(int(part))
            shard = self.local_shard(device, nodes)
            if shard is None:
                continue
            dbs = await self.dm.run(
                device, partition_dbs, device_path, DATADIR, part, priority="background"
            )
            for db_file in dbs:
                if self.stopping.is_set():
                    return
                try:
                    info = await self.dm.run(
                        device, read_deleted_account, db_file, priority="background"
                    )
                except DatabaseQuarantined as exc:
                    self.logger.error("ERROR account DB quarantined: %s", exc)
                    total.errors += 1
                    continue
                if info is None:
                    continue
                stats = await self.reap_account(device, db_file, info, int(part), nodes, shard)
                if stats is not None:
                    total.add(stats)

    # -- one account ------------------------------------------------------------

    async def reap_account(
        self,
        device: str,
        db_file: str,
        info: Mapping[str, Any],
        part: int,
        nodes: Sequence[Node],
        shard: int | None,
    ) -> ReaperStats | None:
        """Delete the account's share of containers; None when still delayed."""
        begin = self.clock()
        deleted_at = Timestamp(info["delete_timestamp"])
        if self.wall() - float(deleted_at) <= self.rconf.delay_reaping:
            return None
        account = str(info["account"])
        set_txn_id(None)
        self.logger.info("Beginning pass on account %s", account)
        stats = ReaperStats(accounts=1)
        limit = CONTAINER_BATCH * (len(nodes) if shard is not None else 1)
        slots = asyncio.Semaphore(self.concurrency)
        complete = True
        marker = ""
        try:
            while not self.stopping.is_set():
                names = await self.dm.run(
                    device, list_containers, db_file, limit, marker, priority="background"
                )
                if not names:
                    break
                mine = [
                    n for n in names if shard is None or container_shard(n, len(nodes)) == shard
                ]

                async def one(name: str) -> None:
                    async with slots:
                        await self.reap_container(account, part, nodes, name, stats)

                results = await asyncio.gather(*(one(n) for n in mine), return_exceptions=True)
                for res in results:
                    if isinstance(res, Exception):
                        self.logger.error(
                            "Exception with containers for account %s: %r", account, res
                        )
                        stats.errors += 1
                marker = names[-1]
        except Exception:
            self.logger.exception("Exception with account %s", account)
            complete = False
            stats.errors += 1
        self.logger.info(
            "%s pass on account %s%s, elapsed: %.02fs",
            "Completed" if complete else "Incomplete",
            account,
            stats.summary(),
            self.clock() - begin,
        )
        warn_after = self.rconf.reap_warn_after + self.rconf.delay_reaping
        if stats.containers_remaining and self.wall() - float(deleted_at) >= warn_after:
            self.logger.warning(
                "Account %s has not been reaped since %s", account, deleted_at.isoformat
            )
        return stats

    # -- one container ------------------------------------------------------------

    async def list_objects(
        self, nodes: Sequence[Node], part: int, path: str, marker: str, stats: ReaperStats
    ) -> tuple[list[dict[str, Any]], int] | None:
        """One listing page and the container's policy index; None when no
        container server answered."""
        query = "?format=json&marker=" + quote(marker, safe="")
        # Swift asks the last primary; the others stand in when it is down.
        for node in reversed(nodes):
            try:
                async with self.session().get(
                    node_url(node, part, path, query),
                    headers={"User-Agent": f"account-reaper {os.getpid()}"},
                    timeout=self.timeout(),
                ) as resp:
                    body = await resp.read()
                    stats.code(resp.status)
                    if resp.status == 204 or resp.status == 404:
                        return [], 0
                    if resp.status != 200:
                        continue
                    policy = int(resp.headers.get("X-Backend-Storage-Policy-Index", "0"))
                    listing = json.loads(body)
                    return [o for o in listing if "name" in o], policy
            except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
                self.logger.error("Timeout Exception with %s:%s: %r", node["ip"], node["port"], exc)
        return None

    async def reap_container(
        self,
        account: str,
        account_part: int,
        account_nodes: Sequence[Node],
        container: str,
        stats: ReaperStats,
    ) -> None:
        cring = await self.ring("container")
        part, nodes = cring.get_nodes(account, container)
        path = f"/{account}/{container}"
        marker = ""
        slots = asyncio.Semaphore(self.concurrency)
        while not self.stopping.is_set():
            page = await self.list_objects(nodes, part, path, marker, stats)
            if not page or not page[0]:
                break
            objects, policy = page

            async def one(name: str, policy: int = policy) -> None:
                async with slots:
                    await self.reap_object(account, container, part, nodes, name, policy, stats)

            page_results = await asyncio.gather(
                *(one(str(o["name"])) for o in objects), return_exceptions=True
            )
            for res in page_results:
                if isinstance(res, Exception):
                    # One object's trouble must not stop the others.
                    self.logger.error(
                        "Exception with objects for container %s for account %s: %r",
                        container,
                        account,
                        res,
                    )
                    stats.errors += 1
            marker = str(objects[-1]["name"])
        timestamp = Timestamp.now().internal
        anodes = list(account_nodes)
        requests = []
        for node in nodes:
            # Swift pairs container node i with account node -(i+1).
            anode = anodes.pop() if anodes else account_nodes[0]
            headers = {
                "X-Timestamp": timestamp,
                "X-Account-Host": f"{anode['ip']}:{anode['port']}",
                "X-Account-Partition": str(account_part),
                "X-Account-Device": str(anode["device"]),
                "X-Account-Override-Deleted": "yes",
                "User-Agent": f"account-reaper {os.getpid()}",
            }
            requests.append(self.delete(node, part, path, headers, stats))
        results = await asyncio.gather(*requests)
        successes = sum(1 for ok in results if ok)
        failures = len(results) - successes
        stats.containers_failures += failures
        verdict = classify(successes, failures)
        setattr(stats, f"containers_{verdict}", getattr(stats, f"containers_{verdict}") + 1)

    async def reap_object(
        self,
        account: str,
        container: str,
        container_part: int,
        container_nodes: Sequence[Node],
        obj: str,
        policy_index: int,
        stats: ReaperStats,
    ) -> None:
        policy = self.cluster.get_policy(policy_index)
        try:
            if policy is None:
                raise ValueError(f"invalid storage policy index: {policy_index}")
            ring = await self.ring(policy.ring_name())
        except Exception as exc:
            self.logger.error("ERROR cannot delete %s/%s/%s: %s", account, container, obj, exc)
            stats.objects_remaining += 1
            return
        part, nodes = ring.get_nodes(account, container, obj)
        timestamp = Timestamp.now().internal
        path = f"/{account}/{container}/{obj}"
        requests = []
        for i, node in enumerate(nodes):
            cnode = container_nodes[i % len(container_nodes)]
            headers = {
                "X-Timestamp": timestamp,
                "X-Container-Host": f"{cnode['ip']}:{cnode['port']}",
                "X-Container-Partition": str(container_part),
                "X-Container-Device": str(cnode["device"]),
                "X-Backend-Storage-Policy-Index": str(policy_index),
                "User-Agent": f"account-reaper {os.getpid()}",
            }
            requests.append(self.delete(node, part, path, headers, stats))
        results = await asyncio.gather(*requests)
        successes = sum(1 for ok in results if ok)
        failures = len(results) - successes
        stats.objects_failures += failures
        verdict = classify(successes, failures)
        setattr(stats, f"objects_{verdict}", getattr(stats, f"objects_{verdict}") + 1)

    async def delete(
        self,
        node: Node,
        part: int,
        path: str,
        headers: dict[str, str],
        stats: ReaperStats,
    ) -> bool:
        """One backend DELETE; True on 2xx."""
        try:
            async with self.session().delete(
                node_url(node, part, path), headers=headers, timeout=self.timeout()
            ) as resp:
                await resp.read()
                stats.code(resp.status)
                return 200 <= resp.status < 300
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self.logger.error("Timeout Exception with %s:%s: %r", node["ip"], node["port"], exc)
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """``swiftlite-account-reaper <conf.yaml> [once] [-v]``."""
    return run_daemon(AccountReaper, AccountReaperConfig, argv, prog="swiftlite-account-reaper")


if __name__ == "__main__":
    raise SystemExit(main())
