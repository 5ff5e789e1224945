"""Pieces the container updater and the object expirer share.

Finding the container DBs of a device, an average-rate limiter, the recon
cache file and this host's addresses. The walking functions block (listdir):
callers run them through ``DeviceManager.run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import socket
import struct
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

DATADIR = "containers"
RECON_CONTAINER_FILE = "container.recon"
RECON_OBJECT_FILE = "object.recon"


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


class RateLimiter:
    """At most ``rate`` units per second on average (0 or less: unlimited).

    Idle time is credit for at most ``burst`` seconds, so a stall is not
    followed by a long burst that "catches up".
    """

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        burst: float = 1.0,
    ) -> None:
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.burst = burst
        self.due = clock()

    async def consume(self, n: float = 1.0) -> float:
        """Count ``n`` units and sleep as long as the rate needs; seconds slept."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        self.due = max(self.due, now - self.burst) + n / self.rate
        wait = self.due - now
        if wait > 0:
            await self.sleep(wait)
            return wait
        return 0.0


def dump_recon(recon_cache_path: str, filename: str, entries: Mapping[str, Any]) -> None:
    """Merge ``entries`` (top-level keys replaced) into a recon JSON file (blocking).

    The same lock-file protocol as the object daemons' recon writes, so
    daemons sharing one file never lose each other's keys; the file is
    replaced atomically.
    """
    os.makedirs(recon_cache_path, exist_ok=True)
    path = os.path.join(recon_cache_path, filename)
    lock_fd = os.open(path + ".lock", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        doc: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            with open(path, encoding="utf-8") as fp:
                loaded = json.load(fp)
            if isinstance(loaded, dict):
                doc = loaded
        doc.update(entries)
        fd, tmp = tempfile.mkstemp(dir=recon_cache_path, prefix=f".{filename}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fp:
                json.dump(doc, fp, sort_keys=True)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    finally:
        os.close(lock_fd)


def local_ips(bind_ip: str) -> set[str]:
    """This host's addresses (Swift's ``whataremyips``): ``bind_ip`` itself when
    it names one address, else every interface's (blocking: ioctl, resolver)."""
    if bind_ip not in ("0.0.0.0", "::", ""):
        return {bind_ip}
    ips = {"127.0.0.1", "::1"}
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None):
            ips.add(str(info[4][0]))
    siocgifaddr = 0x8915
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _index, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(
                    s.fileno(), siocgifaddr, struct.pack("256s", name.encode()[:15])
                )
            except OSError:
                continue
            ips.add(socket.inet_ntoa(packed[20:24]))
    return ips


def node_url_path(device: str, partition: int | str, path: str) -> str:
    """``/<dev>/<part><path>`` quoted for the wire (names may hold any character)."""
    return quote(f"/{device}/{partition}{path}", safe="/")
