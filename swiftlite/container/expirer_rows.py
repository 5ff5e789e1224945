"""The expirer's container DB work (blocking: run through DeviceManager.run).

Reading the due rows a page at a time uses its own query with a
``(expires, name, storage_policy_index)`` marker, so rows the expirer has to
leave in place (the object changed since) never hide the rows after them.
A finished row is not removed from the table: it is replaced by a
tombstone row (newest wins, as every object update), which replicates to
the other container replicas like any delete.
"""

from __future__ import annotations

from typing import Any

from swiftlite.container.backend import ContainerBroker
from swiftlite.db.exceptions import LockTimeout

# A position in the due rows: (expires, name, storage_policy_index).
Marker = tuple[int, str, int]


def container_info(db_file: str) -> dict[str, Any] | None:
    """The container's info; also folds its pending updates into the DB."""
    broker = ContainerBroker(db_file, stale_reads_ok=True)
    try:
        return broker.get_info()
    except (LockTimeout, FileNotFoundError):
        return None
    finally:
        broker.close()


def expired_page(
    db_file: str, now: float, after: Marker | None, limit: int
) -> list[dict[str, Any]]:
    """Live rows with ``expires <= now`` after ``after``, soonest first."""
    broker = ContainerBroker(db_file, stale_reads_ok=True)
    try:
        with broker.get() as conn:
            if after is None:
                rows = conn.execute(
                    "SELECT name, created_at, expires, storage_policy_index FROM object "
                    "INDEXED BY ix_object_expires WHERE expires <= ? AND deleted = 0 "
                    "ORDER BY expires, name, storage_policy_index LIMIT ?",
                    (now, limit),
                ).fetchall()
            else:
                exp, name, policy = after
                rows = conn.execute(
                    "SELECT name, created_at, expires, storage_policy_index FROM object "
                    "INDEXED BY ix_object_expires WHERE expires <= ? AND expires >= ? "
                    "AND deleted = 0 AND (expires > ? OR name > ? "
                    "OR (name = ? AND storage_policy_index > ?)) "
                    "ORDER BY expires, name, storage_policy_index LIMIT ?",
                    (now, exp, exp, name, name, policy, limit),
                ).fetchall()
    finally:
        broker.close()
    return [
        {
            "name": r[0],
            "created_at": r[1],
            "expires": int(r[2]),
            "storage_policy_index": int(r[3]),
        }
        for r in rows
    ]


def tombstone_rows(db_file: str, rows: list[tuple[str, str, int]]) -> None:
    """Mark ``(name, timestamp, policy)`` rows deleted in one transaction.

    Newest wins: a row updated after the expirer read it (a newer PUT)
    keeps the newer version.
    """
    if not rows:
        return
    broker = ContainerBroker(db_file)
    try:
        broker.merge_items(
            [
                ContainerBroker.make_record(
                    name, timestamp, 0, "application/deleted", "noetag", 1, policy
                )
                for name, timestamp, policy in rows
            ]
        )
    finally:
        broker.close()
