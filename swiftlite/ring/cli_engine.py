"""The builder engine as the CLI sees it.

The CLI talks to the ring builder and ring file code only through
:class:`Engine`, so that the exact same command code can also be driven by
OpenStack Swift's own builder in tests: with Swift's engine plugged in, the
output must be byte-identical to ``swift-ring-builder``'s, which pins down
the CLI layer independently of placement differences between the engines.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Engine:
    builder_cls: Any
    ring_data_cls: Any
    dispersion_report: Callable[..., dict[str, Any]]
    # Exceptions a builder operation raises for an operator error (bad
    # topology, too few devices, ...); the CLI reports them and exits 2.
    builder_errors: tuple[type[BaseException], ...]
    validation_errors: tuple[type[BaseException], ...]
    # Logger that ``rebalance -d`` turns on.
    debug_logger: str = "swiftlite.ring.builder"


def _errors(module: Any, *names: str) -> tuple[type[BaseException], ...]:
    found = tuple(getattr(module, n) for n in names if isinstance(getattr(module, n, None), type))
    return found or (ValueError,)


def swiftlite_engine() -> Engine:
    builder = importlib.import_module("swiftlite.ring.builder")
    ring_io = importlib.import_module("swiftlite.ring.ring_io")
    return Engine(
        builder_cls=builder.RingBuilder,
        ring_data_cls=ring_io.RingData,
        dispersion_report=builder.dispersion_report,
        builder_errors=_errors(builder, "RingBuilderError", "RingValidationError", "EmptyRingError"),
        validation_errors=_errors(builder, "RingValidationError", "RingBuilderError"),
    )


def swift_engine() -> Engine:  # pragma: no cover - exercised by the compatibility tests
    """OpenStack Swift's builder (test oracle only; never used in production)."""
    ring = importlib.import_module("swift.common.ring")
    utils = importlib.import_module("swift.common.ring.utils")
    exc = importlib.import_module("swift.common.exceptions")
    return Engine(
        builder_cls=ring.RingBuilder,
        ring_data_cls=ring.RingData,
        dispersion_report=utils.dispersion_report,
        builder_errors=(exc.RingBuilderError,),
        validation_errors=(exc.RingValidationError,),
        debug_logger="swift.ring.builder",
    )
