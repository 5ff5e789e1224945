"""Request validation and metadata selection for the object server.

Pure functions over headers, returning Swift's status and wording, so the
handlers stay short and these rules can be tested on their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import quote, unquote_to_bytes

from swiftlite.common.config import ClusterConfig, Constraints, StoragePolicy
from swiftlite.common.constraints import check_metadata, check_utf8
from swiftlite.common.devices import valid_device_name
from swiftlite.common.http import is_valid_partition, split_path
from swiftlite.common.timestamp import Timestamp


class HTTPError(Exception):
    """An early answer: status, optional plain-text body and headers."""

    def __init__(
        self,
        status: int,
        body: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {body or ''}")
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


def decode_path(raw_path: str) -> str:
    """The request path as Swift sees it: percent-decoded, valid UTF-8.

    Raises HTTPError(412) for invalid UTF-8 or NUL, Swift's answer.
    """
    path = raw_path.split("?", 1)[0]
    raw = unquote_to_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPError(412, "Invalid UTF8 or contains NULL") from None
    if not check_utf8(text):
        raise HTTPError(412, "Invalid UTF8 or contains NULL")
    return text


def split_object_path(path: str) -> tuple[str, str, str, str, str]:
    """``/<dev>/<part>/<a>/<c>/<o>`` -> its parts, or HTTPError(400)."""
    try:
        segs = split_path(path, 5, 5, True)
    except ValueError as exc:
        raise HTTPError(400, str(exc)) from None
    device, partition, account, container, obj = (s or "" for s in segs)
    validate_device_partition(device, partition)
    return device, partition, account, container, obj


def split_replicate_path(path: str) -> tuple[str, str, list[str]]:
    """``/<dev>/<part>[/<suf>-<suf>...]`` -> (device, partition, suffixes)."""
    try:
        segs = split_path(path, 2, 3, True)
    except ValueError as exc:
        raise HTTPError(400, str(exc)) from None
    device, partition = segs[0] or "", segs[1] or ""
    validate_device_partition(device, partition)
    suffixes = segs[2].split("-") if segs[2] else []
    return device, partition, suffixes


def validate_device_partition(device: str, partition: str) -> None:
    if not valid_device_name(device):
        raise HTTPError(400, f"Invalid device: {quote(device)}")
    if not is_valid_partition(partition):
        raise HTTPError(400, f"Invalid partition: {quote(partition)}")


def get_policy(cluster: ClusterConfig, headers: Mapping[str, str]) -> StoragePolicy:
    """The policy named by X-Backend-Storage-Policy-Index (0 when absent), or 503."""
    value = headers.get("X-Backend-Storage-Policy-Index")
    index: int | None
    if value is None or value == "":
        index = 0
    else:
        try:
            index = int(value)
        except ValueError:
            index = None
    policy = None
    if index is not None:
        policy = next((p for p in cluster.policies if p.index == index), None)
    if policy is None:
        raise HTTPError(503, f"No policy with index {value}")
    return policy


def required_timestamp(headers: Mapping[str, str]) -> Timestamp:
    value = headers.get("X-Timestamp")
    if value is None:
        raise HTTPError(400, "Missing X-Timestamp header")
    try:
        return Timestamp(value)
    except ValueError:
        raise HTTPError(400, "Invalid X-Timestamp header") from None


def message_length(headers: Mapping[str, str]) -> int | None:
    """Declared body length (None when chunked or absent); HTTPError on junk."""
    te = headers.get("Transfer-Encoding")
    if te:
        codings = te.split(",")
        if len(codings) > 1:
            raise HTTPError(
                501,
                "Unsupported Transfer-Coding header value specified in "
                "Transfer-Encoding header",
            )
        if codings[-1].strip().lower() != "chunked":
            raise HTTPError(400, "Invalid Transfer-Encoding header value")
        return None
    value = headers.get("Content-Length")
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        raise HTTPError(400, "Invalid Content-Length header value") from None
    if length < 0:
        raise HTTPError(400, "Invalid Content-Length header value")
    return length


def check_delete_headers(headers: Mapping[str, str], req_ts: Timestamp) -> int | None:
    """Validate X-Delete-At (the proxy turns X-Delete-After into it).

    Returns the delete-at epoch or None; HTTPError(400) as Swift words it.
    """
    now = float(req_ts)
    delete_at: int | None = None
    after = headers.get("X-Delete-After")
    if after is not None:
        try:
            delta = int(after)
        except ValueError:
            raise HTTPError(400, "Non-integer X-Delete-After") from None
        delete_at = int(now + delta)
        if delete_at <= now:
            raise HTTPError(400, "X-Delete-After in past")
    value = headers.get("X-Delete-At")
    if delete_at is None and value is not None:
        try:
            delete_at = int(value)
        except ValueError:
            raise HTTPError(400, "Non-integer X-Delete-At") from None
        replication = headers.get("X-Backend-Replication", "").lower() in (
            "true", "1", "yes", "on", "t", "y",
        )  # fmt: skip
        if delete_at <= now and not replication:
            raise HTTPError(400, "X-Delete-At in past")
    return delete_at


def check_object_creation(
    headers: Mapping[str, str], obj: str, constraints: Constraints, req_ts: Timestamp
) -> tuple[int | None, int | None]:
    """Swift's ``check_object_creation`` for a PUT: (length, delete_at)."""
    length = message_length(headers)
    if length is not None and length > constraints.max_file_size:
        raise HTTPError(413, "Your request is too large.")
    if length is None and "Transfer-Encoding" not in headers:
        raise HTTPError(411, "Missing Content-Length header.")
    if len(obj) > constraints.max_object_name_length:
        raise HTTPError(
            400,
            f"Object name length of {len(obj)} longer than {constraints.max_object_name_length}",
        )
    if "Content-Type" not in headers:
        raise HTTPError(400, "No content type")
    delete_at = check_delete_headers(headers, req_ts)
    if not check_utf8(headers["Content-Type"]):
        raise HTTPError(400, "Invalid Content-Type")
    err = check_metadata(headers, "object", constraints)
    if err:
        raise HTTPError(400, err)
    return length, delete_at


