"""DatabaseBroker base: creation, pending file, metadata, sync tables, quarantine."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from typing import Any

import pytest

from swiftlite.common.timestamp import Timestamp
from swiftlite.db import pending
from swiftlite.db.broker import DatabaseBroker
from swiftlite.db.chexor import ZERO_HASH, chexor
from swiftlite.db.exceptions import (
    DatabaseAlreadyExists,
    DatabaseConnectionError,
    DatabaseQuarantined,
    MetadataError,
)
from swiftlite.db.schema import SchemaError, get_schema_version, no_update_trigger_sql


class ThingBroker(DatabaseBroker):
    """The smallest useful subclass: rows (name, created_at, deleted)."""

    db_type = "thing"
    db_contains_type = "item"

    def _initialize(self, conn: sqlite3.Connection, put_timestamp: str, **kwargs: Any) -> None:
        conn.executescript(
            """
            CREATE TABLE item (ROWID INTEGER PRIMARY KEY AUTOINCREMENT,
                               name TEXT, created_at TEXT, deleted INTEGER DEFAULT 0);
            CREATE TABLE thing_stat (account TEXT, created_at TEXT, put_timestamp TEXT,
                delete_timestamp TEXT, item_count INTEGER DEFAULT 0, hash TEXT,
                id TEXT, status TEXT DEFAULT '', status_changed_at TEXT,
                metadata TEXT DEFAULT '');
            CREATE TRIGGER item_insert AFTER INSERT ON item BEGIN
                UPDATE thing_stat SET item_count = item_count + (1 - new.deleted),
                    hash = chexor(hash, new.name, new.created_at);
            END;
            CREATE TRIGGER item_delete AFTER DELETE ON item BEGIN
                UPDATE thing_stat SET item_count = item_count - (1 - old.deleted),
                    hash = chexor(hash, old.name, old.created_at);
            END;
            """
            + no_update_trigger_sql("item")
        )
        conn.execute(
            "INSERT INTO thing_stat VALUES (?, ?, ?, ?, 0, ?, ?, '', ?, '')",
            (
                self.account,
                Timestamp.now().internal,
                put_timestamp,
                "0",
                ZERO_HASH,
                self._new_db_id(),
                put_timestamp,
            ),
        )

    def make_tuple_for_pending(self, record: Any) -> list[Any]:
        return [record["name"], record["created_at"], record.get("deleted", 0)]

    def _commit_puts_load(self, item_list: list[dict[str, Any]], entry: list[Any]) -> None:
        name, created_at, deleted = entry
        item_list.append(
            {"name": str(name), "created_at": str(created_at), "deleted": int(deleted)}
        )

    def merge_items(self, item_list: list[dict[str, Any]], source: str | None = None) -> None:
        with self.transaction() as conn:
            for item in item_list:
                row = conn.execute(
                    "SELECT created_at FROM item WHERE name = ?", (item["name"],)
                ).fetchone()
                if row and row[0] >= item["created_at"]:
                    continue
                conn.execute("DELETE FROM item WHERE name = ?", (item["name"],))
                conn.execute(
                    "INSERT INTO item (name, created_at, deleted) VALUES (?, ?, ?)",
                    (item["name"], item["created_at"], item["deleted"]),
                )
            if source and item_list:
                conn.execute(
                    "INSERT OR IGNORE INTO incoming_sync (remote_id, sync_point) VALUES (?, -1)",
                    (source,),
                )
                conn.execute(
                    "UPDATE incoming_sync SET sync_point = max(?, sync_point) WHERE remote_id = ?",
                    (item_list[-1]["ROWID"], source),
                )

    def _is_deleted(self, conn: sqlite3.Connection) -> bool:
        row = conn.execute(
            "SELECT item_count, put_timestamp, delete_timestamp FROM thing_stat"
        ).fetchone()
        return row[0] == 0 and Timestamp(row[2]) > Timestamp(row[1])

    def empty(self) -> bool:
        self._commit_puts_stale_ok()
        with self.get() as conn:
            return conn.execute("SELECT item_count FROM thing_stat").fetchone()[0] == 0


def ts(n: float) -> str:
    return Timestamp(n).internal


def db_path(tmp_path: Any, name: str = "abc") -> str:
    return str(tmp_path / "sda" / "things" / "1" / "abc" / name / f"{name}.db")


@pytest.fixture
def broker(tmp_path: Any) -> ThingBroker:
    b = ThingBroker(db_path(tmp_path), account="a")
    b.initialize(ts(1))
    return b


def test_chexor_matches_swift() -> None:
    from swift.common.db import chexor as swift_chexor

    h = ZERO_HASH
    for name, t in [("a", ts(1)), ("\u00e9", ts(2)), ("x/y", ts(3) + "+a")]:
        assert chexor(h, name, t) == swift_chexor(h, name, t)
        h = chexor(h, name, t)
    expected = hashlib.md5(b"a-" + ts(1).encode()).hexdigest()
    assert chexor(ZERO_HASH, "a", ts(1)) == expected
    with pytest.raises(ValueError):
        chexor(ZERO_HASH, None, ts(1))


def test_initialize_creates_wal_db_once(tmp_path: Any, broker: ThingBroker) -> None:
    assert os.path.exists(broker.db_file)
    with broker.get() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert get_schema_version(conn) == ThingBroker.SCHEMA_VERSION
    assert [f for f in os.listdir(broker.db_dir) if f.endswith(".tmp")] == []
    with pytest.raises(DatabaseAlreadyExists):
        ThingBroker(broker.db_file).initialize(ts(2))
    info = broker.get_info()
    assert info["put_timestamp"] == ts(1)
    assert info["id"].endswith("-sda")


def test_missing_db(tmp_path: Any) -> None:
    b = ThingBroker(db_path(tmp_path, "nope"))
    assert b.is_deleted()
    with pytest.raises(DatabaseConnectionError):
        b.get_info()
    with pytest.raises(DatabaseConnectionError):
        b.put_record({"name": "x", "created_at": ts(1)})
    # A read must not create an empty file where the DB should be.
    assert not os.path.exists(b.db_file)


def test_put_record_goes_to_pending_then_read_flushes(broker: ThingBroker) -> None:
    broker.put_record({"name": "o1", "created_at": ts(2)})
    broker.put_records([{"name": "o2", "created_at": ts(3)}, {"name": "o3", "created_at": ts(4)}])
    assert pending.pending_size(broker.pending_file) > 0
    with broker.get() as conn:
        assert conn.execute("SELECT count(*) FROM item").fetchone()[0] == 0
    assert broker.get_info()["item_count"] == 3
    assert pending.pending_size(broker.pending_file) == 0
    items = broker.get_items_since(-1, 10)
    assert [i["name"] for i in items] == ["o1", "o2", "o3"]
    assert [i["ROWID"] for i in items] == [1, 2, 3]
    assert broker.get_max_row() == 3


def test_pending_cap_commits(broker: ThingBroker, monkeypatch: Any) -> None:
    monkeypatch.setattr(pending, "PENDING_CAP", 200)
    for i in range(10):
        broker.put_record({"name": f"o{i}", "created_at": ts(2 + i)})
    # The file never grows much past the cap: appends past it commit.
    assert pending.pending_size(broker.pending_file) < 400
    with broker.get() as conn:
        assert conn.execute("SELECT count(*) FROM item").fetchone()[0] > 0


def test_torn_pending_line_is_skipped_and_next_entry_kept(broker: ThingBroker) -> None:
    broker.put_record({"name": "good1", "created_at": ts(2)})
    with open(broker.pending_file, "ab") as fp:
        fp.write(b'[1,"torn","00000')  # a crash mid-write, never acknowledged
    broker.put_record({"name": "good2", "created_at": ts(3)})
    with open(broker.pending_file, "ab") as fp:
        fp.write(b'[99,"future-version"]\n')
    names = [i["name"] for i in broker.get_items_since(-1, 10)]
    assert names == ["good1", "good2"]


def test_crash_during_commit_loses_nothing(broker: ThingBroker, monkeypatch: Any) -> None:
    for i in range(5):
        broker.put_record({"name": f"o{i}", "created_at": ts(2 + i)})
    real_merge = ThingBroker.merge_items

    def exploding_merge(self: ThingBroker, items: list[dict[str, Any]], source: Any = None) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT INTO item (name, created_at) VALUES ('half', '1')")
            raise OSError("power cut in the middle of the batch")

    monkeypatch.setattr(ThingBroker, "merge_items", exploding_merge)
    with pytest.raises(OSError):
        broker.get_info()
    monkeypatch.setattr(ThingBroker, "merge_items", real_merge)
    fresh = ThingBroker(broker.db_file)
    names = [i["name"] for i in fresh.get_items_since(-1, 10)]
    assert names == [f"o{i}" for i in range(5)]


def test_crash_after_commit_before_truncate_is_idempotent(
    broker: ThingBroker, monkeypatch: Any
) -> None:
    for i in range(3):
        broker.put_record({"name": f"o{i}", "created_at": ts(2 + i)})
    monkeypatch.setattr(pending, "truncate", lambda path: (_ for _ in ()).throw(OSError("crash")))
    with pytest.raises(OSError):
        broker.get_info()
    monkeypatch.undo()
    hash_before = ThingBroker(broker.db_file, skip_commits=True).get_info()["hash"]
    info = ThingBroker(broker.db_file).get_info()  # re-merges the same entries
    assert info["item_count"] == 3
    assert info["hash"] == hash_before


def test_parallel_put_records_lose_nothing(broker: ThingBroker, monkeypatch: Any) -> None:
    monkeypatch.setattr(pending, "PENDING_CAP", 2000)  # force commits racing appends
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        b = ThingBroker(broker.db_file, fsync_pending=False)
        try:
            for i in range(50):
                b.put_record({"name": f"w{n}-{i}", "created_at": ts(10 + i)})
                if i % 10 == 0:
                    b.get_info()
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert broker.get_info()["item_count"] == 400


def test_hash_is_order_independent(tmp_path: Any) -> None:
    recs = [{"name": f"n{i}", "created_at": ts(5 + i), "deleted": 0} for i in range(20)]
    a = ThingBroker(db_path(tmp_path, "aaa"))
    a.initialize(ts(1))
    b = ThingBroker(db_path(tmp_path, "bbb"))
    b.initialize(ts(1))
    a.merge_items([dict(r) for r in recs])
    b.merge_items([dict(r) for r in reversed(recs)])
    assert a.get_info()["hash"] == b.get_info()["hash"] != ZERO_HASH


def test_rows_cannot_be_updated(broker: ThingBroker) -> None:
    broker.merge_items([{"name": "x", "created_at": ts(2), "deleted": 0}])
    with pytest.raises(sqlite3.IntegrityError), broker.get() as conn:
        conn.execute("UPDATE item SET deleted = 1")


def test_metadata_merge_rules(broker: ThingBroker) -> None:
    broker.update_metadata({"X-Container-Meta-A": ("1", ts(5))})
    broker.update_metadata(
        {"X-Container-Meta-A": ("old", ts(4)), "X-Container-Meta-B": ("b", ts(4))}
    )
    assert broker.metadata == {
        "X-Container-Meta-A": ["1", ts(5)],
        "X-Container-Meta-B": ["b", ts(4)],
    }
    broker.update_metadata({"X-Container-Meta-A": ("", ts(6))})
    assert broker.metadata["X-Container-Meta-A"] == ["", ts(6)]
    with pytest.raises(MetadataError, match="Too many metadata items; max 90"):
        broker.update_metadata(
            {f"X-Container-Meta-K{i}": ("v", ts(7)) for i in range(91)}, validate_metadata=True
        )
    with pytest.raises(MetadataError, match="Total metadata too large; max 4096"):
        broker.update_metadata(
            {"X-Container-Meta-Big": ("v" * 4097, ts(7))}, validate_metadata=True
        )
    # Reclaim drops deleted keys older than the age.
    broker.reclaim(Timestamp(100).timestamp, 0)
    assert "X-Container-Meta-A" not in broker.metadata


def test_delete_db_and_timestamps(broker: ThingBroker) -> None:
    broker.update_metadata({"X-Container-Meta-A": ("1", ts(2))})
    assert not broker.is_deleted()
    broker.delete_db(ts(3))
    assert broker.is_deleted()
    assert broker.is_status_deleted()
    assert broker.metadata["X-Container-Meta-A"] == ["", ts(3)]
    info = broker.get_info()
    assert info["delete_timestamp"] == ts(3)
    assert info["status_changed_at"] == ts(3)
    broker.update_put_timestamp(ts(4))
    broker.update_put_timestamp(ts(2))  # older: ignored
    assert broker.get_info()["put_timestamp"] == ts(4)
    assert not broker.is_deleted()
    broker.update_status_changed_at(ts(4))
    assert broker.get_info()["status_changed_at"] == ts(4)
    broker.merge_timestamps(ts(0.5), ts(3), ts(9))
    info = broker.get_info()
    assert (info["created_at"], info["put_timestamp"], info["delete_timestamp"]) == (
        ts(0.5),
        ts(4),
        ts(9),
    )


def test_sync_tables(broker: ThingBroker) -> None:
    assert broker.get_sync("peer") == -1
    broker.merge_syncs([{"remote_id": "peer", "sync_point": 5}])
    broker.merge_syncs([{"remote_id": "peer", "sync_point": 3}])  # never goes back
    assert broker.get_sync("peer") == 5
    broker.merge_syncs([{"remote_id": "out", "sync_point": 7}], incoming=False)
    assert broker.get_sync("out", incoming=False) == 7
    assert broker.get_sync("out") == -1
    syncs = broker.get_syncs(include_timestamp=True)
    assert syncs[0]["remote_id"] == "peer" and int(syncs[0]["updated_at"]) > 0
    broker.merge_items(
        [{"name": "x", "created_at": ts(2), "deleted": 0, "ROWID": 42}], source="src"
    )
    assert broker.get_sync("src") == 42
    info = broker.get_replication_info()
    assert info["count"] == 1 and info["max_row"] == 1 and info["metadata"] == ""
    broker.newid("remote-db")
    assert broker.get_sync("remote-db") == 1
    assert broker.get_replication_info()["id"] != info["id"]


def test_reclaim_tombstones(broker: ThingBroker) -> None:
    broker.merge_items(
        [
            {"name": "old", "created_at": ts(2), "deleted": 1},
            {"name": "new", "created_at": ts(200), "deleted": 1},
            {"name": "live", "created_at": ts(2), "deleted": 0},
        ]
    )
    broker.reclaim(100.0, 0)
    assert sorted(i["name"] for i in broker.get_items_since(-1, 10)) == ["live", "new"]


def test_corrupt_db_is_quarantined(tmp_path: Any, broker: ThingBroker) -> None:
    broker.close()
    with open(broker.db_file, "r+b") as fp:
        fp.write(b"this is certainly not sqlite" * 10)
    fresh = ThingBroker(broker.db_file)
    with pytest.raises(DatabaseQuarantined) as info:
        fresh.get_info()
    assert not os.path.exists(broker.db_dir)
    quarantined = tmp_path / "sda" / "quarantined" / "things" / "abc"
    assert info.value.quarantine_path == str(quarantined)
    assert os.path.exists(quarantined / "abc.db")


def test_schema_migration_and_newer_schema_refused(tmp_path: Any) -> None:
    class V2Broker(ThingBroker):
        SCHEMA_VERSION = 2
        MIGRATIONS = {1: lambda conn: conn.execute("ALTER TABLE item ADD COLUMN extra INTEGER")}

    b = ThingBroker(db_path(tmp_path))
    b.initialize(ts(1))
    b.close()
    v2 = V2Broker(b.db_file)
    with v2.get() as conn:
        assert get_schema_version(conn) == 2
        conn.execute("INSERT INTO item (name, created_at, extra) VALUES ('x', '1', 7)")
    v2.close()
    with pytest.raises(SchemaError):
        ThingBroker(b.db_file).get_info()
