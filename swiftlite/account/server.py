"""The account server: Swift's backend protocol for account DBs, on aiohttp.

Requests are ``/<device>/<partition>/<account>`` (the account itself) and
``PUT /<device>/<partition>/<account>/<container>`` (a container server
reporting a container's stats). Statuses, headers and bodies follow Swift's
``swift.account.server.AccountController``; the tests compare the two.

Each request takes an in-flight slot on its device (503 at the limit) and then
does all of its SQLite work in one call on that device's threads, so the event
loop never waits on disk and a slow disk slows only its own requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from aiohttp import web

from swiftlite.account.backend import DATADIR, RESERVED, AccountBroker
from swiftlite.account.config import AccountServerConfig
from swiftlite.account.conncache import ConnectionCache
from swiftlite.common import listing
from swiftlite.common.config import ClusterConfig, load_cluster_config
from swiftlite.common.daemon import reexec_with_python_parser, server_main
from swiftlite.common.devices import (
    DeviceBusy,
    DeviceError,
    DeviceManager,
    DeviceUnavailable,
)
from swiftlite.common.hashing import name_hash, storage_directory
from swiftlite.common.http import add_healthcheck_route, split_path, swift_response
from swiftlite.common.logs import generate_trans_id, get_logger, set_txn_id
from swiftlite.common.timestamp import Timestamp
from swiftlite.db.exceptions import (
    DatabaseAlreadyExists,
    DatabaseConnectionError,
    DatabaseQuarantined,
    LockTimeout,
    MetadataError,
)
from swiftlite.db.replication_server import ReplicationRpc, add_replicate_route

ALLOWED_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT")
SERVER_NAME = "account-server/swiftlite"
TEXT_PLAIN = "text/plain"


class HTTPError(Exception):
    """An early answer (bad path, bad timestamp...) raised from a handler."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


HTML = "text/html; charset=UTF-8"


def respond(
    status: int,
    body: str | bytes | None = None,
    headers: Mapping[str, str] | None = None,
    content_type: str = HTML,
    drive: str = "unknown",
) -> web.Response:
    """A swob-style response: Swift's default body, and text/html unless told."""
    resp = swift_response(status, body, headers, content_type=content_type, drive=drive)
    # Swift sends a default body (and so a length) only when it is not a HEAD.
    resp["default_body"] = body is None
    return resp


def device_error(err: DeviceError) -> web.Response:
    """507 for an unusable device, 503 (with X-Disk-Usage when busy) otherwise."""
    headers = {}
    if isinstance(err, DeviceBusy):
        headers["X-Disk-Usage"] = str(err.in_flight)
    return respond(err.status, None, headers, drive=err.device)


def _bad_request(body: str) -> HTTPError:
    return HTTPError(respond(400, body, content_type=TEXT_PLAIN))


def req_timestamp(headers: Mapping[str, str]) -> Timestamp:
    """The request's X-Timestamp, or Swift's 400."""
    raw = headers.get("X-Timestamp")
    if raw is None:
        raise _bad_request("Missing X-Timestamp header")
    try:
        return Timestamp(raw)
    except ValueError:
        raise _bad_request("Invalid X-Timestamp header") from None


def _title(key: str) -> str:
    # How a WSGI server (and so Swift) spells a header name it received.
    return key.replace("_", "-").title()


def _is_account_meta(key: str) -> bool:
    lower = key.lower()
    return (lower.startswith("x-account-meta-") and len(key) > len("x-account-meta-")) or (
        lower.startswith("x-account-sysmeta-") and len(key) > len("x-account-sysmeta-")
    )


def _wsgi_quote(text: str) -> str:
    """Quote as Swift's error texts do: its WSGI strings hold UTF-8 bytes as
    latin-1 characters, so non-ASCII names come out double-encoded."""
    return urllib.parse.quote(text.encode("utf-8").decode("latin-1"))


def _valid_internal_name(name: str) -> bool:
    return RESERVED not in name or name.startswith(RESERVED)


