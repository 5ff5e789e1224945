"""Newest-per-field merge of object rows (Swift's update_new_item_from_existing).

A container row carries three timestamps encoded in ``created_at``: data
(size, etag, deleted, swift_bytes), content-type, and metadata. Updates can
arrive in any order, from object servers and from replication; for each of the
three the side with the newer timestamp wins (on a tie the existing row wins).
The result depends only on the set of updates, not on their order.

swiftlite addition: ``expires`` (the object's X-Delete-At) belongs to the
object's metadata, so it follows the metadata timestamp: a PUT resets it, a
POST (which carries X-Meta-Timestamp) replaces it.
"""

from __future__ import annotations

import re
from typing import Any

from swiftlite.common.timestamp import Timestamp, decode_timestamps, encode_timestamps

# Same token grammar as Swift's parse_content_type (strict form), so that a
# merged content type is rewritten exactly as Swift rewrites it.
_TOKEN = r"[^()<>@,;:\"/\[\]?={}\x00-\x20\x7f]+"
_PARAM = re.compile(r"(?:\s*;\s*(" + _TOKEN + r")\s*(?:=\s*(" + _TOKEN + r'|"(?:[^"\\]|\\.)*"))?)')


def extract_swift_bytes(content_type: str) -> tuple[str, str | None]:
    """Split off a ``swift_bytes=N`` parameter (SLO manifests carry their total size there)."""
    if ";" not in content_type:
        return content_type, None
    base, params = content_type.split(";", 1)
    swift_bytes = None
    for key, value in _PARAM.findall(";" + params):
        key, value = key.strip(), value.strip()
        if key == "swift_bytes":
            swift_bytes = value
        else:
            base += f";{key}={value}"
    return base, swift_bytes


def item_timestamps(item: dict[str, Any]) -> tuple[Timestamp, Timestamp, Timestamp]:
    """Data, content-type and meta timestamps of an update or row."""
    item.setdefault("data_timestamp", item["created_at"])
    t_data, t_ctype, t_meta = decode_timestamps(item["data_timestamp"])
    assert t_ctype is not None and t_meta is not None
    if item.get("ctype_timestamp"):
        t_ctype = Timestamp(item["ctype_timestamp"])
        t_meta = t_ctype
    if item.get("meta_timestamp"):
        t_meta = Timestamp(item["meta_timestamp"])
    return t_data, t_ctype, t_meta


def update_new_item_from_existing(
    new_item: dict[str, Any], existing: dict[str, Any] | None
) -> bool:
    """Fold ``existing`` into ``new_item`` field group by field group.

    Returns True if ``new_item`` is newer than ``existing`` in any respect
    (then the row must be replaced), False if the existing row already holds
    everything. ``new_item['created_at']`` is rewritten to the merged encoding.
    """
    t_data, t_ctype, t_meta = item_timestamps(new_item)
    if not existing:
        new_item["created_at"] = encode_timestamps(t_data, t_ctype, t_meta)
        return True
    r_data, r_ctype, r_meta = decode_timestamps(existing["created_at"])
    assert r_ctype is not None and r_meta is not None

    new_ct, new_sb = extract_swift_bytes(new_item["content_type"])
    old_ct, old_sb = extract_swift_bytes(existing["content_type"])

    newer = [True, True, True]
    if r_data >= t_data:
        for key in ("size", "etag", "deleted"):
            new_item[key] = existing[key]
        new_sb = old_sb
        t_data = r_data
        newer[0] = False
    if r_ctype >= t_ctype:
        new_ct = old_ct
        t_ctype = r_ctype
        newer[1] = False
    if r_meta >= t_meta:
        new_item["expires"] = existing.get("expires")
        t_meta = r_meta
        newer[2] = False

    new_item["created_at"] = encode_timestamps(t_data, t_ctype, t_meta)
    new_item["content_type"] = new_ct + (f";swift_bytes={new_sb}" if new_sb else "")
    return any(newer)
