"""Pieces the container updater and the object expirer share: finding the
container DBs of a device, and node paths. The walking functions block
(listdir): callers run them through ``DeviceManager.run``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from urllib.parse import quote

DATADIR = "containers"


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except (NotADirectoryError, FileNotFoundError):
        return []


def container_partitions(device_path: str) -> list[str]:
    """Partition directory names under ``<device>/containers`` (blocking)."""
    return sorted((p for p in _listdir(os.path.join(device_path, DATADIR)) if p.isdigit()), key=int)


def partition_dbs(device_path: str, partition: str) -> list[str]:
    """``<part>/<suffix>/<hash>/<hash>.db`` paths of one partition (blocking).

    A hash dir without its DB (removed, or a stray file) is passed over.
    """
    found: list[str] = []
    part_dir = os.path.join(device_path, DATADIR, partition)
    for suffix in sorted(_listdir(part_dir)):
        suffix_dir = os.path.join(part_dir, suffix)
        for hsh in sorted(_listdir(suffix_dir)):
            db = os.path.join(suffix_dir, hsh, hsh + ".db")
            if os.path.isfile(db):
                found.append(db)
    return found


def iter_device_dbs(device_path: str) -> Iterator[tuple[str, str]]:
    """Every (partition, db path) of a device, walked lazily (blocking)."""
    for part in container_partitions(device_path):
        for db in partition_dbs(device_path, part):
            yield part, db


def node_url_path(device: str, partition: int | str, path: str) -> str:
    """``/<dev>/<part><path>`` quoted for the wire (names may hold any character)."""
    return quote(f"/{device}/{partition}{path}", safe="/")
