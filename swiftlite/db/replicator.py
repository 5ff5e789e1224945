"""The sending side of DB replication, shared by the container and account
replicators (Swift's ``db_replicator.Replicator``; protocol in
:mod:`swiftlite.db.replication_server` and docs/db-replication.md).

One pass: for every local device in the ring, every ``<hash>.db`` under the
role's datadir is

1. flushed (pending file), its tombstone rows older than ``reclaim_age``
   reclaimed; a long-deleted empty DB is removed instead of replicated;
2. offered to the partition's other primaries (a handoff DB: to every
   primary) with ``sync``; a peer without the DB gets a consistent copy of
   the whole file; a peer that is behind gets the rows after its sync point
   in ``merge_items`` batches of ``per_diff`` (at most ``max_diffs`` per pass),
   then our incoming sync points (``merge_syncs``); we record how far it got;
3. a handoff DB is removed once every primary is in sync with it (and no row
   arrived meanwhile).

A corrupt DB is quarantined by the broker when it is opened. Statistics of
the last pass go to ``<recon_cache_path>/<type>-replicator.json`` and one log
line.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import sqlite3
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import aiohttp

from swiftlite.common.daemon import Daemon
from swiftlite.common.devices import DeviceError, DeviceManager
from swiftlite.common.ips import local_ips
from swiftlite.common.timestamp import Timestamp
from swiftlite.db import pending
from swiftlite.db.broker import DatabaseBroker
from swiftlite.db.exceptions import DatabaseConnectionError, DatabaseQuarantined, LockTimeout
from swiftlite.db.replication_server import CHUNK, OP_HEADER, REMOTE_ID_HEADER
from swiftlite.db.replicator_config import DBReplicatorConfig
from swiftlite.ring.ring import Node, Ring

SNAPSHOT_SUFFIX = ".db-copy"


@dataclasses.dataclass
class ReplStats:
    """Swift's replication_stats names; written after each pass."""

    start: float = 0.0
    attempted: int = 0
    success: int = 0
    failure: int = 0
    no_change: int = 0
    hashmatch: int = 0
    rsync: int = 0  # whole-DB copies (Swift's name; no rsync is involved)
    diff: int = 0
    diff_capped: int = 0
    remove: int = 0
    reclaimed: int = 0
    quarantined: int = 0
    empty: int = 0
    remote_merge: int = 0


@dataclasses.dataclass
class DBJob:
    device: str
    partition: int
    db_file: str
    local_dev: Node

    @property
    def name_hash(self) -> str:
        return os.path.basename(self.db_file)[: -len(".db")]


class SyncFailed(Exception):
    """A peer answered something other than success; the DB is not in sync there."""

    def __init__(self, op: str, status: int) -> None:
        super().__init__(f"{op} answered {status}")
        self.status = status


