"""Ring builder: assigns partition replicas to devices.

Public names and semantics follow Swift's ``swift.common.ring.builder``
(``RingBuilder`` with ``add_dev``, ``rebalance``, ``get_ring``, ...), so the
``swiftlite-ring-builder`` CLI and operators' habits carry over.  The builder
file is versioned JSON (never pickle; see :mod:`swiftlite.ring.builder_file`).

Rebalancing (swift-internals.md 1.4): compute a per-tier replica plan
(:mod:`swiftlite.ring.builder_plan`), gather the part-replicas that must or
should move (new slots, removed devices, badly dispersed parts, overweight
devices), then place each gathered replica by walking the tier tree towards
the roomiest child that the plan still allows.  A partition that moved is
frozen for ``min_part_hours`` and at most one replica of a partition moves per
rebalance (except from removed devices, which must drain).

The per-partition loops are the hot path (65,536+ partitions times the replica
count), so during a rebalance tiers are numbered and counters live in flat
lists indexed by tier id or device id rather than in dicts keyed by tuples
(:mod:`swiftlite.ring.builder_rebalance`).

Deliberate differences from Swift's builder (same plan, same invariants):

* the seed drives a private ``random.Random``; the global random state is
  never touched;
* among equally roomy tiers, a gathered replica goes to the one holding the
  hungriest device (Swift's tie order is the reverse, which is arbitrary);
* with a fractional replica count, ``dispersion``, the dispersion graph and
  the "changed" count of ``rebalance`` cover every partition (Swift's loop
  stops at the end of the short last row);
* device changes drop the cached ``get_ring()`` result; ``remove_dev`` twice
  queues the device once; ``save`` writes the timestamped backup itself.
"""

from __future__ import annotations

import random
import uuid
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from time import time
from typing import Any

from swiftlite.ring import builder_file
from swiftlite.ring.builder_file import BuilderFileError, PickledBuilderError
from swiftlite.ring.builder_plan import (
    DuplicateDeviceError,
    EmptyRingError,
    RingBuilderError,
    RingValidationError,
    build_tier_tree,
    max_replicas_by_tier,
    parts_by_tier,
    replica_plan,
    required_overload,
    target_replicas_by_tier,
    wanted_replicas_by_tier,
    weighted_replicas_by_tier,
)
from swiftlite.ring.builder_rebalance import Rebalancer
from swiftlite.ring.builder_report import (
    build_dispersion_graph,
    dispersion_report,
    normalize_address,
)

__all__ = [
    "BuilderFileError",
    "DuplicateDeviceError",
    "EmptyRingError",
    "MAX_BALANCE",
    "PickledBuilderError",
    "RingBuilder",
    "RingBuilderError",
    "RingValidationError",
    "dispersion_report",
]

# Balance shown for a zero-weight device that still holds partitions.
MAX_BALANCE = 999.99
# Rounds of gather-for-balance and reassign per rebalance.
MAX_BALANCE_GATHER_COUNT = 3

_TYPECODE_FOR_BYTES = {2: "H", 4: "I"}

Dev = dict[str, Any]


def _none_dev_id(dev_id_bytes: int) -> int:
    """The id stored in an unassigned slot: the row type's largest value."""
    return (1 << (8 * dev_id_bytes)) - 1


def _dev_id_bytes_for(max_dev_id: int) -> int:
    if max_dev_id < 0:
        raise ValueError("Can't have negative device IDs")
    for size in sorted(_TYPECODE_FOR_BYTES):
        if max_dev_id < _none_dev_id(size):
            return size
    raise RingBuilderError("Way too many devices!")


def _resize_row(row: array, dev_id_bytes: int) -> array:
    old_none, new_none = _none_dev_id(row.itemsize), _none_dev_id(dev_id_bytes)
    return array(_TYPECODE_FOR_BYTES[dev_id_bytes], (new_none if d == old_none else d for d in row))


