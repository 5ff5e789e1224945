"""AccountBroker: one account replica's SQLite DB.

The rows are containers as reported by container servers (put/delete
timestamps, object count, bytes used, storage policy); triggers keep the
account totals (``account_stat``) and per-policy totals (``policy_stat``) and
fold every row into the order-independent replica hash. The layout follows
Swift's account DB so operators find the same tables and columns.

Everything here blocks: servers call it through ``DeviceManager.run``.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from typing import Any

from swiftlite.common.timestamp import Timestamp
from swiftlite.db.broker import DatabaseBroker
from swiftlite.db.schema import SchemaError, no_update_trigger_sql

DATADIR = "accounts"
# Names starting with this byte are Swift's reserved namespace (hidden from
# listings unless the caller is allowed to see them).
RESERVED = "\x00"

# The hash folds "<put>-<delete>-<count>-<bytes>" per row, as Swift's account
# DB does, so a replica that differs in any reported figure is noticed.
_ROW_HASH = (
    "new.put_timestamp || '-' || new.delete_timestamp || '-' || "
    "new.object_count || '-' || new.bytes_used"
)

CONTAINER_TABLE_SQL = f"""
CREATE TABLE container (
    ROWID INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT,
    put_timestamp TEXT,
    delete_timestamp TEXT,
    object_count INTEGER,
    bytes_used INTEGER,
    deleted INTEGER DEFAULT 0,
    storage_policy_index INTEGER DEFAULT 0
);
CREATE INDEX ix_container_deleted_name ON container (deleted, name);

CREATE TRIGGER container_insert AFTER INSERT ON container
BEGIN
    UPDATE account_stat
    SET container_count = container_count + (1 - new.deleted),
        object_count = object_count + new.object_count,
        bytes_used = bytes_used + new.bytes_used,
        hash = chexor(hash, new.name, {_ROW_HASH});
    INSERT OR IGNORE INTO policy_stat
        (storage_policy_index, container_count, object_count, bytes_used)
        VALUES (new.storage_policy_index, 0, 0, 0);
    UPDATE policy_stat
    SET container_count = container_count + (1 - new.deleted),
        object_count = object_count + new.object_count,
        bytes_used = bytes_used + new.bytes_used
    WHERE storage_policy_index = new.storage_policy_index;
END;

CREATE TRIGGER container_delete AFTER DELETE ON container
BEGIN
    UPDATE account_stat
    SET container_count = container_count - (1 - old.deleted),
        object_count = object_count - old.object_count,
        bytes_used = bytes_used - old.bytes_used,
        hash = chexor(hash, old.name, {_ROW_HASH.replace("new.", "old.")});
    UPDATE policy_stat
    SET container_count = container_count - (1 - old.deleted),
        object_count = object_count - old.object_count,
        bytes_used = bytes_used - old.bytes_used
    WHERE storage_policy_index = old.storage_policy_index;
END;
""" + no_update_trigger_sql("container")

ACCOUNT_STAT_SQL = """
CREATE TABLE account_stat (
    account TEXT,
    created_at TEXT,
    put_timestamp TEXT DEFAULT '0',
    delete_timestamp TEXT DEFAULT '0',
    container_count INTEGER,
    object_count INTEGER DEFAULT 0,
    bytes_used INTEGER DEFAULT 0,
    hash TEXT default '00000000000000000000000000000000',
    id TEXT,
    status TEXT DEFAULT '',
    status_changed_at TEXT DEFAULT '0',
    metadata TEXT DEFAULT ''
);
INSERT INTO account_stat (container_count) VALUES (0);

CREATE TABLE policy_stat (
    storage_policy_index INTEGER PRIMARY KEY,
    container_count INTEGER DEFAULT 0,
    object_count INTEGER DEFAULT 0,
    bytes_used INTEGER DEFAULT 0
);
"""

_ROW_COLUMNS = (
    "name",
    "put_timestamp",
    "delete_timestamp",
    "object_count",
    "bytes_used",
    "deleted",
    "storage_policy_index",
)


def _zero(value: Any) -> bool:
    """Swift's zero_like: 0, '0', '' and None all mean zero."""
    return value in (None, "", 0, "0")


def is_row_deleted(put_timestamp: str, delete_timestamp: str, object_count: Any) -> bool:
    """A container row is a tombstone once deleted after its last PUT and empty."""
    return Timestamp(delete_timestamp) > Timestamp(put_timestamp) and _zero(object_count)