class AccountServer:
    """Request handling; one instance per worker process."""

    def __init__(
        self,
        conf: AccountServerConfig,
        cluster: ClusterConfig | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.conf = conf
        self.cluster = cluster if cluster is not None else load_cluster_config(conf.swift_dir)
        self.logger = logger or get_logger(conf.log_name, conf.log_level, conf.log_file)
        self.devices = DeviceManager(
            conf.devices,
            mount_check=conf.mount_check,
            disk_limit=conf.disk_limit,
            threads_per_disk=conf.threads_per_disk,
            fallocate_reserve=conf.fallocate_reserve,
        )
        self.connections = ConnectionCache()
        self.policy_names = {p.index: p.name for p in self.cluster.policies}
        self.constraints = self.cluster.constraints
        self.auto_create_prefix = self.constraints.auto_create_account_prefix

    # -- plumbing ---------------------------------------------------------

    @contextlib.contextmanager
    def broker(
        self, device_root: str, part: str, account: str, **kwargs: Any
    ) -> Iterator[AccountBroker]:
        """The account's broker, on a connection kept from earlier requests."""
        hsh = name_hash(account)
        db_dir = os.path.join(device_root, storage_directory(DATADIR, part, hsh))
        broker = AccountBroker(
            os.path.join(db_dir, hsh + ".db"),
            account=account,
            logger=self.logger,
            fsync_pending=self.conf.fsync_pending,
            max_meta_count=self.constraints.max_meta_count,
            max_meta_overall_size=self.constraints.max_meta_overall_size,
            **kwargs,
        )
        broker.conn = self.connections.take(broker.db_file)
        try:
            yield broker
        finally:
            # The base broker drops (closes) its connection on any DB error,
            # so only a healthy connection comes back here.
            conn, broker.conn = broker.conn, None
            if conn is not None:
                self.connections.give(broker.db_file, conn)

    def _check_device(self, device: str, space: bool = False) -> str:
        """Blocking: the device root, or DeviceUnavailable (507)."""
        if urllib.parse.quote_plus(device) != device:
            # Swift's check_drive: a name that needs quoting is no device.
            raise DeviceUnavailable(device, "invalid device name")
        root = self.devices.check(device)
        if space and not self.devices.space_ok(device):
            raise DeviceUnavailable(device, "not enough free space")
        return root

    def response_headers(self, broker: AccountBroker) -> dict[str, str]:
        """Stats, timestamps, per-policy stats and metadata, as Swift sends them."""
        info = broker.get_info()
        headers = {
            "X-Account-Container-Count": str(info["container_count"]),
            "X-Account-Object-Count": str(info["object_count"]),
            "X-Account-Bytes-Used": str(info["bytes_used"]),
            "X-Timestamp": Timestamp(info["created_at"]).normal,
            "X-PUT-Timestamp": Timestamp(info["put_timestamp"]).normal,
        }
        for index, stats in sorted(broker.get_policy_stats().items()):
            name = self.policy_names.get(index)
            if name is None:
                continue
            for key, figure in stats.items():
                header = f"X-Account-Storage-Policy-{name}-{key.replace('_', '-')}"
                headers[header.title()] = str(figure)
        for key, (value, _ts) in broker.metadata.items():
            if value != "":
                headers[key] = value
        return headers

    def _deleted_response(
        self, broker: AccountBroker, status: int, body: str | None = ""
    ) -> web.Response:
        """404/403/204 for a missing or deleted account; says so when it was deleted."""
        headers = {}
        try:
            if broker.is_status_deleted():
                headers["X-Account-Status"] = "Deleted"
        except DatabaseConnectionError:
            pass
        return respond(status, body, headers, content_type="text/html; charset=utf-8")

    def _update_metadata(
        self, broker: AccountBroker, headers: Mapping[str, str], timestamp: Timestamp
    ) -> None:
        updates = {
            _title(key): (value, timestamp.internal)
            for key, value in headers.items()
            if _is_account_meta(key)
        }
        if updates:
            broker.update_metadata(updates, validate_metadata=True)

    # -- blocking bodies of the verbs (run on the device's threads) -------

    def _delete(
        self, device: str, part: str, account: str, headers: Mapping[str, str]
    ) -> web.Response:
        root = self._check_device(device)
        ts = req_timestamp(headers)
        with self.broker(root, part, account) as broker:
            if broker.is_deleted():
                return self._deleted_response(broker, 404)
            broker.delete_db(ts.internal)
            return self._deleted_response(broker, 204)

    def _put_container(
        self, device: str, part: str, account: str, container: str, headers: Mapping[str, str]
    ) -> web.Response:
        root = self._check_device(device, space=True)
        if "X-Timestamp" in headers:
            timestamp = req_timestamp(headers)
        else:
            timestamp = Timestamp.now()
        pending_timeout = self.conf.pending_timeout if "X-Trans-Id" in headers else None
        with self.broker(root, part, account, pending_timeout=pending_timeout) as broker:
            if account.startswith(self.auto_create_prefix) and not os.path.exists(broker.db_file):
                try:
                    broker.initialize(timestamp.internal)
                except DatabaseAlreadyExists:
                    pass
            override = headers.get("X-Account-Override-Deleted", "no").lower() == "yes"
            if not os.path.exists(broker.db_file) or (
                not override and broker.is_deleted_for_update()
            ):
                return respond(404)
            # Checked after the account, in Swift's order (Swift answers a
            # malformed report with a 500 and a traceback).
            put_ts = headers.get("X-Put-Timestamp")
            delete_ts = headers.get("X-Delete-Timestamp")
            try:
                if put_ts is None or delete_ts is None:
                    raise ValueError("X-Put-Timestamp and X-Delete-Timestamp are required")
                Timestamp(put_ts)
                Timestamp(delete_ts)
                object_count = int(headers.get("X-Object-Count", "0"))
                bytes_used = int(headers.get("X-Bytes-Used", "0"))
                policy_index = int(headers.get("X-Backend-Storage-Policy-Index", "0"))
            except ValueError as exc:
                return respond(400, f"Invalid container update: {exc}", content_type=TEXT_PLAIN)
            broker.put_container(
                container, put_ts, delete_ts, object_count, bytes_used, policy_index
            )
        # Swift compares the header strings, not the timestamps.
        return respond(204 if delete_ts > put_ts else 201)

    def _put_account(
        self, device: str, part: str, account: str, headers: Mapping[str, str]
    ) -> web.Response:
        root = self._check_device(device, space=True)
        ts = req_timestamp(headers)
        with self.broker(root, part, account) as broker:
            if not os.path.exists(broker.db_file):
                try:
                    broker.initialize(ts.internal)
                    created = True
                except DatabaseAlreadyExists:
                    created = False
            elif broker.is_status_deleted():
                return self._deleted_response(broker, 403, "Recently deleted")
            else:
                created = broker.is_deleted()
                broker.update_put_timestamp(ts.internal)
                if broker.is_deleted():
                    return respond(409)
            self._update_metadata(broker, headers, ts)
        return respond(201 if created else 202)

    def _head(self, device: str, part: str, account: str, content_type: str) -> web.Response:
        root = self._check_device(device)
        with self.broker(
            root, part, account, pending_timeout=self.conf.read_pending_timeout, stale_reads_ok=True
        ) as broker:
            if broker.is_deleted():
                return self._deleted_response(broker, 404)
            headers = self.response_headers(broker)
        return respond(204, b"", headers, content_type=listing.response_content_type(content_type))

    def _get(
        self,
        device: str,
        part: str,
        account: str,
        params: listing.ListingParams,
        allow_reserved: bool,
    ) -> web.Response:
        root = self._check_device(device)
        with self.broker(
            root, part, account, pending_timeout=self.conf.read_pending_timeout, stale_reads_ok=True
        ) as broker:
            if broker.is_deleted():
                return self._deleted_response(broker, 404)
            headers = self.response_headers(broker)
            rows = broker.list_containers_iter(
                params.limit,
                params.marker,
                params.end_marker,
                params.prefix,
                params.delimiter,
                params.reverse,
                allow_reserved,
            )
        records = []
        for name, count, nbytes, put_ts, policy_index, is_subdir in rows:
            if is_subdir:
                records.append(listing.subdir_record(name))
            else:
                records.append(
                    listing.container_record(
                        name, count, nbytes, put_ts, self.policy_names.get(policy_index)
                    )
                )
        body = listing.format_account_listing(records, params.content_type, account)
        status = 200
        if not body:
            status = 204
        return respond(
            status, body, headers, content_type=listing.response_content_type(params.content_type)
        )

    def _post(
        self, device: str, part: str, account: str, headers: Mapping[str, str], ts: Timestamp
    ) -> web.Response:
        root = self._check_device(device, space=True)
        with self.broker(root, part, account) as broker:
            if broker.is_deleted():
                return self._deleted_response(broker, 404)
            self._update_metadata(broker, headers, ts)
        return respond(204)

    # -- HTTP -------------------------------------------------------------

    @staticmethod
    def _split(path: str, minsegs: int, maxsegs: int) -> list[str | None]:
        try:
            segs = split_path(path, minsegs, maxsegs)
        except ValueError:
            raise _bad_request(f"Invalid path: {_wsgi_quote(path)}") from None
        device, part = segs[0] or "", segs[1] or ""
        for what, value in (("device", device), ("partition", part)):
            if not value or "/" in value or value in (".", ".."):
                raise _bad_request(f"Invalid {what}: {_wsgi_quote(value)}")
        account = segs[2] or ""
        # These two answers are text/html in Swift (no content type given).
        if not _valid_internal_name(account):
            raise HTTPError(respond(400, "Invalid reserved-namespace account"))
        if maxsegs == 4 and segs[3] and not _valid_internal_name(segs[3]):
            raise HTTPError(respond(400, "Invalid reserved-namespace container"))
        return segs

    async def _on_device(
        self, device: str, kind: str, fn: Callable[..., web.Response], *args: Any
    ) -> web.Response:
        async with self.devices.slot(device, kind=kind):
            return await self.devices.run(
                device, fn, *args, priority="read" if kind == "read" else "write"
            )

    async def dispatch(self, request: web.Request, path: str) -> web.Response:
        method = request.method
        headers = request.headers
        raw_query = request.rel_url.raw_query_string
        if method == "PUT":
            device, part, account, container = self._split(path, 3, 4)
            assert device and part and account is not None
            if container:
                return await self._on_device(
                    device, "write", self._put_container, device, part, account, container, headers
                )
            return await self._on_device(
                device, "write", self._put_account, device, part, account, headers
            )
        device, part, account = self._split(path, 3, 3)
        assert device and part and account is not None
        if method == "DELETE":
            return await self._on_device(
                device, "write", self._delete, device, part, account, headers
            )
        if method == "POST":
            ts = req_timestamp(headers)
            return await self._on_device(
                device, "write", self._post, device, part, account, headers, ts
            )
        accept = headers.get("Accept")
        if method == "HEAD":
            content_type = listing.head_content_type(raw_query, accept)
            return await self._on_device(
                device, "read", self._head, device, part, account, content_type
            )
        params = listing.parse_account_listing_params(
            raw_query, accept, self.constraints.account_listing_limit
        )
        allow_reserved = headers.get("X-Backend-Allow-Reserved-Names", "").lower() in (
            "true",
            "1",
            "yes",
            "on",
            "t",
            "y",
        )
        return await self._on_device(
            device, "read", self._get, device, part, account, params, allow_reserved
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        start = time.monotonic()
        txn = request.headers.get("X-Trans-Id") or generate_trans_id()
        set_txn_id(txn)
        raw_path = request.raw_path.split("?", 1)[0]
        try:
            path = urllib.parse.unquote_to_bytes(raw_path).decode("utf-8")
        except UnicodeDecodeError:
            path = None
        try:
            if path is None:
                resp = respond(412, "Invalid UTF8")
            elif request.method not in ALLOWED_METHODS:
                resp = respond(405)
            elif request.method == "OPTIONS":
                allow = {"Allow": ", ".join(ALLOWED_METHODS), "Server": SERVER_NAME}
                resp = respond(200, b"", allow)
            else:
                resp = await self.dispatch(request, path)
        except HTTPError as err:
            resp = err.response
        except listing.ListingError as err:
            resp = respond(err.status, err.body, content_type=err.content_type)
            resp["default_body"] = err.status == 406
        except DeviceError as err:
            resp = device_error(err)
        except MetadataError as err:
            resp = respond(400, str(err))
        except LockTimeout as err:
            self.logger.error("lock timeout: %s", err)
            resp = respond(503)
        except DatabaseQuarantined as err:
            # The corrupt replica is gone; replication restores a good copy.
            self.logger.error("%s", err)
            resp = respond(500, "Database quarantined", content_type=TEXT_PLAIN)
        except DatabaseConnectionError:
            resp = respond(404)
        except (sqlite3.Error, OSError) as err:
            self.logger.exception("ERROR %s %s: %s", request.method, path, err)
            resp = respond(500)
        except Exception as err:  # never a traceback to the client, always a log line
            self.logger.exception("ERROR unexpected %s %s: %r", request.method, path, err)
            resp = respond(500)
        if request.method == "HEAD" and resp.get("default_body") and resp.body:
            # Swift builds no default error body for HEAD, so it sends no length.
            headers = {k: v for k, v in resp.headers.items() if k.lower() != "content-length"}
            resp = web.Response(status=resp.status, reason=resp.reason, headers=headers)
        if self.conf.log_requests:
            self.logger.info(
                '%s "%s %s" %d %.4f',
                request.remote,
                request.method,
                request.raw_path,
                resp.status,
                time.monotonic() - start,
            )
        return resp

    def close(self) -> None:
        self.devices.close()


def make_app(conf: AccountServerConfig, cluster: ClusterConfig | None = None) -> web.Application:
    """The aiohttp application for one worker."""
    server = AccountServer(conf, cluster)
    app = web.Application(client_max_size=1024**2)
    app["account_server"] = server
    # REPLICATE first: other verbs fall through to the catch-all route.
    add_replicate_route(
        app, ReplicationRpc(server.devices, AccountBroker, DATADIR, server.logger)
    )
    add_healthcheck_route(app)
    app.router.add_route("*", "/{tail:.*}", server.handle)

    async def on_cleanup(_app: web.Application) -> None:
        # Let in-flight device threads finish their current item, then stop them.
        await asyncio.sleep(0)
        server.close()

    app.on_cleanup.append(on_cleanup)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    args = list(argv if argv is not None else sys.argv[1:])
    # aiohttp's C parser refuses the REPLICATE verb (see the helper).
    reexec_with_python_parser("swiftlite.account.server", args)
    return server_main(
        args,
        AccountServerConfig,
        make_app,
        "swiftlite-account-server",
    )


if __name__ == "__main__":
    sys.exit(main())
