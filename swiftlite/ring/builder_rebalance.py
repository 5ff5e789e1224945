"""One rebalance pass of :class:`swiftlite.ring.builder.RingBuilder`.

Kept apart from the builder because it is the hot path: every loop here runs
once per partition or per part-replica, so tiers are numbered and all counters
are flat lists indexed by tier id or device id.  Per-tier quantities:

* ``pmin``/``pmax``: the replica plan's bounds (0 for tiers outside the plan,
  e.g. a zero-weight device, which therefore holds "too many" and drains);
* ``avail``: part-replicas the devices below still want (positive wants only);
* ``rat``: replicas of the partition being looked at, per tier (reset after
  each partition).
"""

from __future__ import annotations

import logging
import random
from array import array
from collections import Counter, defaultdict
from typing import TYPE_CHECKING

from swiftlite.ring.builder_plan import RingValidationError, Tier, tiers_for_dev
from swiftlite.ring.builder_report import _part_keys

if TYPE_CHECKING:
    from swiftlite.ring.builder import RingBuilder

MAX_BALANCE_GATHER_COUNT = 3

# The CLI's ``rebalance --debug`` turns this logger on.
log = logging.getLogger("swiftlite.ring.builder")


def _count(gathered: dict[int, list[int]]) -> int:
    return sum(map(len, gathered.values()))


