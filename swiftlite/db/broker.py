"""DatabaseBroker: what account and container DBs have in common.

Method names follow Swift's ``swift.common.db.DatabaseBroker`` so that code
and operators' knowledge carry over. Everything here is *blocking*: servers
call it through ``DeviceManager.run`` so the event loop never waits on disk.

A broker instance is used by one thread at a time (each request builds its
own); it caches one SQLite connection, opened lazily.

Design points (see DESIGN.md section 6):
- WAL journal, ``synchronous=FULL``: a commit is durable before the pending
  file that fed it is truncated, so no acknowledged update can be lost.
- Row tables are insert/delete only (a trigger forbids UPDATE), so ROWIDs
  only grow and serve as replication sync points.
- ``chexor`` is registered on every connection; subclasses' triggers fold
  each inserted/deleted row into the stat table's ``hash``.
- Connections run in autocommit mode (``isolation_level=None``): a single
  statement commits by itself; multi-statement writes use
  :meth:`transaction` (``BEGIN IMMEDIATE`` .. ``COMMIT``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import tempfile
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, NoReturn, Self

from swiftlite.common.timestamp import Timestamp
from swiftlite.db import pending
from swiftlite.db.chexor import chexor
from swiftlite.db.exceptions import (
    DatabaseAlreadyExists,
    DatabaseConnectionError,
    DatabaseQuarantined,
    LockTimeout,
    MetadataError,
)
from swiftlite.db.quarantine import corruption_reason, device_path_of, quarantine_db_dir
from swiftlite.db.schema import (
    SCHEMA_TABLE_SQL,
    SYNC_TABLES_SQL,
    Migration,
    migrate,
    set_schema_version,
)

BROKER_TIMEOUT = 25.0
# Swift's metadata limits (constraints.py); servers may override per cluster.
MAX_META_COUNT = 90
MAX_META_OVERALL_SIZE = 4096
RECLAIM_BATCH = 10000
ZERO_TIMESTAMP = Timestamp(0).internal


def _dict_row(row: sqlite3.Row | None) -> dict[str, Any] | None:
    return dict(zip(row.keys(), tuple(row), strict=True)) if row is not None else None


class DatabaseBroker:
    """Base for AccountBroker and ContainerBroker (subclass hooks below)."""

    #: e.g. "container": the stat table is ``<db_type>_stat``.
    db_type: ClassVar[str] = ""
    #: the row table, e.g. "object" for containers.
    db_contains_type: ClassVar[str] = ""
    #: column compared with the age timestamp when reclaiming tombstone rows.
    db_reclaim_timestamp: ClassVar[str] = "created_at"
    #: metadata keys (lower case) that delete_db leaves in place.
    delete_meta_whitelist: ClassVar[frozenset[str]] = frozenset()
    #: schema version this code writes, and the steps up to it.
    SCHEMA_VERSION: ClassVar[int] = 1
    MIGRATIONS: ClassVar[Mapping[int, Migration]] = {}

    def __init__(
        self,
        db_file: str,
        timeout: float = BROKER_TIMEOUT,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
        account: str | None = None,
        container: str | None = None,
        pending_timeout: float | None = None,
        stale_reads_ok: bool = False,
        skip_commits: bool = False,
        fsync_pending: bool = True,
        max_meta_count: int = MAX_META_COUNT,
        max_meta_overall_size: int = MAX_META_OVERALL_SIZE,
    ) -> None:
        self._db_file = db_file
        self.pending_file = db_file + ".pending"
        self.db_dir = os.path.dirname(db_file)
        self.timeout = timeout
        self.pending_timeout = pending_timeout or 10.0
        self.stale_reads_ok = stale_reads_ok
        self.skip_commits = skip_commits
        self.fsync_pending = fsync_pending
        self.max_meta_count = max_meta_count
        self.max_meta_overall_size = max_meta_overall_size
        self.logger = logger or logging.getLogger(f"swiftlite.db.{self.db_type or 'broker'}")
        self.account = account
        self.container = container
        self.conn: sqlite3.Connection | None = None

    # -- plumbing ---------------------------------------------------------

    @property
    def db_file(self) -> str:
        return self._db_file

    @property
    def stat_table(self) -> str:
        return f"{self.db_type}_stat"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __str__(self) -> str:
        return self.db_file

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def get_device_path(self) -> str:
        return device_path_of(self.db_dir)

    def _setup_connection(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        conn.create_function("chexor", 3, chexor, deterministic=True)
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA temp_store = MEMORY")

    def _connect(self) -> sqlite3.Connection:
        # mode=rw: never create an empty file where a DB was expected.
        uri = "file:" + urllib.parse.quote(self.db_file) + "?mode=rw"
        conn = sqlite3.connect(
            uri, uri=True, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        try:
            self._setup_connection(conn)
            migrate(conn, self.SCHEMA_VERSION, self.MIGRATIONS)
        except BaseException:
            conn.close()
            raise
        return conn

    @contextlib.contextmanager
    def get(self) -> Iterator[sqlite3.Connection]:
        """A connection for a ``with`` block; corruption found inside quarantines."""
        if self.conn is None:
            if not os.path.exists(self.db_file):
                raise DatabaseConnectionError(self.db_file, "DB doesn't exist")
            try:
                self.conn = self._connect()
            except sqlite3.DatabaseError as err:
                self.possibly_quarantine(err)
        conn = self.conn
        assert conn is not None
        self.conn = None
        try:
            yield conn
        except sqlite3.DatabaseError as err:
            with contextlib.suppress(Exception):
                conn.close()
            self.possibly_quarantine(err)
        except BaseException:
            with contextlib.suppress(Exception):
                conn.close()
            raise
        else:
            if conn.in_transaction:
                conn.rollback()
            self.conn = conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` .. ``COMMIT`` (rolled back on any error)."""
        with self.get() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    def possibly_quarantine(self, err: BaseException) -> NoReturn:
        """Quarantine on corruption (raising DatabaseQuarantined); else re-raise ``err``."""
        reason = corruption_reason(err)
        if reason is None:
            raise err
        self.quarantine(reason)

    def quarantine(self, reason: str) -> NoReturn:
        self.close()
        target = quarantine_db_dir(self.db_dir, self.db_type)
        self.logger.error("Quarantined %s to %s due to %s", self.db_dir, target, reason)
        raise DatabaseQuarantined(self.db_dir, target, reason)

    # -- creation ---------------------------------------------------------

    def initialize(self, put_timestamp: str | None = None, **kwargs: Any) -> None:
        """Create the DB: built in a temp file beside it, fsynced, renamed in.

        Raises DatabaseAlreadyExists if another request created it meanwhile.
        ``kwargs`` go to the subclass's :meth:`_initialize`.
        """
        os.makedirs(self.db_dir, exist_ok=True)
        fd, tmp_path = tempfile.mkstemp(suffix=".tmp", dir=self.db_dir)
        os.close(fd)
        try:
            conn = sqlite3.connect(tmp_path, isolation_level=None, check_same_thread=False)
            try:
                conn.row_factory = sqlite3.Row
                conn.create_function("chexor", 3, chexor, deterministic=True)
                # A private file until the rename: no need for per-statement
                # durability, one fsync at the end covers it.
                conn.execute("PRAGMA synchronous = OFF")
                conn.executescript(SYNC_TABLES_SQL + SCHEMA_TABLE_SQL)
                set_schema_version(conn, self.SCHEMA_VERSION)
                self._initialize(conn, put_timestamp or ZERO_TIMESTAMP, **kwargs)
                conn.execute("PRAGMA journal_mode = WAL")
            finally:
                conn.close()
            with open(tmp_path, "r+b") as fp:
                os.fsync(fp.fileno())
            with pending.lock_dir(self.db_dir, self.pending_timeout):
                if os.path.exists(self.db_file):
                    raise DatabaseAlreadyExists(self.db_file)
                os.rename(tmp_path, self.db_file)
            dir_fd = os.open(self.db_dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_path)

    def _initialize(self, conn: sqlite3.Connection, put_timestamp: str, **kwargs: Any) -> None:
        """Subclass hook: create the row and stat tables and the stat row."""
        raise NotImplementedError

    def _new_db_id(self) -> str:
        return f"{uuid.uuid4()}-{os.path.basename(self.get_device_path())}"

    def newid(self, remote_id: str) -> None:
        """Re-id after a whole-DB copy; remember the peer's rows as synced."""
        with self.transaction() as conn:
            conn.execute(f"UPDATE {self.stat_table} SET id = ?", (self._new_db_id(),))
            row = conn.execute(
                f"SELECT ROWID FROM {self.db_contains_type} ORDER BY ROWID DESC LIMIT 1"
            ).fetchone()
            sync_point = row[0] if row else -1
            conn.execute(
                "INSERT OR REPLACE INTO incoming_sync (sync_point, remote_id) VALUES (?, ?)",
                (sync_point, remote_id),
            )
            self._newid(conn)

    def _newid(self, conn: sqlite3.Connection) -> None:
        """Subclass hook for extra work after :meth:`newid`."""

    # -- pending file -----------------------------------------------------

    def make_tuple_for_pending(self, record: Mapping[str, Any]) -> list[Any]:
        """Subclass hook: a record dict as the list stored in one pending line."""
        raise NotImplementedError

    def _commit_puts_load(self, item_list: list[dict[str, Any]], entry: list[Any]) -> None:
        """Subclass hook: decode one pending line and append it to ``item_list``."""
        raise NotImplementedError

    def merge_items(self, item_list: list[dict[str, Any]], source: str | None = None) -> None:
        """Subclass hook: merge rows (newest wins) in one transaction.

        With ``source``, raise ``incoming_sync[source]`` to the last item's ROWID.
        """
        raise NotImplementedError

    def put_record(self, record: Mapping[str, Any]) -> None:
        self.put_records([record])

    def put_records(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Append records to the pending file (one write, one fsync).

        Once this returns the records are durable (with ``fsync_pending``) and
        will reach the DB on the next read or when the file passes PENDING_CAP.
        """
        if not os.path.exists(self.db_file):
            raise DatabaseConnectionError(self.db_file, "DB doesn't exist")
        if self.skip_commits:
            raise DatabaseConnectionError(self.db_file, "commits not accepted")
        entries = [self.make_tuple_for_pending(r) for r in records]
        with pending.lock_dir(self.db_dir, self.pending_timeout):
            self._set_aside_foreign_pending()
            size = pending.append_entries(self.pending_file, entries, False)
            if size > pending.PENDING_CAP:
                self._commit_puts()
        if self.fsync_pending:
            # Outside the lock, so the next batch can append while this one
            # waits for the disk. Safe: if a commit emptied the file in
            # between, these records are already durable in the DB (the
            # commit is synchronous=FULL and precedes the truncation).
            pending.sync_file(self.pending_file)

    def _set_aside_foreign_pending(self) -> None:
        """A pending file Swift wrote (pickles) is moved aside, never mixed with ours."""
        foreign = pending.set_aside_foreign(self.pending_file)
        if foreign:
            self.logger.error(
                "Pending file %s is in Swift's pickled format; moved to %s unread",
                self.pending_file,
                foreign,
            )

    def _commit_puts(self, item_list: list[dict[str, Any]] | None = None) -> None:
        """Merge the pending file (plus ``item_list``) into the DB, then empty it.

        Caller holds the directory lock. Order matters for crash safety: the
        merge commits (durably) before the truncate; a crash in between only
        means the same entries are merged again, which changes nothing.
        """
        items: list[dict[str, Any]] = list(item_list or [])
        self._set_aside_foreign_pending()
        had_pending = pending.pending_size(self.pending_file) > 0
        if had_pending:
            for entry in pending.read_entries(self.pending_file):
                try:
                    self._commit_puts_load(items, entry)
                except (ValueError, TypeError, IndexError, KeyError):
                    self.logger.error("Invalid pending entry %s: %r", self.pending_file, entry)
        if items:
            self.merge_items(items)
        if had_pending:
            pending.truncate(self.pending_file)

    def _commit_puts_stale_ok(self) -> None:
        """Flush the pending file before a read; with stale_reads_ok a busy lock is tolerated."""
        if self.skip_commits or pending.pending_size(self.pending_file) == 0:
            return
        try:
            with pending.lock_dir(self.db_dir, self.pending_timeout):
                self._commit_puts()
        except (LockTimeout, sqlite3.OperationalError):
            if not self.stale_reads_ok:
                raise

    # -- info and status --------------------------------------------------

    def get_info(self) -> dict[str, Any]:
        self._commit_puts_stale_ok()
        with self.get() as conn:
            row = conn.execute(f"SELECT * FROM {self.stat_table}").fetchone()
            info = _dict_row(row)
            if info is None:
                self.quarantine(f"missing row in {self.stat_table} table")
            return info

    def _is_deleted(self, conn: sqlite3.Connection) -> bool:
        raise NotImplementedError

    def is_deleted(self) -> bool:
        if not os.path.exists(self.db_file):
            return True
        self._commit_puts_stale_ok()
        with self.get() as conn:
            return self._is_deleted(conn)

    def is_status_deleted(self) -> bool:
        """True once delete_db ran (status DELETED), whatever the row counts."""
        with self.get() as conn:
            row = conn.execute(f"SELECT status FROM {self.stat_table}").fetchone()
        return bool(row) and row[0] == "DELETED"

    def empty(self) -> bool:
        raise NotImplementedError

    def delete_db(self, timestamp: str) -> None:
        """Mark deleted: clear metadata (except whitelisted keys), set status."""
        cleared = {
            key: ("", timestamp)
            for key in self.metadata
            if key.lower() not in self.delete_meta_whitelist
        }
        self.update_metadata(cleared)
        with self.get() as conn:
            conn.execute(
                f"UPDATE {self.stat_table} SET delete_timestamp = ?, status = 'DELETED', "
                "status_changed_at = ? WHERE delete_timestamp < ?",
                (timestamp, timestamp, timestamp),
            )

    def update_put_timestamp(self, timestamp: str) -> None:
        with self.get() as conn:
            conn.execute(
                f"UPDATE {self.stat_table} SET put_timestamp = ? WHERE put_timestamp < ?",
                (timestamp, timestamp),
            )

    def update_status_changed_at(self, timestamp: str) -> None:
        with self.get() as conn:
            self._update_status_changed_at(conn, timestamp)

    def _update_status_changed_at(self, conn: sqlite3.Connection, timestamp: str) -> None:
        conn.execute(
            f"UPDATE {self.stat_table} SET status_changed_at = ? WHERE status_changed_at < ?",
            (timestamp, timestamp),
        )

    def merge_timestamps(self, created_at: str, put_timestamp: str, delete_timestamp: str) -> None:
        """Replication: earliest created_at, latest put/delete timestamps."""
        with self.transaction() as conn:
            was_deleted = self._is_deleted(conn)
            conn.execute(
                f"UPDATE {self.stat_table} SET created_at = MIN(?, created_at), "
                "put_timestamp = MAX(?, put_timestamp), "
                "delete_timestamp = MAX(?, delete_timestamp)",
                (created_at, put_timestamp, delete_timestamp),
            )
            if was_deleted != self._is_deleted(conn):
                self._update_status_changed_at(conn, Timestamp.now().internal)

    # -- metadata ---------------------------------------------------------

    def get_raw_metadata(self) -> str:
        with self.get() as conn:
            row = conn.execute(f"SELECT metadata FROM {self.stat_table}").fetchone()
        if row is None:
            self.quarantine(f"missing row in {self.stat_table} table")
        return row[0] or ""

    @property
    def metadata(self) -> dict[str, list[str]]:
        """``{name: [value, timestamp]}``; an empty value marks a deleted key."""
        raw = self.get_raw_metadata()
        return json.loads(raw) if raw else {}

    def validate_metadata(self, metadata: Mapping[str, Any]) -> None:
        """Swift's limits on user metadata (count, overall size, UTF-8)."""
        count = 0
        size = 0
        for key, (value, _ts) in metadata.items():
            for text in (key, value):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    raise MetadataError("Metadata must be valid UTF-8") from None
            lower = key.lower()
            for prefix in ("x-account-meta-", "x-container-meta-"):
                if value and lower.startswith(prefix):
                    count += 1
                    size += len(lower) - len(prefix) + len(value)
        if count > self.max_meta_count:
            raise MetadataError(f"Too many metadata items; max {self.max_meta_count}")
        if size > self.max_meta_overall_size:
            raise MetadataError(f"Total metadata too large; max {self.max_meta_overall_size}")

    def update_metadata(
        self, metadata_updates: Mapping[str, Any], validate_metadata: bool = False
    ) -> None:
        """Merge ``{key: (value, timestamp)}``: a key changes only for a newer timestamp.

        Set ``('', ts)`` to delete a key; reclaim() drops such keys later.
        """
        if not metadata_updates:
            return
        with self.transaction() as conn:
            row = conn.execute(f"SELECT metadata FROM {self.stat_table}").fetchone()
            if row is None:
                self.quarantine(f"missing row in {self.stat_table} table")
            md: dict[str, Any] = json.loads(row[0]) if row[0] else {}
            changed = False
            for key, (value, timestamp) in metadata_updates.items():
                if key not in md or Timestamp(timestamp) > Timestamp(md[key][1]):
                    md[key] = [value, timestamp]
                    changed = True
            if not changed:
                return
            if validate_metadata:
                self.validate_metadata(md)
            conn.execute(f"UPDATE {self.stat_table} SET metadata = ?", (json.dumps(md),))

    # -- replication support ----------------------------------------------

    def get_items_since(self, start: int, count: int) -> list[dict[str, Any]]:
        """Rows with ROWID > start, oldest first (ROWID included)."""
        self._commit_puts_stale_ok()
        with self.get() as conn:
            rows = conn.execute(
                f"SELECT * FROM {self.db_contains_type} WHERE ROWID > ? ORDER BY ROWID LIMIT ?",
                (start, count),
            ).fetchall()
        return [d for d in (_dict_row(r) for r in rows) if d is not None]

    def get_sync(self, id: str, incoming: bool = True) -> int:  # noqa: A002 - Swift's name
        table = "incoming_sync" if incoming else "outgoing_sync"
        with self.get() as conn:
            row = conn.execute(
                f"SELECT sync_point FROM {table} WHERE remote_id = ?", (id,)
            ).fetchone()
        return int(row[0]) if row else -1

    def get_syncs(
        self, incoming: bool = True, include_timestamp: bool = False
    ) -> list[dict[str, Any]]:
        table = "incoming_sync" if incoming else "outgoing_sync"
        cols = "remote_id, sync_point" + (", updated_at" if include_timestamp else "")
        with self.get() as conn:
            rows = conn.execute(f"SELECT {cols} FROM {table}").fetchall()
        return [d for d in (_dict_row(r) for r in rows) if d is not None]

    def merge_syncs(self, sync_points: list[Mapping[str, Any]], incoming: bool = True) -> None:
        """Raise sync points (never lower them) for each ``{remote_id, sync_point}``."""
        table = "incoming_sync" if incoming else "outgoing_sync"
        with self.transaction() as conn:
            for rec in sync_points:
                cur = conn.execute(
                    f"UPDATE {table} SET sync_point = max(?, sync_point) WHERE remote_id = ?",
                    (rec["sync_point"], rec["remote_id"]),
                )
                if cur.rowcount < 1:
                    conn.execute(
                        f"INSERT INTO {table} (sync_point, remote_id) VALUES (?, ?)",
                        (rec["sync_point"], rec["remote_id"]),
                    )

    def get_max_row(self, table: str | None = None) -> int:
        """Highest ROWID ever used in ``table`` (AUTOINCREMENT keeps it after deletes)."""
        with self.get() as conn:
            row = conn.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = ? LIMIT 1",
                (table or self.db_contains_type,),
            ).fetchone()
        return int(row[0]) if row else -1

    def get_replication_info(self) -> dict[str, Any]:
        info = self.get_info()
        info["count"] = info.pop(f"{self.db_contains_type}_count")
        info["metadata"] = self.get_raw_metadata()
        info["max_row"] = self.get_max_row()
        return info

    # -- reclaim ----------------------------------------------------------

    def reclaim(self, age_timestamp: float, sync_timestamp: float) -> None:
        """Drop tombstone rows older than age_timestamp, stale sync rows and
        deleted metadata keys."""
        if not self.skip_commits:
            with pending.lock_dir(self.db_dir, self.pending_timeout):
                self._commit_puts()
        age = Timestamp(age_timestamp).internal
        table = self.db_contains_type
        while True:
            with self.transaction() as conn:
                cur = conn.execute(
                    f"DELETE FROM {table} WHERE ROWID IN (SELECT ROWID FROM {table} "
                    f"WHERE deleted = 1 AND {self.db_reclaim_timestamp} < ? LIMIT ?)",
                    (age, RECLAIM_BATCH),
                )
                if cur.rowcount < RECLAIM_BATCH:
                    break
        with self.transaction() as conn:
            self._reclaim_other_stuff(conn, age_timestamp, sync_timestamp)

    def _reclaim_other_stuff(
        self, conn: sqlite3.Connection, age_timestamp: float, sync_timestamp: float
    ) -> None:
        conn.execute("DELETE FROM outgoing_sync WHERE updated_at < ?", (sync_timestamp,))
        conn.execute("DELETE FROM incoming_sync WHERE updated_at < ?", (sync_timestamp,))
        row = conn.execute(f"SELECT metadata FROM {self.stat_table}").fetchone()
        if row and row[0]:
            md = json.loads(row[0])
            age = Timestamp(age_timestamp)
            keep = {k: v for k, v in md.items() if v[0] != "" or Timestamp(v[1]) >= age}
            if len(keep) != len(md):
                conn.execute(f"UPDATE {self.stat_table} SET metadata = ?", (json.dumps(keep),))
