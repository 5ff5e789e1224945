"""The replica plan: how many replicas of a partition each tier should hold.

A tier is a tuple naming a failure domain: ``(region,)``, ``(region, zone)``,
``(region, zone, ip)`` and ``(region, zone, ip, dev_id)``; ``()`` is the whole
cluster.  The plan is computed per tier, never per partition, so it is cheap;
the per-partition work lives in :mod:`swiftlite.ring.builder`.

The numbers follow Swift's definitions (swift-internals.md 1.4):

* *weighted* replicanths: a device's share of the replicas by weight, capped
  at one whole replica per device (a device can never hold two replicas of a
  partition), with the excess spread over the devices that still have room;
* *wanted* replicanths: the most dispersed placement the topology allows,
  refined by weight inside the bounds of an even split;
* *target*: weighted moved towards wanted by as much as ``overload`` allows;
* the plan bounds are the floor and ceiling of the target.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

Tier = tuple[Any, ...]
Dev = dict[str, Any]

# Float sums of replicanths are compared with this slack.
EPSILON = 1e-10


class RingBuilderError(Exception):
    """Base class of the errors the builder raises."""


class RingValidationError(RingBuilderError):
    """The ring (or the request) breaks one of the builder's invariants."""


class EmptyRingError(RingBuilderError):
    """No device with weight: nothing to place partitions on."""


class DuplicateDeviceError(RingBuilderError):
    """A device id is already taken."""


def tiers_for_dev(dev: Dev) -> tuple[Tier, Tier, Tier, Tier]:
    """The four tiers a device belongs to, outermost first."""
    region, zone, ip, dev_id = dev["region"], dev["zone"], dev["ip"], dev["id"]
    return ((region,), (region, zone), (region, zone, ip), (region, zone, ip, dev_id))


def build_tier_tree(devs: Iterable[Dev]) -> defaultdict[Tier, set[Tier]]:
    """Map each tier to the set of its child tiers (``()`` is the root)."""
    tree: defaultdict[Tier, set[Tier]] = defaultdict(set)
    for dev in devs:
        for tier in tiers_for_dev(dev):
            tree[tier[:-1]].add(tier)
    return tree


def check_replicas_by_tier(replicas: float, by_tier: dict[Tier, float]) -> None:
    """Every tier level must add up to the ring's replica count."""
    names = ("cluster", "regions", "zones", "servers", "devices")
    for level, name in enumerate(names):
        total = sum(v for t, v in by_tier.items() if len(t) == level)
        if abs(replicas - total) > EPSILON:
            raise RingValidationError(f"{total} != {replicas} at tier {name}")


def max_replicas_by_tier(
    tree: dict[Tier, set[Tier]], replicas: float, bound: Callable[[float], float] = math.ceil
) -> defaultdict[Tier, float]:
    """Most replicas each tier may hold if replicas were split evenly, ignoring weight.

    With ``bound=math.ceil`` this is what the dispersion figure measures against;
    with ``bound=float`` it gives the exact even split used by the plan.
    """
    out: defaultdict[Tier, float] = defaultdict(float)
    stack: list[tuple[Tier, float]] = [((), replicas)]
    while stack:
        tier, count = stack.pop()
        if len(tier) == 4:
            # A device holds at most one replica of a partition.
            count = min(1, count)
        out[tier] = count
        children = tree.get(tier)
        if children:
            share = bound(float(count) / len(children))
            stack.extend((child, share) for child in children)
    return out


def weighted_replicas_by_tier(
    devs: list[Dev], replicas: float, parts: int
) -> defaultdict[Tier, float]:
    """Replicanths per tier by weight alone (devices capped at one replica).

    The arithmetic goes through "parts per unit of weight" in the same order
    as Swift's, so that floors of ``target * parts`` land on the same integers.
    """
    weighted = [d for d in devs if d["weight"]]
    total_weight = sum(d["weight"] for d in weighted)
    if not total_weight:
        raise EmptyRingError("There are no devices in this ring, or all devices have been deleted")
    one_part = parts * replicas / total_weight
    share: dict[int, float] = {}
    for dev in weighted:
        share[dev["id"]] = min(1.0, dev["weight"] * one_part / parts)
    # Capping a heavy device at one replica leaves replicanths unplaced; hand
    # them to the uncapped devices in proportion to what they already have.
    open_ids = [i for i, v in share.items() if v < 1]
    for _ in range(10000):
        left = replicas - sum(share.values())
        if left < EPSILON:
            break
        open_ids = [i for i in open_ids if share[i] < 1]
        if not open_ids:
            break
        grow = left / sum(share[i] for i in open_ids) + 1
        for i in open_ids:
            share[i] = min(1.0, share[i] * grow)
    by_tier: defaultdict[Tier, float] = defaultdict(float)
    for dev in weighted:
        value = share[dev["id"]]
        by_tier[()] += value
        for tier in tiers_for_dev(dev):
            by_tier[tier] += value
    check_replicas_by_tier(replicas, by_tier)
    return by_tier


