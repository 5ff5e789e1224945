"""proxy_logging: one access-log line per request, in Swift's format.

Swift's default line (``log_msg_template``), each field URL-quoted and ``-``
when empty or zero, so a line splits on spaces::

    client_ip remote_addr end_time.datetime method path protocol status_int
    referer user_agent auth_token bytes_recvd bytes_sent client_etag
    transaction_id headers request_time source log_info start_time end_time
    policy_index access_user_id

(``access_user_id``, the user tempauth saw, ends the line since Swift 2.38.)
As in Swift the middleware may appear twice in the pipeline: the outer one
logs client requests, an inner one the subrequests middleware make (tagged
with their ``swift.source``); a request is never logged twice.

Settings (Swift's names): ``access_log_name`` (logger name, default
``proxy-server``), ``access_log_level`` (INFO), ``access_log_file`` (a file
instead of the proxy's ``log_file``/stderr; swiftlite's own),
``log_msg_template``, ``reveal_sensitive_prefix`` (16: how much of a token
is logged), ``access_log_headers`` / ``access_log_headers_only``. Swift's
syslog and statsd settings are accepted and ignored.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import queue
import string
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qsl, quote, unquote_to_bytes, urlencode

from aiohttp import web

from swiftlite.common.config import ConfigError
from swiftlite.common.logs import LOG_FORMAT, TxnIdFilter, get_logger, txn_id
from swiftlite.proxy.pipeline import Handler, Middleware, PipelineContext
from swiftlite.proxy.request_body import BODY_KEY

LOGGED = "swift.proxy_access_log_made"
DEFAULT_TEMPLATE = (
    "{client_ip} {remote_addr} {end_time.datetime} {method} "
    "{path} {protocol} {status_int} {referer} {user_agent} "
    "{auth_token} {bytes_recvd} {bytes_sent} {client_etag} "
    "{transaction_id} {headers} {request_time} {source} "
    "{log_info} {start_time} {end_time} {policy_index} "
    "{access_user_id}"
)
SENSITIVE_HEADERS = ("x-auth-token", "x-storage-token")
SENSITIVE_PARAMS = frozenset({"temp_url_sig", "Signature", "X-Amz-Signature"})
_IGNORED_PREFIXES = (
    "access_log_facility", "access_log_udp", "access_log_statsd", "access_log_route",
    "log_facility", "log_udp", "log_statsd", "statsd_", "log_anonymization",
    "access_log_statsd_valid_http_methods", "log_statsd_valid_http_methods",
)
_STRFTIME = frozenset("aAbBcdHIjmMpSUwWxXyYZ")


class AccessLogWriter:
    """Writes access-log records from one background thread per process.

    A line per request written from the event loop would block it whenever
    the log file or stderr pipe is slow (a full pipe blocks outright), so the
    loop only queues the record. The thread starts on first use (after a
    worker forks) and the queue is drained at exit; :meth:`flush` waits for
    it (tests, shutdown)."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[tuple[logging.Logger, logging.LogRecord] | None] = (
            queue.SimpleQueue()
        )
        self.thread: threading.Thread | None = None
        self.pid = 0
        self.lock = threading.Lock()
        self.pending = 0
        self.idle = threading.Condition(self.lock)

    def put(self, logger: logging.Logger, record: logging.LogRecord) -> None:
        if self.thread is None or self.pid != os.getpid() or not self.thread.is_alive():
            self._start()
        with self.lock:
            self.pending += 1
        self.queue.put((logger, record))

    def _start(self) -> None:
        with self.lock:
            if self.thread is not None and self.pid == os.getpid() and self.thread.is_alive():
                return
            # After a fork the parent's queue state is meaningless here.
            self.queue = queue.SimpleQueue()
            self.pending = 0
            self.pid = os.getpid()
            self.thread = threading.Thread(target=self._run, name="access-log", daemon=True)
            self.thread.start()
            atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            logger, record = item
            try:
                logger.handle(record)
            except Exception:  # a broken handler must not stop the writer
                pass
            finally:
                with self.lock:
                    self.pending -= 1
                    if self.pending == 0:
                        self.idle.notify_all()

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every queued line has been handed to its handlers."""
        with self.lock:
            self.idle.wait_for(lambda: self.pending == 0, timeout)


WRITER = AccessLogWriter()


class LogTime:
    """A time as Swift's log templates see it: ``{end_time}`` is
    ``%.9f`` seconds, ``{end_time.datetime}`` is ``%d/%b/%Y/%H/%M/%S``, and
    so on."""

    def __init__(self, ts: float) -> None:
        self.time = ts
        self.struct = time.gmtime(ts)

    def __str__(self) -> str:
        return f"{self.time:.9f}"

    def __getattr__(self, attr: str) -> str:
        if attr not in _STRFTIME:
            raise AttributeError(f"{attr} is not a strftime directive")
        return time.strftime("%" + attr, self.struct)

    @property
    def datetime(self) -> str:
        return time.strftime("%d/%b/%Y/%H/%M/%S", self.struct)

    @property
    def iso8601(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", self.struct)

    @property
    def asctime(self) -> str:
        return time.asctime(self.struct)

    @property
    def s(self) -> str:
        return str(self).split(".")[0]

    @property
    def ms(self) -> str:
        return str(self).split(".")[1][:3]

    @property
    def us(self) -> str:
        return str(self).split(".")[1][:6]

    @property
    def ns(self) -> str:
        return str(self).split(".")[1]


class LogFormatter(string.Formatter):
    """Empty or zero fields become ``-``; every field is URL-quoted."""

    def format_field(self, value: Any, format_spec: str) -> str:
        if not value:
            return "-"
        return quote(super().format_field(value, format_spec), ":/{}")


def cap_length(value: str | None, max_length: int) -> str | None:
    if value and len(value) > max_length:
        return value[:max_length] + "..."
    return value


def client_ip(request: web.Request) -> str | None:
    client = request.headers.get("X-Cluster-Client-Ip")
    if not client and "X-Forwarded-For" in request.headers:
        client = request.headers["X-Forwarded-For"].split(",")[0].strip()
    return client or request.remote


def logged_path(request: web.Request, reveal: int) -> str:
    """Swift's ``req.path_qs``: the unquoted path quoted again (so ``%20``
    becomes ``%2520`` once the field is quoted), the raw query, sensitive
    parameters cut to ``reveal`` characters."""
    raw_path, _, query = request.raw_path.partition("?")
    path = quote(unquote_to_bytes(raw_path), safe="/")
    if query:
        params = parse_qsl(query, keep_blank_values=True)
        if any(k in SENSITIVE_PARAMS for k, _v in params):
            query = urlencode(
                [(k, cap_length(v, reveal) if k in SENSITIVE_PARAMS else v) for k, v in params]
            )
        path += "?" + query
    return path


class _CountingBody:
    """Counts the bytes of a subrequest body as the layers below read it."""

    def __init__(self, body: AsyncIterable[bytes]) -> None:
        self.body = body
        self.count = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.body:
            self.count += len(chunk)
            yield chunk


def bytes_sent(request: web.Request, response: web.StreamResponse) -> int:
    if request.method == "HEAD":
        return 0
    if not response.prepared:
        if isinstance(response, web.Response):
            body = response.body
            if isinstance(body, bytes | bytearray):
                return len(body)
            return response.content_length or 0
        return 0
    # A streamed answer: complete once its end was written. Its declared
    # length is what went out (body_length would count headers too).
    if response.body_length:
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit():
            return int(length)
        return response.body_length
    return 0


def access_logger(
    name: str, level: str, access_file: str | None, proxy_file: str | None
) -> logging.Logger:
    """The proxy's own logger setup (named ``name``), or with
    ``access_log_file`` a logger of that name writing to that file only. The
    latter is not registered by name: ``proxy-server`` (the default name) is
    also the proxy's logger, whose destination must not change."""
    if not access_file:
        return get_logger(name, level, proxy_file)
    logger = logging.Logger(name, level.upper())
    handler = logging.FileHandler(access_file)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(TxnIdFilter())
    logger.addHandler(handler)
    logger.propagate = False
    return logger


