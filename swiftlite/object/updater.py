"""``swiftlite-object-updater``: delivers the container updates the object
server could not (swift-internals 4.4).

Each pass walks every device's ``async_pending[-N]/<suffix>/`` dirs. Per
object only the newest record is kept (older ones are unlinked). The update
(PUT or DELETE with the record's headers) goes to every container replica
the container ring names for the record's account/container (or shard
``container_path``) that is not yet in the record's ``successes``. When all
have answered 2xx the record is unlinked; otherwise the nodes that did
succeed are written back into the record (atomically) so the retry goes to
the others only. A 301 from a sharded container moves the update to the
shard and is retried at once, with Swift's redirect-loop guard.

Per device: records at most ``objects_per_second``, at most ``concurrency``
updates in flight, and all file work in the device's own threads, so a slow
disk holds up its own records only. ``updater_workers`` devices are swept at
once. A log line per device sweep and per pass; totals go to the recon cache.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import quote, unquote, urlparse

import aiohttp
from yarl import URL

from swiftlite.common.config import ClusterConfig, DaemonConfig, load_cluster_config
from swiftlite.common.daemon import Daemon, run_daemon
from swiftlite.common.devices import DeviceError, DeviceManager
from swiftlite.common.http import header_true, split_path
from swiftlite.common.logs import set_txn_id
from swiftlite.common.node_client import NodeSessionHolder, list_devices
from swiftlite.common.ratelimit import RateLimiter
from swiftlite.common.recon import RECON_OBJECT_FILE, dump_recon
from swiftlite.common.stats import PassStats
from swiftlite.common.timestamp import Timestamp
from swiftlite.object import updater_records as records
from swiftlite.object.daemon_config import ObjectUpdaterConfig
from swiftlite.ring.ring import Node, Ring, load_or_refresh

# Outcomes of one delivery attempt of a record.
DONE = "done"  # every replica has it; the record is gone
REDIRECTED = "redirected"  # moved to a shard; retry there
REWRITE = "rewrite"  # some replicas succeeded; save that
UNCHANGED = "unchanged"

# Record file work is small (read a few hundred bytes, rename, unlink).
THREADS_PER_DEVICE = 2


@dataclasses.dataclass
class UpdaterStats(PassStats):
    successes: int = 0
    failures: int = 0
    quarantines: int = 0
    unlinks: int = 0
    outdated_unlinks: int = 0
    redirects: int = 0
    errors: int = 0


def update_path(record: dict[str, Any]) -> tuple[str, str]:
    """Account and container the update goes to: the shard's when redirected."""
    container_path = record.get("container_path")
    if container_path:
        acct, cont = split_path("/" + container_path, 2)
        assert acct is not None and cont is not None
        return acct, cont
    return record["account"], record["container"]


def redirect_data(resp: aiohttp.ClientResponse) -> tuple[str, Timestamp] | None:
    """``("<account>/<container>", timestamp)`` of a shard redirect, or None.

    Raises ValueError for a Location or redirect timestamp that does not parse.
    """
    location = resp.headers.get("Location")
    if not location:
        return None
    path = urlparse(location).path
    if header_true(resp.headers, "X-Backend-Location-Is-Quoted"):
        path = unquote(path)
    account, container, _rest = split_path(path, 2, 3, True)
    value = resp.headers.get("X-Backend-Redirect-Timestamp")
    if not value:
        raise ValueError("redirect without X-Backend-Redirect-Timestamp")
    return f"{account}/{container}", Timestamp(value)


