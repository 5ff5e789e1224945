"""Kept SQLite connections are reused only for the same DB file."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from swiftlite.account.conncache import ConnectionCache


def make_db(path: str, value: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (v INTEGER)")
    conn.execute("INSERT INTO t VALUES (?)", (value,))
    conn.commit()
    conn.close()


def test_reuse_same_file_and_drop_replaced_or_missing(tmp_path: Any) -> None:
    cache = ConnectionCache(size=2)
    db = str(tmp_path / "a.db")
    make_db(db, 1)
    conn = sqlite3.connect(db)
    cache.give(db, conn)
    assert cache.take(db) is conn
    assert cache.take(db) is None  # taken: not shared by two users
    cache.give(db, conn)
    # Replaced by another file (a replicated copy renamed in): not reused.
    other = str(tmp_path / "b.db")
    make_db(other, 2)
    os.rename(other, db)
    assert cache.take(db) is None
    fresh = sqlite3.connect(db)
    assert fresh.execute("SELECT v FROM t").fetchone() == (2,)
    cache.give(db, fresh)
    os.unlink(db)  # quarantined or reclaimed
    assert cache.take(db) is None


def test_least_recently_used_is_closed(tmp_path: Any) -> None:
    cache = ConnectionCache(size=2)
    conns = []
    for i in range(3):
        path = str(tmp_path / f"{i}.db")
        make_db(path, i)
        conn = sqlite3.connect(path)
        conns.append(conn)
        cache.give(path, conn)
    assert list(cache.conns) == [str(tmp_path / "1.db"), str(tmp_path / "2.db")]
    try:
        conns[0].execute("SELECT 1")
        raise AssertionError("the evicted connection should be closed")
    except sqlite3.ProgrammingError:
        pass
    cache.clear()
    assert not cache.conns
