"""Open SQLite connections kept between requests, per device thread.

Opening an account DB costs more than the container report it serves (the
connect, the pragmas, the schema-version check and SQLite's first look at the
WAL index: about 2 ms, against well under 1 ms for the report itself). Each
device thread therefore keeps its most recently used connections. A kept
connection is reused only while the DB file is the same file (same inode): a
DB replaced by replication or moved away by quarantine gets a fresh one.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections import OrderedDict

DEFAULT_SIZE = 32


class ConnectionCache(threading.local):
    """``db_file -> (inode, connection)``, least recently used dropped first."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        self.conns: OrderedDict[str, tuple[int, sqlite3.Connection]] = OrderedDict()

    def take(self, db_file: str) -> sqlite3.Connection | None:
        """A kept connection to ``db_file`` (removed from the cache), or None."""
        entry = self.conns.pop(db_file, None)
        if entry is None:
            return None
        inode, conn = entry
        try:
            same = os.stat(db_file).st_ino == inode
        except OSError:
            same = False
        if not same:
            conn.close()
            return None
        return conn

    def give(self, db_file: str, conn: sqlite3.Connection) -> None:
        """Keep ``conn`` for the next request on ``db_file`` (closing the oldest)."""
        if conn.in_transaction:
            conn.rollback()
        try:
            inode = os.stat(db_file).st_ino
        except OSError:
            conn.close()
            return
        old = self.conns.pop(db_file, None)
        if old is not None and old[1] is not conn:
            old[1].close()
        self.conns[db_file] = (inode, conn)
        while len(self.conns) > self.size:
            _, (_, stale) = self.conns.popitem(last=False)
            stale.close()

    def clear(self) -> None:
        while self.conns:
            _, (_, conn) = self.conns.popitem()
            with contextlib.suppress(sqlite3.Error):
                conn.close()
