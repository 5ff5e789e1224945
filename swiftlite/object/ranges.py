"""Range requests and conditional requests, with Swift's (swob's) semantics.

The object server answers GET/HEAD exactly as Swift's ``swob.Response`` with
``conditional_response=True`` does, because Swift's proxy relies on those
answers (for example it resumes a broken GET with a Range request and treats
a 416 from an object server as a good source).  Everything here is pure
computation: no I/O, so the server can call it from the event loop.
"""

from __future__ import annotations

import calendar
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.utils import parsedate

# swob's limits against "egregious" range requests (RFC 7233 section 6.1).
MAX_RANGES = 50
MAX_RANGE_OVERLAPS = 2
MAX_NONASCENDING_RANGES = 8

RANGE_NOT_SATISFIABLE_BODY = (
    b"<html><h1>Requested Range Not Satisfiable</h1>"
    b"<p>The Range requested is not available.</p></html>"
)

ByteRangeSpec = tuple[int | None, int | None]


def parse_range(value: str | None) -> list[ByteRangeSpec] | None:
    """Parse a Range header into (start, end) specs, inclusive ends.

    Returns None when the header is absent or syntactically invalid: RFC 7233
    says such a header must be ignored, so the caller answers 200.
    """
    if not value:
        return None
    value = value.replace(" ", "")
    if not value.lower().startswith("bytes="):
        return None
    specs: list[ByteRangeSpec] = []
    for item in value[6:].split(","):
        if "-" not in item:
            return None
        first, last = item.split("-", 1)
        start: int | None
        end: int | None
        if first:
            # int() accepts '+5' and '-5' like swob does; a negative start
            # reaches ranges_for_length only through 'bytes=-5-...' which
            # fails the isdigit check on the end below.
            try:
                start = int(first)
            except ValueError:
                return None
        else:
            start = None
        if last:
            if not last.isdigit():
                return None
            end = int(last)
            if start is not None and end < start:
                return None
        else:
            end = None
            if start is None:
                return None
        specs.append((start, end))
    return specs


def ranges_for_length(specs: list[ByteRangeSpec], length: int) -> list[tuple[int, int]]:
    """Satisfiable half-open (start, stop) ranges for an object of ``length``.

    An empty list means "416": nothing is satisfiable, or the request is
    egregious (too many ranges, too many overlaps, too many out of order).
    """
    result: list[tuple[int, int]] = []
    for start, end in specs:
        if start is None:
            assert end is not None
            if end == 0:
                continue
            if end > length:
                result.append((0, length))
            else:
                result.append((length - end, length))
            continue
        if end is None:
            if start < length:
                result.append((start, length))
        elif start < length:
            result.append((start, min(end + 1, length)))

    if len(result) > MAX_RANGES:
        return []
    overlaps = 0
    for i, (s1, e1) in enumerate(result):
        for s2, e2 in result[i + 1 :]:
            if s1 < s2 < e1 or s1 < e2 < e1 or s2 < s1 < e2 or s2 < e1 < e2:
                overlaps += 1
                if overlaps > MAX_RANGE_OVERLAPS:
                    return []
    ascending = all(a <= b for a, b in zip(result, result[1:], strict=False))
    if not ascending and len(result) >= MAX_NONASCENDING_RANGES:
        return []
    return result


def normalize_etag(tag: str) -> str:
    if tag and tag.startswith('"') and tag.endswith('"') and tag != '"':
        return tag[1:-1]
    return tag


def parse_match(value: str | None) -> frozenset[str] | None:
    """The entity tags of an If-Match / If-None-Match header (None if absent)."""
    if value is None:
        return None
    tags = set()
    for tag in value.split(","):
        tag = tag.strip()
        if tag:
            tags.add(normalize_etag(tag))
    return frozenset(tags)


def match_contains(tags: frozenset[str], etag: str) -> bool:
    return "*" in tags or normalize_etag(etag) in tags


