"""The container server: Swift's backend container API on aiohttp.

``/<device>/<partition>/<account>/<container>`` takes PUT, DELETE, HEAD, GET
and POST of the container; ``/<device>/<partition>/<account>/<container>/<obj>``
takes the object servers' row updates (PUT, DELETE). Statuses, headers and
bodies are Swift's, so a Swift proxy or object server can drive it.

Per-disk isolation (DESIGN 5): every request takes one of its device's
in-flight slots first (503 with ``X-Disk-Usage`` at ``disk_limit``), then does
all its SQLite and file work in that device's threads. Object row updates for
one container are group-committed to its pending file (:mod:`.batcher`).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from aiohttp import web

from swiftlite.common import listing
from swiftlite.common.config import ClusterConfig, config_true_value, load_cluster_config
from swiftlite.common.constraints import check_utf8
from swiftlite.common.daemon import reexec_with_python_parser, server_main
from swiftlite.common.devices import DeviceBusy, DeviceError, DeviceManager
from swiftlite.common.http import add_healthcheck_route, split_path, swift_response
from swiftlite.common.logs import get_logger, set_txn_id
from swiftlite.common.timestamp import Timestamp
from swiftlite.container.account_update import (
    AccountUpdateError,
    AccountUpdater,
    account_targets,
    account_update_headers,
)
from swiftlite.container.backend import DATADIR as CONTAINER_DATADIR
from swiftlite.container.backend import ContainerBroker
from swiftlite.container.batcher import PendingBatcher
from swiftlite.container.config import ContainerServerConfig
from swiftlite.container.handlers import (
    BadRequest,
    Conflict,
    ContainerOps,
    NotFound,
)
from swiftlite.db.exceptions import (
    DatabaseConnectionError,
    DatabaseQuarantined,
    LockTimeout,
    MetadataError,
)
from swiftlite.db.replication_server import ReplicationRpc, add_replicate_route

T = TypeVar("T")

ALLOWED_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT")
SERVER_NAME = "container-server/swiftlite"
TEXT_PLAIN = "text/plain"
HTML = "text/html; charset=UTF-8"
RESERVED = "\x00"
POLICY_HEADER = "X-Backend-Storage-Policy-Index"


class HTTPError(Exception):
    """An early answer raised from request parsing."""

    def __init__(
        self,
        status: int,
        body: str | bytes | None = None,
        content_type: str | None = HTML,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = dict(headers or {})


def _wsgi_quote(text: str) -> str:
    """Quote as Swift's error texts do (UTF-8 bytes seen as latin-1, then quoted)."""
    return urllib.parse.quote(text.encode("utf-8").decode("latin-1"))


def _reserved_ok(name: str) -> bool:
    return RESERVED not in name or name.startswith(RESERVED)


def split_container_path(path: str, allow_object: bool) -> tuple[str, str, str, str, str | None]:
    """Swift's split_and_validate_path plus its reserved-namespace checks."""
    try:
        segs = split_path(path, 4, 5 if allow_object else 4, allow_object)
    except ValueError:
        raise HTTPError(400, f"Invalid path: {_wsgi_quote(path)}", TEXT_PLAIN) from None
    device, part, account, container = (s or "" for s in segs[:4])
    obj = segs[4] if allow_object else None
    for what, value in (("device", device), ("partition", part)):
        if not value or "/" in value or value in (".", ".."):
            raise HTTPError(400, f"Invalid {what}: {_wsgi_quote(value)}", TEXT_PLAIN)
    if not _reserved_ok(account):
        raise HTTPError(400, "Invalid reserved-namespace account")
    if not _reserved_ok(container):
        raise HTTPError(400, "Invalid reserved-namespace container")
    if obj and not account.startswith("."):
        if not _reserved_ok(obj):
            raise HTTPError(400, "Invalid reserved-namespace object")
        if container.startswith(RESERVED) and not obj.startswith(RESERVED):
            raise HTTPError(400, "Invalid user-namespace object in reserved-namespace container")
        if obj.startswith(RESERVED) and not container.startswith(RESERVED):
            raise HTTPError(400, "Invalid reserved-namespace object in user-namespace container")
    return device, part, account, container, obj


