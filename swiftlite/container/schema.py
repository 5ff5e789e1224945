"""The container DB schema: Swift's (so Swift's tools and brokers can open a
swiftlite container DB, and swiftlite can adopt Swift's) plus ``expires``.

Schema versions (``swiftlite_schema``):

- 0: no version table: a DB written by Swift. Adopted as version 1 when it has
  Swift's current layout (``container_info``, ``policy_stat``, ``object``);
  anything older is refused.
- 1: Swift's layout: ``object`` rows, per-policy counts in ``policy_stat``
  kept by triggers that also fold each row into ``container_info.hash``
  (chexor), the ``container_stat`` view (with its INSTEAD OF UPDATE trigger)
  that older code and the stat-table helpers use, an empty ``shard_range``.
- 2: + ``object.expires`` (X-Delete-At) and its partial index.
"""

from __future__ import annotations

import sqlite3

from swiftlite.db.chexor import ZERO_HASH
from swiftlite.db.schema import SchemaError, no_update_trigger_sql

POLICY_STAT_SQL = """
CREATE TABLE policy_stat (
    storage_policy_index INTEGER PRIMARY KEY,
    object_count INTEGER DEFAULT 0,
    bytes_used INTEGER DEFAULT 0
);
"""

OBJECT_SQL = (
    """
CREATE TABLE object (
    ROWID INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT,
    created_at TEXT,
    size INTEGER,
    content_type TEXT,
    etag TEXT,
    deleted INTEGER DEFAULT 0,
    storage_policy_index INTEGER DEFAULT 0
);
CREATE INDEX ix_object_deleted_name ON object (deleted, name);
"""
    # Swift names this trigger object_update.
    + no_update_trigger_sql("object").replace("object_no_update", "object_update")
    + """
CREATE TRIGGER object_insert_policy_stat AFTER INSERT ON object
BEGIN
    UPDATE policy_stat
    SET object_count = object_count + (1 - new.deleted),
        bytes_used = bytes_used + new.size
    WHERE storage_policy_index = new.storage_policy_index;
    INSERT INTO policy_stat (storage_policy_index, object_count, bytes_used)
    SELECT new.storage_policy_index, (1 - new.deleted), new.size
    WHERE NOT EXISTS (SELECT changes() AS change FROM policy_stat WHERE change <> 0);
    UPDATE container_info SET hash = chexor(hash, new.name, new.created_at);
END;
CREATE TRIGGER object_delete_policy_stat AFTER DELETE ON object
BEGIN
    UPDATE policy_stat
    SET object_count = object_count - (1 - old.deleted),
        bytes_used = bytes_used - old.size
    WHERE storage_policy_index = old.storage_policy_index;
    UPDATE container_info SET hash = chexor(hash, old.name, old.created_at);
END;
"""
)

STAT_COLUMNS = (
    "account",
    "container",
    "created_at",
    "put_timestamp",
    "delete_timestamp",
    "reported_put_timestamp",
    "reported_delete_timestamp",
    "reported_object_count",
    "reported_bytes_used",
    "hash",
    "id",
    "status",
    "status_changed_at",
    "metadata",
    "x_container_sync_point1",
    "x_container_sync_point2",
    "storage_policy_index",
    "reconciler_sync_point",
)

CONTAINER_INFO_SQL = f"""
CREATE TABLE container_info (
    account TEXT,
    container TEXT,
    created_at TEXT,
    put_timestamp TEXT DEFAULT '0',
    delete_timestamp TEXT DEFAULT '0',
    reported_put_timestamp TEXT DEFAULT '0',
    reported_delete_timestamp TEXT DEFAULT '0',
    reported_object_count INTEGER DEFAULT 0,
    reported_bytes_used INTEGER DEFAULT 0,
    hash TEXT default '{ZERO_HASH}',
    id TEXT,
    status TEXT DEFAULT '',
    status_changed_at TEXT DEFAULT '0',
    metadata TEXT DEFAULT '',
    x_container_sync_point1 INTEGER DEFAULT -1,
    x_container_sync_point2 INTEGER DEFAULT -1,
    storage_policy_index INTEGER DEFAULT 0,
    reconciler_sync_point INTEGER DEFAULT -1
);
CREATE VIEW container_stat
AS SELECT {", ".join("ci." + c for c in STAT_COLUMNS)},
    coalesce(ps.object_count, 0) AS object_count,
    coalesce(ps.bytes_used, 0) AS bytes_used
FROM container_info ci LEFT JOIN policy_stat ps
ON ci.storage_policy_index = ps.storage_policy_index;
CREATE TRIGGER container_stat_update
INSTEAD OF UPDATE ON container_stat
BEGIN
    UPDATE container_info
    SET {", ".join(f"{c} = NEW.{c}" for c in STAT_COLUMNS)};
END;
"""

SHARD_RANGE_SQL = """
CREATE TABLE shard_range (
    ROWID INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT,
    timestamp TEXT,
    lower TEXT,
    upper TEXT,
    object_count INTEGER DEFAULT 0,
    bytes_used INTEGER DEFAULT 0,
    meta_timestamp TEXT,
    deleted INTEGER DEFAULT 0,
    state INTEGER,
    state_timestamp TEXT,
    epoch TEXT,
    reported INTEGER DEFAULT 0,
    tombstones INTEGER DEFAULT -1
);
CREATE TRIGGER shard_range_update BEFORE UPDATE ON shard_range
BEGIN
    SELECT RAISE(FAIL, 'UPDATE not allowed; DELETE and INSERT');
END;
"""

V1_SQL = POLICY_STAT_SQL + OBJECT_SQL + CONTAINER_INFO_SQL + SHARD_RANGE_SQL

EXPIRES_STATEMENTS = (
    "ALTER TABLE object ADD COLUMN expires INTEGER DEFAULT NULL",
    "CREATE INDEX ix_object_expires ON object (expires) WHERE expires IS NOT NULL",
)


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {
        row[0]
        for row in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
    }


def adopt_swift_db(conn: sqlite3.Connection) -> None:
    """0 -> 1: a DB Swift wrote; accept Swift's current layout as it is."""
    missing = {"object", "policy_stat", "container_info", "container_stat"} - _tables(conn)
    if missing:
        raise SchemaError(f"not a container DB of a supported layout (missing {sorted(missing)})")


def add_expires(conn: sqlite3.Connection) -> None:
    """1 -> 2: the expiry column and its partial index."""
    for stmt in EXPIRES_STATEMENTS:
        conn.execute(stmt)
