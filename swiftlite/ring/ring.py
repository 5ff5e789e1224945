"""Ring lookups: where a name's replicas live, and where its handoffs go.

Answers are identical to Swift's ``swift.common.ring.Ring`` for the same ring
file and hash secrets: the same partition, the same primaries in the same
order, and the same handoff sequence (Swift's four-pass tier walk). What
differs is cost: primaries are computed once per partition and kept, and
each device's tiers are precomputed, so a lookup is one md5 plus a few
dictionary copies.

Every storage server and the proxy call these on the event loop. A reload
(when the file changed, checked at most every ``reload_time`` seconds) reads
and inflates the file in the calling thread, as Swift does; ring files are
small and change rarely, so that pause is short and rare.
"""

from __future__ import annotations

import hashlib
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


def _secret(value: str | bytes | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return value.encode("latin-1")


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
        self._next_check = 0.0
        self._file_id: tuple[int, int, int] | None = None
        self._load()

    # -- loading ---------------------------------------------------------

    def _stat_id(self) -> tuple[int, int, int]:
        st = os.stat(self.serialized_path)
        # Inode too: a new ring is renamed into place, possibly within the
        # same mtime tick as the old one.
        return (st.st_mtime_ns, st.st_ino, st.st_size)

    def _load(self) -> None:
        file_id = self._stat_id()
        data = RingData.load(self.serialized_path)
        self._install(data)
        self._file_id = file_id
        self._next_check = time.monotonic() + self.reload_time

    def _install(self, data: RingData) -> None:
        rows = data.replica2part2dev_id
        devs = data.devs
        self._rows = rows
        self._devs = devs
        self._part_shift = data.part_shift
        self._next_part_power = data.next_part_power
        self._version = data.version
        self._size = data.size
        self._raw_size = data.raw_size
        self._dev_id_bytes = data.dev_id_bytes
        self._partition_count = len(rows[0]) if rows else 0
        self._replica_count = calc_replica_count(rows)
        self._nodes_cache: list[tuple[Node, ...] | None] = [None] * self._partition_count
        self._templates: dict[tuple[int, int], Node] = {}
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
        self._tier_ids = tier_ids
        # Only devices holding partitions count towards "every region/zone/ip
        # used", so the handoff walk's early stops work with empty tiers.
        assigned: set[int] = set()
        for row in rows:
            assigned.update(set(row))
        regions, zones, ips = set(), set(), set()
        self._num_devs = self._num_weighted_devs = self._num_assigned_devs = 0
        for dev in devs:
            if dev is None:
                continue
            self._num_devs += 1
            if dev.get("weight", 0) > 0:
                self._num_weighted_devs += 1
            if dev["id"] in assigned:
                regions.add(dev["region"])
                zones.add((dev["region"], dev["zone"]))
                ips.add((dev["region"], dev["zone"], dev["ip"]))
                self._num_assigned_devs += 1
        self._tier_counts = (len(regions), len(zones), len(ips))
        # Rows visited for a partition: all of them below the short last
        # row's length, the full ones above it.
        self._full_rows = [row for row in rows if len(row) == self._partition_count]
        self._short_len = min((len(row) for row in rows), default=0)

    def _maybe_reload(self) -> None:
        if time.monotonic() > self._next_check:
            self.reload()

    def has_changed(self) -> bool:
        """True if the file on disk is not the one loaded."""
        return self._stat_id() != self._file_id

    def reload(self, force: bool = False) -> bool:
        """Reload now if the file changed (or ``force``); True if it did."""
        self._next_check = time.monotonic() + self.reload_time
        if force or self.has_changed():
            self._load()
            return True
        return False

    # -- properties --------------------------------------------------------

    @property
    def partition_count(self) -> int:
        return self._partition_count

    @property
    def replica_count(self) -> float:
        return self._replica_count

    @property
    def part_power(self) -> int:
        return 32 - self._part_shift

    @property
    def part_shift(self) -> int:
        return self._part_shift

    @property
    def next_part_power(self) -> int | None:
        self._maybe_reload()
        return self._next_part_power

    @property
    def devs(self) -> list[Node | None]:
        self._maybe_reload()
        return self._devs

    @property
    def version(self) -> int | None:
        return self._version

    @property
    def size(self) -> int | None:
        return self._size

    @property
    def raw_size(self) -> int | None:
        return self._raw_size

    @property
    def dev_id_bytes(self) -> int:
        return self._dev_id_bytes

    @property
    def device_count(self) -> int:
        return self._num_devs

    @property
    def weighted_device_count(self) -> int:
        return self._num_weighted_devs

    @property
    def assigned_device_count(self) -> int:
        return self._num_assigned_devs

    # -- lookups -----------------------------------------------------------

    def get_part(
        self,
        account: str | bytes,
        container: str | bytes | None = None,
        obj: str | bytes | None = None,
    ) -> int:
        """The partition of a name: top ``part_power`` bits of its md5."""
        if obj and type(account) is str and type(container) is str and type(obj) is str:
            # The object case, by far the most frequent, hashed inline: the
            # same bytes hash_path_digest would hash (UTF-8 of each part
            # equals UTF-8 of the joined text), without its generality.
            if self._prefix is None or self._suffix is None:
                prefix, suffix = get_hash_path_secrets()
                prefix = prefix if self._prefix is None else self._prefix
                suffix = suffix if self._suffix is None else self._suffix
            else:
                prefix, suffix = self._prefix, self._suffix
            if not container:
                raise ValueError("container is required if object is provided")
            name = f"/{account}/{container}/{obj}".encode("utf-8", "surrogateescape")
            digest = hashlib.md5(prefix + name + suffix, usedforsecurity=False).digest()
        else:
            digest = hash_path_digest(
                account, container, obj, prefix=self._prefix, suffix=self._suffix
            )
        if time.monotonic() > self._next_check:
            self.reload()
        return _BE_U32.unpack_from(digest)[0] >> self._part_shift

    def _primary_ids(self, part: int) -> list[int]:
        ids: list[int] = []
        for row in self._rows:
            if part < len(row):
                dev_id = row[part]
                if dev_id not in ids:
                    ids.append(dev_id)
        return ids

    def _part_nodes(self, part: int) -> tuple[Node, ...]:
        """Shared (never handed out) primary node dicts, cached per partition."""
        if 0 <= part < self._partition_count:
            nodes = self._nodes_cache[part]
            if nodes is not None:
                return nodes
        templates = self._templates
        built = []
        for index, dev_id in enumerate(self._primary_ids(part)):
            node = templates.get((dev_id, index))
            if node is None:
                node = templates[(dev_id, index)] = dict(self._devs[dev_id] or {}, index=index)
            built.append(node)
        nodes = tuple(built)
        if 0 <= part < self._partition_count:
            self._nodes_cache[part] = nodes
        return nodes

    def get_part_nodes(self, part: int) -> list[Node]:
        """Primary nodes of a partition; a device holding two replicas appears once."""
        if time.monotonic() > self._next_check:
            self.reload()
        return [node.copy() for node in self._part_nodes(part)]

    def get_nodes(
        self,
        account: str | bytes,
        container: str | bytes | None = None,
        obj: str | bytes | None = None,
    ) -> tuple[int, list[Node]]:
        """``(partition, primary nodes)`` for an account, container or object."""
        part = self.get_part(account, container, obj)
        nodes = self._nodes_cache[part]
        if nodes is None:
            nodes = self._part_nodes(part)
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
        # Snapshot: a reload while the caller iterates must not mix rings.
        all_rows = self._rows
        full_rows = self._full_rows
        short_len = self._short_len
        devs = self._devs
        tier_ids = self._tier_ids
        tier_counts = self._tier_counts
        num_assigned = self._num_assigned_devs
        parts = self._partition_count
        primary_ids = self._primary_ids(part)
        used = set(primary_ids)
        seen = tuple({ids[d] for d in primary_ids} for ids in tier_ids)

        start = _BE_U32.unpack_from(
            hashlib.md5(str(part).encode("ascii"), usedforsecurity=False).digest()
        )[0]
        start >>= self._part_shift
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
