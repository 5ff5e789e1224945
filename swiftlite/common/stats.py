"""Counters a background daemon keeps for one pass (or one device of it)."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class PassStats:
    """Base for a dataclass of integer counters: per-device totals add up into
    the pass's, which go to the log line and the recon cache."""

    def add(self, other: PassStats) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        return ", ".join(f"{v} {k}" for k, v in self.as_dict().items())
