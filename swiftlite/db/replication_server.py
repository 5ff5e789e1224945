"""The receiving side of DB replication: ``REPLICATE /<device>/<partition>/<hash>``.

Swift's ``ReplicatorRpc`` exchange with JSON instead of pickle, and an HTTP
upload instead of rsync for a whole-DB copy (see docs/db-replication.md):

- JSON body ``["sync", max_row, hash, id, created_at, put_timestamp,
  delete_timestamp, metadata_json]``: 404 when there is no DB here (the sender
  then uploads its whole DB), else this replica's replication info as JSON with
  ``point`` = the sync point recorded for the sender's id. Metadata and the
  put/delete/created timestamps of the sender are merged in on the way.
- ``["merge_items", rows, source_id]``: rows merged newest-wins; the incoming
  sync point for ``source_id`` rises to the last row's ROWID. 202.
- ``["merge_syncs", [{"remote_id", "sync_point"}, ...]]``: incoming sync
  points raised. 202.
- Header ``X-Replicate-Op: put_db`` (+ ``X-Replicate-Remote-Id``), the body is
  the sender's DB file: written beside the final path, checked by SQLite,
  given a new id (remembering the sender's rows as synced) and renamed in.
  201; 409 when a DB appeared here meanwhile (the next pass syncs rows).

Both servers route the verb here (:func:`add_replicate_route`); every disk
step runs on the device's own threads at replication priority, inside a
replication slot of the device (at most half the device's slots), so client
requests keep precedence.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sqlite3
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from swiftlite.common.devices import DeviceError, DeviceManager, device_error_response
from swiftlite.common.hashing import storage_directory
from swiftlite.db import pending
from swiftlite.db.broker import DatabaseBroker
from swiftlite.db.exceptions import (
    DatabaseConnectionError,
    DatabaseQuarantined,
    LockTimeout,
)

OP_HEADER = "X-Replicate-Op"
REMOTE_ID_HEADER = "X-Replicate-Remote-Id"
#: Cap on a JSON request body: per_diff rows of long names fit easily.
MAX_JSON_BODY = 64 * 1024 * 1024
CHUNK = 1024 * 1024
_HASH_RE = re.compile(r"^[0-9a-f]{32}$")

Result = tuple[int, Any]


def db_file_for(device_root: str, datadir: str, partition: str, name_hash: str) -> str:
    return os.path.join(
        device_root, storage_directory(datadir, partition, name_hash), name_hash + ".db"
    )


# -- the operations (blocking; run on the device's threads) --------------------


def op_sync(broker: DatabaseBroker, args: list[Any]) -> Result:
    """Merge the sender's metadata/timestamps; answer our info and its sync point."""
    max_row, hash_, remote_id, created_at, put_ts, delete_ts, metadata = args[:7]
    if not os.path.exists(broker.db_file):
        return 404, None
    info = broker.get_replication_info()
    if metadata:
        broker.update_metadata(json.loads(metadata))
    if (created_at, put_ts, delete_ts) != (
        info["created_at"],
        info["put_timestamp"],
        info["delete_timestamp"],
    ):
        broker.merge_timestamps(created_at, put_ts, delete_ts)
    info = broker.get_replication_info()
    info["point"] = broker.get_sync(remote_id)
    if hash_ == info["hash"] and info["point"] < int(max_row):
        # Same rows already: remember that, so the sender skips them next time.
        broker.merge_syncs([{"remote_id": remote_id, "sync_point": int(max_row)}])
        info["point"] = int(max_row)
    return 200, info


def op_merge_items(broker: DatabaseBroker, args: list[Any]) -> Result:
    rows, source = args[0], args[1]
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError("merge_items wants a list of row objects")
    if not os.path.exists(broker.db_file):
        return 404, None
    broker.merge_items(rows, source)
    return 202, None


def op_merge_syncs(broker: DatabaseBroker, args: list[Any]) -> Result:
    syncs = args[0]
    if not isinstance(syncs, list):
        raise ValueError("merge_syncs wants a list")
    if not os.path.exists(broker.db_file):
        return 404, None
    broker.merge_syncs(syncs)
    return 202, None


OPS: dict[str, Callable[[DatabaseBroker, list[Any]], Result]] = {
    "sync": op_sync,
    "merge_items": op_merge_items,
    "merge_syncs": op_merge_syncs,
}