def request_timestamp(headers: Mapping[str, str]) -> Timestamp:
    raw = headers.get("X-Timestamp")
    if raw is None:
        raise HTTPError(400, "Missing X-Timestamp header", TEXT_PLAIN)
    try:
        return Timestamp(raw)
    except ValueError:
        raise HTTPError(400, "Invalid X-Timestamp header", TEXT_PLAIN) from None


def validate_sync_to(value: str, allowed_hosts: Sequence[str]) -> str | None:
    """Swift's validate_sync_to without a realms file: the error text, or None."""
    orig = value
    value = value.rstrip("/")
    if not value:
        return None
    if value.startswith("//"):
        data = value[2:].split("/")
        if len(data) != 4:
            return f"Invalid X-Container-Sync-To format {orig!r}"
        return f"No realm key for {data[0]!r}"
    parsed = urllib.parse.urlparse(value)
    if parsed.scheme not in ("http", "https"):
        return (
            f"Invalid scheme {parsed.scheme!r} in X-Container-Sync-To, "
            'must be "//", "http", or "https".'
        )
    if not parsed.path:
        return "Path required in X-Container-Sync-To"
    if parsed.params or parsed.query or parsed.fragment:
        return "Params, queries, and fragments not allowed in X-Container-Sync-To"
    if parsed.hostname not in allowed_hosts:
        return f"Invalid host {parsed.hostname!r} in X-Container-Sync-To"
    return None


def _int_header(headers: Mapping[str, str], name: str, default: int | None = None) -> int:
    value = headers.get(name)
    if value is None:
        if default is None:
            raise HTTPError(400, f"Missing {name} header", TEXT_PLAIN)
        return default
    try:
        return int(value)
    except ValueError:
        raise HTTPError(400, f"Invalid {name} header", TEXT_PLAIN) from None


