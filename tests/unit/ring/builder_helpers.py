"""Shared helpers for the ring builder tests."""

from __future__ import annotations

from collections import Counter
from typing import Any

from swiftlite.ring.builder import RingBuilder


def make_builder(
    part_power: int,
    replicas: float,
    layout: list[tuple[int, int, str, float]],
    min_part_hours: int = 1,
    overload: float = 0.0,
    cls: Any = RingBuilder,
) -> Any:
    """A builder with one device per (region, zone, ip, weight) entry."""
    b = cls(part_power, replicas, min_part_hours)
    b.set_overload(overload)
    for i, (region, zone, ip, weight) in enumerate(layout):
        b.add_dev(
            {
                "region": region,
                "zone": zone,
                "ip": ip,
                "port": 6200,
                "device": f"sd{i}",
                "weight": weight,
            }
        )
    return b


def zoned_layout(zones: int, servers: int, disks: int, weight: float = 100.0) -> list:
    return [
        (1, z, f"10.0.{z}.{s}", weight)
        for z in range(1, zones + 1)
        for s in range(servers)
        for _ in range(disks)
    ]


def snapshot(b: Any) -> list[list[int]]:
    return [list(row) for row in b._replica2part2dev]


def part_devs(rows: list[list[int]], part: int) -> list[int]:
    return [row[part] for row in rows if part < len(row)]


def parts_per_dev(b: Any) -> Counter[int]:
    c: Counter[int] = Counter()
    for row in b._replica2part2dev:
        c.update(row)
    return c


def moved_replicas(before: list[list[int]], after: list[list[int]]) -> Counter[int]:
    """Per partition, how many replica slots changed device."""
    moved: Counter[int] = Counter()
    for old, new in zip(before, after, strict=False):
        for part, (a, b) in enumerate(zip(old, new, strict=False)):
            if a != b:
                moved[part] += 1
    return moved
