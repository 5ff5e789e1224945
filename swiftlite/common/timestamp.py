"""Swift's Timestamp: 10 µs precision, fixed-width strings, optional offsets.

Comparison is on ``(raw, offset)`` integers, never on floats, so ordering is
exactly the lexical order of the internal strings Swift writes to disk.
"""

from __future__ import annotations

import datetime
import functools
import math
import time
from typing import Any

PRECISION = 1e-5
RAW_PER_SECOND = 100000
MAX_OFFSET = (16**16) - 1
# Swift never writes a timestamp at or past 1e10 seconds.
MAX_RAW = 10**10 * RAW_PER_SECOND
_EPOCH = datetime.datetime(1970, 1, 1)


class InvalidTimestamp(ValueError):
    pass


@functools.total_ordering
class Timestamp:
    """A point in time as Swift stores it: ``raw`` units of 10 µs plus an offset."""

    __slots__ = ("raw", "offset")
    raw: int
    offset: int

    def __init__(
        self,
        timestamp: Any,
        offset: int = 0,
        delta: int = 0,
        check_bounds: bool = True,
    ) -> None:
        if isinstance(timestamp, bytes):
            timestamp = timestamp.decode("ascii")
        if isinstance(timestamp, str):
            base, sep, off = timestamp.partition("_")
            try:
                if sep:
                    offset += int(off, 16)
                raw = round(float(base) / PRECISION)
            except ValueError:
                raise InvalidTimestamp(f"invalid timestamp {timestamp!r}") from None
        elif isinstance(timestamp, Timestamp):
            raw = timestamp.raw
            offset += timestamp.offset
        else:
            try:
                raw = round(float(timestamp) / PRECISION)
            except (TypeError, ValueError):
                raise InvalidTimestamp(f"invalid timestamp {timestamp!r}") from None
        raw += delta
        if offset < 0:
            raise ValueError("offset must be non-negative")
        if offset > MAX_OFFSET:
            raise ValueError(f"offset must be smaller than {MAX_OFFSET}")
        if check_bounds:
            if raw < 0:
                raise ValueError("timestamp cannot be negative")
            if raw >= MAX_RAW:
                raise ValueError("timestamp too large")
        self.raw = raw
        self.offset = offset

    @classmethod
    def now(cls, offset: int = 0, delta: int = 0) -> Timestamp:
        return cls(time.time(), offset=offset, delta=delta)

    @classmethod
    def from_raw(cls, raw: int, offset: int = 0) -> Timestamp:
        ts = cls.__new__(cls)
        ts.raw = raw
        ts.offset = offset
        return ts

    @property
    def timestamp(self) -> float:
        # Rounded as Swift rounds it: 3.0, not 3.0000000000000004.
        return round(self.raw * PRECISION, 5)

    def __float__(self) -> float:
        return self.timestamp

    def __int__(self) -> int:
        return int(self.timestamp)

    @property
    def normal(self) -> str:
        """``%016.05f``: seconds, five decimals, zero-padded to 16 characters."""
        whole, frac = divmod(self.raw, RAW_PER_SECOND)
        return f"{whole:010d}.{frac:05d}"

    @property
    def internal(self) -> str:
        if self.offset:
            return f"{self.normal}_{self.offset:016x}"
        return self.normal

    @property
    def short(self) -> str:
        if self.offset:
            return f"{self.normal}_{self.offset:x}"
        return self.normal

    @property
    def isoformat(self) -> str:
        """Listing ``last_modified``: ``YYYY-MM-DDTHH:MM:SS.ffffff`` in UTC."""
        # Swift derives this from the float value, and at large timestamps the
        # float's error shows in the last microsecond digit; listings must
        # match Swift's byte for byte, so compute it the same way.
        frac, whole = math.modf(float(self.normal))
        us = round(frac * 1e6)
        if us >= 1000000:
            whole += 1
            us -= 1000000
        elif us < 0:
            whole -= 1
            us += 1000000
        dt = _EPOCH + datetime.timedelta(seconds=int(whole), microseconds=us)
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%f")

    @property
    def ceil(self) -> int:
        """``Last-Modified`` seconds: Swift rounds the timestamp up."""
        return math.ceil(self.raw / RAW_PER_SECOND)

    def __str__(self) -> str:
        return self.internal

    def __repr__(self) -> str:
        return f"Timestamp({self.internal!r})"

    def _key(self) -> tuple[int, int]:
        return (self.raw, self.offset)

    def __eq__(self, other: object) -> bool:
        if other is None:
            return False
        if not isinstance(other, Timestamp):
            try:
                other = Timestamp(other, check_bounds=False)
            except (InvalidTimestamp, ValueError):
                return NotImplemented
        return self._key() == other._key()

    def __lt__(self, other: object) -> bool:
        if other is None:
            return False
        if not isinstance(other, Timestamp):
            other = Timestamp(other, check_bounds=False)
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __bool__(self) -> bool:
        return bool(self.raw or self.offset)


def normalize_timestamp(value: Any) -> str:
    return Timestamp(value).normal


def last_modified_date_to_timestamp(value: str) -> Timestamp:
    """Inverse of :attr:`Timestamp.isoformat` for listing values."""
    dt = datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f")
    delta = dt - _EPOCH
    # Through a float, as Swift does: the rounding must match theirs.
    return Timestamp(delta.total_seconds())


def encode_timestamps(
    t1: Timestamp, t2: Timestamp | None = None, t3: Timestamp | None = None, explicit: bool = False
) -> str:
    """Swift's multi-timestamp form ``<t1.short>[±hex(t2-t1)[±hex(t3-t2)]]``.

    Used in container rows (data, content-type, metadata times) and in the
    names of ``.meta`` files that carry a content-type change.
    """
    form = t1.short
    deltas: list[int] = []
    if t2 is not None:
        deltas.append(t2.raw - t1.raw)
        if t3 is not None:
            deltas.append(t3.raw - t2.raw)
    if explicit or any(deltas):
        form += "".join(f"{d:+x}" for d in deltas)
    return form


def decode_timestamps(
    encoded: str | bytes, explicit: bool = False
) -> tuple[Timestamp, Timestamp | None, Timestamp | None]:
    """Inverse of :func:`encode_timestamps`.

    Without ``explicit`` a missing delta means "same as the previous one", so
    three timestamps always come back; with it, missing parts are ``None``.
    """
    if isinstance(encoded, bytes):
        encoded = encoded.decode("ascii")
    parts: list[str] = []
    sign_positions = [i for i, ch in enumerate(encoded) if ch in "+-"]
    start = 0
    for pos in sign_positions:
        parts.append(encoded[start:pos])
        start = pos
    parts.append(encoded[start:])
    t1 = Timestamp(parts[0])
    t2: Timestamp | None = None
    t3: Timestamp | None = None
    # A zero delta keeps the previous timestamp itself (offset included); a
    # non-zero delta builds a new one from the normal form, as Swift does.
    if len(parts) > 1:
        delta = int(parts[1], 16)
        t2 = Timestamp.from_raw(t1.raw + delta) if delta else t1
    elif not explicit:
        t2 = t1
    if len(parts) > 2:
        assert t2 is not None
        delta = int(parts[2], 16)
        t3 = Timestamp.from_raw(t2.raw + delta) if delta else t2
    elif not explicit:
        t3 = t2
    return t1, t2, t3