def report_key(put_timestamp: str, delete_timestamp: str) -> tuple[Timestamp, Timestamp, Timestamp]:
    """How new a container report is: its newest event, then its put, then its delete."""
    put, delete = Timestamp(put_timestamp), Timestamp(delete_timestamp)
    return max(put, delete), put, delete


def merge_row(existing: Mapping[str, Any] | None, item: Mapping[str, Any]) -> dict[str, Any]:
    """The row to store when report ``item`` meets the stored row ``existing``.

    The newer report (by :func:`report_key`) wins as a whole; on a tie the
    arriving one wins, because a container updater reports changed counts under
    unchanged timestamps. Swift instead keeps the newest put and the newest
    delete timestamp separately and always takes the arriving report's counts,
    so a stale report replayed late (replication, a retried update) rolls the
    counts back there and the result depends on arrival order. Here the result
    is the same in any order whenever reports with equal timestamps carry equal
    figures, and whether a row counts as deleted is decided exactly as Swift
    decides it (newest delete strictly after newest put, and no objects).
    """
    rec: dict[str, Any] = {k: item.get(k) for k in _ROW_COLUMNS}
    put_ts = Timestamp(rec["put_timestamp"] or 0).internal
    delete_ts = Timestamp(rec["delete_timestamp"] or 0).internal
    rec["put_timestamp"], rec["delete_timestamp"] = put_ts, delete_ts
    if existing is not None:
        old_key = report_key(existing["put_timestamp"], existing["delete_timestamp"])
        if old_key > report_key(put_ts, delete_ts):
            return {k: existing[k] for k in _ROW_COLUMNS}
        for key in ("object_count", "bytes_used", "storage_policy_index"):
            if rec[key] is None:
                rec[key] = existing[key]
    rec["object_count"] = int(rec["object_count"] or 0)
    rec["bytes_used"] = int(rec["bytes_used"] or 0)
    rec["storage_policy_index"] = int(rec["storage_policy_index"] or 0)
    deleted = is_row_deleted(put_ts, delete_ts, rec["object_count"])
    rec["deleted"] = 1 if deleted else 0
    return rec


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def adopt_swift_db(conn: sqlite3.Connection) -> None:
    """Schema 0 -> 1: an account DB written by Swift, taken over as it is.

    Swift's current layout has the same tables and columns; its triggers
    (``container_insert``/``_delete``/``_update`` and the ``_ps`` pair) keep the
    same totals and hash as ours, so nothing needs rewriting. Layouts from
    before storage policies (2014) are refused rather than guessed at.
    """
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    missing = {"container", "account_stat", "policy_stat"} - tables
    if missing:
        raise SchemaError(f"not an account DB of a supported layout (missing {sorted(missing)})")
    if "storage_policy_index" not in _columns(conn, "container") or (
        "container_count" not in _columns(conn, "policy_stat")
    ):
        raise SchemaError("account DB predates storage policies; migrate it with Swift first")