def factory(conf: dict[str, Any], ctx: PipelineContext) -> Middleware:
    name = str(conf.pop("access_log_name", "proxy-server"))
    level = str(conf.pop("access_log_level", "INFO"))
    access_file = conf.pop("access_log_file", None)
    template = str(conf.pop("log_msg_template", DEFAULT_TEMPLATE))
    try:
        reveal = int(conf.pop("reveal_sensitive_prefix", 16))
    except (TypeError, ValueError):
        raise ConfigError("reveal_sensitive_prefix must be an integer") from None
    log_hdrs_value = conf.pop("access_log_headers", conf.pop("log_headers", False))
    log_hdrs = str(log_hdrs_value).lower() in ("true", "1", "yes", "on", "t", "y")
    only = conf.pop("access_log_headers_only", "") or ""
    items = only if isinstance(only, list) else str(only).split(",")
    log_hdrs_only = [str(h).strip().title() for h in items if str(h).strip()]
    for key in [k for k in conf if k.startswith(_IGNORED_PREFIXES)]:
        conf.pop(key)
    if conf:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(conf))}")
    try:
        logger = access_logger(name, level, access_file, ctx.conf.log_file)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"access log: {exc}") from None
    formatter = LogFormatter()
    sample = _fields(None, 0, 0, 0, 1000000.0, 1000001.0, {}, reveal, False, [])
    try:
        formatter.format(template, **sample)
    except Exception as exc:
        raise ConfigError(f"Cannot interpolate log_msg_template: {exc}") from None

    def emit(line: str) -> None:
        # The transaction id is a field already; keep the line splittable
        # (the proxy's log handler would append " (txn: ...)").
        if not logger.isEnabledFor(logging.INFO):
            return
        token = txn_id.set(None)
        try:
            record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, line, (), None)
        finally:
            txn_id.reset(token)
        record.txn_id = None
        WRITER.put(logger, record)

    def log(
        request: web.Request,
        status: int,
        received: int,
        sent: int,
        start: float,
        resp_headers: Any,
    ) -> None:
        fields = _fields(
            request, status, received, sent, start, time.time(), resp_headers,
            reveal, log_hdrs, log_hdrs_only,
        )
        emit(formatter.format(template, **fields))

    async def proxy_logging(request: web.Request, handler: Handler) -> web.StreamResponse:
        # A clone of a logged request (same method, path and source) is the
        # same request seen lower in the pipeline; a subrequest differs.
        key = (request.method, request.raw_path, request.get("swift.source"))
        if request.get(LOGGED) == key:
            return await handler(request)
        request[LOGGED] = key
        start = time.time()
        counter: _CountingBody | None = None
        body = request.get(BODY_KEY)
        received: Callable[[], int]
        if body is None:
            content = request.content
            received = lambda: int(getattr(content, "total_bytes", 0) or 0)  # noqa: E731
        elif isinstance(body, bytes | bytearray):
            size = len(body)
            received = lambda: size  # noqa: E731
        else:
            counter = _CountingBody(body)
            request[BODY_KEY] = counter
            received = lambda: counter.count if counter else 0  # noqa: E731
        try:
            response = await handler(request)
        except (asyncio.CancelledError, ConnectionResetError):
            log(request, 499, received(), 0, start, {})
            raise
        except web.HTTPException as exc:
            log(request, exc.status, received(), len(exc.body or b"")
                if isinstance(exc.body, bytes) else 0, start, exc.headers)
            raise
        except Exception:
            log(request, 500, received(), 0, start, {})
            raise
        status = request.get("swift.proxy_logging_status") or response.status
        log(request, int(status), received(), bytes_sent(request, response), start,
            response.headers)
        return response

    return proxy_logging


