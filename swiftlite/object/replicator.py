"""``swiftlite-object-replicator``: keeps object partitions in sync over REPCONN.

Each pass (DESIGN 4, swift-internals 3.3) lists the partitions of every local
device (a ring device whose replication ip/port are this node's) and runs one
job per partition, ``concurrency`` at a time:

* **primary** partition (this device is one of its primaries): open a REPCONN
  session to every other primary asking for its suffix hashes (a peer that is
  unmounted, 507, is replaced by the next handoff), rehash the local suffixes
  that differ, and offer each peer only the files of the suffixes where it
  differs. A peer that holds a newer state makes the local older file go.
* **handoff** partition: offer every file to every primary (suffixes whose
  hash already matches a primary count as held there) and remove each local
  file as soon as *every* primary holds it; the emptied partition goes too.

Every file passes :func:`verify_file` before it is offered; one that fails is
quarantined instead (a peer then restores it). The receiver decides what it
needs and checks the md5 of what it got; a ``.data`` it finds corrupt in
transit is quarantined here too. All file work runs in the device's threads at
``replication`` priority, so it yields to client I/O, and file bytes go
through a token bucket (``max_bytes_per_second``).

Operators read progress in ``<recon_cache_path>/object-replicator.json``
(rewritten during and after each pass) and a summary line per pass in the log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from swiftlite.common.config import ClusterConfig, StoragePolicy, load_cluster_config
from swiftlite.common.daemon import Daemon, run_daemon
from swiftlite.common.devices import DeviceError, DeviceManager
from swiftlite.common.ips import local_ips
from swiftlite.object.diskfile import DiskFileManager
from swiftlite.object.diskfile_exceptions import DiskFileBadMetadata, DiskFileNotExist
from swiftlite.object.diskfile_ondisk import OnDiskFiles, data_dir
from swiftlite.object.repconn import (
    ProtocolError,
    RepconnClient,
    RepconnRefused,
    SyncAnswer,
)
from swiftlite.object.replicator_config import ObjectReplicatorConfig
from swiftlite.object.replicator_files import (
    LocalFile,
    list_partitions,
    load_for_send,
    quarantine,
    read_range,
    remove_file,
    remove_partition_if_empty,
)
from swiftlite.ring.ring import Ring

STATS_FILE = "object-replicator.json"
STATS_VERSION = 1
# Files up to this size are read in the same thread hop as their check.
SMALL_FILE = 1 << 20
CHUNK = 1 << 20
Node = dict[str, Any]
_PEER_ERRORS = (OSError, TimeoutError, ProtocolError, asyncio.IncompleteReadError)


class TokenBucket:
    """``rate`` bytes per second on average; 0 means no limit.

    Going into debt and then sleeping it off keeps large writes simple: the
    average rate holds whatever the chunk sizes are.
    """

    def __init__(self, rate: float) -> None:
        self.rate = float(rate)
        self.tokens = self.rate
        self.last = time.monotonic()

    async def consume(self, nbytes: int) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.tokens -= nbytes
        if self.tokens < 0:
            await asyncio.sleep(-self.tokens / self.rate)


@dataclasses.dataclass
class PassStats:
    """What an operator reads in ``object-replicator.json``."""

    start: float = 0.0
    end: float | None = None
    partitions_total: int = 0
    partitions_done: int = 0
    primary_partitions: int = 0
    handoff_partitions: int = 0
    suffixes_checked: int = 0
    suffixes_synced: int = 0
    files_offered: int = 0
    files_in_sync: int = 0
    files_sent: int = 0
    bytes_sent: int = 0
    files_superseded: int = 0
    handoff_files_removed: int = 0
    handoff_partitions_removed: int = 0
    quarantined: int = 0
    peers_unavailable: int = 0
    errors: int = 0

    def as_dict(self, last_pass_duration: float | None) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        now = time.time()
        doc["version"] = STATS_VERSION
        doc["elapsed"] = round((self.end or now) - self.start, 3)
        doc["in_progress"] = self.end is None
        doc["last_pass_duration"] = last_pass_duration
        return doc


@dataclasses.dataclass
class Job:
    device: str
    policy: StoragePolicy
    partition: int
    ring: Ring
    local_dev_id: int
    peers: list[Node]
    handoff: bool

    @property
    def name(self) -> str:
        return f"{self.device}/{data_dir(self.policy.index)}/{self.partition}"


class _Peer:
    """One open session in a job, with the suffixes it must be offered."""

    def __init__(self, node: Node, conn: RepconnClient) -> None:
        self.node = node
        self.conn = conn
        self.hashes: dict[str, str] = dict(conn.hashes or {})
        self.suffixes: set[str] = set()
        self.alive = True

    def __repr__(self) -> str:
        return f"{self.node.get('replication_ip')}:{self.node.get('replication_port')}/{self.node.get('device')}"


class ObjectReplicator(Daemon):
    """The daemon; ``rings``/``ips`` may be given (tests), else loaded from config."""

    def __init__(
        self,
        conf: ObjectReplicatorConfig,
        cluster: ClusterConfig | None = None,
        rings: dict[int, Ring] | None = None,
        ips: set[str] | None = None,
    ) -> None:
        super().__init__(conf)
        self.conf: ObjectReplicatorConfig = conf
        self.cluster = cluster if cluster is not None else load_cluster_config(conf.swift_dir)
        self._rings = rings or {}
        self.ips = ips if ips is not None else local_ips(conf.bind_ip)
        self.dm = DeviceManager(
            conf.devices,
            mount_check=conf.mount_check,
            disk_limit=1 << 30,  # this daemon's own work is bounded by concurrency
            threads_per_disk=conf.threads_per_disk,
        )
        self.mgr = DiskFileManager(conf.devices, reclaim_age=conf.reclaim_age, mount_check=False)
        self.bucket = TokenBucket(conf.max_bytes_per_second)
        self.stats = PassStats()
        self.last_pass_duration: float | None = None
        self._last_stats_write = 0.0

    def reload(self, conf: Any) -> None:
        super().reload(conf)
        self.bucket = TokenBucket(conf.max_bytes_per_second)

    # -- rings and jobs ----------------------------------------------------

    async def ring_for(self, policy: StoragePolicy) -> Ring | None:
        ring = self._rings.get(policy.index)
        if ring is None:
            path = os.path.join(self.conf.swift_dir, policy.ring_name() + ".ring.gz")
            try:
                ring = await asyncio.to_thread(Ring, path)
            except (OSError, ValueError) as exc:
                self.logger.error("cannot load ring %s: %s", path, exc)
                return None
            self._rings[policy.index] = ring
        return ring

    def is_local(self, dev: Node) -> bool:
        ip = dev.get("replication_ip") or dev.get("ip")
        port = dev.get("replication_port") or dev.get("port")
        return ip in self.ips and port == self.conf.bind_port

    async def collect_jobs(self) -> list[Job]:
        jobs: list[Job] = []
        roots: dict[str, str | None] = {}  # one check per device, whatever the policies
        for policy in self.cluster.policies:
            ring = await self.ring_for(policy)
            if ring is not None:
                # A changed ring file is re-read off the loop (lookups then
                # never stat it themselves).
                await ring.reload_async()
            if ring is None:
                continue
            seen: set[str] = set()
            for dev in ring.devs:
                if dev is None or not self.is_local(dev) or dev["device"] in seen:
                    continue
                device = dev["device"]
                seen.add(device)
                if self.conf.devices_only and device not in self.conf.devices_only:
                    continue
                if device not in roots:
                    try:
                        roots[device] = await self.dm.acheck(device, priority="replication")
                    except DeviceError as exc:
                        self.logger.warning("skipping %s: %s", device, exc)
                        self.stats.errors += 1
                        roots[device] = None
                root = roots[device]
                if root is None:
                    continue
                objects_dir = os.path.join(root, data_dir(policy.index))
                parts = await self.dm.run(
                    device, list_partitions, objects_dir, priority="replication"
                )
                for text in parts:
                    part = int(text)
                    if self.conf.partitions_only and part not in self.conf.partitions_only:
                        continue
                    if part >= ring.partition_count:
                        self.logger.warning("%s: partition %d is not in the ring", device, part)
                        continue
                    primaries = ring.get_part_nodes(part)
                    primary_ids = {n["id"] for n in primaries}
                    handoff = dev["id"] not in primary_ids
                    peers = [n for n in primaries if n["id"] != dev["id"]]
                    jobs.append(Job(device, policy, part, ring, dev["id"], peers, handoff))
        random.shuffle(jobs)
        if self.conf.handoffs_first:
            jobs.sort(key=lambda j: not j.handoff)
        return jobs

    # -- passes ------------------------------------------------------------

    async def run_once(self) -> None:
        self.stats = PassStats(start=time.time())
        begin = time.monotonic()
        jobs = await self.collect_jobs()
        self.stats.partitions_total = len(jobs)
        await self.write_stats(force=True)
        queue: asyncio.Queue[Job] = asyncio.Queue()
        for job in jobs:
            queue.put_nowait(job)
        workers = [
            asyncio.create_task(self._worker(queue))
            for _ in range(min(self.conf.concurrency, max(1, len(jobs))))
        ]
        # While a watcher runs, ring lookups never stat the file on the loop.
        watchers = [asyncio.create_task(ring.watch()) for ring in self._rings.values()]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers + watchers:
                task.cancel()
        self.stats.end = time.time()
        self.last_pass_duration = round(time.monotonic() - begin, 3)
        await self.write_stats(force=True)
        s = self.stats
        self.logger.info(
            "pass done in %.2fs: %d/%d partitions (%d handoff), %d files sent (%d bytes), "
            "%d in sync, %d superseded, %d handoff files removed, %d partitions removed, "
            "%d quarantined, %d peers unavailable, %d errors",
            self.last_pass_duration,
            s.partitions_done,
            s.partitions_total,
            s.handoff_partitions,
            s.files_sent,
            s.bytes_sent,
            s.files_in_sync,
            s.files_superseded,
            s.handoff_files_removed,
            s.handoff_partitions_removed,
            s.quarantined,
            s.peers_unavailable,
            s.errors,
        )

    async def _worker(self, queue: asyncio.Queue[Job]) -> None:
        while not queue.empty() and not self.stopping.is_set():
            job = queue.get_nowait()
            try:
                if job.handoff:
                    self.stats.handoff_partitions += 1
                    await self.revert(job)
                else:
                    self.stats.primary_partitions += 1
                    await self.update(job)
            except asyncio.CancelledError:
                raise
            except DeviceError as exc:
                self.stats.errors += 1
                self.logger.warning("%s: %s", job.name, exc)
            except Exception:
                self.stats.errors += 1
                self.logger.exception("%s: replication failed", job.name)
            self.stats.partitions_done += 1
            await self.write_stats()

    async def write_stats(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_stats_write < self.conf.stats_interval:
            return
        self._last_stats_write = now
        doc = self.stats.as_dict(self.last_pass_duration)
        try:
            await asyncio.to_thread(_write_json, self.conf.recon_cache_path, STATS_FILE, doc)
        except OSError as exc:
            self.logger.error("cannot write %s: %s", STATS_FILE, exc)

    # -- sessions ----------------------------------------------------------

    async def _connect(self, job: Job, node: Node, need_hashes: bool) -> RepconnClient:
        """A session, waiting (with backoff, up to ``node_timeout``) while the
        peer's device is busy: a 503 there means "all incoming sessions taken"
        and a slot frees as soon as another sender's partition is done."""
        deadline = time.monotonic() + self.conf.node_timeout
        delay = 0.02
        while True:
            try:
                return await RepconnClient.connect(
                    node["replication_ip"],
                    node["replication_port"],
                    node["device"],
                    job.partition,
                    job.policy.index,
                    need_hashes=need_hashes,
                    conn_timeout=self.conf.conn_timeout,
                    http_timeout=self.conf.http_timeout,
                    node_timeout=self.conf.node_timeout,
                    txn_id=f"repl-{uuid.uuid4().hex[:21]}-{job.local_dev_id}",
                )
            except RepconnRefused as exc:
                if exc.status != 503 or time.monotonic() + delay > deadline:
                    raise
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)

    async def _open_sessions(
        self, job: Job, nodes: list[Node], need_hashes: bool, replace_unmounted: bool
    ) -> tuple[list[_Peer], int]:
        """Sessions to ``nodes``; a 507 peer is replaced by the next handoff when
        ``replace_unmounted``. Returns the peers and how many nodes failed."""
        results = await asyncio.gather(
            *(self._connect(job, n, need_hashes) for n in nodes), return_exceptions=True
        )
        peers: list[_Peer] = []
        failed = 0
        unmounted = 0
        for node, res in zip(nodes, results, strict=True):
            if isinstance(res, RepconnClient):
                peers.append(_Peer(node, res))
                continue
            failed += 1
            self.stats.peers_unavailable += 1
            if isinstance(res, RepconnRefused) and res.status == 507:
                unmounted += 1
            self.logger.info("%s: peer %s unavailable: %r", job.name, node.get("device"), res)
        if replace_unmounted and unmounted:
            skip = {n["id"] for n in nodes} | {job.local_dev_id}
            handoffs: Iterator[Node] = (
                n for n in job.ring.get_more_nodes(job.partition) if n["id"] not in skip
            )
            for node in handoffs:
                if not unmounted:
                    break
                try:
                    conn = await self._connect(job, node, need_hashes)
                except (RepconnRefused, *_PEER_ERRORS) as exc:
                    self.logger.info("%s: handoff %s unavailable: %r", job.name, node["device"], exc)
                    continue
                peers.append(_Peer(node, conn))
                unmounted -= 1
        return peers, failed

    async def _close_all(self, peers: list[_Peer]) -> None:
        await asyncio.gather(*(p.conn.close(done=p.alive) for p in peers))

    async def _local_hashes(self, job: Job, recalculate: Sequence[str] = ()) -> dict[str, str]:
        return await self.dm.run(
            job.device,
            self.mgr.get_hashes,
            job.device,
            job.partition,
            job.policy.index,
            list(recalculate),
            priority="replication",
        )

    async def _list_objects(
        self, job: Job, suffixes: list[str] | None
    ) -> list[tuple[str, OnDiskFiles]]:
        def listing() -> list[tuple[str, OnDiskFiles]]:
            return list(
                self.mgr.yield_hashes(job.device, job.partition, job.policy.index, suffixes)
            )

        objects = await self.dm.run(job.device, listing, priority="replication")
        random.shuffle(objects)
        return objects

    # -- primary partitions ------------------------------------------------

    async def update(self, job: Job) -> None:
        peers, _failed = await self._open_sessions(
            job, job.peers, need_hashes=True, replace_unmounted=True
        )
        try:
            if not peers:
                return
            local = await self._local_hashes(job)
            differing = {s for p in peers for s, h in local.items() if p.hashes.get(s) != h}
            self.stats.suffixes_checked += len(local)
            if differing:
                # A stale cached hash must not cause a needless offer round.
                local = await self._local_hashes(job, sorted(differing))
            for p in peers:
                p.suffixes = {s for s, h in local.items() if p.hashes.get(s) != h}
            wanted = sorted(set().union(*(p.suffixes for p in peers)))
            if not wanted:
                return
            self.stats.suffixes_synced += len(wanted)
            objects = await self._list_objects(job, wanted)
            work = [
                (name_hash, rel)
                for name_hash, files in objects
                if any(name_hash[-3:] in p.suffixes for p in peers)
                for rel in _rel_paths(name_hash, files)
            ]
            skip = ""
            async for name_hash, rel, loaded in self._prefetching(job, work):
                targets = [p for p in peers if p.alive and name_hash[-3:] in p.suffixes]
                if name_hash == skip or not targets:
                    continue
                outcome = await self._offer_file(job, rel, targets, loaded)
                if outcome is None:
                    skip = name_hash  # quarantined or gone: nothing else of it to send
                elif outcome["newer"]:
                    # A peer holds a newer state: this file is dead weight.
                    if await self._remove(job, rel):
                        self.stats.files_superseded += 1
        finally:
            await self._close_all(peers)

    # -- handoff partitions ------------------------------------------------

    async def revert(self, job: Job) -> None:
        if not job.peers:
            # No primary to hand the data to: never delete the only copy.
            self.logger.error("%s: handoff partition without primaries", job.name)
            self.stats.errors += 1
            return
        peers, failed = await self._open_sessions(
            job, job.peers, need_hashes=True, replace_unmounted=False
        )
        all_primaries = len(job.peers)
        try:
            # List before hashing: a file written after the listing is not
            # offered (nor removed), and every listed file is in the hashes,
            # so a suffix hash equal to a primary's really means "it has them".
            objects = await self._list_objects(job, None)
            local = await self._local_hashes(job)
            for p in peers:
                p.suffixes = {s for s, h in local.items() if p.hashes.get(s) != h}
            self.stats.suffixes_checked += len(local)
            work = [(h, rel) for h, files in objects for rel in _rel_paths(h, files)]
            skip = ""
            async for name_hash, rel, loaded in self._prefetching(job, work):
                if name_hash == skip:
                    continue
                suffix = name_hash[-3:]
                # Primaries whose suffix hash equals ours hold these files already.
                matching = sum(1 for p in peers if p.alive and suffix not in p.suffixes)
                targets = [p for p in peers if p.alive and suffix in p.suffixes]
                outcome = await self._offer_file(job, rel, targets, loaded)
                if outcome is None:
                    skip = name_hash
                elif matching + outcome["insync"] >= all_primaries and not failed:
                    if await self._remove(job, rel):
                        self.stats.handoff_files_removed += 1
            if not failed and all(p.alive for p in peers):
                await self._local_hashes(job)  # rehash: drops emptied dirs
                removed = await self.dm.run(
                    job.device, remove_partition_if_empty, self._part_dir(job), priority="replication"
                )
                if removed:
                    self.stats.handoff_partitions_removed += 1
        finally:
            await self._close_all(peers)

    # -- one file ----------------------------------------------------------

    def _part_dir(self, job: Job) -> str:
        # Built by hand: DiskFileManager.partition_path stats the device, and
        # this runs on the event loop (the job's device was checked already).
        return os.path.join(
            self.conf.devices, job.device, data_dir(job.policy.index), str(job.partition)
        )

    async def _remove(self, job: Job, rel: str) -> bool:
        path = os.path.join(self._part_dir(job), rel)
        removed: bool = await self.dm.run(job.device, remove_file, path, priority="replication")
        return removed

    async def _load(self, job: Job, rel: str) -> LocalFile | Exception:
        path = os.path.join(self._part_dir(job), rel)
        try:
            local: LocalFile = await self.dm.run(
                job.device, load_for_send, path, rel, SMALL_FILE, priority="replication"
            )
        except (DiskFileBadMetadata, DiskFileNotExist, OSError) as exc:
            return exc
        return local

    async def _prefetching(
        self, job: Job, work: list[tuple[str, str]]
    ) -> AsyncIterator[tuple[str, str, LocalFile | Exception]]:
        """``(name_hash, rel, loaded file)`` for each item, the next file's
        check and read running in the device thread while the caller offers
        the current one (the two sides' work then overlaps)."""
        pending: asyncio.Task[LocalFile | Exception] | None = None
        try:
            for i, (name_hash, rel) in enumerate(work):
                loaded = await pending if pending is not None else await self._load(job, rel)
                pending = None
                if i + 1 < len(work):
                    pending = asyncio.ensure_future(self._load(job, work[i + 1][1]))
                yield name_hash, rel, loaded
        finally:
            if pending is not None:
                pending.cancel()

    async def _offer_file(
        self, job: Job, rel: str, targets: list[_Peer], loaded: LocalFile | Exception
    ) -> dict[str, int] | None:
        """Offer one local file to ``targets``; None when it was quarantined/gone.

        Returns counts: ``insync`` (peers that hold it or something newer, or
        took it now) and ``newer`` (peers holding a newer state).
        """
        path = os.path.join(self._part_dir(job), rel)
        if isinstance(loaded, DiskFileBadMetadata):
            await self._quarantine(job, path, str(loaded))
            return None
        if isinstance(loaded, DiskFileNotExist | FileNotFoundError):
            return None
        if isinstance(loaded, Exception):
            self.stats.errors += 1
            self.logger.error("%s: cannot read %s: %s", job.name, rel, loaded)
            return None
        local = loaded
        live = [p for p in targets if p.alive]
        # All peers at once: their receivers write (and fsync) in parallel.
        results = await asyncio.gather(*(self._offer_guarded(job, p, local) for p in live))
        if "corrupt" in results:
            await self._quarantine(job, path, "md5 of the data does not match its ETag")
            return None
        return {
            "insync": sum(1 for r in results if r in ("exists", "newer", "sent")),
            "newer": results.count("newer"),
        }

    async def _offer_guarded(self, job: Job, peer: _Peer, local: LocalFile) -> str:
        self.stats.files_offered += 1
        try:
            result = await self._offer_to(job, peer, local)
        except _PEER_ERRORS as exc:
            peer.alive = False
            self.stats.errors += 1
            self.logger.warning("%s: lost peer %r: %r", job.name, peer, exc)
            return "lost"
        if result == "exists":
            self.stats.files_in_sync += 1
        return result

    async def _offer_to(self, job: Job, peer: _Peer, local: LocalFile) -> str:
        answer: SyncAnswer = await peer.conn.offer(local.rel_path, local.metadata, local.size)
        if answer.exists:
            return "exists"
        if answer.newer_exists:
            return "newer"
        if not answer.go_ahead:
            self.stats.errors += 1
            self.logger.warning("%s: %r refused %s: %s", job.name, peer, local.rel_path, answer.msg)
            return "refused"
        try:
            await self._send_bytes(job, peer, local)
        except BaseException:
            # The receiver expects the rest of the bytes: the session is unusable.
            peer.alive = False
            raise
        ok, msg = await peer.conn.upload_result()
        if ok:
            self.stats.files_sent += 1
            self.stats.bytes_sent += local.size
            return "sent"
        self.stats.errors += 1
        self.logger.warning("%s: %r rejected %s: %s", job.name, peer, local.rel_path, msg)
        return "corrupt" if msg.startswith("md5 mismatch") else "failed"

    async def _send_bytes(self, job: Job, peer: _Peer, local: LocalFile) -> None:
        if local.data is not None:
            if local.data:
                await self.bucket.consume(len(local.data))
                await peer.conn.write_bytes(local.data)
            return
        offset = 0
        while offset < local.size:
            length = min(CHUNK, local.size - offset)
            chunk = await self.dm.run(
                job.device, read_range, local.path, offset, length, priority="replication"
            )
            await self.bucket.consume(len(chunk))
            await peer.conn.write_bytes(chunk)
            offset += len(chunk)

    async def _quarantine(self, job: Job, path: str, why: str) -> None:
        target = await self.dm.run(job.device, quarantine, path, priority="replication")
        self.stats.quarantined += 1
        self.logger.error("%s: quarantined %s to %s: %s", job.name, path, target, why)

    def close(self) -> None:
        self.dm.close()


