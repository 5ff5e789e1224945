"""ContainerBroker: one container replica as a SQLite DB.

Rows of the ``object`` table follow Swift's container schema, plus
``expires`` (the object's X-Delete-At, DESIGN section 6) with a partial index
so the expirer finds due rows without scanning. Expired rows stay in the table
(every replica holds the same ``expires``, so hashes still agree) but are
hidden from listings, counts and bytes the moment they expire; the expirer
deletes the objects, whose DELETE updates then tombstone the rows.

Blocking code: the container server calls it through DeviceManager.run.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from swiftlite.common.hashing import hash_path, storage_directory
from swiftlite.common.timestamp import Timestamp
from swiftlite.container.merge import update_new_item_from_existing
from swiftlite.container.records import meta_timestamp
from swiftlite.container.schema import V1_SQL, add_expires, adopt_swift_db
from swiftlite.db.broker import DatabaseBroker
from swiftlite.db.schema import Migration

DATADIR = "containers"
# SQLite's default cap on bound parameters per statement.
SQLITE_ARG_LIMIT = 999
UNSHARDED = "unsharded"
CONTAINER_LISTING_LIMIT = 10000
# Swift hides names starting with this byte unless asked (reserved namespace).
RESERVED_BYTE = "\x00"
# The next code point after the largest legal one: used as "no upper bound".
_MAX_CHAR = "\U0010ffff"


def _next_char(ch: str) -> str | None:
    """The code point after ``ch`` that SQLite can store (skips surrogates)."""
    code = ord(ch) + 1
    if 0xD800 <= code <= 0xDFFF:
        code = 0xE000
    if code > 0x10FFFF:
        return None
    return chr(code)


def _prefix_upper_bound(prefix: str) -> str | None:
    """Smallest string greater than every string starting with ``prefix``."""
    while prefix:
        nxt = _next_char(prefix[-1])
        if nxt is not None:
            return prefix[:-1] + nxt
        prefix = prefix[:-1]
    return None


class ContainerBroker(DatabaseBroker):
    db_type: ClassVar[str] = "container"
    db_contains_type: ClassVar[str] = "object"
    db_reclaim_timestamp: ClassVar[str] = "created_at"
    delete_meta_whitelist: ClassVar[frozenset[str]] = frozenset()
    #: v1: Swift's object table; v2: + expires column and its partial index.
    SCHEMA_VERSION: ClassVar[int] = 2
    MIGRATIONS: ClassVar[Mapping[int, Migration]] = {0: adopt_swift_db, 1: add_expires}

    def __init__(self, db_file: str, **kwargs: Any) -> None:
        super().__init__(db_file, **kwargs)
        self._storage_policy_index: int | None = None

    @classmethod
    def db_path(
        cls, devices: str, device: str, partition: str, account: str, container: str
    ) -> str:
        """``<devices>/<dev>/containers/<part>/<suffix>/<hash>/<hash>.db``."""
        digest = str(hash_path(account, container))
        return os.path.join(
            devices, device, storage_directory(DATADIR, partition, digest), digest + ".db"
        )

    # -- creation ---------------------------------------------------------

    def _initialize(self, conn: sqlite3.Connection, put_timestamp: str, **kwargs: Any) -> None:
        if self.account is None or self.container is None:
            raise ValueError("account and container are needed to create a container DB")
        policy_index = int(kwargs.get("storage_policy_index") or 0)
        conn.executescript(V1_SQL)
        if self.SCHEMA_VERSION >= 2:
            add_expires(conn)
        conn.execute("INSERT INTO policy_stat (storage_policy_index) VALUES (?)", (policy_index,))
        conn.execute(
            "INSERT INTO container_info (account, container, created_at, id, put_timestamp, "
            "status_changed_at, storage_policy_index) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                self.account,
                self.container,
                Timestamp.now().internal,
                self._new_db_id(),
                put_timestamp,
                put_timestamp,
                policy_index,
            ),
        )
        self._storage_policy_index = policy_index

    def _newid(self, conn: sqlite3.Connection) -> None:
        # A copied-in DB has reported nothing to the account from here yet.
        conn.execute(
            "UPDATE container_info SET reported_put_timestamp = 0, "
            "reported_delete_timestamp = 0, reported_object_count = 0, reported_bytes_used = 0"
        )

    # -- pending records --------------------------------------------------

    def make_tuple_for_pending(self, record: Mapping[str, Any]) -> list[Any]:
        return [
            record["name"],
            record["created_at"],
            record["size"],
            record["content_type"],
            record["etag"],
            record.get("deleted", 0),
            record.get("storage_policy_index", 0),
            record.get("ctype_timestamp"),
            record.get("meta_timestamp"),
            record.get("expires"),
        ]

    def _commit_puts_load(self, item_list: list[dict[str, Any]], entry: list[Any]) -> None:
        name, created_at, size, ctype, etag, deleted, policy, ctype_ts, meta_ts, expires = entry
        item_list.append(
            {
                "name": str(name),
                "created_at": Timestamp(created_at).internal,
                "size": int(size),
                "content_type": str(ctype),
                "etag": str(etag),
                "deleted": 1 if deleted else 0,
                "storage_policy_index": int(policy),
                "ctype_timestamp": str(ctype_ts) if ctype_ts else None,
                "meta_timestamp": str(meta_ts) if meta_ts else None,
                "expires": int(expires) if expires is not None else None,
            }
        )

    def put_object(
        self,
        name: str,
        timestamp: str,
        size: int,
        content_type: str,
        etag: str,
        deleted: int = 0,
        storage_policy_index: int = 0,
        ctype_timestamp: str | None = None,
        meta_timestamp: str | None = None,
        expires: int | None = None,
    ) -> None:
        self.put_record(
            self.make_record(
                name,
                timestamp,
                size,
                content_type,
                etag,
                deleted,
                storage_policy_index,
                ctype_timestamp,
                meta_timestamp,
                expires,
            )
        )

    @staticmethod
    def make_record(
        name: str,
        timestamp: str,
        size: int,
        content_type: str,
        etag: str,
        deleted: int = 0,
        storage_policy_index: int = 0,
        ctype_timestamp: str | None = None,
        meta_timestamp: str | None = None,
        expires: int | None = None,
    ) -> dict[str, Any]:
        return {
            "name": name,
            "created_at": timestamp,
            "size": size,
            "content_type": content_type,
            "etag": etag,
            "deleted": deleted,
            "storage_policy_index": storage_policy_index,
            "ctype_timestamp": ctype_timestamp,
            "meta_timestamp": meta_timestamp,
            "expires": expires,
        }

    def delete_object(self, name: str, timestamp: str, storage_policy_index: int = 0) -> None:
        self.put_object(
            name, timestamp, 0, "application/deleted", "noetag", 1, storage_policy_index
        )

    # -- merge ------------------------------------------------------------

    def merge_items(self, item_list: list[dict[str, Any]], source: str | None = None) -> None:
        """Merge updates or replicated rows in one transaction (newest field wins)."""
        for item in item_list:
            if isinstance(item["name"], bytes):
                item["name"] = item["name"].decode("utf-8")
            item.setdefault("storage_policy_index", 0)
            item.setdefault("expires", None)
        with self.transaction() as conn:
            existing: dict[tuple[str, int], dict[str, Any]] = {}
            names = list({item["name"] for item in item_list})
            for offset in range(0, len(names), SQLITE_ARG_LIMIT):
                chunk = names[offset : offset + SQLITE_ARG_LIMIT]
                # "deleted IN (0, 1)" lets SQLite use ix_object_deleted_name.
                rows = conn.execute(
                    "SELECT name, created_at, size, content_type, etag, deleted, "
                    "storage_policy_index, expires FROM object WHERE deleted IN (0, 1) "
                    f"AND name IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
                for row in rows:
                    existing[(row[0], row[6])] = {
                        "name": row[0],
                        "created_at": row[1],
                        "size": row[2],
                        "content_type": row[3],
                        "etag": row[4],
                        "deleted": row[5],
                        "storage_policy_index": row[6],
                        "expires": row[7],
                    }
            to_delete: set[tuple[str, int]] = set()
            to_add: dict[tuple[str, int], dict[str, Any]] = {}
            for item in item_list:
                ident = (item["name"], int(item["storage_policy_index"]))
                if update_new_item_from_existing(item, existing.get(ident)):
                    if ident in existing:
                        to_delete.add(ident)
                    if ident in to_add:
                        # Two updates for one name in this batch: fold the
                        # earlier one in too.
                        update_new_item_from_existing(item, to_add[ident])
                    to_add[ident] = item
            if to_delete:
                conn.executemany(
                    "DELETE FROM object WHERE deleted IN (0, 1) AND name = ? "
                    "AND storage_policy_index = ?",
                    list(to_delete),
                )
            if to_add:
                conn.executemany(
                    "INSERT INTO object (name, created_at, size, content_type, etag, deleted, "
                    "storage_policy_index, expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            r["name"],
                            r["created_at"],
                            r["size"],
                            r["content_type"],
                            r["etag"],
                            r["deleted"],
                            r["storage_policy_index"],
                            r.get("expires"),
                        )
                        for r in to_add.values()
                    ],
                )
            if source and item_list:
                # Replication sends rows in ROWID order without gaps.
                point = item_list[-1]["ROWID"]
                cur = conn.execute(
                    "UPDATE incoming_sync SET sync_point = max(?, sync_point) WHERE remote_id = ?",
                    (point, source),
                )
                if cur.rowcount < 1:
                    conn.execute(
                        "INSERT INTO incoming_sync (sync_point, remote_id) VALUES (?, ?)",
                        (point, source),
                    )

    # -- info -------------------------------------------------------------

    def _expired_stats(
        self, conn: sqlite3.Connection, now: float, policy_index: int | None
    ) -> tuple[int, int]:
        """Count and bytes of live rows already expired (hidden from clients)."""
        query = (
            # INDEXED BY: without statistics SQLite would rather walk
            # ix_object_deleted_name, i.e. every live row.
            "SELECT count(*), total(size) FROM object INDEXED BY ix_object_expires "
            "WHERE expires <= ? AND deleted = 0"
        )
        args: list[Any] = [now]
        if policy_index is not None:
            query += " AND storage_policy_index = ?"
            args.append(policy_index)
        count, size = conn.execute(query, args).fetchone()
        return int(count), int(size)

    def _info_from(self, conn: sqlite3.Connection, now: float) -> dict[str, Any]:
        row = conn.execute("SELECT * FROM container_info").fetchone()
        if row is None:
            self.quarantine("missing row in container_info table")
        info = dict(zip(row.keys(), tuple(row), strict=True))
        info.pop("metadata", None)
        policy = int(info["storage_policy_index"])
        stat = conn.execute(
            "SELECT object_count, bytes_used FROM policy_stat WHERE storage_policy_index = ?",
            (policy,),
        ).fetchone()
        count, used = (int(stat[0]), int(stat[1])) if stat else (0, 0)
        exp_count, exp_bytes = self._expired_stats(conn, now, policy)
        info["object_count"] = count - exp_count
        info["bytes_used"] = used - exp_bytes
        info["db_state"] = UNSHARDED
        self._storage_policy_index = policy
        self.account = info["account"]
        self.container = info["container"]
        return info

    def get_info(self, now: float | None = None) -> dict[str, Any]:
        """Swift's container info keys; counts and bytes leave out expired rows."""
        self._commit_puts_stale_ok()
        with self.get() as conn:
            return self._info_from(conn, time.time() if now is None else now)

    @staticmethod
    def _is_deleted_info(info: Mapping[str, Any]) -> bool:
        return info["object_count"] <= 0 and Timestamp(info["delete_timestamp"]) > Timestamp(
            info["put_timestamp"]
        )

    def _is_deleted(self, conn: sqlite3.Connection) -> bool:
        return self._is_deleted_info(self._info_from(conn, time.time()))

    def get_info_is_deleted(self, now: float | None = None) -> tuple[dict[str, Any], bool]:
        if not os.path.exists(self.db_file):
            return {}, True
        info = self.get_info(now)
        return info, self._is_deleted_info(info)

    def empty(self, now: float | None = None) -> bool:
        """No visible object in any policy (expired rows do not count)."""
        self._commit_puts_stale_ok()
        with self.get() as conn:
            total = conn.execute("SELECT total(object_count) FROM policy_stat").fetchone()[0]
            expired, _ = self._expired_stats(conn, time.time() if now is None else now, None)
        return int(total) - expired <= 0

    def is_old_enough_to_reclaim(self, now: float, reclaim_age: float) -> bool:
        """Deleted (delete after put) longer than reclaim_age ago."""
        with self.get() as conn:
            row = conn.execute(
                "SELECT put_timestamp, delete_timestamp FROM container_info"
            ).fetchone()
        return Timestamp(max(0.0, now - reclaim_age)) > Timestamp(row[1]) > Timestamp(row[0])

    def is_reclaimable(self, now: float, reclaim_age: float) -> bool:
        """The replicator may remove the DB file: long deleted and empty."""
        return self.is_old_enough_to_reclaim(now, reclaim_age) and self.empty(now)

    @property
    def storage_policy_index(self) -> int:
        if self._storage_policy_index is None:
            with self.get() as conn:
                row = conn.execute("SELECT storage_policy_index FROM container_info").fetchone()
            self._storage_policy_index = int(row[0])
        return self._storage_policy_index

    def set_storage_policy_index(self, policy_index: int, timestamp: str | None = None) -> None:
        timestamp = timestamp or Timestamp.now().internal
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO policy_stat (storage_policy_index) VALUES (?)",
                (policy_index,),
            )
            conn.execute(
                "UPDATE container_info SET storage_policy_index = ?, "
                "status_changed_at = MAX(?, status_changed_at) WHERE storage_policy_index <> ?",
                (policy_index, timestamp, policy_index),
            )
        self._storage_policy_index = policy_index

    def get_policy_stats(self, now: float | None = None) -> dict[int, dict[str, int]]:
        self._commit_puts_stale_ok()
        when = time.time() if now is None else now
        with self.get() as conn:
            stats = {}
            for idx, count, used in conn.execute(
                "SELECT storage_policy_index, object_count, bytes_used FROM policy_stat"
            ).fetchall():
                exp_count, exp_bytes = self._expired_stats(conn, when, idx)
                stats[int(idx)] = {
                    "storage_policy_index": int(idx),
                    "object_count": int(count) - exp_count,
                    "bytes_used": int(used) - exp_bytes,
                }
        return stats

    def reported(
        self, put_timestamp: str, delete_timestamp: str, object_count: int, bytes_used: int
    ) -> None:
        """Remember what the container updater last told the account."""
        with self.get() as conn:
            conn.execute(
                "UPDATE container_info SET reported_put_timestamp = ?, "
                "reported_delete_timestamp = ?, reported_object_count = ?, "
                "reported_bytes_used = ?",
                (put_timestamp, delete_timestamp, object_count, bytes_used),
            )

    def set_x_container_sync_points(self, sync_point1: int | None, sync_point2: int | None) -> None:
        if sync_point1 is None or sync_point2 is None:
            return
        with self.get() as conn:
            conn.execute(
                "UPDATE container_info SET x_container_sync_point1 = ?, x_container_sync_point2 = ?",
                (sync_point1, sync_point2),
            )

    # -- listings ---------------------------------------------------------

    @staticmethod
    def _transform_record(row: tuple[Any, ...]) -> tuple[Any, ...]:
        """(name, last-modified = meta timestamp, size, content_type, etag)."""
        return (row[0], meta_timestamp(row[1]), *row[2:5])

    def list_objects_iter(
        self,
        limit: int,
        marker: str | None,
        end_marker: str | None,
        prefix: str | None,
        delimiter: str | None,
        path: str | None = None,
        storage_policy_index: int = 0,
        reverse: bool = False,
        include_deleted: bool | None = False,
        since_row: int | None = None,
        transform_func: Callable[[tuple[Any, ...]], Any] | None = None,
        all_policies: bool = False,
        allow_reserved: bool = False,
        now: float | None = None,
    ) -> list[Any]:
        """A page of the listing, sorted bytewise by UTF-8 name (Swift semantics).

        Rows are ``(name, last_modified, size, content_type, etag)``; a
        subdir (delimiter roll-up) is ``[dir_name, '0', 0, None, '']``.
        With include_deleted False (a client listing) rows whose ``expires``
        is at or before ``now`` are left out.
        """
        transform = transform_func or self._transform_record
        if include_deleted is True:
            deleted_cond = "deleted = 1"
        elif include_deleted is False:
            deleted_cond = "deleted = 0"
        else:
            deleted_cond = "deleted IN (0, 1)"
        hide_expired = include_deleted is False
        when = time.time() if now is None else now
        self._commit_puts_stale_ok()
        marker = marker or ""
        end_marker = end_marker or ""
        if reverse:
            marker, end_marker = end_marker, marker
        if path is not None:
            prefix = path
            if path:
                prefix = path = path.rstrip("/") + "/"
            delimiter = "/"
        elif delimiter and not prefix:
            prefix = ""
        end_prefix = _prefix_upper_bound(prefix) if prefix else None
        orig_marker = marker
        force_gte = False
        results: list[Any] = []
        with self.get() as conn:
            while len(results) < limit:
                conds: list[str] = []
                args: list[Any] = []
                if end_marker and (not prefix or end_prefix is None or end_marker < end_prefix):
                    conds.append("name < ?")
                    args.append(end_marker)
                elif prefix and end_prefix is not None:
                    conds.append("name < ?")
                    args.append(end_prefix)
                if force_gte:
                    conds.append("name >= ?")
                    args.append(marker)
                    force_gte = False
                elif marker and (not prefix or marker >= prefix):
                    conds.append("name > ?")
                    args.append(marker)
                elif prefix:
                    conds.append("name >= ?")
                    args.append(prefix)
                if not allow_reserved:
                    conds.append("name >= ?")
                    args.append(chr(ord(RESERVED_BYTE) + 1))
                conds.append(deleted_cond)
                if hide_expired:
                    conds.append("(expires IS NULL OR expires > ?)")
                    args.append(when)
                if since_row:
                    conds.append("ROWID > ?")
                    args.append(since_row)
                if not all_policies:
                    conds.append("storage_policy_index = ?")
                    args.append(storage_policy_index)
                query = (
                    "SELECT name, created_at, size, content_type, etag, deleted, "
                    "storage_policy_index FROM object WHERE "
                    + " AND ".join(conds)
                    + f" ORDER BY name {'DESC' if reverse else ''} LIMIT ?"
                )
                args.append(limit - len(results))
                curs = conn.execute(query, args)
                curs.row_factory = None  # type: ignore[assignment]
                if prefix is None or not delimiter:
                    return [transform(tuple(r)) for r in curs]
                rowcount = 0
                for row in curs:
                    rowcount += 1
                    name = row[0]
                    if reverse:
                        end_marker = name
                    else:
                        marker = name
                    if len(results) >= limit:
                        curs.close()
                        return results
                    end = name.find(delimiter, len(prefix))
                    if path is not None:
                        if name == path:
                            continue
                        if end >= 0 and len(name) > end + len(delimiter):
                            if reverse:
                                end_marker = name[: end + len(delimiter)]
                            else:
                                nxt = _next_char(delimiter[-1]) or _MAX_CHAR
                                marker = name[:end] + delimiter[:-1] + nxt
                            curs.close()
                            break
                    elif end >= 0:
                        if reverse:
                            end_marker = name[: end + len(delimiter)]
                        else:
                            nxt = _next_char(delimiter[-1]) or _MAX_CHAR
                            marker = name[:end] + delimiter[:-1] + nxt
                            # The roll-up skips to just past "<dir><delim>";
                            # the next name may equal that bound exactly.
                            force_gte = True
                        dir_name = name[: end + len(delimiter)]
                        if dir_name != orig_marker:
                            results.append([dir_name, "0", 0, None, ""])
                        curs.close()
                        break
                    results.append(transform(tuple(row)))
                if not rowcount:
                    break
        return results

    def get_objects(
        self,
        limit: int | None = None,
        marker: str = "",
        end_marker: str = "",
        include_deleted: bool | None = None,
        since_row: int | None = None,
    ) -> list[dict[str, Any]]:
        """Rows of every policy (deleted too by default) as dicts, for replication."""
        keys = ("name", "created_at", "size", "content_type", "etag", "deleted")
        return self.list_objects_iter(
            CONTAINER_LISTING_LIMIT if limit is None else limit,
            marker,
            end_marker,
            None,
            None,
            include_deleted=include_deleted,
            since_row=since_row,
            transform_func=lambda r: dict(zip(keys + ("storage_policy_index",), r, strict=True)),
            all_policies=True,
            allow_reserved=True,
        )

    def iter_expired(self, now: float, limit: int = 1000) -> list[dict[str, Any]]:
        """Live rows whose ``expires`` is at or before ``now``, soonest first (for the expirer)."""
        self._commit_puts_stale_ok()
        with self.get() as conn:
            rows = conn.execute(
                "SELECT name, created_at, expires, storage_policy_index FROM object "
                "INDEXED BY ix_object_expires "
                "WHERE expires <= ? AND deleted = 0 ORDER BY expires, name LIMIT ?",
                (now, limit),
            ).fetchall()
        return [
            {
                "name": r[0],
                "created_at": r[1],
                "expires": r[2],
                "storage_policy_index": r[3],
            }
            for r in rows
        ]