def _fields(
    request: web.Request | None,
    status: int,
    received: int,
    sent: int,
    start: float,
    end: float,
    resp_headers: Any,
    reveal: int,
    log_hdrs: bool,
    log_hdrs_only: list[str],
) -> dict[str, Any]:
    """The template's fields for one request (a placeholder set when
    ``request`` is None, to check the template at start-up)."""
    if request is None:
        return {
            "client_ip": "1.2.3.4", "remote_addr": "4.3.2.1", "end_time": LogTime(end),
            "start_time": LogTime(start), "method": "GET", "path": "/", "protocol": "",
            "status_int": "0", "referer": "ref", "user_agent": "swift",
            "auth_token": "1234...", "bytes_recvd": "1", "bytes_sent": "0",
            "client_etag": "etag", "transaction_id": "tx1234", "headers": "header",
            "request_time": "0.05", "source": "", "log_info": "", "policy_index": "",
            "access_user_id": "user", "domain": "", "account": "a", "container": "c",
            "object": "", "pid": "42", "ttfb": "0.05", "wire_status_int": "200",
        }
    headers = request.headers
    logged_headers = None
    if log_hdrs:
        pairs = [
            (k, cap_length(v, reveal) if k.lower() in SENSITIVE_HEADERS else v)
            for k, v in headers.items()
        ]
        if log_hdrs_only:
            pairs = [(k, v) for k, v in pairs if k.title() in log_hdrs_only]
        logged_headers = "\n".join(f"{k}: {v}" for k, v in pairs)
    policy = None
    for source in (resp_headers, headers):
        if source and "X-Backend-Storage-Policy-Index" in source:
            policy = str(source["X-Backend-Storage-Policy-Index"])
            break
    path_parts = request.path.split("/", 4)
    host = headers.get("Host", "")
    return {
        "client_ip": client_ip(request),
        "remote_addr": request.remote,
        "end_time": LogTime(end),
        "start_time": LogTime(start),
        "method": request.get("swift.orig_req_method", request.method),
        "path": logged_path(request, reveal),
        "protocol": f"HTTP/{request.version.major}.{request.version.minor}",
        "status_int": status,
        "referer": headers.get("Referer"),
        "user_agent": headers.get("User-Agent"),
        "auth_token": cap_length(headers.get("X-Auth-Token"), reveal),
        "bytes_recvd": received,
        "bytes_sent": sent,
        "client_etag": headers.get("Etag"),
        "transaction_id": request.get("swift.trans_id"),
        "headers": logged_headers,
        "request_time": f"{end - start:.4f}",
        "source": request.get("swift.source"),
        "log_info": ",".join(request.get("swift.log_info", [])),
        "policy_index": policy,
        "access_user_id": (request.get("swift.access_logging") or {}).get("user_id"),
        "domain": host.rsplit(":", 1)[0] if host else None,
        "account": path_parts[2] if len(path_parts) > 2 else None,
        "container": path_parts[3] if len(path_parts) > 3 else None,
        "object": path_parts[4] if len(path_parts) > 4 else None,
        "pid": os.getpid(),
        "ttfb": None,
        "wire_status_int": status,
    }
