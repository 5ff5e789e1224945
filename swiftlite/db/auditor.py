"""The account and container DB auditors (Swift's ``db_auditor.py``).

Each pass walks every device's ``<datadir>/<part>/<suffix>/<hash>/<hash>.db``
(``accounts`` or ``containers``) at most ``accounts_per_second`` /
``containers_per_second`` DBs per second, opens each DB and checks it:

* ``get_info`` must work (Swift's whole check): SQLite errors that mean the
  file is damaged ("malformed", "not a database", a garbage or truncated
  file) already quarantine inside the broker; "no such table" (a dropped or
  missing table) is quarantined here, as Swift's broker does;
* swiftlite also checks that the DB's two tables (``<type>_stat`` and the row
  table) exist, so a dropped row table is found even though ``get_info`` does
  not read it;
* ``PRAGMA quick_check`` runs on a sample (``quick_check_sample``, a fraction
  of the DBs; it reads the whole file, so it is not run on every DB by
  default) and always when ``get_info`` failed with an error that was not
  recognised as corruption; a result other than "ok" quarantines.

A quarantined DB's hash dir moves to ``<dev>/quarantined/<type>s/<hash>``
(the broker's ``quarantine``), so the replicator brings in a good copy.
A DB that is busy (lock timeout) is skipped for this pass.

Counts per pass: ``passes`` (good DBs), ``failures`` (bad DBs, each one
quarantined), ``quarantined``, ``skipped`` (busy or gone) and ``errors``
(unexpected). A log line per pass and the counts as JSON in the recon cache
(``<type>.recon``: ``<type>_audits_passed``, ``<type>_audits_failed``,
``<type>_auditor_pass_completed`` and ``<type>_auditor_stats``).

All SQLite and file work runs in the device's own threads
(``DeviceManager.run`` with ``priority="background"``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from swiftlite.common.config import DaemonConfig
from swiftlite.common.daemon import Daemon
from swiftlite.common.devices import DeviceError, DeviceManager
from swiftlite.common.node_client import list_devices
from swiftlite.common.ratelimit import RateLimiter
from swiftlite.common.recon import dump_recon
from swiftlite.db.broker import DatabaseBroker
from swiftlite.db.exceptions import DatabaseConnectionError, DatabaseQuarantined, LockTimeout

DEFAULT_RECON_CACHE_PATH = "/var/cache/swiftlite"


@dataclasses.dataclass
class DBAuditorConfig(DaemonConfig):
    """Settings both DB auditors share (Swift's ``[container-auditor]`` and
    ``[account-auditor]`` names and defaults; swiftlite-only ones marked)."""

    # Seconds between the starts of two passes.
    interval: float = 1800.0
    recon_cache_path: str = DEFAULT_RECON_CACHE_PATH
    # swiftlite: fraction (0..1) of DBs that also get PRAGMA quick_check,
    # which reads the whole file.
    quick_check_sample: float = 0.01
    # swiftlite: threads doing SQLite work per device.
    threads_per_disk: int = 1

    def rate(self) -> float:
        raise NotImplementedError

    def __post_init__(self) -> None:
        if self.interval < 0:
            raise ValueError("interval must be >= 0")
        if not 0.0 <= self.quick_check_sample <= 1.0:
            raise ValueError("quick_check_sample must be between 0 and 1")
        if self.threads_per_disk < 1:
            raise ValueError("threads_per_disk must be >= 1")
        if self.rate() < 0:
            raise ValueError("the per-second rate must be >= 0 (0 means unlimited)")


@dataclasses.dataclass
class ContainerAuditorConfig(DBAuditorConfig):
    log_name: str = "container-auditor"
    # Container DBs audited per second (0: unlimited).
    containers_per_second: float = 200.0

    def rate(self) -> float:
        return self.containers_per_second


@dataclasses.dataclass
class AccountAuditorConfig(DBAuditorConfig):
    log_name: str = "account-auditor"
    # Account DBs audited per second (0: unlimited).
    accounts_per_second: float = 200.0

    def rate(self) -> float:
        return self.accounts_per_second


@dataclasses.dataclass
class DBAuditorStats:
    passes: int = 0
    failures: int = 0
    quarantined: int = 0
    skipped: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        return ", ".join(f"{v} {k}" for k, v in self.as_dict().items())


# -- walking (blocking; run in the device's threads) ---------------------------


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except (NotADirectoryError, FileNotFoundError):
        return []


def partitions(device_path: str, datadir: str) -> list[str]:
    """Partition directory names under ``<device>/<datadir>``."""
    return sorted((p for p in _listdir(os.path.join(device_path, datadir)) if p.isdigit()), key=int)


def partition_dbs(device_path: str, datadir: str, partition: str) -> list[str]:
    """``<part>/<suffix>/<hash>/<hash>.db`` paths of one partition.

    A hash dir without its DB (removed, or a stray file) is passed over.
    """
    found: list[str] = []
    part_dir = os.path.join(device_path, datadir, partition)
    for suffix in sorted(_listdir(part_dir)):
        suffix_dir = os.path.join(part_dir, suffix)
        for hsh in sorted(_listdir(suffix_dir)):
            db = os.path.join(suffix_dir, hsh, hsh + ".db")
            if os.path.isfile(db):
                found.append(db)
    return found


def iter_device_dbs(device_path: str, datadir: str) -> Iterator[tuple[str, str]]:
    """Every (partition, db path) of a device."""
    for part in partitions(device_path, datadir):
        for db in partition_dbs(device_path, datadir, part):
            yield part, db


# -- one DB (blocking) ---------------------------------------------------------


def _missing_tables(conn: sqlite3.Connection, broker: DatabaseBroker) -> list[str]:
    names = {
        str(r[0])
        for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
    }
    wanted = [broker.stat_table, broker.db_contains_type]
    return [t for t in wanted if t and t not in names]


def _quick_check(conn: sqlite3.Connection) -> str | None:
    """None when SQLite finds the file sound, else its first complaint."""
    rows = conn.execute("PRAGMA quick_check(1)").fetchall()
    first = str(rows[0][0]) if rows else "no answer"
    return None if first == "ok" else first


def audit_db(broker_cls: type[DatabaseBroker], db_file: str, quick_check: bool) -> tuple[str, str]:
    """Audit one DB: ("ok", ""), ("quarantined", reason), ("skipped", why) when
    it is busy or gone, or ("error", text) for a failure that is not corruption."""
    broker = broker_cls(db_file, stale_reads_ok=True)
    try:
        try:
            broker.get_info()
            with broker.get() as conn:
                missing = _missing_tables(conn, broker)
                problem = _quick_check(conn) if quick_check else None
        except sqlite3.DatabaseError as err:
            if isinstance(err, DatabaseQuarantined):
                return "quarantined", err.reason
            if isinstance(err, DatabaseConnectionError):
                return "skipped", str(err)
            text = str(err)
            # "supported layout (missing ...)": the migration found none of
            # the tables (an emptied or foreign file), as good as no such table.
            if "no such table" in text or "supported layout (missing" in text:
                broker.quarantine("missing table")
            if "locked" in text or "busy" in text:
                return "skipped", text
            # Not recognised as corruption: let SQLite look at the whole file.
            found = _quick_check_file(db_file)
            if found is not None:
                broker.quarantine(f"quick_check: {found}")
            return "error", text
        if missing:
            broker.quarantine("missing table " + ", ".join(missing))
        if problem is not None:
            broker.quarantine(f"quick_check: {problem}")
        return "ok", ""
    except DatabaseQuarantined as err:
        return "quarantined", err.reason
    except (LockTimeout, FileNotFoundError) as err:
        return "skipped", str(err)
    finally:
        broker.close()


def _quick_check_file(db_file: str) -> str | None:
    """quick_check on a fresh, read-only connection (the broker's may be gone)."""
    try:
        conn = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=1.0)
    except sqlite3.Error as err:
        return str(err)
    try:
        return _quick_check(conn)
    except sqlite3.Error as err:
        return str(err)
    finally:
        conn.close()


