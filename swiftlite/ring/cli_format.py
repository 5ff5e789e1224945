"""Output formatting for ``swiftlite-ring-builder``.

Column widths, number formats and wording match ``swift-ring-builder`` so
that scripts scraping its output (and operators' eyes) keep working.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from swiftlite.ring.cli_parse import is_valid_ipv6

# A zero-weight device still holding parts is shown with this balance.
MAX_BALANCE = 999.99

EMPTY_RING_MESSAGE = "There are no devices in this ring, or all devices have been deleted"


class EmptyRing(Exception):
    """No weighted device: balance is undefined."""


def _bracket(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def format_device(dev: Mapping[str, Any]) -> str:
    """``d<id>r<r>z<z>-<ip>:<port>R<rip>:<rport>/<dev>_"<meta>"``."""
    return (
        f"d{dev['id']}r{dev['region']}z{dev['zone']}-{_bracket(dev['ip'])}:{dev['port']}"
        f"R{_bracket(dev['replication_ip'])}:{dev['replication_port']}"
        f"/{dev['device']}_\"{dev['meta']}\""
    )


def live_devs(devs: Iterable[dict[str, Any] | None]) -> list[dict[str, Any]]:
    return [d for d in devs if d is not None]


def balance_per_dev(devs: Sequence[dict[str, Any] | None], parts: int, replicas: float) -> dict[int, float]:
    """Each device's percentage over (+) or under (-) its weight share.

    Computed from weights and assigned parts only, as Swift's builder does;
    raises :class:`EmptyRing` when the total weight is zero."""
    live = live_devs(devs)
    total = sum(d["weight"] for d in live)
    if not total:
        raise EmptyRing(EMPTY_RING_MESSAGE)
    per_weight = parts * replicas / total
    out: dict[int, float] = {}
    for dev in live:
        if not dev["weight"]:
            out[dev["id"]] = MAX_BALANCE if dev.get("parts") else 0
        else:
            out[dev["id"]] = 100.0 * dev.get("parts", 0) / (dev["weight"] * per_weight) - 100.0
    return out


def device_table(devs: Sequence[dict[str, Any] | None], balances: Mapping[int, float], removing: set[int]) -> list[str]:
    """The device table of the summary (no command), sorted by
    region, zone, ip, device name. Widths grow with the widest value."""
    live = live_devs(devs)
    ip_w, port_w, rip_w, rport_w, weight_w = 10, 4, 14, 4, 6
    ip6 = rip6 = False
    for dev in live:
        ip6 = ip6 or is_valid_ipv6(dev["ip"])
        rip6 = rip6 or is_valid_ipv6(dev["replication_ip"])
        ip_w = max(ip_w, len(dev["ip"]))
        rip_w = max(rip_w, len(dev["replication_ip"]))
        port_w = max(port_w, len(str(dev["port"])))
        rport_w = max(rport_w, len(str(dev["replication_port"])))
        weight_w = max(weight_w, len(f"{dev['weight']:6.02f}"))
    # Brackets around IPv6 literals take two more columns.
    ip_w += 2 if ip6 else 0
    rip_w += 2 if rip6 else 0
    lines = [
        f"Devices:{'id':>5} {'region':>6} {'zone':>4} {'ip address':>{ip_w}}:{'port':<{port_w}} "
        f"{'replication ip':>{rip_w}}:{'port':<{rport_w}} {'name':>5} {'weight':>{weight_w}} "
        f"{'partitions':>10} {'balance':>7} {'flags':>5} meta"
    ]
    for dev in sorted(live, key=lambda d: (d["region"], d["zone"], d["ip"], d["device"])):
        flags = "DEL" if dev["id"] in removing else ""
        lines.append(
            f"{dev['id']:13d} {dev['region']:6d} {dev['zone']:4d} "
            f"{_bracket(dev['ip']):>{ip_w}}:{dev['port']:<{port_w}d} "
            f"{_bracket(dev['replication_ip']):>{rip_w}}:{dev['replication_port']:<{rport_w}d} "
            f"{dev['device']:>5} {dev['weight']:{weight_w}.02f} {dev.get('parts', 0)!s:>10} "
            f"{balances.get(dev['id'], 0):7.02f} {flags:>5} {dev['meta']}"
        )
    return lines


def search_table(matches: Sequence[dict[str, Any]], devs: Sequence[dict[str, Any] | None], parts: int, replicas: float) -> list[str]:
    """The ``search`` command's fixed-width table."""
    lines = [
        "Devices:    id  region  zone      ip address  port  replication ip  "
        "replication port      name weight partitions balance meta"
    ]
    total = sum(d["weight"] for d in live_devs(devs))
    # Swift divides by the total weight unguarded; a zero total is an error
    # there as well (ZeroDivisionError, exit 2).
    per_weight = parts * replicas / total
    for dev in matches:
        if not dev["weight"]:
            bal = MAX_BALANCE if dev.get("parts") else 0
        else:
            bal = 100.0 * dev.get("parts", 0) / (dev["weight"] * per_weight) - 100.0
        lines.append(
            f"         {dev['id']:5d} {dev['region']:7d} {dev['zone']:5d} {dev['ip']:>15} "
            f"{dev['port']:5d} {dev['replication_ip']:>15} {dev['replication_port']:17d} "
            f"{dev['device']:>9} {dev['weight']:6.02f} {dev.get('parts', 0)!s:>10} "
            f"{bal:7.02f} {dev['meta']}"
        )
    return lines


def dispersion_table(graph: Sequence[tuple[str, Mapping[str, Any]]], parts: int, replicas: float) -> list[str]:
    """``dispersion -v``: one row per tier with the count of parts having
    0..ceil(replicas) replicas in that tier."""
    counts = list(range(int(math.ceil(replicas + 1))))
    cw = max(len(str(parts)), 5)
    tier_w = max(max(len(name) for name, _ in graph), 30)

    def cells(values: Iterable[Any]) -> str:
        return " ".join(f"{v!s:>{cw}}" for v in values)

    header = f"{'Tier':<{tier_w}} {'Parts':>{cw}} {'%':>6} {'Max':>6} {cells(counts)}"
    rule = "-" * len(header)
    lines = [rule, header, rule]
    for name, row in graph:
        lines.append(
            f"{name:<{tier_w}} {row['placed_parts']!s:>{cw}} {row['dispersion']:6.02f} "
            f"{row['max_replicas']:6d} {cells(row['replicas'])}"
        )
    return lines


def tier_name(tier: Sequence[Any], devs: Sequence[dict[str, Any] | None]) -> str:
    """``r1``, ``r1z2``, ``r1z2-10.0.0.1``, ``r1z2-10.0.0.1/sdb``."""
    if len(tier) == 1:
        return f"r{tier[0]}"
    if len(tier) == 2:
        return f"r{tier[0]}z{tier[1]}"
    if len(tier) == 3:
        return f"r{tier[0]}z{tier[1]}-{tier[2]}"
    dev_id = tier[3]
    dev = devs[dev_id] if dev_id < len(devs) else None
    name = dev["device"] if dev else f"IDd{dev_id}"
    return f"r{tier[0]}z{tier[1]}-{tier[2]}/{name}"


def hms(seconds: float) -> str:
    """``datetime.timedelta`` text, e.g. ``0:00:00`` or ``1 day, 0:00:00``."""
    return str(datetime.timedelta(seconds=seconds))
