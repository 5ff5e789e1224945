"""Dispersion figures of a builder: the per-tier graph, the report the
``dispersion`` command prints, and device naming/address helpers.

Dispersion is Swift's (swift-internals.md 1.4): a part-replica is "at risk"
when a tier holds more replicas of its partition than an even split of the
replicas over that tier's siblings allows (rounded up, at most one per
device); each partition counts its excess once, at its worst tier level.
"""

from __future__ import annotations

import re
import socket
from array import array
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from swiftlite.ring.builder_plan import Tier, tiers_for_dev


def _part_keys(rows: Sequence[array], parts: int, mapping: dict[int, int]) -> list[tuple[int, ...]]:
    """Per partition, the tuple of ``mapping[dev]`` over its replicas.

    Built with zip/map so the per-partition work runs in C; the short last
    row of a fractional replica count only covers the first partitions.
    """
    get = mapping.__getitem__
    if not rows:
        return []
    short = min(len(r) for r in rows)
    keys = list(zip(*(map(get, r[:short]) for r in rows), strict=False))
    if short < parts:
        longer = [r for r in rows if len(r) > short]
        keys.extend(zip(*(map(get, r[short:parts]) for r in longer), strict=False))
    return keys


def build_dispersion_graph(
    rows: Sequence[array],
    devs: Sequence[dict[str, Any] | None],
    parts: int,
    replicas: float,
    none_dev_id: int,
    max_allowed: dict[Tier, float],
) -> tuple[dict[Tier, list[int]], int]:
    """(graph, part-replicas at risk).

    ``graph[tier][n]`` is how many partitions have exactly ``n`` replicas in
    ``tier`` (index 0: partitions with none there); only tiers holding some
    replica appear.

    Region, zone and server counts of a partition are a function of the tuple
    of its replicas' servers, and there are few distinct tuples, so they are
    computed once per tuple.  Device counts are 1 per appearance except in the
    rare partitions where a device holds two replicas, which are done one by one.
    """
    width = int(-(-replicas // 1))
    if not rows:
        return {}, 0
    # Unassigned slots, and ids of devices that no longer exist, count nowhere.
    server_of: defaultdict[int, int] = defaultdict(lambda: -1)
    servers: list[tuple[Tier, Tier, Tier]] = []
    server_ids: dict[Tier, int] = {}
    dev_tier: dict[int, Tier] = {}
    for dev in devs:
        if dev is None:
            continue
        region, zone, server, device = tiers_for_dev(dev)
        sid = server_ids.get(server)
        if sid is None:
            sid = server_ids[server] = len(servers)
            servers.append((region, zone, server))
        server_of[dev["id"]] = sid
        dev_tier[dev["id"]] = device

    graph: dict[Tier, list[int]] = {}

    def bump(tier: Tier, count: int, times: int) -> None:
        hist = graph.get(tier)
        if hist is None:
            hist = graph[tier] = [parts] + [0] * width
        hist[0] -= times
        hist[count] += times

    keys = _part_keys(rows, parts, server_of)
    upper_excess: dict[tuple[int, ...], int] = {}
    shared: set[tuple[int, ...]] = set()
    at_risk = 0
    for key, times in Counter(keys).items():
        counts: Counter[Tier] = Counter()
        for sid in key:
            if sid >= 0:
                counts.update(servers[sid])
        if len(set(key)) != len(key):
            shared.add(key)
        excess = [0, 0, 0]
        for tier, n in counts.items():
            bump(tier, n, times)
            over = n - max_allowed.get(tier, 0)
            if over > 0:
                excess[len(tier) - 1] += int(over)
        upper_excess[key] = max(excess)
        at_risk += times * upper_excess[key]

    appearances: Counter[int] = Counter()
    for row in rows:
        appearances.update(row)
    for dev_id in [d for d in appearances if d not in dev_tier]:
        del appearances[dev_id]
    for dev_id, n in appearances.items():
        bump(dev_tier[dev_id], 1, n)

    capped = {d for d in appearances if max_allowed.get(dev_tier[d], 0) < 1}
    # Partitions needing a per-device look: a device holding two of its
    # replicas (only possible where two replicas share a server) or a device
    # allowed none.
    special = set()
    if shared:
        for part, key in enumerate(keys):
            if key in shared:
                devs = [r[part] for r in rows if part < len(r) and r[part] in dev_tier]
                if len(set(devs)) < len(devs):
                    special.add(part)
    if capped:
        for row in rows:
            special.update(p for p, d in enumerate(row) if d in capped)
    for part in special:
        held = Counter(r[part] for r in rows if part < len(r) and r[part] in dev_tier)
        dev_excess = 0
        for dev_id, n in held.items():
            tier = dev_tier[dev_id]
            if n > 1:
                # Counted above as n single appearances; it is one partition with n.
                graph[tier][1] -= n
                graph[tier][0] += n - 1
                graph[tier][n] += 1
            over = n - max_allowed.get(tier, 0)
            if over > 0:
                dev_excess += int(over)
        at_risk += max(0, dev_excess - upper_excess[keys[part]])
    return graph, at_risk


def format_device(region: Any = None, zone: Any = None, ip: Any = None, device: Any = None,
                  **_kw: Any) -> str:  # fmt: skip
    return f"r{region}z{zone}-{ip}/{device}"


def get_tier_name(tier: Tier, builder: Any) -> str:
    if len(tier) == 1:
        return f"r{tier[0]}"
    if len(tier) == 2:
        return f"r{tier[0]}z{tier[1]}"
    if len(tier) == 3:
        return f"r{tier[0]}z{tier[1]}-{tier[2]}"
    dev = (builder.devs[tier[3]] if tier[3] < len(builder.devs) else None) or {}
    return format_device(tier[0], tier[1], tier[2], dev.get("device", f"IDd{tier[3]}"))


def dispersion_report(
    builder: Any, search_filter: str | None = None, verbose: bool = False, recalculate: bool = False
) -> dict[str, Any]:
    """What ``swift-ring-builder dispersion`` prints: the worst tier's
    dispersion and, with ``verbose``, a row per tier (same keys as Swift's)."""
    if recalculate or not builder._dispersion_graph:
        builder._build_dispersion_graph()
    allowed = builder._build_max_replicas_by_tier()
    worst_tier = None
    max_dispersion = 0.0
    rows = []
    for tier, counts in sorted(builder._dispersion_graph.items()):
        name = get_tier_name(tier, builder)
        if search_filter and not re.match(search_filter, name):
            continue
        most = int(allowed[tier])
        at_risk = sum(counts[i] * (i - most) for i in range(most + 1, len(counts)))
        placed = sum(counts[i] * i for i in range(1, len(counts)))
        tier_dispersion = 100.0 * at_risk / placed
        if tier_dispersion > max_dispersion:
            max_dispersion = tier_dispersion
            worst_tier = name
        if verbose:
            rows.append(
                (
                    name,
                    {
                        "max_replicas": most,
                        "placed_parts": placed,
                        "dispersion": tier_dispersion,
                        "replicas": counts,
                    },
                )
            )
    return {"max_dispersion": max_dispersion, "worst_tier": worst_tier, "graph": rows}


_HOSTNAME_LABEL = re.compile(r"(?!-)[A-Z\d-]{1,63}(?<!-)$", re.IGNORECASE)


def _valid_ip(family: int, text: str) -> bool:
    try:
        socket.inet_pton(family, text)
    except OSError:
        return False
    return True


def normalize_address(address: str) -> str:
    """An ip or hostname as Swift's search compares them: lower case, IPv6 in
    canonical form; raises ValueError for anything else."""
    bare = address.lstrip("[").rstrip("]").lower()
    if _valid_ip(socket.AF_INET, bare):
        return bare
    if _valid_ip(socket.AF_INET6, bare):
        return socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, bare))
    if address.startswith("[") and address.endswith("]"):
        raise ValueError(f"Invalid ip {bare}")
    host = bare[:-1] if bare.endswith(".") else bare
    if 1 <= len(bare) <= 255 and all(_HOSTNAME_LABEL.match(x) for x in host.split(".")):
        return bare
    raise ValueError(f"Invalid address {address}")
