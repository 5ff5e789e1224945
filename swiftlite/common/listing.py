"""Listing query parameters and output formats shared by the account server,
the container server and the proxy.

Clients compare listings byte for byte (swiftclient, rclone and Swift's own
functional tests parse them, caches key on them), so every answer here is
Swift's: the same parameter parsing and error texts as
``swift.common.request_helpers`` and ``listing_formats.get_listing_content_type``,
the same JSON key order as Swift's container/account servers, and the same XML
as Swift's ElementTree serialisation (which is reproduced by hand here because
building an element tree for 10,000 rows costs several times more).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import math
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from swiftlite.common.config import config_true_value
from swiftlite.common.timestamp import Timestamp

FORMAT2CONTENT_TYPE = {
    "plain": "text/plain",
    "json": "application/json",
    "xml": "application/xml",
}
# Candidate order matters: with no Accept header (or */*) Swift answers text/plain.
LISTING_CONTENT_TYPES = ("text/plain", "application/json", "application/xml", "text/xml")
DEFAULT_LISTING_LIMIT = 10000

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'

# Swift's swob default bodies for the statuses listing parsing can produce.
_DEFAULT_BODIES = {
    406: b"<html><h1>Not Acceptable</h1><p>The resource is not available in a "
    b"format acceptable to your browser.</p></html>",
}
HTML_CONTENT_TYPE = "text/html; charset=UTF-8"


class ListingError(Exception):
    """A listing request Swift refuses: status, body and Content-Type as Swift sends them."""

    def __init__(self, status: int, body: bytes, content_type: str = HTML_CONTENT_TYPE) -> None:
        super().__init__(f"{status} {body!r}")
        self.status = status
        self.body = body
        self.content_type = content_type


# --- query parameters -------------------------------------------------------


def parse_query_string(raw_query: str) -> dict[str, str]:
    """Swift's ``req.params``: last value wins, blanks kept, values as WSGI (latin-1) strings.

    Decoding percent-escapes to latin-1 keeps every byte, so invalid UTF-8 can
    still be detected per parameter (and answered with that parameter's name).
    """
    return dict(urllib.parse.parse_qsl(raw_query, keep_blank_values=True, encoding="latin-1"))


def get_param(params: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    """A parameter as a native string; 400 naming it when it is not UTF-8."""
    value = params.get(name, default)
    if value:
        try:
            value = value.encode("latin-1").decode("utf-8")
        except UnicodeEncodeError:
            # Already a native string (a caller that decoded the query itself).
            pass
        except UnicodeDecodeError:
            raise ListingError(
                400, f'"{name}" parameter not valid UTF-8'.encode(), "text/plain"
            ) from None
    return value


def constrain_limit(params: Mapping[str, str], max_limit: int) -> int:
    """``limit``: default and maximum ``max_limit``; a non-numeric value is ignored."""
    given = get_param(params, "limit")
    limit = max_limit
    if given and given.isdigit():
        limit = int(given)
        if limit > max_limit:
            raise ListingError(412, f"Maximum limit is {max_limit}".encode())
    return limit


# RFC 2616 grammar, as swob.Accept parses it.
_TOKEN = r"[^()<>@,;:\"/\[\]?={}\x00-\x20\x7f]+"
_QUOTED = r'"(?:[^"\\]|(?:\\.))*"'
_EXTENSION = r"(?:\s*;\s*(?:" + _TOKEN + r")\s*=\s*" + r"(?:" + _TOKEN + r"|" + _QUOTED + r"))"
_ACCEPT_RE = re.compile(r"^\s*(" + _TOKEN + r")/(" + _TOKEN + r")(" + _EXTENSION + r"*?\s*)$")


def _accept_patterns(header: str) -> list[str]:
    """Media-range patterns, best first (quality, then exact before wildcard)."""
    types: list[tuple[str, float, bool]] = []
    for item in header.split(","):
        found = _ACCEPT_RE.findall(item)
        if not found:
            raise ValueError("Invalid accept header")
        typ, subtype, parms = found[0]
        quality = 1.0
        seen_q = False
        for parm in (p.strip() for p in parms.split(";")):
            if not parm:
                continue
            pname, pvalue = parm.split("=")  # ValueError on "a=b=c", as swob
            if pname.strip() == "q":
                if seen_q:
                    raise ValueError('Multiple "q" params')
                seen_q = True
                quality = float(pvalue.strip())
        pattern = (
            "^"
            + (_TOKEN if typ == "*" else re.escape(typ))
            + "/"
            + (_TOKEN if subtype == "*" else re.escape(subtype))
            + "$"
        )
        types.append((pattern, quality, "*" not in (typ, subtype)))
    # A stable sort, so equal candidates keep the client's order.
    types.sort(reverse=True, key=lambda t: (t[1], t[2]))
    return [t[0] for t in types]


def best_match(accept: str | None, options: Iterable[str]) -> str | None:
    """The first option the Accept header allows, by the header's preference."""
    opts = list(options)
    patterns = _accept_patterns(accept) if accept else []
    if not patterns:
        return opts[0] if opts else None
    for pattern in patterns:
        for option in opts:
            if re.match(pattern, option):
                return option
    return None


def get_listing_content_type(params: Mapping[str, str], accept: str | None) -> str:
    """The listing's media type from ``format=`` (which wins) or the Accept header."""
    query_format = get_param(params, "format")
    if query_format:
        accept = FORMAT2CONTENT_TYPE.get(query_format.lower(), FORMAT2CONTENT_TYPE["plain"])
    try:
        out = best_match(accept, LISTING_CONTENT_TYPES)
    except ValueError:
        raise ListingError(400, b"Invalid Accept header") from None
    if not out:
        raise ListingError(406, _DEFAULT_BODIES[406])
    return out


@dataclasses.dataclass
class ListingParams:
    """A validated listing request. Strings are native (decoded) strings."""

    content_type: str
    limit: int
    marker: str = ""
    end_marker: str | None = None
    prefix: str | None = None
    delimiter: str | None = None
    reverse: bool = False
    path: str | None = None
    # Whether the client chose the format in the query (else the answer varies on Accept).
    format_given: bool = False


def parse_account_listing_params(
    raw_query: str, accept: str | None, max_limit: int = DEFAULT_LISTING_LIMIT
) -> ListingParams:
    """Parse and validate an account GET, checking parameters in Swift's order."""
    params = parse_query_string(raw_query)
    prefix = get_param(params, "prefix")
    delimiter = get_param(params, "delimiter")
    reverse = config_true_value(get_param(params, "reverse"))
    limit = constrain_limit(params, max_limit)
    marker = get_param(params, "marker", "") or ""
    end_marker = get_param(params, "end_marker")
    content_type = get_listing_content_type(params, accept)
    return ListingParams(
        content_type=content_type,
        limit=limit,
        marker=marker,
        end_marker=end_marker,
        prefix=prefix,
        delimiter=delimiter,
        reverse=reverse,
        format_given="format" in params,
    )


def parse_container_listing_params(
    raw_query: str, accept: str | None, max_limit: int = DEFAULT_LISTING_LIMIT
) -> ListingParams:
    """Parse and validate a container GET (Swift's ``validate_container_params`` order)."""
    params = parse_query_string(raw_query)
    values = {}
    for name in ("marker", "end_marker", "prefix", "delimiter", "path", "format", "reverse"):
        values[name] = get_param(params, name)
    # Shard-range parameters: validated for UTF-8 as Swift does, interpreted elsewhere.
    get_param(params, "states")
    get_param(params, "includes")
    limit = constrain_limit(params, max_limit)
    content_type = get_listing_content_type(params, accept)
    return ListingParams(
        content_type=content_type,
        limit=limit,
        marker=values["marker"] or "",
        end_marker=values["end_marker"],
        prefix=values["prefix"],
        delimiter=values["delimiter"],
        reverse=config_true_value(values["reverse"]),
        path=values["path"],
        format_given="format" in params,
    )


def head_content_type(raw_query: str, accept: str | None) -> str:
    """HEAD answers carry the listing Content-Type a GET would have."""
    return get_listing_content_type(parse_query_string(raw_query), accept)


def response_content_type(content_type: str) -> str:
    """The Content-Type header value Swift sends with a listing."""
    return content_type + "; charset=utf-8"


# --- records ------------------------------------------------------------------


def _extract_swift_bytes(content_type: str) -> tuple[str, str | None]:
    """Split ``;swift_bytes=N`` off a stored content type (large-object manifests)."""
    if ";" not in content_type:
        return content_type, None
    base, rest = content_type.split(";", 1)
    swift_bytes = None
    for key, value in _PARAM_RE.findall(";" + rest):
        key, value = key.strip(), value.strip()
        if key == "swift_bytes":
            swift_bytes = value
        else:
            base += f";{key}={value}"
    return base, swift_bytes


# swift.common.utils' strict RFC 2616 parameter pattern (the value is optional).
_RFC_TOKEN = r"[^()<>@,;:\"/\[\]?={}\x00-\x20\x7f]+"
_PARAM_RE = re.compile(
    r"(?:\s*;\s*(" + _RFC_TOKEN + r")\s*(?:=\s*(" + _RFC_TOKEN + r'|"(?:[^"\\]|\\.)*"))?)'
)


_EPOCH = datetime.date(1970, 1, 1)
_EXACT_BELOW = 2**32


@functools.lru_cache(maxsize=4096)
def _iso_date(days: int) -> str:
    return (_EPOCH + datetime.timedelta(days=days)).isoformat()


def last_modified(timestamp: str | Timestamp) -> str:
    """``Timestamp(timestamp).isoformat``, without datetime work per row.

    A listing formats up to 10,000 of these; the date part is cached per day
    and the rest is integer arithmetic. Past 2**32 s the float value Swift uses
    is computed as Swift does, so the last microsecond digit matches Swift's
    even where the float is off.
    """
    if isinstance(timestamp, str) and len(timestamp) >= 16 and timestamp[10:11] == ".":
        normal = timestamp[:16]
    else:
        normal = Timestamp(timestamp).normal
    whole = int(normal[:10])
    if whole < _EXACT_BELOW:
        # Below 2**32 s a double resolves 1 µs, so Swift's float arithmetic
        # gives exactly the digits of the string.
        micros = int(normal[11:16]) * 10
    else:
        frac, fwhole = math.modf(float(normal))
        whole = int(fwhole)
        micros = round(frac * 1e6)
        if micros >= 1000000:
            whole += 1
            micros -= 1000000
        elif micros < 0:
            whole -= 1
            micros += 1000000
    days, secs = divmod(whole, 86400)
    hours, rest = divmod(secs, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{_iso_date(days)}T{hours:02d}:{minutes:02d}:{seconds:02d}.{micros:06d}"


def object_record(
    name: str, created_at: str | Timestamp, size: int, content_type: str, etag: str
) -> dict[str, Any]:
    """One object in a container listing, keys in Swift's container-server order."""
    ctype, swift_bytes = _extract_swift_bytes(content_type)
    record: dict[str, Any] = {"bytes": size, "hash": etag, "name": name, "content_type": ctype}
    if swift_bytes is not None:
        try:
            record["bytes"] = int(swift_bytes)
        except ValueError:
            pass
    record["last_modified"] = last_modified(created_at)
    return record


def subdir_record(name: str) -> dict[str, Any]:
    return {"subdir": name}


def container_record(
    name: str,
    object_count: int,
    bytes_used: int,
    put_timestamp: str | Timestamp,
    policy_name: str | None = None,
) -> dict[str, Any]:
    """One container in an account listing; ``storage_policy`` only for known policies."""
    record: dict[str, Any] = {
        "name": name,
        "count": object_count,
        "bytes": bytes_used,
        "last_modified": last_modified(put_timestamp),
    }
    if policy_name is not None:
        record["storage_policy"] = policy_name
    return record


# --- output formats -----------------------------------------------------------


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _xml_attr(text: str) -> str:
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("\r", "&#13;")
        .replace("\n", "&#10;")
        .replace("\t", "&#09;")
    )


def _xml_field(tag: str, value: Any) -> str:
    text = str(value)
    if not text:
        # ElementTree writes an element without text as an empty-element tag.
        return f"<{tag} />"
    return f"<{tag}>{_xml_text(text)}</{tag}>"


def _encode_xml(doc: str) -> bytes:
    # ElementTree encodes with xmlcharrefreplace; only lone surrogates need it.
    return doc.encode("utf-8", "xmlcharrefreplace")


def container_listing_xml(records: Iterable[Mapping[str, Any]], container: str) -> bytes:
    parts = []
    for rec in records:
        if "subdir" in rec:
            name = rec["subdir"]
            parts.append(f'<subdir name="{_xml_attr(name)}">{_xml_field("name", name)}</subdir>')
        else:
            parts.append(
                "<object>"
                + "".join(
                    _xml_field(f, rec[f])
                    for f in ("name", "hash", "bytes", "content_type", "last_modified")
                )
                + "</object>"
            )
    head = f'<container name="{_xml_attr(container)}"'
    if not parts:
        return _encode_xml(XML_DECLARATION + head + " />")
    return _encode_xml(XML_DECLARATION + head + ">" + "".join(parts) + "</container>")


def account_listing_xml(records: Iterable[Mapping[str, Any]], account: str) -> bytes:
    parts = [XML_DECLARATION, f'<account name="{_xml_attr(account)}">\n']
    for rec in records:
        if "subdir" in rec:
            parts.append(f'<subdir name="{_xml_attr(rec["subdir"])}" />\n')
        else:
            fields = "".join(
                _xml_field(f, rec[f]) for f in ("name", "count", "bytes", "last_modified")
            )
            if "storage_policy" in rec:
                fields += _xml_field("storage_policy", rec["storage_policy"])
            parts.append(f"<container>{fields}</container>\n")
    parts.append("</account>")
    return _encode_xml("".join(parts))


def listing_json(records: Sequence[Mapping[str, Any]]) -> bytes:
    return json.dumps(records).encode("ascii")


def listing_text(records: Iterable[Mapping[str, Any]]) -> bytes:
    return b"".join(
        (rec["name"] if "name" in rec else rec["subdir"]).encode("utf-8") + b"\n" for rec in records
    )


def format_container_listing(
    records: Sequence[Mapping[str, Any]], content_type: str, container: str
) -> bytes:
    """Body of a container GET in the negotiated format (an empty body means 204)."""
    if content_type.endswith("/xml"):
        return container_listing_xml(records, container)
    if content_type.endswith("/json"):
        return listing_json(records)
    return listing_text(records)


def format_account_listing(
    records: Sequence[Mapping[str, Any]], content_type: str, account: str
) -> bytes:
    """Body of an account GET in the negotiated format (an empty body means 204)."""
    if content_type.endswith("/xml"):
        return account_listing_xml(records, account)
    if content_type.endswith("/json"):
        return listing_json(records)
    return listing_text(records)


# --- the proxy's side ------------------------------------------------------------

RESERVED = "\x00"
# Larger JSON bodies are passed through untouched, as Swift's listing filter
# does (1024-byte names x 10,000 entries, doubled for the other fields).
MAX_LISTING_BODY = 1024 * 10000 * 2


def filter_reserved(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Drop entries whose name or subdir holds the reserved byte (hidden namespace)."""
    return [
        rec
        for rec in records
        if not any(RESERVED in str(rec.get(key, "")) for key in ("name", "subdir"))
    ]


def reformat_listing(
    body: bytes,
    content_type: str,
    account: str,
    container: str | None = None,
    allow_reserved: bool = False,
) -> bytes | None:
    """A backend's JSON listing in the client's format, as Swift's proxy sends it.

    Returns None when ``body`` is not a listing the proxy should touch (too
    large, not a JSON list of objects, or missing fields): the caller then
    passes the backend's body through unchanged, as Swift does. An empty
    result means 204.
    """
    if len(body) > MAX_LISTING_BODY:
        return None
    try:
        records = json.loads(body)
    except ValueError:
        return None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        return None
    if not allow_reserved:
        records = filter_reserved(records)
    try:
        if content_type.endswith("/xml"):
            if container:
                return container_listing_xml(records, container)
            return account_listing_xml(records, account)
        if content_type == "text/plain":
            return listing_text(records)
        return listing_json(records)
    except KeyError:
        return None


__all__ = [
    "FORMAT2CONTENT_TYPE",
    "LISTING_CONTENT_TYPES",
    "ListingError",
    "ListingParams",
    "account_listing_xml",
    "best_match",
    "constrain_limit",
    "container_listing_xml",
    "container_record",
    "format_account_listing",
    "filter_reserved",
    "format_container_listing",
    "get_listing_content_type",
    "get_param",
    "head_content_type",
    "listing_json",
    "listing_text",
    "object_record",
    "parse_account_listing_params",
    "parse_container_listing_params",
    "parse_query_string",
    "reformat_listing",
    "response_content_type",
    "subdir_record",
]
