"""Request bodies and subrequests.

Every controller reads a client body through :func:`iter_body`, which
honours a body given to a subrequest (bytes or an async iterator) before
falling back to the client's stream. That is what lets a middleware (copy,
large objects, versioning) send a PUT whose body it produces itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping

from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

BODY_KEY = "swiftlite.body"
Body = bytes | AsyncIterable[bytes]


class HTTPError(Exception):
    """Raised anywhere under the proxy app: answer the client with this status."""

    def __init__(
        self, status: int, body: str | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


async def iter_body(request: web.Request, chunk_size: int = 65536) -> AsyncIterator[bytes]:
    """The request body chunk by chunk, from a subrequest's own body if set."""
    body = request.get(BODY_KEY)
    if body is None:
        shared = request.get("swiftlite.shared")
        expect = request.headers.get("Expect", "").lower() == "100-continue"
        if expect and shared is not None and not shared.get("continued"):
            # The client waits for this before sending the body (see server._no_expect).
            shared["continued"] = True
            if request.version >= (1, 1):
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        async for chunk in request.content.iter_chunked(chunk_size):
            yield chunk
        return
    if isinstance(body, bytes | bytearray):
        for start in range(0, len(body), chunk_size):
            yield bytes(body[start : start + chunk_size])
        return
    async for chunk in body:
        if chunk:
            yield chunk


def make_subrequest(
    request: web.Request,
    method: str,
    path: str,
    headers: Mapping[str, str] | None = None,
    body: Body | None = None,
    swift_source: str | None = None,
) -> web.Request:
    """A new request for ``path`` (URL-quoted, may carry ``?query``) that can
    go to the next handler or to the whole pipeline (``ctx.call_pipeline``).

    It keeps the parent's request mapping (Swift's environ: transaction id,
    auth, caches) but not its body or timestamp; ``headers`` are the new
    request's headers (none of the parent's are copied), ``body`` is bytes
    or an async iterator of bytes (absent: empty).
    """
    hdrs: CIMultiDict[str] = CIMultiDict(headers or {})
    for name in ("Content-Length", "Transfer-Encoding", "Expect"):
        hdrs.popall(name, None)
    if body is None:
        body = b""
    if isinstance(body, bytes | bytearray):
        hdrs["Content-Length"] = str(len(body))
    else:
        hdrs["Transfer-Encoding"] = "chunked"
    sub = request.clone(method=method, rel_url=URL(path, encoded=True), headers=hdrs)
    for key in ("swiftlite.timestamp", "swiftlite.path", "swift.source"):
        sub.pop(key, None)
    sub[BODY_KEY] = body
    if swift_source:
        sub["swift.source"] = swift_source
    return sub


def body_length(request: web.Request) -> int | None:
    """Declared body length (None: chunked/unknown)."""
    body = request.get(BODY_KEY)
    if isinstance(body, bytes | bytearray):
        return len(body)
    if body is not None:
        return None
    if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        return None
    value = request.headers.get("Content-Length")
    if value is None:
        return None
    return int(value)