# -- the daemon -----------------------------------------------------------------


class DBAuditor(Daemon):
    """Audits the DBs of one type; the role entry points pick the broker."""

    def __init__(
        self,
        conf: DBAuditorConfig,
        broker_cls: type[DatabaseBroker],
        datadir: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(conf)
        self.aconf = conf
        self.broker_cls = broker_cls
        self.datadir = datadir
        self.db_type = broker_cls.db_type
        self.clock = clock
        self.wall = wall
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.dm = DeviceManager(
            conf.devices, mount_check=conf.mount_check, threads_per_disk=conf.threads_per_disk
        )

    def reload(self, conf: DaemonConfig) -> None:
        assert isinstance(conf, DBAuditorConfig)
        super().reload(conf)
        self.aconf = conf

    async def list_devices(self) -> list[str]:
        return await list_devices(self.aconf.devices, self.logger)

    async def run_once(self) -> None:
        try:
            await self.audit_pass()
        finally:
            self.dm.close()

    async def audit_pass(self, devices: Sequence[str] | None = None) -> DBAuditorStats:
        begin = self.clock()
        start_wall = self.wall()
        total = DBAuditorStats()
        kind = self.db_type.capitalize()
        self.logger.info("Begin %s audit pass.", self.db_type)
        limiter = RateLimiter(self.aconf.rate(), self.clock, self.sleep)
        names = list(devices) if devices is not None else await self.list_devices()
        for device in names:
            if self.stopping.is_set():
                break
            try:
                device_path = await self.dm.run(
                    device, self.dm.check, device, priority="background"
                )
                parts = await self.dm.run(
                    device, partitions, device_path, self.datadir, priority="background"
                )
            except DeviceError as exc:
                self.logger.warning("Skipping %s: %s", device, exc)
                continue
            except OSError as exc:
                self.logger.error("ERROR Unable to access %s: %s", device, exc)
                total.errors += 1
                continue
            for part in parts:
                if self.stopping.is_set():
                    break
                try:
                    dbs = await self.dm.run(
                        device,
                        partition_dbs,
                        device_path,
                        self.datadir,
                        part,
                        priority="background",
                    )
                except OSError as exc:
                    self.logger.error("ERROR Unable to access %s/%s: %s", device, part, exc)
                    total.errors += 1
                    continue
                for db_file in dbs:
                    if self.stopping.is_set():
                        break
                    await limiter.consume(1)
                    await self.audit_one(device, db_file, total)
        elapsed = self.clock() - begin
        self.logger.info("%s audit pass completed: %.02fs, %s", kind, elapsed, total)
        try:
            await asyncio.to_thread(
                dump_recon,
                self.aconf.recon_cache_path,
                f"{self.db_type}.recon",
                {
                    f"{self.db_type}_audits_passed": total.passes,
                    f"{self.db_type}_audits_failed": total.failures,
                    f"{self.db_type}_auditor_pass_completed": elapsed,
                    f"{self.db_type}_auditor_stats": {**total.as_dict(), "start_time": start_wall},
                },
            )
        except OSError as exc:
            self.logger.error("cannot write recon cache %s: %s", self.aconf.recon_cache_path, exc)
        return total

    async def audit_one(self, device: str, db_file: str, stats: DBAuditorStats) -> None:
        quick = self.rng.random() < self.aconf.quick_check_sample
        try:
            verdict, detail = await self.dm.run(
                device, audit_db, self.broker_cls, db_file, quick, priority="background"
            )
        except Exception:
            self.logger.exception("ERROR Could not audit %s", db_file)
            stats.errors += 1
            return
        if verdict == "ok":
            stats.passes += 1
        elif verdict == "quarantined":
            stats.failures += 1
            stats.quarantined += 1
            self.logger.error("ERROR Quarantined %s DB %s: %s", self.db_type, db_file, detail)
        elif verdict == "error":
            stats.errors += 1
            self.logger.error("ERROR Could not audit %s: %s", db_file, detail)
        else:
            stats.skipped += 1
            self.logger.debug("Skipped %s: %s", db_file, detail)