class RingBuilder:
    """Builds :class:`swiftlite.ring.ring_io.RingData` for a set of devices.

    ``devs_changed`` tells tools whether devices changed since the last
    rebalance (a rebalance that changes nothing is then not worth saving).
    """

    def __init__(self, part_power: int, replicas: float, min_part_hours: int) -> None:
        if part_power > 32:
            raise ValueError(f"part_power must be at most 32 (was {part_power})")
        if part_power < 0:
            raise ValueError(f"part_power must be at least 0 (was {part_power})")
        if replicas < 1:
            raise ValueError(f"replicas must be at least 1 (was {replicas:.6f})")
        if min_part_hours < 0:
            raise ValueError(f"min_part_hours must be non-negative (was {min_part_hours})")
        self.part_power = part_power
        self.next_part_power: int | None = None
        self.replicas = replicas
        self.min_part_hours = min_part_hours
        self.parts = 2**part_power
        self.devs: list[Dev | None] = []
        self.devs_changed = False
        self.version = 0
        self.overload = 0.0
        self._id: str | None = None
        # replica -> partition -> device id; None until the first rebalance.
        self._replica2part2dev: list[array] | None = None
        # Hours since each partition last moved (capped at 255), counted from
        # _last_part_moves_epoch.
        self._last_part_moves = bytearray(self.parts)
        self._last_part_moves_epoch = 0
        self._last_part_gather_start = 0
        self._dispersion_graph: dict[tuple[Any, ...], list[int]] = {}
        self.dispersion: float | None = 0.0
        self._remove_devs: list[Dev] = []
        self._ring: Any = None

    # -- simple properties ---------------------------------------------------

    @property
    def id(self) -> str:
        # Assigned only by save(), so a caller knows an id exists only once
        # it has been persisted.
        if self._id is None:
            raise AttributeError("id attribute has not been initialised by calling save()")
        return self._id

    @property
    def part_shift(self) -> int:
        return 32 - self.part_power

    @property
    def dev_id_bytes(self) -> int:
        if not self._replica2part2dev:
            return _dev_id_bytes_for(len(self.devs) - 1 if self.devs else 0)
        return self._replica2part2dev[0].itemsize

    @property
    def dev_id_type_code(self) -> str:
        return _TYPECODE_FOR_BYTES[self.dev_id_bytes]

    @property
    def none_dev_id(self) -> int:
        return _none_dev_id(self.dev_id_bytes)

    @property
    def max_dev_id(self) -> int:
        return self.none_dev_id - 1

    def set_dev_id_bytes(self, dev_id_bytes: int) -> None:
        self._ring = None
        if self._replica2part2dev:
            self._replica2part2dev = [_resize_row(r, dev_id_bytes) for r in self._replica2part2dev]

    @property
    def ever_rebalanced(self) -> bool:
        return self._replica2part2dev is not None

    @property
    def min_part_seconds_left(self) -> int:
        """Seconds until partitions moved by the last rebalance may move again."""
        elapsed = int(time() - self._last_part_moves_epoch)
        return max(self.min_part_hours * 3600 - elapsed, 0)

    def _iter_devs(self) -> Iterable[Dev]:
        return (d for d in self.devs if d is not None)

    def weight_of_one_part(self) -> float:
        """Partitions one unit of weight is worth."""
        total = sum(d["weight"] for d in self._iter_devs())
        if not total:
            raise EmptyRingError(
                "There are no devices in this ring, or all devices have been deleted"
            )
        return self.parts * self.replicas / total

    # -- settings --------------------------------------------------------------

    def change_min_part_hours(self, min_part_hours: int) -> None:
        self.min_part_hours = min_part_hours

    def set_replicas(self, new_replica_count: float) -> None:
        # Tools save a rebalance only if something changed; a new slot count is a change.
        if int(self.parts * self.replicas) != int(self.parts * new_replica_count):
            self.devs_changed = True
        self.replicas = new_replica_count

    def set_overload(self, overload: float) -> None:
        self.overload = overload

    def pretend_min_part_hours_passed(self) -> None:
        """Let every partition move at the next rebalance."""
        self._last_part_moves_epoch = 0
        self._last_part_moves = bytearray(b"\xff" * self.parts)

    # -- devices ---------------------------------------------------------------

    def add_dev(self, dev: Dev) -> int:
        """Add a device (takes effect at the next rebalance); returns its id.

        Required keys: region, zone, ip, port, device, weight.  Optional: id
        (default: the first hole, else the next id), meta, replication_ip,
        replication_port.
        """
        if "id" not in dev:
            try:
                dev["id"] = self.devs.index(None)
            except ValueError:
                dev["id"] = len(self.devs)
        dev_id = dev["id"]
        if dev_id < 0:
            raise ValueError(f"Invalid device id {dev_id}")
        if dev_id < len(self.devs) and self.devs[dev_id] is not None:
            raise DuplicateDeviceError(f"Duplicate device id: {dev_id}")
        missing = [k for k in ("region", "zone", "ip", "port", "device", "weight") if k not in dev]
        if missing:
            raise ValueError(f"{dev!r} is missing required key(s): {', '.join(missing)}")
        if dev_id > self.max_dev_id:
            self.set_dev_id_bytes(_dev_id_bytes_for(dev_id))
        while dev_id >= len(self.devs):
            self.devs.append(None)
        dev["weight"] = float(dev["weight"])
        dev["parts"] = 0
        dev.setdefault("meta", "")
        dev.setdefault("replication_ip", dev["ip"])
        dev.setdefault("replication_port", dev["port"])
        self.devs[dev_id] = dev
        self._changed()
        return int(dev_id)

    def _changeable_dev(self, dev_id: int, what: str) -> Dev:
        if any(dev_id == d["id"] for d in self._remove_devs):
            raise ValueError(
                f"Can not set {what} of dev_id {dev_id} because it is marked for removal"
            )
        dev = self.devs[dev_id] if 0 <= dev_id < len(self.devs) else None
        if dev is None:
            raise ValueError(f"No device with id {dev_id}")
        return dev

    def _changed(self) -> None:
        self.devs_changed = True
        self.version += 1
        # Unlike Swift, drop the cached RingData so get_ring() shows the change.
        self._ring = None

    def set_dev_weight(self, dev_id: int, weight: float) -> None:
        self._changeable_dev(dev_id, "weight")["weight"] = weight
        self._changed()

    def set_dev_region(self, dev_id: int, region: int) -> None:
        self._changeable_dev(dev_id, "region")["region"] = region
        self._changed()

    def set_dev_zone(self, dev_id: int, zone: int) -> None:
        self._changeable_dev(dev_id, "zone")["zone"] = zone
        self._changed()

    def remove_dev(self, dev_id: int) -> None:
        """Queue a device for removal: it drains and disappears at the next rebalance."""
        dev = self.devs[dev_id] if 0 <= dev_id < len(self.devs) else None
        if dev is None:
            raise ValueError(f"No device with id {dev_id}")
        dev["weight"] = 0
        if all(d is not dev for d in self._remove_devs):
            self._remove_devs.append(dev)
        self._changed()

    def search_devs(self, search_values: dict[str, Any]) -> list[Dev]:
        """Devices matching every given key (Swift's search_devs).

        Keys: id, region, zone, ip, port, replication_ip, replication_port,
        device, weight, meta.  ``meta`` matches as a substring; addresses are
        compared normalized (lower case, IPv6 expanded).
        """
        keys = (
            "id", "region", "zone", "ip", "port", "replication_ip",
            "replication_port", "device", "weight", "meta",
        )  # fmt: skip
        wanted = {k: search_values[k] for k in keys if search_values.get(k) is not None}
        found = []
        for dev in self._iter_devs():
            ok = True
            for key, value in wanted.items():
                if key == "meta":
                    ok = value in dev.get("meta", "")
                elif key in ("ip", "replication_ip"):
                    try:
                        ok = normalize_address(dev.get(key, "")) == value
                    except ValueError:
                        ok = False
                else:
                    ok = dev.get(key) == value
                if not ok:
                    break
            if ok:
                found.append(dev)
        return found

    # -- reading assignments -------------------------------------------------

    def _devs_for_part(self, part: int) -> list[Dev]:
        """Devices of a partition in replica order, duplicates kept."""
        if self._replica2part2dev is None:
            return []
        none = self.none_dev_id
        out = []
        for row in self._replica2part2dev:
            if part < len(row) and row[part] != none:
                dev = self.devs[row[part]]
                if dev is not None:
                    out.append(dev)
        return out

    def get_part_devices(self, part: int) -> list[Dev]:
        """Devices holding ``part``, without duplicates."""
        out: list[Dev] = []
        for dev in self._devs_for_part(part):
            if all(dev is not d for d in out):
                out.append(dev)
        return out

    def find_parts(
        self, search_values: dict[str, Any] | Sequence[dict[str, Any]]
    ) -> list[tuple[int, int]]:
        """(partition, matching replicas) for devices matching the search,
        most matches first (the order of Swift's ``list_parts``)."""
        searches = [search_values] if isinstance(search_values, dict) else list(search_values)
        ids: set[int] = set()
        for values in searches:
            ids.update(d["id"] for d in self.search_devs(values))
        return self.find_parts_for_devs(ids)

    def find_parts_for_devs(self, dev_ids: Iterable[int]) -> list[tuple[int, int]]:
        ids = set(dev_ids)
        if not ids or not self._replica2part2dev:
            return []
        counts: dict[int, int] = {}
        for row in self._replica2part2dev:
            for part, dev_id in enumerate(row):
                if dev_id in ids:
                    counts[part] = counts.get(part, 0) + 1
        # Stable sort: ties keep first-seen order, as Swift's tool prints them.
        return sorted(counts.items(), key=lambda item: item[1], reverse=True)

    # -- metrics ----------------------------------------------------------------

    def _balance_per_dev(self) -> dict[int, float]:
        """Percent each device is over (+) or under (-) its weight's share."""
        one = self.weight_of_one_part()
        out = {}
        for dev in self._iter_devs():
            if not dev["weight"]:
                out[dev["id"]] = MAX_BALANCE if dev["parts"] else 0.0
            else:
                out[dev["id"]] = 100.0 * dev["parts"] / (dev["weight"] * one) - 100.0
        return out

    def get_balance(self) -> float:
        """Largest percentage by which a device misses its weight's share."""
        return max((abs(b) for b in self._balance_per_dev().values()), default=0.0)

    def get_required_overload(self) -> float:
        """Overload needed for the most dispersed placement the topology allows."""
        devs = list(self._iter_devs())
        weighted = weighted_replicas_by_tier(devs, self.replicas, self.parts)
        wanted = wanted_replicas_by_tier(devs, self.replicas, weighted)
        return required_overload(devs, weighted, wanted)

    def _build_max_replicas_by_tier(self) -> defaultdict[tuple[Any, ...], float]:
        tree = build_tier_tree(d for d in self._iter_devs() if d["weight"])
        return max_replicas_by_tier(tree, self.replicas)

    def _build_target_replicas_by_tier(self) -> dict[tuple[Any, ...], float]:
        devs = list(self._iter_devs())
        return target_replicas_by_tier(devs, self.replicas, self.overload, self.parts)[0]

    def _build_dispersion_graph(self, old_rows: list[array] | None = None) -> int:
        """Recompute ``dispersion`` and the graph; returns slots changed since old_rows."""
        rows = self._replica2part2dev or []
        graph, at_risk = build_dispersion_graph(
            rows, self.devs, self.parts, self.replicas, self.none_dev_id,
            self._build_max_replicas_by_tier(),
        )  # fmt: skip
        self._dispersion_graph = graph
        self.dispersion = 100.0 * at_risk / (self.parts * self.replicas)
        self.version += 1
        changed = 0
        old_rows = old_rows or []
        for i, row in enumerate(rows):
            old = old_rows[i] if i < len(old_rows) else array("H")
            n = min(len(old), len(row))
            changed += sum(map(int.__ne__, row[:n], old[:n])) + (len(row) - n)
        return changed

    def validate(self, stats: bool = False) -> tuple[Any, Any]:
        """Check the assignment table; raises RingValidationError on a problem.

        With ``stats``, returns (parts per device id, worst balance).
        """
        rows = self._replica2part2dev
        if not rows:
            raise RingValidationError("_replica2part2dev empty; did you forget to rebalance?")
        on_devs = sum(d["parts"] for d in self._iter_devs())
        in_map = sum(len(r) for r in rows)
        if on_devs != in_map:
            raise RingValidationError(
                f"All partitions are not double accounted for: {on_devs} != {in_map}"
            )
        for dev in self._iter_devs():
            if not isinstance(dev["port"], int):
                raise RingValidationError(
                    f"Device {dev['id']} has port {dev['port']!r}, which is not an integer."
                )
        whole = -(-self.replicas // 1)
        for i, row in enumerate(rows):
            if len(row) < self.parts and i + 1 < whole:
                raise RingValidationError(
                    f"The partition assignments of replica {i} were shorter than expected "
                    f"({len(row)} < {self.parts}) - this should only happen for the last replica"
                )
        usage = Counter[int]()
        for row in rows:
            usage.update(row)
        bad = {d for d in usage if d >= len(self.devs) or self.devs[d] is None}
        for i, row in enumerate(rows):
            if bad & set(row):
                part = next(p for p, d in enumerate(row) if d in bad)
                raise RingValidationError(
                    f"Partition {part}, replica {i} was not allocated to a device."
                )
        self._check_no_duplicates(rows)
        if not stats:
            return None, None
        dev_usage = array("I", [0] * len(self.devs))
        for dev_id, n in usage.items():
            dev_usage[dev_id] = n
        one = self.weight_of_one_part()
        worst = 0.0
        for dev in self._iter_devs():
            if not dev["weight"]:
                if dev_usage[dev["id"]]:
                    worst = MAX_BALANCE
                    break
                continue
            worst = max(worst, abs(100.0 * dev_usage[dev["id"]] / (dev["weight"] * one) - 100.0))
        return dev_usage, worst

    def _check_no_duplicates(self, rows: list[array]) -> None:
        if len(rows) < 2:
            return
        short = len(rows[-1])
        spans = [(0, rows)]
        if short < self.parts:
            spans = [(0, rows), (short, [r[short:] for r in rows[:-1]])]
        for start, cols in spans:
            width = len(cols)
            for offset, devs in enumerate(zip(*cols, strict=False)):
                if len(set(devs)) != width:
                    raise RingValidationError(
                        f"The partition {start + offset} has been assigned to "
                        f"duplicate devices {list(devs)!r}"
                    )

    # -- ring output ---------------------------------------------------------

    def get_ring(self) -> Any:
        """The :class:`RingData` for the current assignments (builder-only keys stripped)."""
        from swiftlite.ring.ring_io import RingData

        if self._ring is None:
            devs: list[Dev | None] = [None] * len(self.devs)
            for dev in self._iter_devs():
                devs[dev["id"]] = {
                    k: v for k, v in dev.items() if k not in ("parts", "parts_wanted")
                }
            if not self._replica2part2dev:
                self._ring = RingData([], devs, self.part_shift, version=self.version)
            else:
                rows = [array(self.dev_id_type_code, r) for r in self._replica2part2dev]
                self._ring = RingData(
                    rows, devs, self.part_shift, self.next_part_power, self.version
                )
        return self._ring

    @classmethod
    def from_ring(cls, ring_data: Any, min_part_hours: int = 24) -> RingBuilder:
        """Recreate a builder from ring data (lossy: move history, overload and
        the builder id are not in a ring file).  Accepts swiftlite's or Swift's RingData."""
        rows = getattr(ring_data, "replica2part2dev_id", None)
        if rows is None:
            rows = ring_data._replica2part2dev_id
        shift = getattr(ring_data, "part_shift", None)
        if shift is None:
            shift = ring_data._part_shift
        part_power = 32 - shift
        parts = 2**part_power
        replicas = float(sum(len(r) for r in rows)) / parts if rows else 1.0
        devs: list[Dev | None] = []
        for dev in ring_data.devs:
            devs.append(None if dev is None else dict(dev, parts=0, parts_wanted=0))
        data = {
            "part_power": part_power,
            "replicas": replicas,
            "min_part_hours": min_part_hours,
            "parts": parts,
            "devs": devs,
            "devs_changed": False,
            "version": getattr(ring_data, "version", None) or 0,
            "_replica2part2dev": [array(r.typecode, r) for r in rows] if rows else None,
            "_last_part_moves_epoch": None,
            "_last_part_moves": None,
            "_last_part_gather_start": 0,
            "_remove_devs": [],
        }
        builder = cls.from_dict(data)
        for row in builder._replica2part2dev or []:
            for dev_id, n in Counter(row).items():
                dev = builder.devs[dev_id] if dev_id < len(builder.devs) else None
                if dev is not None:
                    dev["parts"] += n
        return builder

    # -- partition power increase (Swift's three steps) ----------------------------

    def prepare_increase_partition_power(self) -> bool:
        """Announce part_power + 1 so servers can start linking objects to
        their future partitions.  False if an increase is already under way."""
        if self.next_part_power:
            return False
        self.next_part_power = self.part_power + 1
        self.version += 1
        return True

    def increase_partition_power(self) -> bool:
        """Split every partition in two, both halves on the old devices
        (old part p becomes 2p and 2p+1), so no data moves."""
        if not self.next_part_power or self.next_part_power != self.part_power + 1:
            return False
        doubled = []
        for row in self._replica2part2dev or []:
            new = array(row.typecode, bytes(2 * len(row) * row.itemsize))
            new[0::2] = row
            new[1::2] = row
            doubled.append(new)
        if self._replica2part2dev is not None:
            self._replica2part2dev = doubled
        for dev in self._iter_devs():
            dev["parts"] *= 2
        moves = bytearray(2 * len(self._last_part_moves))
        moves[0::2] = self._last_part_moves
        moves[1::2] = self._last_part_moves
        self._last_part_moves = moves
        self.part_power = self.next_part_power
        self.parts *= 2
        self.version += 1
        self._ring = None
        return True

    def cancel_increase_partition_power(self) -> bool:
        """Abandon a prepared increase (a cleanup and finish are still needed)."""
        if not self.next_part_power or self.next_part_power != self.part_power + 1:
            return False
        self.next_part_power = self.part_power
        self.version += 1
        return True

    def finish_increase_partition_power(self) -> bool:
        """Close an increase once the old object locations are cleaned up."""
        if self.next_part_power and self.next_part_power == self.part_power:
            self.next_part_power = None
            self.version += 1
            return True
        return False

    # -- persistence -------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The builder's state under Swift's key names (arrays, not JSON)."""
        return {
            "part_power": self.part_power,
            "next_part_power": self.next_part_power,
            "replicas": self.replicas,
            "min_part_hours": self.min_part_hours,
            "parts": self.parts,
            "devs": self.devs,
            "devs_changed": self.devs_changed,
            "dev_id_bytes": self.dev_id_bytes,
            "version": self.version,
            "overload": self.overload,
            "_replica2part2dev": self._replica2part2dev,
            "_last_part_moves_epoch": self._last_part_moves_epoch,
            "_last_part_moves": self._last_part_moves,
            "_last_part_gather_start": self._last_part_gather_start,
            "_dispersion_graph": self._dispersion_graph,
            "dispersion": self.dispersion,
            "_remove_devs": self._remove_devs,
            "id": self._id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RingBuilder:
        builder = cls(1, 1, 1)
        builder.copy_from(data)
        return builder

    def copy_from(self, data: dict[str, Any]) -> None:
        """Take over the state of a :meth:`to_dict` dictionary."""
        self.part_power = data["part_power"]
        self.next_part_power = data.get("next_part_power")
        self.replicas = data["replicas"]
        self.min_part_hours = data["min_part_hours"]
        self.parts = data["parts"]
        self.devs = list(data["devs"])
        self.devs_changed = data["devs_changed"]
        self.overload = data.get("overload", 0.0)
        self.version = data["version"]
        rows = data["_replica2part2dev"]
        if rows is not None:
            rows = [r if isinstance(r, array) else array("H", r) for r in rows]
        self._replica2part2dev = rows
        self._last_part_moves_epoch = data.get("_last_part_moves_epoch") or 0
        moves = data.get("_last_part_moves")
        self._last_part_moves = bytearray(self.parts) if moves is None else bytearray(moves)
        self._last_part_gather_start = data.get("_last_part_gather_start", 0)
        graph = data.get("_dispersion_graph") or {}
        self._dispersion_graph = {tuple(k): list(v) for k, v in graph.items()}
        self.dispersion = data.get("dispersion")
        by_id = {d["id"]: d for d in self.devs if d is not None}
        self._remove_devs = [by_id.get(d["id"], d) for d in data.get("_remove_devs", [])]
        self._id = data.get("id")
        self._ring = None
        for dev in self._iter_devs():
            dev.setdefault("region", 1)
            dev.setdefault("meta", "")
            dev.setdefault("replication_ip", dev["ip"])
            dev.setdefault("replication_port", dev["port"])
            dev.setdefault("parts", 0)

    def save(self, builder_path: str, backup: bool = True) -> None:
        """Write the builder file atomically, plus ``backups/<unix>.<name>`` beside it.

        The id is assigned here, on the first save, so that it is always persisted.
        """
        assigned = self._id is None
        if assigned:
            self._id = uuid.uuid4().hex
        try:
            builder_file.save_builder(self.to_dict(), builder_path, backup=backup)
        except BaseException:
            if assigned:
                self._id = None
            raise

    @classmethod
    def load(cls, builder_path: str) -> RingBuilder:
        """Read a swiftlite builder file; a Swift (pickle) file raises PickledBuilderError."""
        return cls.from_dict(builder_file.load_builder(builder_path))

    # -- rebalance ---------------------------------------------------------------

    def rebalance(self, seed: Any = None) -> tuple[int, float, int]:
        """Assign and move part-replicas; returns (changed slots, balance, removed devices).

        The same seed on the same builder state gives the same ring.
        """
        live = [d for d in self._iter_devs()]
        weighted = sum(1 for d in live if d["weight"] > 0)
        if weighted < self.replicas:
            raise RingValidationError(
                f"Replica count of {self.replicas} requires more than {weighted} devices"
            )
        self._ring = None
        old_rows = [array(r.typecode, r) for r in self._replica2part2dev or []]
        self._update_last_part_moves()
        rng = random.Random(seed)
        plan = replica_plan(live, self.replicas, self.overload, self.parts)
        wanted_parts = parts_by_tier(live, plan, self.replicas, self.parts)
        removed = Rebalancer(self, plan, wanted_parts, rng).run()
        self.devs_changed = False
        changed = self._build_dispersion_graph(old_rows)
        return changed, self.get_balance(), removed

    def _update_last_part_moves(self) -> None:
        hours = int(time() - self._last_part_moves_epoch) // 3600
        if hours <= 0:
            return
        # Add the elapsed hours to every byte, saturating at 255, in C.
        table = bytes(min(b + hours, 255) for b in range(256))
        self._last_part_moves = bytearray(self._last_part_moves.translate(table))
        self._last_part_moves_epoch = int(time())
