"""Order-independent hash of a DB's rows, byte-compatible with Swift's chexor.

Each row contributes ``md5("<name>-<timestamp>")``; contributions are XORed
into a 128-bit running value, so inserting and later deleting a row cancels
out and the result does not depend on the order rows arrived in. Replicas
compare these hashes to skip work when they already agree.
"""

from __future__ import annotations

import hashlib

ZERO_HASH = "0" * 32


def chexor(old: str, name: str | None, timestamp: str) -> str:
    """Fold ``(name, timestamp)`` into the running hash ``old`` (32 hex chars)."""
    if name is None:
        # A NULL name would silently hash as "None-..."; Swift refuses it too.
        raise ValueError("name is None")
    new = hashlib.md5(f"{name}-{timestamp}".encode(), usedforsecurity=False)
    return f"{int(old, 16) ^ int.from_bytes(new.digest(), 'big'):032x}"