class Rebalancer:
    def __init__(
        self,
        builder: RingBuilder,
        plan: dict[Tier, tuple[int, float, int]],
        wanted_parts: dict[Tier, int],
        rng: random.Random,
    ) -> None:
        self.b = builder
        self.rng = rng
        self.parts = builder.parts
        self.none = builder.none_dev_id
        self.mph = builder.min_part_hours
        self.moved = bytearray(self.parts)
        self.lpm = builder._last_part_moves
        devs = builder.devs
        n = len(devs)
        tier_ids: dict[Tier, int] = {(): 0}
        self.dev_tiers: list[tuple[int, int, int, int]] = [(0, 0, 0, 0)] * n
        for dev in builder._iter_devs():
            ids = []
            for tier in tiers_for_dev(dev):
                tid = tier_ids.get(tier)
                if tid is None:
                    tid = tier_ids[tier] = len(tier_ids)
                ids.append(tid)
            self.dev_tiers[dev["id"]] = (ids[0], ids[1], ids[2], ids[3])
        self.tier_ids = tier_ids
        nt = len(tier_ids)
        self.pmin = [0] * nt
        self.pmax = [0] * nt
        for tier, (lo, _target, hi) in plan.items():
            tid = tier_ids.get(tier)
            if tid is not None:
                self.pmin[tid] = lo
                self.pmax[tid] = hi
        # Children in the placement tree: tiers of devices with weight only.
        kids: list[set[int]] = [set() for _ in range(nt)]
        for dev in builder._iter_devs():
            if dev["weight"]:
                chain = (0, *self.dev_tiers[dev["id"]])
                for parent, child in zip(chain, chain[1:], strict=False):
                    kids[parent].add(child)
        self.kids = [sorted(k) for k in kids]
        # Current part counts from the table itself (robust against stale dicts).
        self.pc = [0] * n
        # Slots naming a device that no longer exists (a hand-edited or
        # damaged table) are reassigned like those of a removed device.
        self.orphans: set[int] = set()
        for row in builder._replica2part2dev or []:
            for dev_id, count in Counter(row).items():
                if dev_id < n and devs[dev_id] is not None:
                    self.pc[dev_id] += count
                elif dev_id != self.none:
                    self.orphans.add(dev_id)
        self.pw = [0] * n
        drain = -int(self.parts * builder.replicas)
        for dev in builder._iter_devs():
            i = dev["id"]
            if not dev["weight"]:
                # Zero weight: give away everything it holds.
                self.pw[i] = drain
            else:
                self.pw[i] = wanted_parts[tiers_for_dev(dev)[3]] - self.pc[i]
        self.rat = [0] * nt
        self.rows: list[array] = []

    # -- helpers ---------------------------------------------------------------

    def _reps(self, part: int) -> list[int]:
        return [r for r, row in enumerate(self.rows) if part < len(row)]

    def _count_part(self, part: int) -> list[int]:
        """Add the part's assigned replicas to ``rat``; returns the devices counted."""
        rat, dev_tiers, none = self.rat, self.dev_tiers, self.none
        held = []
        for row in self.rows:
            if part < len(row):
                d = row[part]
                if d != none:
                    held.append(d)
                    for t in dev_tiers[d]:
                        rat[t] += 1
        return held

    def _uncount(self, held: list[int]) -> None:
        rat, dev_tiers = self.rat, self.dev_tiers
        for d in held:
            for t in dev_tiers[d]:
                rat[t] -= 1

    def _take(self, part: int, replica: int, dev_id: int, gathered: dict[int, list[int]]) -> None:
        """Lift one replica off its device for reassignment."""
        self.pw[dev_id] += 1
        self.pc[dev_id] -= 1
        gathered[part].append(replica)
        self.rows[replica][part] = self.none
        self.moved[part] = 1
        self.lpm[part] = 0

    # -- the pass --------------------------------------------------------------

    def run(self) -> int:
        """Gather, reassign, and write counts back; returns removed device count."""
        b = self.b
        if not b.ever_rebalanced:
            log.debug("New builder; performing initial balance")
        gathered: dict[int, list[int]] = defaultdict(list)
        self._adjust_rows(gathered)
        assert b._replica2part2dev is not None
        self.rows = b._replica2part2dev
        n = _count(gathered)
        log.debug("%d part-replicas to place after the replica-count check", n)
        self._gather_from_removed(gathered)
        n, m = _count(gathered), n
        log.debug("Gathered %d part-replicas from removed devices", n - m)
        self._gather_for_dispersion(gathered)
        log.debug("Gathered %d part-replicas for dispersion", _count(gathered) - n)
        removed = self._drop_removed_devices()
        start = b._last_part_gather_start
        status = "Unable to finish"
        rounds = 0
        for round_no in range(MAX_BALANCE_GATHER_COUNT):
            rounds += 1
            start = (start + self.parts // 4 + self.rng.randint(0, self.parts // 2)) % self.parts
            log.debug("Gather start is %d (last start was %d)", start, b._last_part_gather_start)
            b._last_part_gather_start = start
            before = _count(gathered)
            if round_no == 0:
                self._gather_for_balance_dispersible(gathered, start)
            self._gather_for_balance_forced(gathered, start)
            log.debug("Gathered %d part-replicas for balance", _count(gathered) - before)
            if not gathered:
                break
            todo = list(gathered.items())
            self.rng.shuffle(todo)
            gathered = defaultdict(list)
            self._reassign(todo)
            log.debug("Assigned %d part-replicas", _count(dict(todo)))
            if not any(self.pw[d["id"]] < 0 for d in b._iter_devs()):
                status = "Finished"
                break
        log.debug("%s rebalance plan after %d attempts", status, rounds)
        for dev in b._iter_devs():
            dev["parts"] = self.pc[dev["id"]]
            dev["parts_wanted"] = self.pw[dev["id"]]
        # Narrow the id type again once the ids fit in the lower half of the
        # smaller type (the slack avoids flapping near the limit).  Done last:
        # the unassigned marker changes with the type.
        if b.dev_id_bytes > 2 and len(b.devs) < (1 << (8 * b.dev_id_bytes // 2)) // 2:
            b.set_dev_id_bytes(b.dev_id_bytes // 2)
        return removed

    def _adjust_rows(self, gathered: dict[int, list[int]]) -> None:
        """Make the rows fit the replica count; new slots are gathered."""
        b = self.b
        parts, none = self.parts, self.none
        whole = int(b.replicas)
        lengths = [parts] * whole
        frac = b.replicas - whole
        if frac:
            lengths.append(int(parts * frac))
        rows = b._replica2part2dev or []
        pc = self.pc
        for row in rows[len(lengths) :]:
            for dev_id, n in Counter(row).items():
                if dev_id != none:
                    pc[dev_id] -= n
        rows = rows[: len(lengths)]
        code = b.dev_id_type_code
        for replica, length in enumerate(lengths):
            if replica >= len(rows):
                rows.append(array(code, [none]) * length)
                for part in range(length):
                    gathered[part].append(replica)
                continue
            row = rows[replica]
            if len(row) < length:
                for part in range(len(row), length):
                    gathered[part].append(replica)
                row.extend(array(code, [none]) * (length - len(row)))
            elif len(row) > length:
                for dev_id, n in Counter(row[length:]).items():
                    if dev_id != none:
                        pc[dev_id] -= n
                del row[length:]
        b._replica2part2dev = rows

    def _gather_from_removed(self, gathered: dict[int, list[int]]) -> None:
        """Everything on a removed device moves, min_part_hours or not."""
        ids = {d["id"] for d in self.b._remove_devs if self.pc[d["id"]]} | self.orphans
        if not ids:
            return
        none = self.none
        for replica, row in enumerate(self.rows):
            for part in [p for p, d in enumerate(row) if d in ids]:
                d = row[part]
                row[part] = none
                if d not in self.orphans:
                    self.pc[d] -= 1
                self.moved[part] = 1
                self.lpm[part] = 0
                gathered[part].append(replica)

    def _drop_removed_devices(self) -> int:
        b = self.b
        removed = 0
        while b._remove_devs:
            b.devs[b._remove_devs.pop()["id"]] = None
            removed += 1
        while b.devs and b.devs[-1] is None:
            b.devs.pop()
        return removed

    def _suspect_parts(self, limit: list[int]) -> list[int]:
        """Parts where some tier may hold more replicas than ``limit`` allows.

        A partition's replica counts at the region, zone and server tiers
        depend only on the tuple of its replicas' server tiers, and there are
        few distinct tuples, so the verdict is cached per tuple and the
        per-partition work is a tuple build and a dict lookup.  The device
        tier can only be over its limit on a device the limit excludes, or
        when two replicas share a server (the cached "shares" flag).
        """
        none, parts = self.none, self.parts
        server = {none: -1}
        parent = {}
        for dev in self.b._iter_devs():
            t = self.dev_tiers[dev["id"]]
            server[dev["id"]] = t[2]
            parent[t[2]] = (t[0], t[1])
        excluded = {
            d
            for d, dev in enumerate(self.b.devs)
            if dev is not None and limit[self.dev_tiers[d][3]] < 1
        }
        # Per server tuple: 0 fine, 1 over the limit, 2 two replicas share a
        # server (over only if they share the device too).
        verdict: dict[tuple[int, ...], int] = {}

        def judge(key: tuple[int, ...]) -> int:
            counts: Counter[int] = Counter()
            shares = False
            for s in key:
                if s < 0:
                    continue
                if counts[s]:
                    shares = True
                counts[s] += 1
                region, zone = parent[s]
                counts[region] += 1
                counts[zone] += 1
            if any(n > limit[t] for t, n in counts.items()):
                return 1
            return 2 if shares else 0

        rows = self.rows
        hits = set()
        for part, key in enumerate(_part_keys(rows, parts, server)):
            bad = verdict.get(key)
            if bad is None:
                bad = verdict[key] = judge(key)
            if bad == 1:
                hits.add(part)
            elif bad == 2:
                devs = [r[part] for r in rows if part < len(r) and r[part] != none]
                if len(set(devs)) < len(devs):
                    hits.add(part)
        if excluded:
            for row in rows:
                hits.update(p for p, d in enumerate(row) if d in excluded)
        return sorted(hits)

    def _gather_for_dispersion(self, gathered: dict[int, list[int]]) -> None:
        """Take replicas off tiers holding more than the plan's maximum."""
        pmax, rat, dev_tiers = self.pmax, self.rat, self.dev_tiers
        lpm, moved, mph, none, pw = self.lpm, self.moved, self.mph, self.none, self.pw
        for part in self._suspect_parts(pmax):
            if lpm[part] < mph or moved[part]:
                continue
            held = self._count_part(part)
            crowded = []
            for replica in self._reps(part):
                d = self.rows[replica][part]
                if d == none:
                    continue
                if any(rat[t] > pmax[t] for t in dev_tiers[d]):
                    crowded.append((pw[d], replica, d))
            crowded.sort(key=lambda c: c[0])
            for _w, replica, d in crowded:
                # After the first move the part is frozen, unless a device
                # holds two replicas of it (only rings from old tools).
                if (lpm[part] < mph or moved[part]) and rat[dev_tiers[d][3]] <= 1:
                    continue
                self._take(part, replica, d, gathered)
                for t in dev_tiers[d]:
                    rat[t] -= 1
                held.remove(d)
            self._uncount(held)

    def _gather_for_balance_dispersible(self, gathered: dict[int, list[int]], start: int) -> None:
        """Take replicas off overweight devices where the plan lets them go elsewhere."""
        pmin, pmax, rat, dev_tiers, kids = self.pmin, self.pmax, self.rat, self.dev_tiers, self.kids
        lpm, moved, mph, none, pw = self.lpm, self.moved, self.mph, self.none, self.pw
        if not any(w < 0 for w in pw):
            return
        want_below = [0] * len(pmax)
        for dev in self.b._iter_devs():
            w = pw[dev["id"]]
            if w > 0:
                for t in dev_tiers[dev["id"]]:
                    want_below[t] += w
        rows, parts = self.rows, self.parts
        for offset in range(parts):
            part = start + offset
            if part >= parts:
                part -= parts
            if lpm[part] < mph or moved[part]:
                continue
            heavy = []
            for replica, row in enumerate(rows):
                if part < len(row):
                    d = row[part]
                    if d != none and pw[d] < 0:
                        heavy.append((pw[d], replica, d))
            if not heavy:
                continue
            held = []
            for row in rows:
                if part < len(row):
                    d = row[part]
                    if d != none:
                        held.append(d)
                        t0, t1, t2, t3 = dev_tiers[d]
                        rat[t0] += 1
                        rat[t1] += 1
                        rat[t2] += 1
                        rat[t3] += 1
            if len(heavy) > 1:
                heavy.sort(key=lambda h: h[0])
            for _w, replica, d in heavy:
                tiers = dev_tiers[d]
                t0, t1, t2, t3 = tiers
                if (
                    pmin[t0] <= rat[t0] < pmax[t0]
                    or pmin[t1] <= rat[t1] < pmax[t1]
                    or pmin[t2] <= rat[t2] < pmax[t2]
                    or pmin[t3] <= rat[t3] < pmax[t3]
                ):
                    continue  # the plan pins this replica here
                # The innermost tier that would drop below its minimum
                # bounds where the replica may go (default: its region).
                if rat[t3] <= pmin[t3]:
                    stuck = t3
                elif rat[t2] <= pmin[t2]:
                    stuck = t2
                elif rat[t1] <= pmin[t1]:
                    stuck = t1
                else:
                    stuck = t0
                if sum(want_below[c] for c in kids[stuck] if c not in tiers) <= 0:
                    continue  # nowhere else under that tier wants parts
                self._take(part, replica, d, gathered)
                want_below[t0] -= 1
                want_below[t1] -= 1
                want_below[t2] -= 1
                want_below[t3] -= 1
                break
            for d in held:
                t0, t1, t2, t3 = dev_tiers[d]
                rat[t0] -= 1
                rat[t1] -= 1
                rat[t2] -= 1
                rat[t3] -= 1

    def _gather_for_balance_forced(self, gathered: dict[int, list[int]], start: int) -> None:
        """Take one replica off the most overweight device of each movable part."""
        lpm, moved, mph, none, pw = self.lpm, self.moved, self.mph, self.none, self.pw
        if not any(w < 0 for w in pw):
            return
        rows, parts = self.rows, self.parts
        for offset in range(parts):
            part = start + offset
            if part >= parts:
                part -= parts
            if lpm[part] < mph or moved[part]:
                continue
            best = None
            for replica, row in enumerate(rows):
                if part < len(row):
                    d = row[part]
                    if d != none and pw[d] < 0 and (best is None or pw[d] < best[0]):
                        best = (pw[d], replica, d)
            if best is not None:
                self._take(part, best[1], best[2], gathered)

    def _reassign(self, todo: list[tuple[int, list[int]]]) -> None:
        """Place gathered replicas, walking to the roomiest tier the plan allows."""
        b = self.b
        pmax, rat, dev_tiers, pw, pc = self.pmax, self.rat, self.dev_tiers, self.pw, self.pc
        rng = self.rng
        avail = [0] * len(pmax)
        sort_key: dict[int, tuple[int, int, int]] = {}
        for dev in b._iter_devs():
            i = dev["id"]
            sort_key[i] = (pw[i], rng.randint(0, 0xFFFF), i)
            if pw[i] > 0:
                for t in dev_tiers[i]:
                    avail[t] += pw[i]
        # Order children so that ties in free room go to the tier whose
        # hungriest device (by the sort key above) is hungriest.
        tier_key: dict[int, tuple[int, int, int]] = {}
        for i, key in sort_key.items():
            if b.devs[i] is not None and b.devs[i]["weight"]:  # type: ignore[index]
                for t in dev_tiers[i]:
                    if t not in tier_key or key > tier_key[t]:
                        tier_key[t] = key
        kids = [sorted(k, key=tier_key.__getitem__, reverse=True) for k in self.kids]
        leaf_dev = {dev_tiers[i][3]: i for i in sort_key}
        rows, lpm, none = self.rows, self.lpm, self.none
        room = avail.__getitem__
        only = [k[0] if len(k) == 1 else -1 for k in kids]
        levels = (1, 2, 3, 4)
        for part, replicas in todo:
            lpm[part] = 0
            held = []
            for row in rows:
                if part < len(row):
                    d = row[part]
                    if d != none:
                        held.append(d)
                        t0, t1, t2, t3 = dev_tiers[d]
                        rat[t0] += 1
                        rat[t1] += 1
                        rat[t2] += 1
                        rat[t3] += 1
            for replica in replicas:
                tier = 0
                for _level in levels:
                    # Usually the roomiest child is allowed: one C-level max().
                    # max() keeps the first of equals, as the scan below does.
                    best = only[tier]
                    if best < 0:
                        best = max(kids[tier], key=room)
                    if rat[best] >= pmax[best]:
                        allowed = [c for c in kids[tier] if rat[c] < pmax[c]]
                        if not allowed:
                            raise RingValidationError(f"no home for {part}/{replica}")
                        best = max(allowed, key=room)
                    tier = best
                d = leaf_dev[tier]
                pw[d] -= 1
                pc[d] += 1
                t0, t1, t2, t3 = dev_tiers[d]
                avail[t0] -= 1
                avail[t1] -= 1
                avail[t2] -= 1
                avail[t3] -= 1
                rat[t0] += 1
                rat[t1] += 1
                rat[t2] += 1
                rat[t3] += 1
                held.append(d)
                rows[replica][part] = d
            for d in held:
                t0, t1, t2, t3 = dev_tiers[d]
                rat[t0] -= 1
                rat[t1] -= 1
                rat[t2] -= 1
                rat[t3] -= 1
