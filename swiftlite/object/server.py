"""The object server: Swift's backend object API on aiohttp.

``/<device>/<partition>/<account>/<container>/<object>`` takes PUT, GET,
HEAD, DELETE and POST with the statuses and headers of Swift's object server,
so Swift's own proxy can drive it; ``REPLICATE /<device>/<partition>[/<suf>-
<suf>...]`` answers the partition's suffix hashes as JSON; ``GET
/healthcheck`` answers ``OK``; ``GET /diskio`` shows per-device in-flight
counts.

Per-disk isolation (DESIGN 5): every request on a device first takes one of
that device's in-flight slots, which never waits (503 with ``X-Disk-Usage``
at ``disk_limit``), then does all its disk work in the device's own threads
(``DeviceManager.run``).  The event loop only parses, decides and moves
bytes between sockets, so a stalled disk costs its own requests only.

The handlers for reads live in :mod:`swiftlite.object.read_handlers`, those
for writes in :mod:`swiftlite.object.write_handlers`; this module holds the
application, the dispatch and the error mapping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from swiftlite.common.config import ClusterConfig, ConfigError, load_cluster_config, load_config
from swiftlite.common.daemon import (
    load_or_exit,
    parse_args,
    reexec_with_python_parser,
    run_server,
)
from swiftlite.common.devices import DeviceError, DeviceManager, device_error_response
from swiftlite.common.http import swift_response
from swiftlite.common.logs import get_logger, set_txn_id, txn_id
from swiftlite.object import tmp_sweep
from swiftlite.object.config import ObjectServerConfig
from swiftlite.object.disk_ops import Refused
from swiftlite.object.diskfile import (
    DiskFileCollision,
    DiskFileDeviceUnavailable,
    DiskFileManager,
    DiskFileNoSpace,
)
from swiftlite.object.request_checks import HTTPError, decode_path
from swiftlite.object.updates import ContainerUpdater

Handler = Callable[[web.Request, str], Awaitable[web.StreamResponse]]

REPLICATION_METHODS = frozenset({"REPLICATE", "REPCONN"})


class ObjectServer:
    """One worker's object server: config, devices, storage, updates.

    Without ``cluster`` the cluster file in ``swift_dir`` is loaded, which
    also installs the hash path secrets; a caller passing ``cluster`` (tests,
    an all-in-one process) installs them itself.
    """

    def __init__(
        self,
        conf: ObjectServerConfig,
        cluster: ClusterConfig | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.conf = conf
        if cluster is None:
            cluster = load_cluster_config(conf.swift_dir)
        self.cluster = cluster
        self.constraints = cluster.constraints
        self.logger = logger or get_logger(conf.log_name, conf.log_level, conf.log_file)
        self.dm = DeviceManager(
            conf.devices,
            mount_check=conf.mount_check,
            disk_limit=conf.disk_limit,
            threads_per_disk=conf.threads_per_disk,
            fallocate_reserve=conf.fallocate_reserve,
        )
        # The DeviceManager does the mount check (in the device's threads);
        # the diskfile layer only needs the directory to exist.
        self.mgr = DiskFileManager(
            conf.devices,
            reclaim_age=conf.reclaim_age,
            mount_check=False,
            fallocate_reserve=conf.fallocate_reserve,
        )
        self.updater = ContainerUpdater(
            self.dm,
            conn_timeout=conf.conn_timeout,
            node_timeout=conf.node_timeout,
            update_timeout=conf.container_update_timeout,
            logger=self.logger,
        )
        self.allowed_headers = frozenset(conf.allowed_headers)
        # Imported here: the handler modules import names from this one.
        from swiftlite.object import read_handlers, repconn, write_handlers

        self.methods: dict[str, Handler] = {
            "GET": lambda req, path: read_handlers.get_or_head(self, req, path, head=False),
            "HEAD": lambda req, path: read_handlers.get_or_head(self, req, path, head=True),
            "PUT": lambda req, path: write_handlers.put(self, req, path),
            "DELETE": lambda req, path: write_handlers.delete(self, req, path),
            "POST": lambda req, path: write_handlers.post(self, req, path),
            "REPLICATE": lambda req, path: read_handlers.replicate(self, req, path),
            "REPCONN": lambda req, path: repconn.handle_repconn(self, req, path),
        }
        if conf.replication_server is True:
            self.methods = {m: h for m, h in self.methods.items() if m in REPLICATION_METHODS}
        elif conf.replication_server is False:
            self.methods = {
                m: h for m, h in self.methods.items() if m not in REPLICATION_METHODS
            }

    # -- application ---------------------------------------------------------

    def make_app(self) -> web.Application:
        # auto_decompress off: a Content-Encoding of the object (gzip, say)
        # describes the stored bytes; the server must not inflate them.
        # lingering_time 0: a refused body (409/412/413 before 100 Continue)
        # is never read, so close the connection instead of draining it.
        app = web.Application(
            client_max_size=0,
            handler_args={"auto_decompress": False, "lingering_time": 0},
        )
        # Swift answers a 409/412/507 instead of "100 Continue", so the
        # proxy never sends a body that would be refused: the PUT handler
        # sends the 100 itself once its checks pass.
        app.router.add_route("*", "/{tail:.*}", self.handle, expect_handler=_no_expect)
        app.on_startup.append(self._start_background)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _start_background(self, app: web.Application) -> None:
        self._sweeper = asyncio.create_task(
            tmp_sweep.sweep_forever(
                self.dm,
                self.mgr,
                [p.index for p in self.cluster.policies],
                self.conf.tmp_max_age,
                self.conf.tmp_sweep_interval,
                self.logger,
            )
        )

    async def _cleanup(self, app: web.Application) -> None:
        sweeper = getattr(self, "_sweeper", None)
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        await self.updater.close()
        self.dm.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        token = set_txn_id(request.headers.get("X-Trans-Id"))
        start = time.monotonic()
        try:
            resp = await self._dispatch(request)
        except asyncio.CancelledError:
            # aiohttp cancels the handler when the client goes away: Swift
            # logs that as 499 (Client Disconnect).
            if self.conf.log_requests:
                self._log_request(request, 499, None, time.monotonic() - start)
            raise
        finally:
            txn_id.reset(token)
        if self.conf.log_requests:
            self._log_request(request, resp.status, resp.content_length, time.monotonic() - start)
        return resp

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        try:
            path = decode_path(request.raw_path)
            if path == "/healthcheck" and request.method in ("GET", "HEAD"):
                return swift_response(200, "OK", content_type="text/plain")
            if path == "/diskio" and request.method in ("GET", "HEAD"):
                return self._diskio()
            handler = self.methods.get(request.method)
            if handler is None:
                return swift_response(405, headers={"Allow": ", ".join(sorted(self.methods))})
            return await handler(request, path)
        except HTTPError as exc:
            return swift_response(
                exc.status,
                exc.body,
                exc.headers,
                content_type="text/plain" if exc.body is not None else None,
            )
        except Refused as exc:
            return swift_response(
                exc.status,
                exc.body,
                exc.headers,
                content_type="text/plain" if exc.body is not None else None,
            )
        except DeviceError as exc:
            return device_error_response(exc)
        except (DiskFileDeviceUnavailable, DiskFileNoSpace):
            return swift_response(507, drive=_device_of(request))
        except DiskFileCollision:
            return swift_response(403)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.logger.exception("ERROR __call__ error with %s %s", request.method, request.path)
            return swift_response(500)

    def _diskio(self) -> web.Response:
        body = {
            "disk_limit": self.conf.disk_limit,
            "in_flight": self.dm.usage(),
            "in_flight_by_kind": self.dm.usage_by_kind(),
            "container_updates_in_flight": self.updater.in_flight,
            "pid": os.getpid(),
        }
        return web.Response(text=json.dumps(body, sort_keys=True), content_type="application/json")

    def _log_request(
        self, request: web.Request, status: int, content_length: int | None, elapsed: float
    ) -> None:
        level = logging.DEBUG
        if request.method not in REPLICATION_METHODS and "X-Backend-Replication" not in request.headers:
            level = logging.INFO
        if not self.logger.isEnabledFor(level):
            return
        length = content_length if content_length is not None else "-"
        self.logger.log(
            level,
            '%s - - "%s %s" %s %s "%s" "%s" "%s" %.4f',
            request.remote or "-",
            request.method,
            request.raw_path,
            status,
            length,
            request.headers.get("Referer", "-"),
            request.headers.get("X-Trans-Id", "-"),
            request.headers.get("User-Agent", "-"),
            elapsed,
        )


async def _no_expect(request: web.Request) -> None:
    return None


def _device_of(request: web.Request) -> str:
    parts = request.path.split("/")
    return parts[1] if len(parts) > 1 else "unknown"


def make_app(conf: ObjectServerConfig, cluster: ClusterConfig | None = None) -> web.Application:
    """The aiohttp application for ``conf`` (one per worker process)."""
    return ObjectServer(conf, cluster).make_app()


def main(argv: Sequence[str] | None = None) -> int:
    """``swiftlite-object-server <conf.yaml> [-v]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    conf_path, _once, verbose = parse_args(args, "swiftlite-object-server")
    conf = load_or_exit(conf_path, ObjectServerConfig)
    if conf.replication_server is not False:
        reexec_with_python_parser("swiftlite.object.server", args)
    if verbose:
        conf.log_level = "DEBUG"
    try:
        # Fail in the parent, with a message, rather than in every worker.
        load_cluster_config(conf.swift_dir)
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return run_server(
        conf, make_app, reload_conf=lambda: load_config(conf_path, ObjectServerConfig)
    )


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
