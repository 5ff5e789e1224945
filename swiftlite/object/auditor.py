"""``swiftlite-object-auditor``: finds bad object files before a client does.

Two kinds of pass walk ``<dev>/objects[-N]/<part>/<suffix>/<hash>`` of every
device and storage policy (swift-internals section 7):

* **ZBF**, the fast pass: opens each object and checks its metadata and size
  (see :mod:`auditor_checks`) without reading the data, at
  ``zero_byte_files_per_second``;
* **ALL**, the full pass: the same checks, then reads every byte and
  compares the md5 with the ETag, at ``files_per_second`` and
  ``bytes_per_second``.

A bad object is quarantined (its suffix invalidated, so the replicator
restores it from a peer), an object past its X-Delete-At is removed from
this disk (DESIGN section 6), and a tombstone older than ``reclaim_age`` gets
its suffix invalidated so the next rehash reclaims it. Progress is saved per
device, policy and pass type, so a restart resumes from where it stopped.
Statistics go to the recon cache (``object.recon``) and the log.

All disk work runs in the device's own threads at "background" priority,
behind the object server's client I/O; the limits apply per device, and
``concurrency`` devices are audited at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from swiftlite.common.config import ClusterConfig, DaemonConfig, load_cluster_config
from swiftlite.common.daemon import Daemon, run_daemon
from swiftlite.common.devices import DeviceError, DeviceManager
from swiftlite.common.ratelimit import RateLimiter
from swiftlite.common.recon import RECON_OBJECT_FILE, dump_recon
from swiftlite.common.stats import PassStats
from swiftlite.object import auditor_checks as checks
from swiftlite.object.auditor_state import (
    MIN_STATUS_UPDATE_INTERVAL,
    partitions_to_audit,
    save_status,
)
from swiftlite.object.daemon_config import ObjectAuditorConfig
from swiftlite.object.diskfile import DiskFileManager
from swiftlite.object.diskfile_ondisk import data_dir

ALL = "ALL"
ZBF = "ZBF"
# One thread per device: a pass is sequential within a device.
THREADS_PER_DEVICE = 1


@dataclasses.dataclass
class AuditStats(PassStats):
    files_processed: int = 0
    bytes_processed: int = 0
    quarantined: int = 0
    expired_removed: int = 0
    tombstones_invalidated: int = 0
    errors: int = 0


class ObjectAuditor(Daemon):
    """The auditor daemon; ``clock``/``sleep`` are injectable for tests."""

    def __init__(
        self,
        conf: ObjectAuditorConfig,
        cluster: ClusterConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(conf)
        self.aconf = conf
        self.cluster = cluster if cluster is not None else load_cluster_config(conf.swift_dir)
        self.clock = clock
        self.sleep = sleep
        self.wall_clock = wall_clock
        self.status_interval = MIN_STATUS_UPDATE_INTERVAL
        self.dm = DeviceManager(
            conf.devices, mount_check=conf.mount_check, threads_per_disk=THREADS_PER_DEVICE
        )
        self.mgr = DiskFileManager(
            conf.devices, reclaim_age=conf.reclaim_age, mount_check=conf.mount_check
        )
        # Totals of the pass in progress (per type), for progress lines.
        self.current: dict[str, AuditStats] = {}
        self._last_log: dict[str, float] = {}

    def reload(self, conf: DaemonConfig) -> None:
        assert isinstance(conf, ObjectAuditorConfig)
        super().reload(conf)
        self.aconf = conf

    # -- passes ------------------------------------------------------------

    async def run_once(self) -> None:
        """One pass: ZBF with ``mode: zbf``, else ALL (which includes ZBF's checks)."""
        await self.audit_pass(ZBF if self.aconf.mode == "zbf" else ALL)

    async def run_forever(self) -> None:
        kinds = {"both": [ZBF, ALL], "all": [ALL], "zbf": [ZBF]}[self.aconf.mode]
        await asyncio.gather(*(self._loop(kind) for kind in kinds))

    async def _loop(self, kind: str) -> None:
        while not self.stopping.is_set():
            begin = self.clock()
            try:
                await self.audit_pass(kind)
            except Exception:
                self.logger.exception("object audit (%s) pass failed", kind)
            wait = max(0.0, self.aconf.interval - (self.clock() - begin))
            try:
                await asyncio.wait_for(self.stopping.wait(), timeout=wait)
            except TimeoutError:
                pass

    async def list_devices(self) -> list[str]:
        try:
            names = await asyncio.to_thread(os.listdir, self.aconf.devices)
        except OSError as exc:
            self.logger.error("cannot list devices in %s: %s", self.aconf.devices, exc)
            return []
        return sorted(names)

    async def audit_pass(self, kind: str, devices: Sequence[str] | None = None) -> AuditStats:
        """Audit every device (or ``devices``); returns the pass totals."""
        start_wall = self.wall_clock()
        start = self.clock()
        total = AuditStats()
        self.current[kind] = total
        self._last_log[kind] = start
        self.logger.info("Begin object audit (%s)", kind)
        names = list(devices) if devices is not None else await self.list_devices()
        per_device: dict[str, dict[str, int]] = {}
        sem = asyncio.Semaphore(self.aconf.concurrency)

        async def one(device: str) -> None:
            async with sem:
                if self.stopping.is_set():
                    return
                stats = await self.audit_device(device, kind, total)
                per_device[device] = stats.as_dict()

        await asyncio.gather(*(one(d) for d in names))
        elapsed = self.clock() - start
        self.logger.info(
            "Object audit (%s) pass completed: %.02fs. %d files, %d bytes, "
            "%d quarantined, %d expired removed, %d tombstones to reclaim, %d errors",
            kind,
            elapsed,
            total.files_processed,
            total.bytes_processed,
            total.quarantined,
            total.expired_removed,
            total.tombstones_invalidated,
            total.errors,
        )
        await self._dump(
            kind,
            {
                **total.as_dict(),
                "passes": total.files_processed,  # Swift's name for the same count
                "start_time": start_wall,
                "audit_time": elapsed,
                "completed": not self.stopping.is_set(),
                "devices": per_device,
            },
        )
        return total

    async def _dump(self, kind: str, entry: dict[str, Any]) -> None:
        try:
            await asyncio.to_thread(
                dump_recon,
                self.aconf.recon_cache_path,
                RECON_OBJECT_FILE,
                {f"object_auditor_stats_{kind}": entry},
            )
        except OSError as exc:
            self.logger.error("cannot write recon cache %s: %s", self.aconf.recon_cache_path, exc)

    async def audit_device(self, device: str, kind: str, total: AuditStats) -> AuditStats:
        stats = AuditStats()
        try:
            await self.dm.run(device, self.dm.check, device, priority="background")
        except DeviceError as exc:
            self.logger.warning("Skipping %s: %s", device, exc)
            return stats
        except OSError as exc:
            self.logger.error("Skipping %s: %s", device, exc)
            stats.errors += 1
            total.errors += 1
            return stats
        if kind == ZBF:
            files = RateLimiter(self.aconf.zero_byte_files_per_second, self.clock, self.sleep)
            nbytes = None
        else:
            files = RateLimiter(self.aconf.files_per_second, self.clock, self.sleep)
            nbytes = RateLimiter(self.aconf.bytes_per_second, self.clock, self.sleep)
        for policy in self.cluster.policies:
            if self.stopping.is_set():
                break
            await self._audit_policy(device, policy.index, kind, stats, total, files, nbytes)
        return stats

    async def _audit_policy(
        self,
        device: str,
        policy_index: int,
        kind: str,
        stats: AuditStats,
        total: AuditStats,
        files: RateLimiter,
        nbytes: RateLimiter | None,
    ) -> None:
        datadir = os.path.join(self.aconf.devices, device, data_dir(policy_index))
        try:
            parts = await self.dm.run(
                device, partitions_to_audit, datadir, kind, priority="background"
            )
        except OSError as exc:
            self.logger.error("cannot list %s: %s", datadir, exc)
            stats.errors += 1
            total.errors += 1
            return
        for pos, part in enumerate(parts):
            if self.stopping.is_set():
                return  # the saved status keeps what is left for the restart
            await self._save(device, datadir, kind, parts[pos:], self.status_interval)
            try:
                hashes = await self.dm.run(
                    device,
                    checks.list_object_hashes,
                    os.path.join(datadir, part),
                    priority="background",
                )
            except OSError as exc:
                self.logger.error("cannot list partition %s/%s: %s", datadir, part, exc)
                stats.errors += 1
                total.errors += 1
                continue
            for name_hash in hashes:
                if self.stopping.is_set():
                    return
                await files.consume(1)
                delta = await self.audit_object(device, part, name_hash, policy_index, kind, nbytes)
                stats.add(delta)
                total.add(delta)
                await self._maybe_log(kind)
        # A completed walk: the next pass starts over.
        await self._save(device, datadir, kind, [], 0.0)

    async def _save(
        self, device: str, datadir: str, kind: str, parts: list[str], interval: float
    ) -> None:
        try:
            await self.dm.run(
                device, save_status, datadir, kind, parts, interval, priority="background"
            )
        except OSError as exc:
            self.logger.warning("cannot save audit status in %s: %s", datadir, exc)

    async def audit_object(
        self,
        device: str,
        partition: str,
        name_hash: str,
        policy_index: int,
        kind: str,
        nbytes: RateLimiter | None = None,
    ) -> AuditStats:
        """Audit one object; returns what it adds to the statistics."""
        delta = AuditStats(files_processed=1)
        try:
            outcome = await self.dm.run(
                device,
                checks.audit_metadata,
                self.mgr,
                device,
                partition,
                name_hash,
                policy_index,
                now=self.wall_clock(),
                reclaim_age=self.aconf.reclaim_age,
                remove_expired=self.aconf.remove_expired,
                full=kind == ALL,
                priority="background",
            )
        except Exception as exc:
            self.logger.error(
                "ERROR Trying to audit %s/%s/%s (policy %d): %r",
                device,
                partition,
                name_hash,
                policy_index,
                exc,
            )
            delta.errors += 1
            return delta
        if outcome.kind == checks.QUARANTINED:
            self.logger.error(
                "ERROR Object %s/%s failed audit and was quarantined: %s",
                device,
                name_hash,
                outcome.reason,
            )
            delta.quarantined += 1
        elif outcome.kind == checks.EXPIRED_REMOVED:
            delta.expired_removed += 1
        elif outcome.kind == checks.TOMBSTONE_RECLAIM:
            delta.tombstones_invalidated += 1
        elif outcome.kind == checks.READ and outcome.reader is not None:
            await self._read_all(device, name_hash, outcome, delta, nbytes)
        return delta

    async def _read_all(
        self,
        device: str,
        name_hash: str,
        outcome: checks.Outcome,
        delta: AuditStats,
        nbytes: RateLimiter | None,
    ) -> None:
        reader = outcome.reader
        assert reader is not None
        chunk = self.aconf.disk_chunk_size
        try:
            while not self.stopping.is_set():
                got = await self.dm.run(
                    device, checks.read_chunk, reader, chunk, priority="background"
                )
                if not got:
                    break
                delta.bytes_processed += got
                if nbytes is not None:
                    await nbytes.consume(got)
            if self.stopping.is_set():
                await self.dm.run(device, reader.close, priority="background")
                return
            reason = await self.dm.run(device, checks.finish_read, reader, priority="background")
        except OSError as exc:
            await self.dm.run(device, reader.close, priority="background")
            if reader.quarantined:
                reason = f"read error: {exc}"
            else:
                self.logger.error("ERROR reading %s/%s: %r", device, name_hash, exc)
                delta.errors += 1
                return
        if reason:
            self.logger.error(
                "ERROR Object %s/%s failed audit and was quarantined: %s",
                device,
                name_hash,
                reason,
            )
            delta.quarantined += 1

    async def _maybe_log(self, kind: str) -> None:
        now = self.clock()
        if now - self._last_log.get(kind, now) < self.aconf.log_time:
            return
        self._last_log[kind] = now
        total = self.current[kind]
        self.logger.info(
            "Object audit (%s) progress: %d files, %d bytes, %d quarantined, "
            "%d expired removed, %d errors",
            kind,
            total.files_processed,
            total.bytes_processed,
            total.quarantined,
            total.expired_removed,
            total.errors,
        )
        await self._dump(kind + "_progress", {**total.as_dict(), "time": self.wall_clock()})

    def close(self) -> None:
        self.dm.close()


def main(argv: Sequence[str] | None = None) -> int:
    """``swiftlite-object-auditor <conf.yaml> [once] [-v]``."""
    return run_daemon(ObjectAuditor, ObjectAuditorConfig, argv, prog="swiftlite-object-auditor")


if __name__ == "__main__":
    raise SystemExit(main())