class DBReplicator(Daemon):
    """Subclasses set the broker class, datadir and server type."""

    broker_class: ClassVar[type[DatabaseBroker]]
    datadir: ClassVar[str]
    server_type: ClassVar[str]

    def __init__(self, conf: DBReplicatorConfig) -> None:
        super().__init__(conf)
        self.conf: DBReplicatorConfig = conf
        self.devices = DeviceManager(
            conf.devices,
            mount_check=conf.mount_check,
            disk_limit=1 << 30,  # the semaphore below bounds this daemon
            threads_per_disk=conf.threads_per_disk,
        )
        self.ips = local_ips(conf.bind_ip)
        self.ring: Ring | None = None
        self.stats = ReplStats()
        self._session: aiohttp.ClientSession | None = None

    def reload(self, conf: Any) -> None:
        super().reload(conf)
        self.ips = local_ips(conf.bind_ip)

    # -- ring and jobs -------------------------------------------------------

    async def load_ring(self) -> Ring:
        path = os.path.join(self.conf.swift_dir, f"{self.server_type}.ring.gz")
        if self.ring is None:
            self.ring = await asyncio.to_thread(Ring, path)
        else:
            await self.ring.reload_async()
        return self.ring

    def is_local(self, dev: Node) -> bool:
        ip = dev.get("replication_ip") or dev.get("ip")
        port = dev.get("replication_port") or dev.get("port")
        return ip in self.ips and port == self.conf.bind_port

    def _find_dbs(self, device: str, local_dev: Node) -> list[DBJob]:
        root = self.devices.check(device)
        # Snapshots left by a pass that died mid-upload (a live one is recent).
        _unlink_old_files(os.path.join(root, "tmp"), SNAPSHOT_SUFFIX, time.time() - 3600)
        jobs: list[DBJob] = []
        datadir = os.path.join(root, self.datadir)
        try:
            parts = os.listdir(datadir)
        except FileNotFoundError:
            return jobs
        for part in parts:
            if not part.isdigit():
                continue
            part_dir = os.path.join(datadir, part)
            with contextlib.suppress(NotADirectoryError, FileNotFoundError):
                for suffix in os.listdir(part_dir):
                    suffix_dir = os.path.join(part_dir, suffix)
                    with contextlib.suppress(NotADirectoryError, FileNotFoundError):
                        for name_hash in os.listdir(suffix_dir):
                            db_file = os.path.join(suffix_dir, name_hash, name_hash + ".db")
                            if os.path.exists(db_file):
                                jobs.append(DBJob(device, int(part), db_file, local_dev))
        return jobs

    async def collect_jobs(self) -> list[DBJob]:
        ring = await self.load_ring()
        jobs: list[DBJob] = []
        seen: set[str] = set()
        for dev in ring.devs:
            if dev is None or not self.is_local(dev) or dev["device"] in seen:
                continue
            seen.add(dev["device"])
            try:
                jobs.extend(
                    await self.devices.run(
                        dev["device"], self._find_dbs, dev["device"], dev, priority="replication"
                    )
                )
            except DeviceError as exc:
                self.logger.warning("Skipping %s: %s", dev["device"], exc)
                self.stats.failure += 1
        return jobs

    # -- a pass --------------------------------------------------------------

    async def run_once(self) -> None:
        self.stats = ReplStats(start=time.time())
        self.logger.info("Beginning replication run")
        jobs = await self.collect_jobs()
        sem = asyncio.Semaphore(self.conf.concurrency)

        async def one(job: DBJob) -> None:
            async with sem:
                try:
                    await self.replicate_db(job)
                except Exception:
                    self.stats.failure += 1
                    self.logger.exception("ERROR replicating %s", job.db_file)

        try:
            await asyncio.gather(*(one(job) for job in jobs))
        finally:
            await self._close_session()
        elapsed = time.time() - self.stats.start
        doc = dataclasses.asdict(self.stats) | {"time": elapsed, "dbs": len(jobs)}
        await asyncio.to_thread(_write_json, self.conf.recon_cache_path, self.stats_file, doc)
        self.logger.info(
            "Replication run OVER: %d DBs in %.2fs; %s",
            len(jobs),
            elapsed,
            ", ".join(f"{k} {v}" for k, v in doc.items() if k not in ("start", "time")),
        )

    @property
    def stats_file(self) -> str:
        return f"{self.server_type}-replicator.json"

    async def _run(self, job: DBJob, fn: Any, *args: Any) -> Any:
        return await self.devices.run(job.device, fn, *args, priority="replication")

    def _broker(self, job: DBJob) -> DatabaseBroker:
        return self.broker_class(job.db_file, logger=self.logger)

    def _prepare(self, job: DBJob) -> tuple[dict[str, Any] | None, bool]:
        """(replication info, reclaimable); reclaims old tombstone rows on the way."""
        now = time.time()
        _unlink_old_files(os.path.dirname(job.db_file), ".tmp", now - self.conf.reclaim_age)
        with self._broker(job) as broker:
            broker.reclaim(now - self.conf.reclaim_age, now - 2 * self.conf.reclaim_age)
            info = broker.get_replication_info()
            return info, self._is_reclaimable(broker, info, now)

    def _is_reclaimable(self, broker: DatabaseBroker, info: dict[str, Any], now: float) -> bool:
        check = getattr(broker, "is_reclaimable", None)
        if check is not None:
            return bool(check(now, self.conf.reclaim_age))
        cutoff = Timestamp(max(0.0, now - self.conf.reclaim_age))
        return (
            info.get("status") == "DELETED"
            and cutoff > Timestamp(info["delete_timestamp"]) > Timestamp(info["put_timestamp"])
            and broker.empty()
        )

    async def replicate_db(self, job: DBJob) -> None:
        self.stats.attempted += 1
        try:
            info, reclaimable = await self._run(job, self._prepare, job)
        except DatabaseQuarantined as exc:
            self.stats.quarantined += 1
            self.logger.error("%s", exc)
            return
        except (DatabaseConnectionError, FileNotFoundError):
            return  # removed meanwhile
        except (LockTimeout, sqlite3.OperationalError) as exc:
            self.stats.failure += 1
            self.logger.warning("Skipping %s this pass: %s", job.db_file, exc)
            return
        assert info is not None
        if reclaimable:
            await self._run(job, _remove_db_dir, os.path.dirname(job.db_file))
            self.stats.reclaimed += 1
            return
        if info.get("count", 0) == 0:
            self.stats.empty += 1
        ring = self.ring
        assert ring is not None
        primaries = ring.get_part_nodes(job.partition)
        is_primary = any(n["id"] == job.local_dev["id"] for n in primaries)
        targets = [n for n in primaries if n["id"] != job.local_dev["id"]]
        results = await asyncio.gather(
            *(self._repl_to_node(job, node, info) for node in targets), return_exceptions=True
        )
        ok = self._count(job, targets, results)
        unmounted = sum(1 for res in results if isinstance(res, SyncFailed) and res.status == 507)
        if is_primary and unmounted:
            # A primary's disk is out: keep one more copy on a handoff meanwhile
            # (as Swift); that copy drains home once the disk is back.
            held = {n["id"] for n in primaries}
            extra = [n for n in ring.get_more_nodes(job.partition) if n["id"] not in held]
            extra = [n for n in extra if n["id"] != job.local_dev["id"]][:unmounted]
            more = await asyncio.gather(
                *(self._repl_to_node(job, node, info) for node in extra), return_exceptions=True
            )
            self._count(job, extra, more)
        if not is_primary and targets and ok == len(targets):
            table = self.broker_class.db_contains_type
            if await self._run(job, _remove_handoff, job.db_file, int(info["max_row"]), table):
                self.stats.remove += 1
                self.logger.info("Removed handoff %s: every primary has it", job.db_file)

    def _count(self, job: DBJob, nodes: list[Node], results: list[Any]) -> int:
        ok = 0
        for node, res in zip(nodes, results, strict=True):
            if res is True:
                ok += 1
                self.stats.success += 1
                continue
            self.stats.failure += 1
            if isinstance(res, BaseException):
                self.logger.warning(
                    "ERROR syncing %s with %s:%s/%s: %s",
                    job.db_file,
                    node.get("replication_ip") or node.get("ip"),
                    node.get("replication_port") or node.get("port"),
                    node["device"],
                    res,
                )
        return ok

    # -- talking to one peer -------------------------------------------------

    async def _repl_to_node(self, job: DBJob, node: Node, info: dict[str, Any]) -> bool:
        args = [
            "sync",
            info["max_row"],
            info["hash"],
            info["id"],
            info["created_at"],
            info["put_timestamp"],
            info["delete_timestamp"],
            info["metadata"],
        ]
        status, body = await self.rpc(node, job, args)
        if status == 404:
            return await self._put_db(job, node, info)
        if status // 100 != 2:
            raise SyncFailed("sync", status)
        rinfo = json.loads(body)
        local_sync = await self._run(job, self._merge_remote_info, job, rinfo, info)
        if max(int(rinfo["point"]), local_sync) >= int(info["max_row"]):
            self.stats.no_change += 1
            return True
        if rinfo["hash"] == info["hash"]:
            self.stats.hashmatch += 1
            await self._run(job, self._set_outgoing, job, rinfo["id"], int(rinfo["point"]))
            return True
        return await self._usync(job, node, info, rinfo, max(int(rinfo["point"]), local_sync))

    def _merge_remote_info(self, job: DBJob, rinfo: dict[str, Any], info: dict[str, Any]) -> int:
        """Take the peer's metadata and timestamps (both ways, as Swift); our
        outgoing sync point for it."""
        keys = ("created_at", "put_timestamp", "delete_timestamp")
        with self._broker(job) as broker:
            if rinfo.get("metadata") and rinfo["metadata"] != info["metadata"]:
                broker.update_metadata(json.loads(rinfo["metadata"]))
            if any(rinfo[k] != info[k] for k in keys):
                broker.merge_timestamps(*(rinfo[k] for k in keys))
            return broker.get_sync(rinfo["id"], incoming=False)

    def _set_outgoing(self, job: DBJob, remote_id: str, point: int) -> None:
        with self._broker(job) as broker:
            broker.merge_syncs([{"remote_id": remote_id, "sync_point": point}], incoming=False)

    def _rows_since(self, job: DBJob, point: int) -> list[dict[str, Any]]:
        with self._broker(job) as broker:
            return broker.get_items_since(point, self.conf.per_diff)

    def _incoming_syncs(self, job: DBJob) -> list[dict[str, Any]]:
        with self._broker(job) as broker:
            return broker.get_syncs()

    async def _usync(
        self, job: DBJob, node: Node, info: dict[str, Any], rinfo: dict[str, Any], point: int
    ) -> bool:
        """Send the rows after ``point`` in batches; then our incoming sync points."""
        self.stats.diff += 1
        rows: list[dict[str, Any]] = []
        for _ in range(self.conf.max_diffs):
            rows = await self._run(job, self._rows_since, job, point)
            if not rows:
                break
            status, _ = await self.rpc(node, job, ["merge_items", rows, info["id"]])
            if status // 100 != 2:
                raise SyncFailed("merge_items", status)
            self.stats.remote_merge += 1
            point = int(rows[-1]["ROWID"])
            if len(rows) < self.conf.per_diff:
                rows = []
                break
        await self._run(job, self._set_outgoing, job, rinfo["id"], point)
        if rows:
            # More than max_diffs batches behind: the rest next pass.
            self.stats.diff_capped += 1
            return False
        syncs = await self._run(job, self._incoming_syncs, job)
        status, _ = await self.rpc(node, job, ["merge_syncs", syncs])
        if status // 100 != 2:
            raise SyncFailed("merge_syncs", status)
        return True

    async def _put_db(self, job: DBJob, node: Node, info: dict[str, Any]) -> bool:
        """The peer has no such DB: upload a consistent copy of ours."""
        tmp_dir = os.path.join(self.conf.devices, job.device, "tmp")
        tmp_path = os.path.join(tmp_dir, uuid.uuid4().hex + SNAPSHOT_SUFFIX)
        try:
            size = await self._run(job, _snapshot, job.db_file, tmp_path)
            status = await self.upload(node, job, tmp_path, size, info["id"])
        finally:
            await self._run(job, _unlink_quiet, tmp_path)
        if status == 201:
            self.stats.rsync += 1
            return True
        raise SyncFailed("put_db", status)

    # -- transport (tests replace these two) ---------------------------------

    def _url(self, node: Node, job: DBJob) -> str:
        ip = node.get("replication_ip") or node["ip"]
        port = node.get("replication_port") or node["port"]
        host = f"[{ip}]" if ":" in ip else ip
        dev = urllib.parse.quote(node["device"])
        return f"http://{host}:{port}/{dev}/{job.partition}/{job.name_hash}"

    async def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(
                sock_connect=self.conf.conn_timeout, sock_read=self.conf.node_timeout
            )
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def _close_session(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def rpc(self, node: Node, job: DBJob, args: list[Any]) -> tuple[int, bytes]:
        """One REPLICATE request with a JSON body: (status, body)."""
        session = await self._get_session()
        data = json.dumps(args).encode()
        async with session.request(
            "REPLICATE",
            self._url(node, job),
            data=data,
            headers={"Content-Type": "application/json"},
        ) as resp:
            return resp.status, await resp.read()

    async def upload(self, node: Node, job: DBJob, path: str, size: int, local_id: str) -> int:
        """``put_db``: stream the file at ``path`` to the peer; its status."""
        session = await self._get_session()

        async def chunks() -> AsyncIterator[bytes]:
            fp = await self._run(job, open, path, "rb")
            try:
                while True:
                    chunk = await self._run(job, fp.read, CHUNK)
                    if not chunk:
                        return
                    yield chunk
            finally:
                await self._run(job, fp.close)

        headers = {
            OP_HEADER: "put_db",
            REMOTE_ID_HEADER: local_id,
            "Content-Length": str(size),
            "Content-Type": "application/octet-stream",
        }
        # The peer answers after fsyncing and checking the whole file: allow
        # for that beyond node_timeout (a second per MiB).
        timeout = aiohttp.ClientTimeout(
            sock_connect=self.conf.conn_timeout, sock_read=self.conf.node_timeout + size / 2**20
        )
        async with session.request(
            "REPLICATE", self._url(node, job), data=chunks(), headers=headers, timeout=timeout
        ) as resp:
            await resp.read()
            return resp.status

    def close(self) -> None:
        self.devices.close()


# -- blocking helpers --------------------------------------------------------------


def _snapshot(db_file: str, tmp_path: str) -> int:
    """A consistent copy of a live WAL DB (SQLite's online backup); its size."""
    os.makedirs(os.path.dirname(tmp_path), exist_ok=True)
    uri = "file:" + urllib.parse.quote(db_file) + "?mode=ro"
    src = sqlite3.connect(uri, uri=True, timeout=25)
    try:
        dst = sqlite3.connect(tmp_path)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode = DELETE")
        finally:
            dst.close()
    finally:
        src.close()
    return os.path.getsize(tmp_path)


def _unlink_old_files(directory: str, suffix: str, cutoff: float) -> None:
    """Temp files of creations, uploads or snapshots that died half-way
    (Swift's _reclaim_tmp_dbs): only long-dead ones, a live one is recent."""
    with contextlib.suppress(OSError):
        for name in os.listdir(directory):
            if name.endswith(suffix):
                path = os.path.join(directory, name)
                with contextlib.suppress(OSError):
                    if os.stat(path).st_mtime < cutoff:
                        os.unlink(path)


def _unlink_quiet(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _remove_db_dir(db_dir: str) -> None:
    shutil.rmtree(db_dir, ignore_errors=True)


def _remove_handoff(db_file: str, max_row: int, table: str) -> bool:
    """Remove a handoff DB unless a row arrived after it was offered."""
    db_dir = os.path.dirname(db_file)
    with pending.lock_dir(db_dir, 10.0):
        if pending.pending_size(db_file + ".pending") > 0:
            return False
        conn = sqlite3.connect(
            "file:" + urllib.parse.quote(db_file) + "?mode=ro", uri=True, timeout=25
        )
        try:
            row = conn.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)
            ).fetchone()
        finally:
            conn.close()
        # A higher ROWID counter means rows arrived after the offer.
        if row and row[0] is not None and int(row[0]) > max_row:
            return False
        gone = f"{db_dir}.removing-{uuid.uuid4().hex}"
        os.rename(db_dir, gone)
    shutil.rmtree(gone, ignore_errors=True)
    return True


def _write_json(directory: str, name: str, doc: dict[str, Any]) -> None:
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fp:
        json.dump(doc, fp, indent=1, sort_keys=True)
    os.replace(tmp, os.path.join(directory, name))


__all__ = ["DBJob", "DBReplicator", "ReplStats", "SyncFailed", "local_ips"]
