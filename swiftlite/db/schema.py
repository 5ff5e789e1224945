"""Schema pieces every broker shares: sync tables, schema version, migrations.

The ``swiftlite_schema`` table (one row) records the schema version a DB was
written with. A broker declares its current version and a migration per step
(``{from_version: fn(conn)}``); opening an older DB runs the missing steps in
one transaction, so a DB is never left half-migrated. A DB newer than the code
is refused rather than misread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping

Migration = Callable[[sqlite3.Connection], None]

SYNC_TABLES_SQL = """
CREATE TABLE outgoing_sync (
    remote_id TEXT UNIQUE,
    sync_point INTEGER,
    updated_at TEXT DEFAULT 0
);
CREATE TABLE incoming_sync (
    remote_id TEXT UNIQUE,
    sync_point INTEGER,
    updated_at TEXT DEFAULT 0
);
CREATE TRIGGER outgoing_sync_insert AFTER INSERT ON outgoing_sync
BEGIN
    UPDATE outgoing_sync SET updated_at = STRFTIME('%s', 'NOW')
    WHERE ROWID = new.ROWID;
END;
CREATE TRIGGER outgoing_sync_update AFTER UPDATE ON outgoing_sync
BEGIN
    UPDATE outgoing_sync SET updated_at = STRFTIME('%s', 'NOW')
    WHERE ROWID = new.ROWID;
END;
CREATE TRIGGER incoming_sync_insert AFTER INSERT ON incoming_sync
BEGIN
    UPDATE incoming_sync SET updated_at = STRFTIME('%s', 'NOW')
    WHERE ROWID = new.ROWID;
END;
CREATE TRIGGER incoming_sync_update AFTER UPDATE ON incoming_sync
BEGIN
    UPDATE incoming_sync SET updated_at = STRFTIME('%s', 'NOW')
    WHERE ROWID = new.ROWID;
END;
"""

SCHEMA_TABLE_SQL = "CREATE TABLE swiftlite_schema (version INTEGER NOT NULL);"


class SchemaError(sqlite3.DatabaseError):
    """The DB's schema version is unknown to this code."""


def no_update_trigger_sql(table: str) -> str:
    """Forbid UPDATE on a row table: ROWIDs must only grow (replication sync points)."""
    return f"""
CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
BEGIN
    SELECT RAISE(FAIL, 'UPDATE not allowed on {table}; DELETE and INSERT');
END;
"""


def get_schema_version(conn: sqlite3.Connection) -> int:
    try:
        row = conn.execute("SELECT version FROM swiftlite_schema").fetchone()
    except sqlite3.OperationalError as err:
        if "no such table" not in str(err):
            raise
        return 0
    return int(row[0]) if row else 0


def set_schema_version(conn: sqlite3.Connection, version: int) -> None:
    conn.execute("DELETE FROM swiftlite_schema")
    conn.execute("INSERT INTO swiftlite_schema (version) VALUES (?)", (version,))


def migrate(conn: sqlite3.Connection, current: int, migrations: Mapping[int, Migration]) -> int:
    """Bring the DB on ``conn`` (autocommit mode) up to ``current``; return the old version."""
    found = get_schema_version(conn)
    if found == current:
        return found
    if found > current:
        raise SchemaError(f"DB schema version {found} is newer than supported {current}")
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Re-read inside the write lock: another process may have migrated it.
        found = get_schema_version(conn)
        if found == 0:
            conn.execute("CREATE TABLE IF NOT EXISTS swiftlite_schema (version INTEGER NOT NULL)")
        for version in range(found, current):
            step = migrations.get(version)
            if step is None:
                raise SchemaError(f"no migration from schema version {version}")
            step(conn)
        set_schema_version(conn, current)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found