class AccountBroker(DatabaseBroker):
    """One account replica: container rows, totals, per-policy totals, metadata."""

    db_type = "account"
    db_contains_type = "container"
    db_reclaim_timestamp = "delete_timestamp"
    SCHEMA_VERSION = 1
    MIGRATIONS = {0: adopt_swift_db}

    def __enter__(self) -> AccountBroker:
        return self

    # -- creation ---------------------------------------------------------

    def _initialize(self, conn: sqlite3.Connection, put_timestamp: str, **kwargs: Any) -> None:
        if not self.account:
            raise ValueError("Attempting to create a new database with no account set")
        conn.executescript(ACCOUNT_STAT_SQL + CONTAINER_TABLE_SQL)
        conn.execute(
            "UPDATE account_stat SET account = ?, created_at = ?, id = ?, "
            "put_timestamp = ?, status_changed_at = ?",
            (
                self.account,
                Timestamp.now().internal,
                self._new_db_id(),
                put_timestamp,
                put_timestamp,
            ),
        )

    # -- rows -------------------------------------------------------------

    def make_tuple_for_pending(self, record: Mapping[str, Any]) -> list[Any]:
        return [record[k] for k in _ROW_COLUMNS]

    def _commit_puts_load(self, item_list: list[dict[str, Any]], entry: list[Any]) -> None:
        if len(entry) != len(_ROW_COLUMNS):
            raise ValueError(f"unknown pending entry {entry!r}")
        item_list.append(dict(zip(_ROW_COLUMNS, entry, strict=True)))

    def put_container(
        self,
        name: str,
        put_timestamp: str,
        delete_timestamp: str,
        object_count: int,
        bytes_used: int,
        storage_policy_index: int,
    ) -> None:
        """Record a container server's report (lands in the pending file)."""
        deleted = 1 if is_row_deleted(put_timestamp, delete_timestamp, object_count) else 0
        self.put_record(
            {
                "name": name,
                "put_timestamp": Timestamp(put_timestamp).internal,
                "delete_timestamp": Timestamp(delete_timestamp).internal,
                "object_count": int(object_count),
                "bytes_used": int(bytes_used),
                "deleted": deleted,
                "storage_policy_index": int(storage_policy_index),
            }
        )

    def merge_items(self, item_list: list[dict[str, Any]], source: str | None = None) -> None:
        """Merge container rows in one transaction (see :func:`merge_row`)."""
        with self.transaction() as conn:
            max_rowid = -1
            for item in item_list:
                row = conn.execute(
                    "SELECT name, put_timestamp, delete_timestamp, object_count, bytes_used, "
                    "deleted, storage_policy_index FROM container "
                    "WHERE name = ? AND deleted IN (0, 1)",
                    (item["name"],),
                ).fetchone()
                existing = dict(zip(_ROW_COLUMNS, tuple(row), strict=True)) if row else None
                rec = merge_row(existing, item)
                if existing is not None and all(rec[k] == existing[k] for k in _ROW_COLUMNS):
                    # Nothing changed: keep the row (and its ROWID) as it is.
                    pass
                else:
                    conn.execute(
                        "DELETE FROM container WHERE name = ? AND deleted IN (0, 1)",
                        (item["name"],),
                    )
                    conn.execute(
                        "INSERT INTO container (name, put_timestamp, delete_timestamp, "
                        "object_count, bytes_used, deleted, storage_policy_index) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [rec[k] for k in _ROW_COLUMNS],
                    )
                if source is not None and "ROWID" in item:
                    max_rowid = max(max_rowid, int(item["ROWID"]))
            if source is not None:
                cur = conn.execute(
                    "UPDATE incoming_sync SET sync_point = max(?, sync_point) WHERE remote_id = ?",
                    (max_rowid, source),
                )
                if cur.rowcount < 1:
                    conn.execute(
                        "INSERT INTO incoming_sync (sync_point, remote_id) VALUES (?, ?)",
                        (max_rowid, source),
                    )

    # -- status -----------------------------------------------------------

    def _is_deleted(self, conn: sqlite3.Connection) -> bool:
        row = conn.execute(
            "SELECT put_timestamp, delete_timestamp, container_count, status FROM account_stat"
        ).fetchone()
        return row["status"] == "DELETED" or (
            _zero(row["container_count"])
            and Timestamp(row["delete_timestamp"]) > Timestamp(row["put_timestamp"])
        )

    def is_deleted_for_update(self) -> bool:
        """``is_deleted`` for a container report, without merging pending rows.

        Merging first (as Swift does) costs one SQLite transaction per report
        and defeats the pending-file batching. Only the container count can
        depend on pending rows, and it matters only while the delete timestamp
        is the newer one; then (rarely) the full check runs.
        """
        if not os.path.exists(self.db_file):
            return True
        with self.get() as conn:
            row = conn.execute(
                "SELECT put_timestamp, delete_timestamp, status FROM account_stat"
            ).fetchone()
        if row["status"] == "DELETED":
            return True
        if Timestamp(row["delete_timestamp"]) <= Timestamp(row["put_timestamp"]):
            return False
        return self.is_deleted()

    def is_status_deleted(self) -> bool:
        """Marked deleted by an account DELETE (Swift also counts a newer delete timestamp)."""
        with self.get() as conn:
            row = conn.execute(
                "SELECT put_timestamp, delete_timestamp, status FROM account_stat"
            ).fetchone()
        return row["status"] == "DELETED" or (
            Timestamp(row["delete_timestamp"]) > Timestamp(row["put_timestamp"])
        )

    def empty(self) -> bool:
        self._commit_puts_stale_ok()
        with self.get() as conn:
            row = conn.execute("SELECT container_count FROM account_stat").fetchone()
        return _zero(row[0])

    def get_info(self) -> dict[str, Any]:
        info = super().get_info()
        self.account = info["account"]
        return {
            k: info[k]
            for k in (
                "account",
                "created_at",
                "put_timestamp",
                "delete_timestamp",
                "status_changed_at",
                "container_count",
                "object_count",
                "bytes_used",
                "hash",
                "id",
            )
        }

    def get_policy_stats(self) -> dict[int, dict[str, int]]:
        """``{policy_index: {container_count, object_count, bytes_used}}``."""
        self._commit_puts_stale_ok()
        with self.get() as conn:
            rows = conn.execute(
                "SELECT storage_policy_index, container_count, object_count, bytes_used "
                "FROM policy_stat"
            ).fetchall()
        return {
            int(r[0]): {"container_count": r[1], "object_count": r[2], "bytes_used": r[3]}
            for r in rows
        }

    # -- listing ----------------------------------------------------------

    def list_containers_iter(
        self,
        limit: int,
        marker: str | None,
        end_marker: str | None,
        prefix: str | None,
        delimiter: str | None,
        reverse: bool = False,
        allow_reserved: bool = False,
    ) -> list[tuple[str, int, int, str, int, bool]]:
        """Up to ``limit`` live containers (or subdirs) in bytewise UTF-8 name order.

        Returns ``(name, object_count, bytes_used, put_timestamp, policy_index,
        is_subdir)`` tuples. ``marker``/``end_marker`` are exclusive bounds (swapped
        for ``reverse``); with a delimiter, names sharing ``prefix + ... +
        delimiter`` collapse into one subdir and the scan skips past them.
        """
        self._commit_puts_stale_ok()
        marker = marker or ""
        end_marker = end_marker or ""
        if reverse:
            marker, end_marker = end_marker, marker
        prefix = prefix or ""
        delimiter = delimiter or ""
        # Names with the prefix sort in [prefix, prefix_end).
        prefix_end = prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else ""
        orig_marker = marker
        results: list[tuple[str, int, int, str, int, bool]] = []
        # lower bound: (value, inclusive); upper bound: exclusive.
        lower: tuple[str, bool] | None = None
        if marker and (not prefix or marker >= prefix):
            lower = (marker, False)
        elif prefix:
            lower = (prefix, True)
        upper = None
        if end_marker and (not prefix or end_marker < prefix_end):
            upper = end_marker
        elif prefix:
            upper = prefix_end
        with self.get() as conn:
            while len(results) < limit:
                sql = [
                    "SELECT name, object_count, bytes_used, put_timestamp, "
                    "storage_policy_index FROM container WHERE deleted = 0"
                ]
                args: list[Any] = []
                if upper is not None:
                    sql.append("AND name < ?")
                    args.append(upper)
                if lower is not None:
                    sql.append("AND name >= ?" if lower[1] else "AND name > ?")
                    args.append(lower[0])
                if not allow_reserved:
                    sql.append("AND name >= ?")
                    args.append(chr(ord(RESERVED) + 1))
                sql.append("ORDER BY name DESC" if reverse else "ORDER BY name")
                sql.append("LIMIT ?")
                args.append(limit - len(results))
                rows = conn.execute(" ".join(sql), args).fetchall()
                if not delimiter:
                    results.extend((r[0], r[1], r[2], r[3], r[4], False) for r in rows)
                    return results
                restarted = False
                for r in rows:
                    name = r[0]
                    cut = name.find(delimiter, len(prefix))
                    if cut < 0:
                        results.append((name, r[1], r[2], r[3], r[4], False))
                        if reverse:
                            upper = name
                        else:
                            lower = (name, False)
                        continue
                    subdir = name[: cut + len(delimiter)]
                    if subdir != orig_marker:
                        results.append((subdir, 0, 0, "0", -1, True))
                    # Skip every name under this subdir with one new query.
                    if reverse:
                        upper = subdir
                    else:
                        lower = (
                            name[:cut] + delimiter[:-1] + chr(ord(delimiter[-1]) + 1),
                            True,
                        )
                    restarted = True
                    break
                if not restarted:
                    break
        return results[:limit]
