"""HTTP pieces every server role shares: Swift's path splitting, its default
error bodies, and the backend header names that cross between roles."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from aiohttp import web

# Backend (proxy <-> storage, storage <-> storage) header names.
X_TIMESTAMP = "X-Timestamp"
X_BACKEND_TIMESTAMP = "X-Backend-Timestamp"
X_BACKEND_POLICY_INDEX = "X-Backend-Storage-Policy-Index"
X_CONTAINER_HOST = "X-Container-Host"
X_CONTAINER_DEVICE = "X-Container-Device"
X_CONTAINER_PARTITION = "X-Container-Partition"
X_ACCOUNT_HOST = "X-Account-Host"
X_ACCOUNT_DEVICE = "X-Account-Device"
X_ACCOUNT_PARTITION = "X-Account-Partition"
X_TRANS_ID = "X-Trans-Id"
X_DISK_USAGE = "X-Disk-Usage"

# Swift's reason phrases and explanations for the bodies it generates.
RESPONSE_REASONS: dict[int, tuple[str, str]] = {
    100: ("Continue", ""),
    200: ("OK", ""),
    201: ("Created", ""),
    202: ("Accepted", "The request is accepted for processing."),
    204: ("No Content", ""),
    206: ("Partial Content", ""),
    301: ("Moved Permanently", "The resource has moved permanently."),
    302: ("Found", "The resource has moved temporarily."),
    303: ("See Other", "The response to the request can be found under a different URI."),
    304: ("Not Modified", ""),
    307: ("Temporary Redirect", "The resource has moved temporarily."),
    400: (
        "Bad Request",
        "The server could not comply with the request since it is either "
        "malformed or otherwise incorrect.",
    ),
    401: (
        "Unauthorized",
        "This server could not verify that you are authorized to access the "
        "document you requested.",
    ),
    402: ("Payment Required", "Access was denied for financial reasons."),
    403: ("Forbidden", "Access was denied to this resource."),
    404: ("Not Found", "The resource could not be found."),
    405: ("Method Not Allowed", "The method is not allowed for this resource."),
    406: (
        "Not Acceptable",
        "The resource is not available in a format acceptable to your browser.",
    ),
    408: (
        "Request Timeout",
        "The server has waited too long for the request to be sent by the client.",
    ),
    409: ("Conflict", "There was a conflict when trying to complete your request."),
    410: ("Gone", "This resource is no longer available."),
    411: ("Length Required", "Content-Length header required."),
    412: ("Precondition Failed", "A precondition for this request was not met."),
    413: ("Request Entity Too Large", "The body of your request was too large for this server."),
    414: ("Request URI Too Long", "The request URI was too long for this server."),
    415: ("Unsupported Media Type", "The request media type is not supported by this server."),
    416: ("Requested Range Not Satisfiable", "The Range requested is not available."),
    417: ("Expectation Failed", "Expectation failed."),
    422: ("Unprocessable Entity", "Unable to process the contained instructions"),
    499: ("Client Disconnect", "The client was disconnected during request."),
    500: (
        "Internal Error",
        "The server has either erred or is incapable of performing the requested operation.",
    ),
    501: ("Not Implemented", "The requested method is not implemented by this server."),
    502: ("Bad Gateway", "Bad gateway."),
    503: (
        "Service Unavailable",
        "The server is currently unavailable. Please try again at a later time.",
    ),
    504: ("Gateway Timeout", "A timeout has occurred speaking to a backend server."),
    507: (
        "Insufficient Storage",
        "There was not enough space to save the resource. Drive: %(drive)s",
    ),
    529: (
        "Too Many Backend Requests",
        "The server is incapable of performing the requested operation due to "
        "too many requests. Slow down.",
    ),
}


def split_path(
    path: str, minsegs: int = 1, maxsegs: int | None = None, rest_with_last: bool = False
) -> list[str | None]:
    """Swift's ``split_path``: validate a request path and split it.

    ``split_path('/a/c/o/r', 1, 3, True) == ['a', 'c', 'o/r']``; missing
    optional segments come back as None. Raises ValueError on a bad path.
    """
    if not maxsegs:
        maxsegs = minsegs
    if minsegs > maxsegs:
        raise ValueError(f"minsegs > maxsegs: {minsegs} > {maxsegs}")
    if rest_with_last:
        segs = path.split("/", maxsegs)
        lo, hi = minsegs + 1, maxsegs + 1
        count = len(segs)
        if segs[0] or count < lo or count > hi or "" in segs[1:lo]:
            raise ValueError(f"Invalid path: {quote(path)}")
    else:
        lo, hi = minsegs + 1, maxsegs + 1
        segs = path.split("/", hi)
        count = len(segs)
        if (
            segs[0]
            or count < lo
            or count > hi + 1
            or "" in segs[1:lo]
            or (count == hi + 1 and segs[hi])
        ):
            raise ValueError(f"Invalid path: {quote(path)}")
    out: list[str | None] = list(segs[1:hi])
    if not all(out[:-1]):
        raise ValueError(f"Invalid path: {quote(path)}")
    out.extend([None] * (hi - 1 - len(out)))
    return out


def default_body(status: int, drive: str = "unknown") -> str:
    """The HTML body Swift generates for a bodiless response, or ''."""
    title, explanation = RESPONSE_REASONS.get(status, ("", ""))
    if not explanation:
        return ""
    return f"<html><h1>{title}</h1><p>{explanation % {'drive': drive}}</p></html>"


def swift_response(
    status: int,
    body: str | bytes | None = None,
    headers: Mapping[str, str] | None = None,
    content_type: str | None = None,
    drive: str = "unknown",
) -> web.Response:
    """A response as Swift's swob would make it: default HTML body for errors,
    ``text/html; charset=UTF-8`` unless told otherwise. aiohttp sends no body
    bytes for HEAD but keeps the Content-Length, as Swift does."""
    hdrs = dict(headers or {})
    if body is None:
        text = default_body(status, drive)
        payload = text.encode("utf-8")
        if text and "Content-Type" not in hdrs and content_type is None:
            content_type = "text/html; charset=UTF-8"
    else:
        payload = body.encode("utf-8") if isinstance(body, str) else body
    if content_type is not None:
        hdrs["Content-Type"] = content_type
    reason = RESPONSE_REASONS.get(status, ("", ""))[0] or None
    return web.Response(status=status, reason=reason, body=payload, headers=hdrs)


async def _healthcheck(request: web.Request) -> web.Response:
    return web.Response(text="OK")


def add_healthcheck_route(app: web.Application) -> None:
    """``GET /healthcheck`` answering ``200 OK``, as Swift's healthcheck
    middleware does in every server's pipeline (load balancers and saio poll
    it). Add it before a catch-all route."""
    app.router.add_get("/healthcheck", _healthcheck)


def is_valid_partition(value: str) -> bool:
    return value.isascii() and value.isdigit() and len(value) < 11


def header_true(headers: Mapping[str, str], name: str) -> bool:
    value = headers.get(name, "")
    return value.lower() in ("true", "1", "yes", "on", "t", "y")


__all__ = [
    "RESPONSE_REASONS",
    "add_healthcheck_route",
    "default_body",
    "header_true",
    "is_valid_partition",
    "split_path",
    "swift_response",
]