class ContainerServer:
    """Request handling; one instance per worker process."""

    def __init__(
        self,
        conf: ContainerServerConfig,
        cluster: ClusterConfig | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.conf = conf
        self.cluster = cluster if cluster is not None else load_cluster_config(conf.swift_dir)
        self.constraints = self.cluster.constraints
        self.logger = logger or get_logger(conf.log_name, conf.log_level, conf.log_file)
        self.devices = DeviceManager(
            conf.devices,
            mount_check=conf.mount_check,
            disk_limit=conf.disk_limit,
            threads_per_disk=conf.threads_per_disk,
            fallocate_reserve=conf.fallocate_reserve,
        )
        self.ops = ContainerOps(
            self.devices,
            {
                "timeout": conf.db_timeout,
                "pending_timeout": conf.pending_timeout,
                "fsync_pending": conf.fsync_pending,
                "logger": self.logger,
                "max_meta_count": self.constraints.max_meta_count,
                "max_meta_overall_size": self.constraints.max_meta_overall_size,
            },
            conf.read_pending_timeout,
        )
        self.batcher = PendingBatcher(conf.max_batch, conf.max_inflight_batches)
        self._queued: dict[str, int] = {}
        self.account_updater = AccountUpdater(conf.conn_timeout, conf.node_timeout, self.logger)
        self.auto_create_prefix = self.constraints.auto_create_account_prefix

    # -- helpers --------------------------------------------------------------

    def policy_index(self, headers: Mapping[str, str]) -> int | None:
        """X-Backend-Storage-Policy-Index, or None; 400 for an unknown policy."""
        raw = headers.get(POLICY_HEADER)
        if raw is None:
            return None
        try:
            index = int(raw)
        except ValueError:
            # Swift's message shows the value as parsed so far: repr of the
            # string when it is not a number, the number otherwise.
            raise HTTPError(400, f"Invalid {POLICY_HEADER} {raw!r}", TEXT_PLAIN) from None
        if not any(p.index == index for p in self.cluster.policies):
            raise HTTPError(400, f"Invalid {POLICY_HEADER} {index!r}", TEXT_PLAIN)
        return index

    def should_autocreate(self, account: str, headers: Mapping[str, str]) -> bool:
        explicit = headers.get("X-Backend-Auto-Create")
        if explicit:
            return config_true_value(explicit)
        if account.startswith(self.auto_create_prefix + "shards_"):
            return False
        return account.startswith(self.auto_create_prefix)

    async def on_device(
        self, device: str, kind: str, fn: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        async with self.devices.slot(device, kind=kind):
            return await self.devices.run(
                device, fn, *args, priority="read" if kind == "read" else "write", **kwargs
            )

    async def account_update(
        self, request: web.Request, account: str, container: str, info: Mapping[str, Any]
    ) -> web.Response | None:
        """None, or the response that replaces the container's own (400/404)."""
        try:
            targets = account_targets(request.headers)
        except AccountUpdateError as exc:
            self.logger.error("ERROR Account update failed: %s", exc)
            return respond(400)
        referer = f"{request.method} http://{request.host}{request.raw_path}"
        headers = account_update_headers(info, request.headers, referer)
        if await self.account_updater.update(targets, account, container, headers):
            return respond(404)
        return None

    # -- verbs ----------------------------------------------------------------

    async def object_update(
        self,
        request: web.Request,
        device: str,
        part: str,
        account: str,
        container: str,
        obj: str,
        ts: Timestamp,
    ) -> web.Response:
        headers = request.headers
        policy = self.policy_index(headers)
        autocreate = self.should_autocreate(account, headers)
        if request.method == "PUT":
            delete_at = headers.get("X-Delete-At")
            expires = None
            if delete_at:
                try:
                    expires = int(Timestamp(delete_at))
                except ValueError:
                    raise HTTPError(400, "Non-integer X-Delete-At", TEXT_PLAIN) from None
            record = {
                "name": obj,
                "created_at": ts.internal,
                "size": _int_header(headers, "X-Size"),
                "content_type": headers.get("X-Content-Type")
                or _missing(headers, "X-Content-Type"),
                "etag": headers.get("X-Etag") or _missing(headers, "X-Etag"),
                "deleted": 0,
                "storage_policy_index": policy or 0,
                "ctype_timestamp": headers.get("X-Content-Type-Timestamp") or None,
                "meta_timestamp": headers.get("X-Meta-Timestamp") or None,
                "expires": expires,
            }
            for key in ("ctype_timestamp", "meta_timestamp"):
                if record[key] is not None:
                    try:
                        record[key] = Timestamp(record[key]).internal
                    except ValueError:
                        raise HTTPError(400, f"Invalid {key}", TEXT_PLAIN) from None
            status = 201
        else:
            record = {
                "name": obj,
                "created_at": ts.internal,
                "size": 0,
                "content_type": "application/deleted",
                "etag": "noetag",
                "deleted": 1,
                "storage_policy_index": policy or 0,
                "ctype_timestamp": None,
                "meta_timestamp": None,
                "expires": None,
            }
            status = 204

        async def run_batch(records: list[dict[str, Any]]) -> None:
            # One in-flight slot per batch, not per queued update: waiting in
            # the queue costs no thread and no disk time.
            async with self.devices.slot(device, kind="write"):
                await self.devices.run(
                    device,
                    self.ops.object_updates,
                    device,
                    part,
                    account,
                    container,
                    records,
                    autocreate,
                    priority="write",
                )

        # A stalled disk must not collect an unbounded queue: past the cap,
        # answer 503 at once like any busy device.
        queued = self._queued.get(device, 0)
        if queued >= self.conf.max_queued_updates:
            raise DeviceBusy(device, queued)
        self._queued[device] = queued + 1
        try:
            # One queue per DB and autocreate choice: a batch runs with the
            # choice of whichever request started its drain.
            key = f"{device}/{part}/{account}/{container}/{int(autocreate)}"
            await self.batcher.submit(key, record, run_batch)
        finally:
            self._queued[device] -= 1
        return _answer(status)

    async def put(self, request: web.Request, path: str) -> web.Response:
        device, part, account, container, obj = split_container_path(path, True)
        ts = request_timestamp(request.headers)
        headers = request.headers
        if "X-Container-Sync-To" in headers:
            err = validate_sync_to(headers["X-Container-Sync-To"], self.conf.allowed_sync_hosts)
            if err:
                raise HTTPError(400, err)
        if obj:
            return await self.object_update(request, device, part, account, container, obj, ts)
        if headers.get("X-Backend-Record-Type", "").lower() == "shard":
            # Shard-range PUTs come from Swift's sharder: not supported.
            raise HTTPError(501, "shard ranges are not supported", TEXT_PLAIN)
        requested = self.policy_index(headers)
        if requested is None:
            default = headers.get("X-Backend-Storage-Policy-Default")
            new_policy = int(default) if default else self.cluster.default_policy.index
        else:
            new_policy = requested
        result = await self.on_device(
            device,
            "write",
            self.ops.put_container,
            device,
            part,
            account,
            container,
            dict(headers),
            ts.internal,
            requested,
            new_policy,
        )
        assert result.info is not None
        replaced = await self.account_update(request, account, container, result.info)
        if replaced is not None:
            return replaced
        return _answer(result.status, result.headers)

    async def delete(self, request: web.Request, path: str) -> web.Response:
        device, part, account, container, obj = split_container_path(path, True)
        ts = request_timestamp(request.headers)
        if obj:
            return await self.object_update(request, device, part, account, container, obj, ts)
        result = await self.on_device(
            device,
            "write",
            self.ops.delete_container,
            device,
            part,
            account,
            container,
            ts.internal,
        )
        assert result.info is not None
        replaced = await self.account_update(request, account, container, result.info)
        if replaced is not None:
            return replaced
        return _answer(result.status)

    async def post(self, request: web.Request, path: str) -> web.Response:
        device, part, account, container, _ = split_container_path(path, False)
        ts = request_timestamp(request.headers)
        headers = request.headers
        if "X-Container-Sync-To" in headers:
            err = validate_sync_to(headers["X-Container-Sync-To"], self.conf.allowed_sync_hosts)
            if err:
                raise HTTPError(400, err)
        result = await self.on_device(
            device,
            "write",
            self.ops.post_container,
            device,
            part,
            account,
            container,
            dict(headers),
            ts.internal,
            not config_true_value(headers.get("X-Backend-No-Timestamp-Update", "")),
        )
        return _answer(result.status)

    async def head(self, request: web.Request, path: str) -> web.Response:
        device, part, account, container, _ = split_container_path(path, True)
        content_type = listing.head_content_type(
            request.rel_url.raw_query_string, request.headers.get("Accept")
        )
        result = await self.on_device(
            device, "read", self.ops.head_container, device, part, account, container, content_type
        )
        if result.status == 404:
            return respond(404, headers=result.headers)
        return web.Response(status=204, headers=result.headers)

    async def get(self, request: web.Request, path: str) -> web.Response:
        device, part, account, container, _ = split_container_path(path, True)
        params = listing.parse_container_listing_params(
            request.rel_url.raw_query_string,
            request.headers.get("Accept"),
            self.constraints.container_listing_limit,
        )
        requested = self.policy_index(request.headers)
        allow_reserved = config_true_value(
            request.headers.get("X-Backend-Allow-Reserved-Names", "")
        )
        # Swift proxies and sharders may ask for shard ranges; swiftlite does
        # not shard (yet), so the answer is Swift's for an unsharded container.
        shard_format = None
        if request.headers.get("X-Backend-Record-Type", "").lower() == "shard":
            wanted = request.headers.get("X-Backend-Record-Shard-Format", "full").lower()
            shard_format = "namespace" if wanted == "namespace" else "full"
        result, records = await self.on_device(
            device,
            "read",
            self.ops.get_container,
            device,
            part,
            account,
            container,
            params,
            requested,
            allow_reserved,
            shard_format,
        )
        if result.status == 404:
            return respond(404, headers=result.headers)
        body = listing.format_container_listing(records, params.content_type, container)
        headers = dict(result.headers)
        headers["Content-Type"] = listing.response_content_type(params.content_type)
        if not body:
            return web.Response(status=204, headers=headers)
        return web.Response(status=200, body=body, headers=headers)

    # -- dispatch -------------------------------------------------------------

    async def dispatch(self, request: web.Request) -> web.Response:
        raw_path = request.raw_path.split("?", 1)[0]
        try:
            path = urllib.parse.unquote_to_bytes(raw_path).decode("utf-8")
        except UnicodeDecodeError:
            path = None
        # NUL is allowed here: it starts reserved-namespace names, which
        # split_container_path validates (Swift's check_utf8(internal=True)).
        if path is None or not check_utf8(path.replace("\x00", "")):
            return respond(412, "Invalid UTF8 or contains NULL")
        method = request.method
        if method not in ALLOWED_METHODS:
            return respond(405)
        if method == "OPTIONS":
            return respond(200, b"", {"Allow": ", ".join(ALLOWED_METHODS), "Server": SERVER_NAME})
        handler = {
            "PUT": self.put,
            "DELETE": self.delete,
            "POST": self.post,
            "HEAD": self.head,
            "GET": self.get,
        }[method]
        return await handler(request, path)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        start = time.monotonic()
        # The caller's id (proxies and object servers always send one); no
        # id is invented, which would cost a urandom call per update.
        set_txn_id(request.headers.get("X-Trans-Id"))
        try:
            resp = await self.dispatch(request)
        except HTTPError as err:
            resp = respond(err.status, err.body, err.headers, content_type=err.content_type)
        except listing.ListingError as err:
            resp = respond(err.status, err.body, content_type=err.content_type)
            resp["default_body"] = err.status == 406
        except DeviceError as err:
            headers = {"X-Disk-Usage": str(err.in_flight)} if isinstance(err, DeviceBusy) else {}
            resp = respond(err.status, headers=headers, drive=err.device)
        except Conflict as err:
            resp = respond(409, headers=err.headers)
        except (NotFound, DatabaseConnectionError):
            resp = respond(404)
        except (BadRequest, MetadataError) as err:
            resp = respond(400, str(err))
        except LockTimeout as err:
            self.logger.error("lock timeout: %s", err)
            resp = respond(503)
        except DatabaseQuarantined as err:
            # The corrupt replica is gone; replication brings a good copy back.
            self.logger.error("%s", err)
            resp = respond(500, "Database quarantined", content_type=TEXT_PLAIN)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            self.logger.exception(
                "ERROR __call__ error with %s %s: %s", request.method, request.path, err
            )
            resp = respond(500)
        if request.method == "HEAD" and resp.get("default_body") and resp.body:
            # Swift builds no default error body for HEAD, so sends no length.
            headers = {k: v for k, v in resp.headers.items() if k.lower() != "content-length"}
            resp = web.Response(status=resp.status, reason=resp.reason, headers=headers)
        if self.conf.log_requests and self.logger.isEnabledFor(logging.INFO):
            self.logger.info(
                '%s "%s %s" %d %.4f',
                request.remote,
                request.method,
                request.raw_path,
                resp.status,
                time.monotonic() - start,
            )
        return resp

    async def close(self) -> None:
        await self.batcher.close()
        await self.account_updater.close()
        self.devices.close()


def respond(
    status: int,
    body: str | bytes | None = None,
    headers: Mapping[str, str] | None = None,
    content_type: str | None = HTML,
    drive: str = "unknown",
) -> web.Response:
    """An answer as swob makes it: Swift's default body when none is given,
    text/html unless told otherwise."""
    if body is None and status in (201, 204):
        body = b""
    resp = swift_response(status, body, headers, content_type=content_type, drive=drive)
    # Swift builds no default body for HEAD (so sends no length for one).
    resp["default_body"] = body is None
    return resp


_BODYLESS = {"Content-Type": HTML}


def _answer(status: int, headers: Mapping[str, str] | None = None) -> web.Response:
    if status in (201, 204):
        # The hot path (object rows): what respond() would build, directly.
        return web.Response(
            status=status, headers={**_BODYLESS, **headers} if headers else _BODYLESS
        )
    return respond(status, None, headers)


def _missing(headers: Mapping[str, str], name: str) -> str:
    raise HTTPError(400, f"Missing {name} header", TEXT_PLAIN)


def make_app(conf: ContainerServerConfig, cluster: ClusterConfig | None = None) -> web.Application:
    """The aiohttp application for one worker."""
    server = ContainerServer(conf, cluster)
    app = web.Application(client_max_size=1024**2)
    app["container_server"] = server
    # REPLICATE first: other verbs fall through to the catch-all route.
    add_replicate_route(
        app, ReplicationRpc(server.devices, ContainerBroker, CONTAINER_DATADIR, server.logger)
    )
    add_healthcheck_route(app)
    app.router.add_route("*", "/{tail:.*}", server.handle)

    async def on_cleanup(_app: web.Application) -> None:
        await server.close()

    app.on_cleanup.append(on_cleanup)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    """``swiftlite-container-server <conf.yaml> [-v]``."""
    args = list(argv if argv is not None else sys.argv[1:])
    # aiohttp's C parser refuses the REPLICATE verb (see the helper).
    reexec_with_python_parser("swiftlite.container.server", args)
    return server_main(
        args,
        ContainerServerConfig,
        make_app,
        "swiftlite-container-server",
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
