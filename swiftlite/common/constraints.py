"""Swift's request constraints, with Swift's defaults and error wording.

The limits themselves live in :class:`swiftlite.common.config.Constraints` (the
cluster file can override them); the checks here return Swift's error text so
a server can answer exactly as Swift does.
"""

from __future__ import annotations

from collections.abc import Mapping

from swiftlite.common.config import Constraints

DEFAULT = Constraints()

MAX_FILE_SIZE = DEFAULT.max_file_size
MAX_META_NAME_LENGTH = DEFAULT.max_meta_name_length
MAX_META_VALUE_LENGTH = DEFAULT.max_meta_value_length
MAX_META_COUNT = DEFAULT.max_meta_count
MAX_META_OVERALL_SIZE = DEFAULT.max_meta_overall_size
MAX_HEADER_SIZE = DEFAULT.max_header_size
MAX_OBJECT_NAME_LENGTH = DEFAULT.max_object_name_length
CONTAINER_LISTING_LIMIT = DEFAULT.container_listing_limit
ACCOUNT_LISTING_LIMIT = DEFAULT.account_listing_limit
MAX_ACCOUNT_NAME_LENGTH = DEFAULT.max_account_name_length
MAX_CONTAINER_NAME_LENGTH = DEFAULT.max_container_name_length
AUTO_CREATE_ACCOUNT_PREFIX = DEFAULT.auto_create_account_prefix

# Headers an object keeps besides user metadata (object-server allowed_headers).
DEFAULT_ALLOWED_HEADERS = (
    "content-disposition",
    "content-encoding",
    "x-delete-at",
    "x-object-manifest",
    "x-static-large-object",
    "cache-control",
    "content-language",
    "expires",
    "x-robots-tag",
)


def check_utf8(value: str | bytes) -> bool:
    """True when ``value`` is valid UTF-8 without NUL (Swift's ``check_utf8``)."""
    if not value:
        return False
    if isinstance(value, str):
        try:
            raw = value.encode("utf-8")
        except UnicodeEncodeError:
            return False
    else:
        raw = value
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return False
    return b"\x00" not in raw


def check_metadata(
    headers: Mapping[str, str],
    target_type: str,
    constraints: Constraints = DEFAULT,
) -> str | None:
    """Validate ``X-<type>-Meta-*`` headers; return Swift's 400 body or None.

    ``target_type`` is ``account``, ``container`` or ``object``. Names are
    measured after the prefix, sizes in UTF-8 bytes, as Swift does.
    """
    prefix = f"x-{target_type.lower()}-meta-"
    meta_count = 0
    meta_size = 0
    for key, value in headers.items():
        lkey = key.lower()
        if isinstance(value, str) and len(value) > constraints.max_header_size:
            return f"Header value too long: {key.title()[: constraints.max_meta_name_length]}"
        if not lkey.startswith(prefix):
            continue
        # Swift sees header names title-cased (WSGI environ round trip), and
        # its error text shows them that way.
        name = key.title()[len(prefix) :]
        if not name:
            return "Metadata name cannot be empty"
        bad = not check_utf8(name) or bool(value) and not check_utf8(value)
        if target_type.lower() in ("account", "container") and bad:
            return "Metadata must be valid UTF-8"
        # Swift measures the WSGI (latin-1) strings, i.e. the UTF-8 bytes.
        bname = name.encode("utf-8", "surrogateescape")
        bvalue = value.encode("utf-8", "surrogateescape")
        meta_count += 1
        meta_size += len(bname) + len(bvalue)
        if len(bname) > constraints.max_meta_name_length:
            return f"Metadata name too long: {prefix}{name}"
        if len(bvalue) > constraints.max_meta_value_length:
            return (
                f"Metadata value longer than {constraints.max_meta_value_length}: {prefix}{name}"
            )
        if meta_count > constraints.max_meta_count:
            return f"Too many metadata items; max {constraints.max_meta_count}"
        if meta_size > constraints.max_meta_overall_size:
            return f"Total metadata too large; max {constraints.max_meta_overall_size}"
    return None


def valid_api_version(version: str, constraints: Constraints = DEFAULT) -> bool:
    return version in constraints.valid_api_versions


__all__ = [
    "ACCOUNT_LISTING_LIMIT",
    "AUTO_CREATE_ACCOUNT_PREFIX",
    "CONTAINER_LISTING_LIMIT",
    "DEFAULT_ALLOWED_HEADERS",
    "MAX_ACCOUNT_NAME_LENGTH",
    "MAX_CONTAINER_NAME_LENGTH",
    "MAX_FILE_SIZE",
    "MAX_HEADER_SIZE",
    "MAX_META_COUNT",
    "MAX_META_NAME_LENGTH",
    "MAX_META_OVERALL_SIZE",
    "MAX_META_VALUE_LENGTH",
    "MAX_OBJECT_NAME_LENGTH",
    "check_metadata",
    "check_utf8",
    "valid_api_version",
]