OBJECT_USER_META = "x-object-meta-"
OBJECT_SYSMETA = "x-object-sysmeta-"
OBJECT_TRANSIENT_SYSMETA = "x-object-transient-sysmeta-"
CONTAINER_UPDATE_OVERRIDE_PREFIXES = (
    "x-backend-container-update-override-",
    "x-object-sysmeta-container-update-override-",
)


def is_user_meta(key: str) -> bool:
    return len(key) > len(OBJECT_USER_META) and key.lower().startswith(OBJECT_USER_META)


def is_sys_meta(key: str) -> bool:
    return len(key) > len(OBJECT_SYSMETA) and key.lower().startswith(OBJECT_SYSMETA)


def is_transient_sysmeta(key: str) -> bool:
    return len(key) > len(OBJECT_TRANSIENT_SYSMETA) and key.lower().startswith(
        OBJECT_TRANSIENT_SYSMETA
    )


def title_case(key: str) -> str:
    """Python's ``str.title`` on the header name, as Swift stores it."""
    return key.title()


def copy_headers(
    headers: Mapping[str, str],
    allowed: Iterable[str],
    *,
    sysmeta: bool,
) -> dict[str, str]:
    """The request headers an object (or a .meta) keeps.

    User metadata and transient sysmeta always; object sysmeta only on PUT
    (a POST cannot change it); plus the allowed headers and any listed in
    X-Backend-Replication-Headers, stored title-cased as Swift does.
    """
    out: dict[str, str] = {}
    for key, value in headers.items():
        if is_user_meta(key) or is_transient_sysmeta(key) or (sysmeta and is_sys_meta(key)):
            out[key] = value
    extra = headers.get("X-Backend-Replication-Headers", "").split()
    lowered = {k.lower(): k for k in headers}
    for name in [*extra, *allowed]:
        src = lowered.get(name.lower())
        if src is not None:
            out[title_case(name)] = headers[src]
    return out


def response_metadata(metadata: Mapping[str, str], allowed: frozenset[str]) -> dict[str, str]:
    """The stored metadata a GET/HEAD answers with."""
    return {
        k: v
        for k, v in metadata.items()
        if is_user_meta(k) or is_sys_meta(k) or is_transient_sysmeta(k) or k.lower() in allowed
    }


def container_update_overrides(
    update: dict[str, str], sources: Iterable[Mapping[str, str]]
) -> None:
    """Apply Swift's container-update override headers, in Swift's precedence."""
    for prefix in CONTAINER_UPDATE_OVERRIDE_PREFIXES:
        for source in sources:
            for key, value in source.items():
                lkey = key.lower()
                if lkey.startswith(prefix):
                    update["x-" + lkey[len(prefix) :]] = value
