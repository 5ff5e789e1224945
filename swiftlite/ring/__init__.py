"""Placement: the ring (lookup), its file format and the builder.

``Ring``, ``RingData`` and ``RingBuilder`` are resolved on first use so that
importing this package (or only ``ring_io``) does not pull in the builder,
and a module of this package can import another without a cycle.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from swiftlite.ring.builder import RingBuilder
    from swiftlite.ring.ring import Ring
    from swiftlite.ring.ring_io import RingData

__all__ = ["Ring", "RingBuilder", "RingData"]

_WHERE = {
    "Ring": "swiftlite.ring.ring",
    "RingData": "swiftlite.ring.ring_io",
    "RingBuilder": "swiftlite.ring.builder",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