def install_db(
    broker_class: type[DatabaseBroker], tmp_path: str, db_file: str, remote_id: str
) -> int:
    """Check an uploaded DB, re-id it and rename it into place; the status to answer."""
    try:
        with open(tmp_path, "r+b") as fp:
            os.fsync(fp.fileno())
        conn = sqlite3.connect(tmp_path, isolation_level=None)
        try:
            row = conn.execute("PRAGMA quick_check").fetchone()
            if row is None or row[0] != "ok":
                return 422
            conn.execute("PRAGMA journal_mode = WAL")
        finally:
            conn.close()
        # New id before the rename: no request can write to it in between.
        with broker_class(tmp_path) as broker:
            broker.newid(remote_id)
    except sqlite3.DatabaseError:
        return 422
    db_dir = os.path.dirname(db_file)
    with pending.lock_dir(db_dir, 10.0):
        if os.path.exists(db_file):
            return 409
        os.rename(tmp_path, db_file)
    dir_fd = os.open(db_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return 201


def _remove_tmp(tmp_path: str) -> None:
    for path in (tmp_path, tmp_path + "-wal", tmp_path + "-shm", tmp_path + "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


# -- HTTP -------------------------------------------------------------------------


class ReplicationRpc:
    """REPLICATE handler for one server (container or account)."""

    def __init__(
        self,
        devices: DeviceManager,
        broker_class: type[DatabaseBroker],
        datadir: str,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
        broker_kwargs: dict[str, Any] | None = None,
        max_sessions: int | None = None,
    ) -> None:
        self.devices = devices
        # REPLICATE requests in flight per device: at most half the device's
        # slots by default, so replicators never starve client requests.
        self.max_sessions = max_sessions or max(1, devices.disk_limit // 2)
        self.broker_class = broker_class
        self.datadir = datadir
        self.logger = logger or logging.getLogger("swiftlite.db.replication")
        self.broker_kwargs = dict(broker_kwargs or {})

    def _dispatch(self, db_file: str, op: str, args: list[Any]) -> Result:
        fn = OPS.get(op)
        if fn is None:
            raise ValueError(f"unknown op {op!r}")
        with self.broker_class(db_file, **self.broker_kwargs) as broker:
            return fn(broker, args)

    async def handle(self, request: web.Request) -> web.Response:
        device = request.match_info["device"]
        partition = request.match_info["partition"]
        name_hash = request.match_info["hash"]
        if not partition.isdigit() or not _HASH_RE.match(name_hash):
            return web.Response(status=400, text="Invalid path")
        try:
            async with self.devices.slot(device, kind="replication", limit=self.max_sessions):
                root = await self.devices.acheck(device, priority="replication")
                db_file = db_file_for(root, self.datadir, partition, name_hash)
                if request.headers.get(OP_HEADER) == "put_db":
                    return await self._put_db(request, device, db_file)
                body = await request.content.read(MAX_JSON_BODY + 1)
                if len(body) > MAX_JSON_BODY:
                    return web.Response(status=413)
                args = json.loads(body)
                if not isinstance(args, list) or not args or not isinstance(args[0], str):
                    raise ValueError("body must be a JSON list starting with the op name")
                status, doc = await self.devices.run(
                    device, self._dispatch, db_file, args[0], args[1:], priority="replication"
                )
        except DeviceError as exc:
            return device_error_response(exc)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            return web.Response(status=400, text=f"Bad REPLICATE request: {exc}")
        except (DatabaseQuarantined, DatabaseConnectionError) as exc:
            # Gone (or never complete): the sender ships a whole copy.
            self.logger.error("REPLICATE %s: %s", request.path, exc)
            return web.Response(status=404)
        except LockTimeout:
            return web.Response(status=503)
        if doc is None:
            return web.Response(status=status)
        return web.Response(status=status, text=json.dumps(doc), content_type="application/json")

    async def _put_db(self, request: web.Request, device: str, db_file: str) -> web.Response:
        remote_id = request.headers.get(REMOTE_ID_HEADER)
        length = request.content_length
        if not remote_id or length is None:
            return web.Response(status=400, text="put_db needs a remote id and a length")
        if await self.devices.run(device, os.path.exists, db_file, priority="replication"):
            return web.Response(status=409)
        if not await self.devices.has_space_for(device, length):
            return web.Response(status=507, text="Not enough space")
        db_dir = os.path.dirname(db_file)
        tmp_path = os.path.join(db_dir, f"{uuid.uuid4().hex}.tmp")

        def open_tmp() -> Any:
            os.makedirs(db_dir, exist_ok=True)
            return open(tmp_path, "wb")  # noqa: SIM115 - closed below, across awaits

        fp = await self.devices.run(device, open_tmp, priority="replication")
        try:
            received = 0
            try:
                while True:
                    chunk = await request.content.read(CHUNK)
                    if not chunk:
                        break
                    received += len(chunk)
                    await self.devices.run(device, fp.write, chunk, priority="replication")
            finally:
                await self.devices.run(device, fp.close, priority="replication")
            if received != length:
                return web.Response(status=400, text="Short body")
            status = await self.devices.run(
                device,
                install_db,
                self.broker_class,
                tmp_path,
                db_file,
                remote_id,
                priority="replication",
            )
        finally:
            await self.devices.run(device, _remove_tmp, tmp_path, priority="replication")
        if status == 201:
            self.logger.info("REPLICATE put_db %s from %s", db_file, remote_id)
        return web.Response(status=status)


def add_replicate_route(app: web.Application, rpc: ReplicationRpc) -> None:
    """Route REPLICATE before the server's catch-all route (other verbs fall through)."""
    app.router.add_route("REPLICATE", "/{device}/{partition}/{hash}", rpc.handle)


__all__ = [
    "OP_HEADER",
    "OPS",
    "REMOTE_ID_HEADER",
    "ReplicationRpc",
    "add_replicate_route",
    "db_file_for",
    "install_db",
    "op_merge_items",
    "op_merge_syncs",
    "op_sync",
]