def wanted_replicas_by_tier(
    devs: list[Dev], replicas: float, weighted: dict[Tier, float]
) -> defaultdict[Tier, float]:
    """Replicanths per tier for the most dispersed placement the topology allows."""
    live = [d for d in devs if d["weight"] > 0]
    tree = build_tier_tree(live)
    even = max_replicas_by_tier(tree, replicas, bound=float)
    lo = {t: math.floor(v) for t, v in even.items()}
    hi = {t: math.ceil(v) for t, v in even.items()}
    n_devs: defaultdict[Tier, int] = defaultdict(int)
    for dev in live:
        n_devs[()] += 1
        for tier in tiers_for_dev(dev):
            n_devs[tier] += 1

    wanted: defaultdict[Tier, float] = defaultdict(float)
    todo: list[tuple[Tier, float]] = [((), replicas)]
    while todo:
        tier, amount = todo.pop()
        if amount > n_devs[tier]:
            raise RingValidationError(
                f"More replicanths ({amount}) than devices ({n_devs[tier]}) in tier ({tier})"
            )
        wanted[tier] = amount
        kids = sorted(tree[tier]) if tier in tree else []
        if not kids:
            continue
        alloc = dict.fromkeys(kids, 0.0)
        spread = kids
        # Once every child sits at its even-split ceiling and replicanths are
        # still left, some children must exceed it (too few devices elsewhere).
        device_limited = False
        for _ in range(10000):
            scale = (amount - sum(alloc.values())) / sum(weighted[k] for k in spread)
            for k in spread:
                value = alloc[k] + weighted[k] * scale
                if value < lo[k]:
                    value = lo[k]
                elif value > hi[k] and not device_limited:
                    value = hi[k]
                alloc[k] = min(value, n_devs[k])
            left = amount - sum(alloc.values())
            if left < -EPSILON:
                spread = [k for k in kids if alloc[k] > lo[k]]
            elif left > EPSILON:
                spread = [k for k in kids if n_devs[k] > alloc[k] < hi[k]]
                if not spread:
                    device_limited = True
                    spread = [k for k in kids if alloc[k] < n_devs[k]]
            else:
                break
            if not spread:
                raise RingValidationError(f"Cannot place {amount} replicas under tier {tier}")
        todo.extend(alloc.items())
    check_replicas_by_tier(replicas, wanted)
    return wanted


def required_overload(
    devs: list[Dev], weighted: dict[Tier, float], wanted: dict[Tier, float]
) -> float:
    """Smallest overload that lets the plan reach full dispersion.

    It is the largest relative gap between a device's wanted and weighted
    replicanths: one device needing 5% more than its weight counts for more
    than five devices needing 1% each.
    """
    worst = 0.0
    for dev in devs:
        tier = tiers_for_dev(dev)[3]
        if not dev["weight"]:
            if wanted.get(tier):
                raise RingValidationError(
                    f"Device {tier} has zero weight and should not want any replicas"
                )
            continue
        need = (wanted[tier] - weighted[tier]) / weighted[tier]
        worst = max(worst, need)
    return worst


def target_replicas_by_tier(
    devs: list[Dev], replicas: float, overload: float, parts: int
) -> tuple[dict[Tier, float], float]:
    """Target replicanths per tier, and the required overload behind them."""
    weighted = weighted_replicas_by_tier(devs, replicas, parts)
    wanted = wanted_replicas_by_tier(devs, replicas, weighted)
    required = required_overload(devs, weighted, wanted)
    if required <= 0.0:
        return dict(wanted), required
    used = min(overload, required)
    target = {
        tier: value + (wanted[tier] - value) / required * used for tier, value in weighted.items()
    }
    check_replicas_by_tier(replicas, target)
    return target, required


def replica_plan(
    devs: list[Dev], replicas: float, overload: float, parts: int
) -> dict[Tier, tuple[int, float, int]]:
    """Per tier: (fewest replicas, target replicanths, most replicas)."""
    target, _required = target_replicas_by_tier(devs, replicas, overload, parts)
    return {
        tier: (math.floor(value + EPSILON), value, math.ceil(value - EPSILON))
        for tier, value in target.items()
    }


def parts_by_tier(
    devs: list[Dev], plan: dict[Tier, tuple[int, float, int]], replicas: float, parts: int
) -> dict[Tier, int]:
    """Whole part-replicas each tier should hold, handed down from the root.

    Each child first gets the floor of its target share; the few left over go
    round-robin, smallest target first.
    """
    tree = build_tier_tree(d for d in devs if d["weight"])
    total = int(replicas * parts)
    out: dict[Tier, int] = {}
    todo: list[tuple[Tier, int]] = [((), total)]
    while todo:
        tier, count = todo.pop()
        out[tier] = count
        kids = sorted(tree[tier]) if tier in tree else []
        if not kids:
            continue
        give: dict[Tier, int] = {}
        for k in kids:
            give[k] = min(count, int(math.floor(plan[k][1] * parts)))
            count -= give[k]
        by_target = sorted(kids, key=lambda k: plan[k][1])
        i = 0
        while count > 0:
            give[by_target[i % len(by_target)]] += 1
            count -= 1
            i += 1
        todo.extend(give.items())
    for level, name in enumerate(("cluster", "regions", "zones", "servers", "devices")):
        placed = sum(v for t, v in out.items() if len(t) == level)
        if placed != total:
            raise RingValidationError(f"{placed} != {total} at tier {name}")
    return out
