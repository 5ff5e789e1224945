"""Ring file <-> builder comparison and ring reading helpers for the CLI."""

from __future__ import annotations

from typing import Any

from swiftlite.ring.cli_session import Session


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        if hasattr(obj, name):
            return getattr(obj, name)
    return default


def ring_fields(ring: Any) -> dict[str, Any]:
    """What makes two rings equal for "up-to-date": devices, assignments,
    part shift, next part power and version (the id width is a detail)."""
    rows = _get(ring, "_replica2part2dev_id", "replica2part2dev_id", default=[]) or []
    return {
        "devs": list(_get(ring, "devs", "_devs", default=[]) or []),
        "rows": [list(r) for r in rows],
        "part_shift": _get(ring, "_part_shift", "part_shift"),
        "next_part_power": _get(ring, "next_part_power"),
        "version": _get(ring, "version"),
    }


def ring_matches_builder(s: Session) -> bool:
    """Whether the ring file holds exactly what the builder would write;
    raises if the ring file cannot be read."""
    on_disk = s.engine.ring_data_cls.load(s.ring_file)
    return ring_fields(on_disk) == ring_fields(s.builder.get_ring())


def ring_assignments(ring: Any) -> list[Any]:
    return list(_get(ring, "_replica2part2dev_id", "replica2part2dev_id", default=[]) or [])