def _rel_paths(name_hash: str, files: OnDiskFiles) -> list[str]:
    """The files that define an object's state, tombstone/data before metadata
    (a peer should have the ``.data`` before its ``.meta`` arrives)."""
    base = f"{name_hash[-3:]}/{name_hash}/"
    chosen = [files.ts, files.data, files.ctype, files.meta]
    out: list[str] = []
    for info in chosen:
        if info is not None and base + info.filename not in out:
            out.append(base + info.filename)
    return out


def _write_json(directory: str, name: str, doc: dict[str, Any]) -> None:
    os.makedirs(directory, exist_ok=True)
    final = os.path.join(directory, name)
    tmp = f"{final}.{uuid.uuid4().hex}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, sort_keys=True, indent=1)
    os.replace(tmp, final)


class _ReplicatorDaemon(ObjectReplicator):
    """What run_daemon builds: one argument, the config."""

    def __init__(self, conf: ObjectReplicatorConfig) -> None:
        super().__init__(conf)


def main(argv: Sequence[str] | None = None) -> int:
    """``swiftlite-object-replicator <conf.yaml> [once] [-v]``."""
    return run_daemon(
        _ReplicatorDaemon,
        ObjectReplicatorConfig,
        sys.argv[1:] if argv is None else argv,
        "swiftlite-object-replicator",
    )


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
