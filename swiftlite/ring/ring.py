"""Ring lookups: where a name's replicas live, and where its handoffs go.

Answers are identical to Swift's ``swift.common.ring.Ring`` for the same ring
file and hash secrets: the same partition, the same primaries in the same
order, and the same handoff sequence (Swift's four-pass tier walk). What
differs is cost: object names are hashed inline, each partition's primaries
are computed once and kept, and device tiers are numbered up front, so a
lookup is one md5 plus a few dictionary copies.

Reloading. Like Swift, a lookup checks (at most every ``reload_time``
seconds) whether the file changed and reloads it in the calling thread:
right for tools and threads. On an event loop that check (a ``stat``) and a
reload (read + inflate) must not run on the loop, so async servers run
``await ring.watch()`` as a background task instead: while it runs, lookups
never touch the disk and the watcher stats and loads in a worker thread.
All derived data lives in one immutable-by-convention ``_RingState`` that is
swapped in a single assignment, so a reader never sees half of a reload.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import struct
import time
from collections.abc import Iterator
from itertools import chain
from typing import Any

from swiftlite.common.hashing import get_hash_path_secrets, hash_path_digest
from swiftlite.ring.ring_io import RingData, calc_replica_count

__all__ = ["DEFAULT_RELOAD_TIME", "Ring"]

DEFAULT_RELOAD_TIME = 15
_BE_U32 = struct.Struct(">I")
Node = dict[str, Any]
FileId = tuple[int, int, int]
_log = logging.getLogger(__name__)


def _secret(value: str | bytes | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return value.encode("latin-1")


def _file_id(path: str) -> FileId:
    st = os.stat(path)
    # Inode too: a new ring is renamed into place, possibly within the same
    # mtime tick as the old one.
    return (st.st_mtime_ns, st.st_ino, st.st_size)


class _RingState:
    """One loaded ring file and everything derived from it."""

    def __init__(self, data: RingData, file_id: FileId) -> None:
        rows = data.replica2part2dev_id
        devs = data.devs
        self.file_id = file_id
        self.rows = rows
        self.devs = devs
        self.part_shift = data.part_shift
        self.next_part_power = data.next_part_power
        self.version = data.version
        self.size = data.size
        self.raw_size = data.raw_size
        self.dev_id_bytes = data.dev_id_bytes
        self.partition_count = len(rows[0]) if rows else 0
        self.replica_count = calc_replica_count(rows)
        # Filled lazily by primary_nodes(); shared tuples, never handed out.
        self.nodes_cache: list[tuple[Node, ...] | None] = [None] * self.partition_count
        self.templates: dict[tuple[int, int], Node] = {}
        # Each device's (region,), (region, zone), (region, zone, ip) tiers,
        # numbered: the handoff walk then tests small ints in sets instead of
        # hashing tuples at every step.
        numbering: tuple[dict[Any, int], dict[Any, int], dict[Any, int]] = ({}, {}, {})
        tier_ids: tuple[list[int], list[int], list[int]] = ([], [], [])
        for dev in devs:
            if dev is None:
                keys: tuple[Any, ...] = (None, None, None)
            else:
                region, zone = dev["region"], dev["zone"]
                keys = (region, (region, zone), (region, zone, dev["ip"]))
            for level in range(3):
                tier_ids[level].append(
                    numbering[level].setdefault(keys[level], len(numbering[level]))
                )
        self.tier_ids = tier_ids
        # Only devices holding partitions count towards "every region/zone/ip
        # used", so the handoff walk's early stops work with empty tiers.
        assigned: set[int] = set()
        for row in rows:
            assigned.update(set(row))
        regions, zones, ips = set(), set(), set()
        self.num_devs = self.num_weighted_devs = self.num_assigned_devs = 0
        for dev in devs:
            if dev is None:
                continue
            self.num_devs += 1
            if dev.get("weight", 0) > 0:
                self.num_weighted_devs += 1
            if dev["id"] in assigned:
                regions.add(dev["region"])
                zones.add((dev["region"], dev["zone"]))
                ips.add((dev["region"], dev["zone"], dev["ip"]))
                self.num_assigned_devs += 1
        self.tier_counts = (len(regions), len(zones), len(ips))
        # Rows visited for a partition: all of them below the short last
        # row's length, the full ones above it.
        self.full_rows = [row for row in rows if len(row) == self.partition_count]
        self.short_len = min((len(row) for row in rows), default=0)

    @classmethod
    def from_file(cls, path: str) -> _RingState:
        file_id = _file_id(path)
        return cls(RingData.load(path), file_id)

    def primary_ids(self, part: int) -> list[int]:
        ids: list[int] = []
        for row in self.rows:
            if part < len(row):
                dev_id = row[part]
                if dev_id not in ids:
                    ids.append(dev_id)
        return ids

    def primary_nodes(self, part: int) -> tuple[Node, ...]:
        """Shared primary node dicts (with ``index``), cached per partition."""
        cacheable = 0 <= part < self.partition_count
        if cacheable:
            nodes = self.nodes_cache[part]
            if nodes is not None:
                return nodes
        templates = self.templates
        built = []
        for index, dev_id in enumerate(self.primary_ids(part)):
            node = templates.get((dev_id, index))
            if node is None:
                node = templates[(dev_id, index)] = dict(self.devs[dev_id] or {}, index=index)
            built.append(node)
        nodes = tuple(built)
        if cacheable:
            self.nodes_cache[part] = nodes
        return nodes


class Ring:
    """A ring file, loaded and kept fresh, answering placement questions.

    ``Ring("/etc/swiftlite/object.ring.gz")`` or, as in Swift,
    ``Ring("/etc/swiftlite", ring_name="object-1")``. Names hash with the
    process-wide secrets (:func:`swiftlite.common.hashing.set_hash_path_secrets`)
    unless ``hash_prefix``/``hash_suffix`` are given.

    Node dicts returned are fresh copies (callers may annotate them): the
    device's keys plus ``index`` (primaries) or ``handoff_index`` (handoffs).
    """

    def __init__(
        self,
        serialized_path: str,
        ring_name: str | None = None,
        reload_time: float | None = DEFAULT_RELOAD_TIME,
        *,
        hash_prefix: str | bytes | None = None,
        hash_suffix: str | bytes | None = None,
    ) -> None:
        if ring_name:
            serialized_path = os.path.join(serialized_path, ring_name + ".ring.gz")
        self.serialized_path = serialized_path
        self.reload_time = DEFAULT_RELOAD_TIME if reload_time is None else reload_time
        self._prefix = _secret(hash_prefix)
        self._suffix = _secret(hash_suffix)
        self._watchers = 0
        self._state = _RingState.from_file(serialized_path)
        self._next_check = time.monotonic() + self.reload_time

    # -- reloading -------------------------------------------------------

    def _maybe_reload(self) -> None:
        if time.monotonic() > self._next_check:
            self.reload()

    def _schedule_next_check(self) -> None:
        # While a watcher runs, lookups must not stat the file themselves.
        self._next_check = math.inf if self._watchers else time.monotonic() + self.reload_time

    def has_changed(self) -> bool:
        """True if the file on disk is not the one loaded (blocking: a stat)."""
        return _file_id(self.serialized_path) != self._state.file_id

    def reload(self, force: bool = False) -> bool:
        """Reload now, in this thread, if the file changed (or ``force``)."""
        self._schedule_next_check()
        if force or self.has_changed():
            self._state = _RingState.from_file(self.serialized_path)
            return True
        return False

    async def reload_async(self, force: bool = False) -> bool:
        """Like :meth:`reload`, with the stat and the load in a worker thread."""
        self._schedule_next_check()
        state = self._state

        def load_if_changed() -> _RingState | None:
            if force or _file_id(self.serialized_path) != state.file_id:
                return _RingState.from_file(self.serialized_path)
            return None

        new_state = await asyncio.to_thread(load_if_changed)
        if new_state is None:
            return False
        self._state = new_state
        return True

    async def watch(self, interval: float | None = None) -> None:
        """Reload off the event loop every ``interval`` (``reload_time``) seconds.

        Run it as a task for the life of the server; cancel it to stop. A
        ring file that fails to load is logged and the loaded ring is kept,
        so a bad push does not take a running server down.
        """
        period = self.reload_time if interval is None else interval
        self._watchers += 1
        self._schedule_next_check()
        try:
            while True:
                await asyncio.sleep(period)
                try:
                    if await self.reload_async():
                        _log.info("reloaded ring %s", self.serialized_path)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    _log.exception(
                        "could not reload ring %s; keeping the loaded one", self.serialized_path
                    )
        finally:
            self._watchers -= 1
            self._schedule_next_check()

    # -- properties --------------------------------------------------------

    @property
    def partition_count(self) -> int:
        return self._state.partition_count

    @property
    def replica_count(self) -> float:
        return self._state.replica_count

    @property
    def part_power(self) -> int:
        return 32 - self._state.part_shift

    @property
    def part_shift(self) -> int:
        return self._state.part_shift

    @property
    def next_part_power(self) -> int | None:
        self._maybe_reload()
        return self._state.next_part_power

    @property
    def devs(self) -> list[Node | None]:
        self._maybe_reload()
        return self._state.devs

    @property
    def version(self) -> int | None:
        return self._state.version

    @property
    def size(self) -> int | None:
        return self._state.size

    @property
    def raw_size(self) -> int | None:
        return self._state.raw_size

    @property
    def dev_id_bytes(self) -> int:
        return self._state.dev_id_bytes

    @property
    def device_count(self) -> int:
        return self._state.num_devs

    @property
    def weighted_device_count(self) -> int:
        return self._state.num_weighted_devs

    @property
    def assigned_device_count(self) -> int:
        return self._state.num_assigned_devs

    # -- lookups -----------------------------------------------------------

    def _digest(
        self,
        account: str | bytes,
        container: str | bytes | None,
        obj: str | bytes | None,
    ) -> bytes:
        if obj and type(account) is str and type(container) is str and type(obj) is str:
            # The object case, by far the most frequent, hashed inline: the
            # same bytes hash_path_digest would hash (UTF-8 of each part
            # equals UTF-8 of the joined text), without its generality.
            if not container:
                raise ValueError("container is required if object is provided")
            prefix, suffix = self._prefix, self._suffix
            if prefix is None or suffix is None:
                default_prefix, default_suffix = get_hash_path_secrets()
                prefix = default_prefix if prefix is None else prefix
                suffix = default_suffix if suffix is None else suffix
            name = f"/{account}/{container}/{obj}".encode("utf-8", "surrogateescape")
            return hashlib.md5(prefix + name + suffix, usedforsecurity=False).digest()
        return hash_path_digest(account, container, obj, prefix=self._prefix, suffix=self._suffix)

    def get_part(
        self,
        account: str | bytes,
        container: str | bytes | None = None,
        obj: str | bytes | None = None,
    ) -> int:
        """The partition of a name: top ``part_power`` bits of its md5."""
        digest = self._digest(account, container, obj)
        if time.monotonic() > self._next_check:
            self.reload()
        return _BE_U32.unpack_from(digest)[0] >> self._state.part_shift

    def get_part_nodes(self, part: int) -> list[Node]:
        """Primary nodes of a partition; a device holding two replicas appears once."""
        if time.monotonic() > self._next_check:
            self.reload()
        return [node.copy() for node in self._state.primary_nodes(part)]

    def get_nodes(
        self,
        account: str | bytes,
        container: str | bytes | None = None,
        obj: str | bytes | None = None,
    ) -> tuple[int, list[Node]]:
        """``(partition, primary nodes)`` for an account, container or object."""
        digest = self._digest(account, container, obj)
        if time.monotonic() > self._next_check:
            self.reload()
        # Partition and nodes from one state, even if a reload lands.
        state = self._state
        part = _BE_U32.unpack_from(digest)[0] >> state.part_shift
        nodes = state.nodes_cache[part]
        if nodes is None:
            nodes = state.primary_nodes(part)
        return part, list(map(dict.copy, nodes))

    def get_more_nodes(self, part: int) -> Iterator[Node]:
        """Handoff nodes for a partition, in Swift's order.

        Walks the other partitions' assignments from a per-partition
        pseudo-random start, four times: first taking devices in regions not
        yet used, then zones, then ips, then any unused device. The sequence
        is stable across small ring changes, which keeps handoffs where they
        were when the ring is rebalanced.
        """
        self._maybe_reload()
        # One state for the whole walk: a reload while the caller iterates
        # must not mix two rings.
        state = self._state
        all_rows = state.rows
        full_rows = state.full_rows
        short_len = state.short_len
        devs = state.devs
        tier_ids = state.tier_ids
        tier_counts = state.tier_counts
        num_assigned = state.num_assigned_devs
        parts = state.partition_count
        primary_ids = state.primary_ids(part)
        used = set(primary_ids)
        seen = tuple({ids[d] for d in primary_ids} for ids in tier_ids)

        digest = hashlib.md5(str(part).encode("ascii"), usedforsecurity=False).digest()
        start = _BE_U32.unpack_from(digest)[0] >> state.part_shift
        inc = parts // 65536 or 1
        wrap_from = inc - ((parts - start) % inc)
        handoff_index = 0

        def visit_order() -> Iterator[int]:
            return chain(range(start, parts, inc), range(wrap_from, start, inc))

        for level in range(3):
            seen_here = seen[level]
            limit = tier_counts[level]
            if len(seen_here) == limit:
                continue
            ids_here = tier_ids[level]
            finer = tier_ids[level + 1 :]
            seen_finer = seen[level + 1 :]
            for handoff_part in visit_order():
                for row in all_rows if handoff_part < short_len else full_rows:
                    dev_id = row[handoff_part]
                    if dev_id in used or ids_here[dev_id] in seen_here:
                        continue
                    yield dict(devs[dev_id] or {}, handoff_index=handoff_index)
                    handoff_index += 1
                    used.add(dev_id)
                    seen_here.add(ids_here[dev_id])
                    # A new region is also a new zone and ip, and so on.
                    for ids, seen_set in zip(finer, seen_finer, strict=True):
                        seen_set.add(ids[dev_id])
                    if len(seen_here) == limit:
                        break
                else:
                    continue
                break

        if len(used) == num_assigned:
            return
        for handoff_part in visit_order():
            for row in all_rows if handoff_part < short_len else full_rows:
                dev_id = row[handoff_part]
                if dev_id in used:
                    continue
                yield dict(devs[dev_id] or {}, handoff_index=handoff_index)
                handoff_index += 1
                used.add(dev_id)
                if len(used) == num_assigned:
                    return


async def load_or_refresh(current: Ring | None, swift_dir: str, ring_name: str) -> Ring:
    """For a background daemon's pass: load the ring the first time, else
    reload it if its file changed, in a worker thread either way. The ring is
    built with ``reload_time`` infinite, so lookups during the pass never
    stat the file on the event loop."""
    if current is None:
        return await asyncio.to_thread(Ring, swift_dir, ring_name, math.inf)
    await current.reload_async()
    return current