def parse_http_date(value: str | None) -> int | None:
    """Epoch seconds of an HTTP date, or None if absent or unparsable.

    Like swob, the zone is ignored (HTTP dates are GMT) and garbage is
    treated as if the header were absent.
    """
    if not value:
        return None
    try:
        parts = parsedate(value)
        if parts is None:
            return None
        return calendar.timegm(parts[:6] + (0, 0, 0))
    except (TypeError, ValueError, OverflowError):
        return None


def http_date(epoch: float) -> str:
    """IMF-fixdate, e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(epoch))


def conditional_status(
    headers: Mapping[str, str],
    *,
    exists: bool,
    etag: str | None = None,
    last_modified: int | None = None,
) -> int | None:
    """304 or 412 when the request's conditions say so, else None.

    ``etag`` is the tag the conditions are evaluated against (normally the
    object's ETag, or the value named by X-Backend-Etag-Is-At);
    ``last_modified`` is the whole-second Last-Modified (``ceil`` of the
    object's timestamp).  The order of checks is swob's.
    """
    if_none_match = parse_match(headers.get("If-None-Match"))
    if_match = parse_match(headers.get("If-Match"))
    # An empty header still counts as present (swob's Match is always
    # truthy), so compare with None rather than relying on truthiness.
    if etag and if_none_match is not None and match_contains(if_none_match, etag):
        return 304
    if etag and if_match is not None and not match_contains(if_match, etag):
        return 412
    if not exists and if_match is not None and "*" in if_match:
        return 412
    if last_modified is not None:
        since = parse_http_date(headers.get("If-Modified-Since"))
        if since is not None and last_modified <= since:
            return 304
        unmodified = parse_http_date(headers.get("If-Unmodified-Since"))
        if unmodified is not None and last_modified > unmodified:
            return 412
    return None


def content_range_value(start: int, stop: int, size: int) -> str:
    """Content-Range value for the half-open range [start, stop)."""
    return f"bytes {start}-{stop - 1}/{size}"


def new_boundary() -> str:
    """A 32-hex multipart boundary, like swob's."""
    return os.urandom(16).hex()


@dataclass(frozen=True)
class MultipartPlan:
    """The byte layout of a multipart/byteranges body.

    Each part is its MIME header block followed by the object bytes
    [start, stop) and a CRLF; ``trailer`` closes the body.  Knowing the
    layout up front gives an exact Content-Length and lets the server send
    the object bytes of each part with sendfile.
    """

    boundary: str
    parts: tuple[tuple[bytes, int, int], ...]
    trailer: bytes

    @property
    def content_type(self) -> str:
        return f"multipart/byteranges;boundary={self.boundary}"

    @property
    def content_length(self) -> int:
        total = len(self.trailer)
        for head, start, stop in self.parts:
            total += len(head) + (stop - start) + 2
        return total


def plan_multipart(
    ranges: Iterable[tuple[int, int]],
    size: int,
    content_type: str,
    boundary: str | None = None,
) -> MultipartPlan:
    boundary = boundary or new_boundary()
    bnd = boundary.encode("ascii")
    ctype = content_type.encode("utf-8", "surrogateescape")
    parts = []
    for start, stop in ranges:
        head = b"".join(
            [
                b"--", bnd, b"\r\n",
                b"Content-Type: ", ctype, b"\r\n",
                b"Content-Range: ", content_range_value(start, stop, size).encode("ascii"),
                b"\r\n\r\n",
            ]
        )  # fmt: skip
        parts.append((head, start, stop))
    return MultipartPlan(boundary, tuple(parts), b"--" + bnd + b"--")


@dataclass(frozen=True)
class RangeDecision:
    """What a GET of an object of a given size should send.

    ``status`` is 200 (whole object), 206 (``ranges`` has one or more
    half-open ranges) or 416.
    """

    status: int
    ranges: tuple[tuple[int, int], ...] = ()


def decide_ranges(range_header: str | None, size: int) -> RangeDecision:
    specs = parse_range(range_header)
    if not specs:
        return RangeDecision(200)
    ranges = ranges_for_length(specs, size)
    if not ranges:
        return RangeDecision(416)
    if size == 0:
        # A suffix range of an empty object: swob (like Apache and nginx)
        # sends the whole, empty, object.
        return RangeDecision(200)
    return RangeDecision(206, tuple(ranges))
