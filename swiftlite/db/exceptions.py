"""Errors raised by the DB layer; servers map them to HTTP statuses."""

from __future__ import annotations

import sqlite3


class DatabaseConnectionError(sqlite3.DatabaseError):
    """The DB file is missing or cannot be opened (404 for most requests)."""

    def __init__(self, path: str, msg: str) -> None:
        super().__init__(f"DB connection error ({path}): {msg}")
        self.path = path
        self.msg = msg


class DatabaseAlreadyExists(sqlite3.DatabaseError):
    """initialize() lost a race: another request created the DB first."""

    def __init__(self, path: str) -> None:
        super().__init__(f"DB {path} already exists")
        self.path = path


class DatabaseQuarantined(sqlite3.DatabaseError):
    """The DB was corrupt and has been moved under ``quarantined/``."""

    def __init__(self, path: str, quarantine_path: str, reason: str) -> None:
        super().__init__(f"Quarantined {path} to {quarantine_path} due to {reason}")
        self.path = path
        self.quarantine_path = quarantine_path
        self.reason = reason


class LockTimeout(Exception):
    """The DB directory lock could not be taken within the timeout."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__(f"timed out after {timeout}s waiting for lock {path}")
        self.path = path
        self.timeout = timeout


class MetadataError(ValueError):
    """Metadata breaks a limit; the text is Swift's 400 body."""