class ObjectUpdater(Daemon):
    """The updater daemon; ``clock``/``sleep`` and the ring are injectable for tests."""

    def __init__(
        self,
        conf: ObjectUpdaterConfig,
        cluster: ClusterConfig | None = None,
        *,
        ring: Ring | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        super().__init__(conf)
        self.uconf = conf
        self.cluster = cluster if cluster is not None else load_cluster_config(conf.swift_dir)
        self.ring = ring
        self.clock = clock
        self.sleep = sleep
        self.dm = DeviceManager(
            conf.devices, mount_check=conf.mount_check, threads_per_disk=THREADS_PER_DEVICE
        )
        self._sessions = NodeSessionHolder(limit_per_host=64)

    def reload(self, conf: DaemonConfig) -> None:
        assert isinstance(conf, ObjectUpdaterConfig)
        super().reload(conf)
        self.uconf = conf

    # -- setup ---------------------------------------------------------------

    async def get_ring(self) -> Ring | None:
        """The container ring, loaded (or refreshed) off the event loop."""
        try:
            self.ring = await load_or_refresh(self.ring, self.uconf.swift_dir, "container")
        except Exception as exc:
            self.logger.error("ERROR cannot load the container ring: %s", exc)
        return self.ring

    def session(self) -> aiohttp.ClientSession:
        return self._sessions.get()

    async def close(self) -> None:
        await self._sessions.close()
        self.dm.close()

    async def list_devices(self) -> list[str]:
        return await list_devices(self.uconf.devices, self.logger)

    # -- passes --------------------------------------------------------------

    async def run_once(self) -> None:
        try:
            await self.update_pass()
        finally:
            # A pass leaves no connections behind (the next one may be 5 min away).
            await self._sessions.close()

    async def update_pass(self, devices: Sequence[str] | None = None) -> UpdaterStats:
        begin = self.clock()
        start_wall = time.time()
        total = UpdaterStats()
        self.logger.info("Begin object update sweep")
        ring = await self.get_ring()
        if ring is None:
            return total
        names = list(devices) if devices is not None else await self.list_devices()
        sem = asyncio.Semaphore(self.uconf.updater_workers)
        per_device: dict[str, dict[str, int]] = {}

        async def one(device: str) -> None:
            async with sem:
                if self.stopping.is_set():
                    return
                stats = await self.sweep_device(device, ring)
                per_device[device] = stats.as_dict()
                total.add(stats)

        await asyncio.gather(*(one(d) for d in names))
        elapsed = self.clock() - begin
        self.logger.info("Object update sweep completed: %.02fs, %s", elapsed, total)
        try:
            await asyncio.to_thread(
                dump_recon,
                self.uconf.recon_cache_path,
                RECON_OBJECT_FILE,
                {
                    "object_updater_sweep": elapsed,
                    "object_updater_stats": {
                        **total.as_dict(),
                        "start_time": start_wall,
                        "devices": per_device,
                    },
                },
            )
        except OSError as exc:
            self.logger.error("cannot write recon cache %s: %s", self.uconf.recon_cache_path, exc)
        return total

    async def sweep_device(self, device: str, ring: Ring) -> UpdaterStats:
        stats = UpdaterStats()
        try:
            device_path = await self.dm.run(device, self.dm.check, device, priority="background")
            dirs = await self.dm.run(device, records.async_dirs, device_path, priority="background")
        except DeviceError as exc:
            self.logger.warning("Skipping %s: %s", device, exc)
            return stats
        except OSError as exc:
            self.logger.error("ERROR Unable to access %s: %s", device, exc)
            stats.errors += 1
            return stats
        start = self.clock()
        last_report = start
        self.logger.info("Object update sweep starting on %s", device)
        limiter = RateLimiter(self.uconf.max_objects_per_second, self.clock, self.sleep)
        slots = asyncio.Semaphore(self.uconf.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        known = {p.index for p in self.cluster.policies}
        for async_path, policy_index in dirs:
            if policy_index is None or policy_index not in known:
                self.logger.warning(
                    "Directory %r does not map to a valid policy", os.path.basename(async_path)
                )
                continue
            try:
                prefixes = await self.dm.run(
                    device, records.list_prefixes, async_path, priority="background"
                )
            except OSError as exc:
                self.logger.error("ERROR Unable to access %s: %s", async_path, exc)
                stats.errors += 1
                continue
            for prefix in prefixes:
                if self.stopping.is_set():
                    break
                try:
                    scan = await self.dm.run(
                        device,
                        records.scan_prefix,
                        os.path.join(async_path, prefix),
                        policy_index,
                        priority="background",
                    )
                except OSError as exc:
                    self.logger.error("ERROR Unable to access %s/%s: %s", async_path, prefix, exc)
                    stats.errors += 1
                    continue
                stats.outdated_unlinks += scan.outdated_unlinks
                for bad in scan.bad_names:
                    self.logger.error("ERROR async pending file with unexpected name %s", bad)
                    stats.errors += 1
                for rec in scan.records:
                    if self.stopping.is_set():
                        break
                    await limiter.consume(1)
                    await slots.acquire()
                    task = asyncio.create_task(self._guarded(device, device_path, rec, ring, stats))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    task.add_done_callback(lambda _t: slots.release())
                    now = self.clock()
                    if now - last_report >= self.uconf.report_interval:
                        last_report = now
                        self.logger.info(
                            "Object update sweep progress on %s: %.02fs, %s",
                            device,
                            now - start,
                            stats,
                        )
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.logger.info(
            "Object update sweep completed on %s in %.02fs: %s", device, self.clock() - start, stats
        )
        return stats

    async def _guarded(
        self,
        device: str,
        device_path: str,
        rec: records.PendingRecord,
        ring: Ring,
        stats: UpdaterStats,
    ) -> None:
        try:
            await self.process_record(device, device_path, rec, ring, stats)
        except Exception:
            self.logger.exception("ERROR processing async pending %s", rec.path)
            stats.errors += 1

    # -- one record ----------------------------------------------------------

    async def process_record(
        self,
        device: str,
        device_path: str,
        rec: records.PendingRecord,
        ring: Ring,
        stats: UpdaterStats,
    ) -> None:
        try:
            record = await self.dm.run(
                device, records.load_record, rec.path, device_path, priority="background"
            )
        except records.RecordQuarantined as exc:
            self.logger.error("ERROR bad async pending record, quarantined: %s", exc)
            stats.quarantines += 1
            return
        if record is None:
            return
        # Log lines about this update carry the request's transaction id.
        set_txn_id(record["headers"].get("x-trans-id"))
        outcome = await self._update(device, rec, record, ring, stats)
        if outcome == REDIRECTED:
            # One immediate retry at the shard the container pointed to. The
            # redirect stays in the record even when that retry fails (Swift
            # would forget it and ask the root again next time).
            outcome = await self._update(device, rec, record, ring, stats)
            if outcome == UNCHANGED:
                outcome = REWRITE
        if outcome in (REWRITE, REDIRECTED):
            await self.dm.run(
                device,
                records.rewrite_record,
                rec.path,
                record,
                device_path,
                rec.policy_index,
                priority="background",
            )

    async def _update(
        self,
        device: str,
        rec: records.PendingRecord,
        record: dict[str, Any],
        ring: Ring,
        stats: UpdaterStats,
    ) -> str:
        """Send to the nodes still missing; DONE, REDIRECTED, REWRITE or UNCHANGED."""
        successes: list[int] = list(record.get("successes") or [])
        headers = {str(k).lower(): str(v) for k, v in record["headers"].items()}
        headers["user-agent"] = f"object-updater {os.getpid()}"
        headers.setdefault("x-backend-storage-policy-index", str(rec.policy_index))
        headers.setdefault("x-backend-accept-redirect", "true")
        headers.setdefault("x-backend-accept-quoted-location", "true")
        acct, cont = update_path(record)
        part, nodes = ring.get_nodes(acct, cont)
        path = f"/{acct}/{cont}/{record['obj']}"
        todo = [n for n in nodes if n.get("id") not in successes]
        results = await asyncio.gather(
            *(self.send(node, part, record["op"], path, headers) for node in todo)
        )
        success = bool(nodes)
        new_successes = False
        redirects: set[tuple[str, Timestamp]] = set()
        for node, (ok, redirect) in zip(todo, results, strict=True):
            if ok:
                successes.append(node["id"])
                new_successes = True
            else:
                success = False
            if redirect is not None:
                redirects.add(redirect)
        if not nodes:
            self.logger.error("ERROR no container nodes for %s/%s in the ring", acct, cont)
        if success:
            stats.successes += 1
            self.logger.debug("Update sent for %s %s", path, rec.path)
            await self.dm.run(device, records.remove_record, rec.path, priority="background")
            stats.unlinks += 1
            return DONE
        if redirects:
            # Successes were at the old place; the shard has seen nothing.
            record.pop("successes", None)
            target = max(redirects, key=lambda r: r[1])[0]
            history: list[str] = record.setdefault("redirect_history", [])
            if target in history:
                # A loop: send the next try to the root, and start over.
                record["container_path"] = None
                record["redirect_history"] = []
            else:
                record["container_path"] = target
                history.append(target)
            stats.redirects += 1
            self.logger.debug("Update redirected for %s to %s", path, record["container_path"])
            return REDIRECTED
        stats.failures += 1
        self.logger.debug("Update failed for %s %s", path, rec.path)
        if new_successes:
            record["successes"] = successes
            return REWRITE
        return UNCHANGED

    async def send(
        self, node: Node, part: int, op: str, path: str, headers: dict[str, str]
    ) -> tuple[bool, tuple[str, Timestamp] | None]:
        """One container update; (2xx?, redirect data of a 301)."""
        ip = node.get("replication_ip") or node["ip"]
        port = node.get("replication_port") or node["port"]
        if ":" in ip and not ip.startswith("["):
            ip = f"[{ip}]"
        full = quote(f"/{node['device']}/{part}{path}", safe="/")
        url = URL(f"http://{ip}:{port}{full}", encoded=True)
        timeout = aiohttp.ClientTimeout(
            total=self.uconf.conn_timeout + self.uconf.node_timeout,
            sock_connect=self.uconf.conn_timeout,
        )
        where = f"{ip}:{port}/{node['device']}"
        try:
            # A 301 is a shard redirect for this updater to act on, never
            # something for the HTTP client to follow by itself.
            async with self.session().request(
                op, url, headers=headers, timeout=timeout, allow_redirects=False
            ) as resp:
                await resp.read()
                redirect = None
                if resp.status == 301:
                    try:
                        redirect = redirect_data(resp)
                    except ValueError as exc:
                        self.logger.error(
                            "Container update failed for %r; problem with redirect location: %s",
                            path,
                            exc,
                        )
                ok = 200 <= resp.status < 300
                if not ok:
                    self.logger.debug("Error code %d is returned from %s", resp.status, where)
                return ok, redirect
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            self.logger.info("ERROR with remote server %s: %r", where, exc)
        return False, None


def main(argv: Sequence[str] | None = None) -> int:
    """``swiftlite-object-updater <conf.yaml> [once] [-v]``."""
    return run_daemon(ObjectUpdater, ObjectUpdaterConfig, argv, prog="swiftlite-object-updater")


if __name__ == "__main__":
    raise SystemExit(main())
