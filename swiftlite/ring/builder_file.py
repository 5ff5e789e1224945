"""The builder file: versioned JSON, never pickle.

Swift pickles ``RingBuilder.to_dict()``; swiftlite writes the same keys as a
JSON document tagged ``"format": "swiftlite-builder"``, ``"format_version": 1``.
The large tables are packed: each ``_replica2part2dev`` row is base64 of a
little-endian array of ``dev_id_bytes``-wide ids, and ``_last_part_moves`` is
base64 of its bytes.  ``_remove_devs`` is stored as device ids (the devices
themselves are in ``devs``).  Every save also writes a timestamped copy to
``<dir>/backups/<unix>.<name>``, as Swift's tool does, so a bad change can be
undone.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
from array import array
from time import time
from typing import Any

from swiftlite.ring.builder_plan import RingBuilderError

FORMAT = "swiftlite-builder"
FORMAT_VERSION = 1
_TYPECODES = {2: "H", 4: "I"}


class BuilderFileError(RingBuilderError):
    """The file is not a builder file swiftlite can read."""


class PickledBuilderError(BuilderFileError):
    """A Swift (pickle) builder file: refused, never unpickled."""


def _pack(row: array) -> str:
    if sys.byteorder != "little":
        row = array(row.typecode, row)
        row.byteswap()
    return base64.b64encode(row.tobytes()).decode("ascii")


def _unpack(text: str, typecode: str) -> array:
    row = array(typecode)
    row.frombytes(base64.b64decode(text))
    if sys.byteorder != "little":
        row.byteswap()
    return row


def encode_builder(data: dict[str, Any]) -> dict[str, Any]:
    """A :meth:`RingBuilder.to_dict` dictionary as a JSON-able document."""
    rows = data["_replica2part2dev"]
    devs = [
        None if d is None else {k: v for k, v in d.items() if k != "tiers"} for d in data["devs"]
    ]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "part_power": data["part_power"],
        "next_part_power": data["next_part_power"],
        "replicas": data["replicas"],
        "min_part_hours": data["min_part_hours"],
        "parts": data["parts"],
        "devs": devs,
        "devs_changed": data["devs_changed"],
        "dev_id_bytes": data["dev_id_bytes"],
        "version": data["version"],
        "overload": data["overload"],
        "_replica2part2dev": None if rows is None else [_pack(r) for r in rows],
        "_last_part_moves_epoch": data["_last_part_moves_epoch"],
        "_last_part_moves": base64.b64encode(bytes(data["_last_part_moves"])).decode("ascii"),
        "_last_part_gather_start": data["_last_part_gather_start"],
        "_dispersion_graph": [[list(t), c] for t, c in data["_dispersion_graph"].items()],
        "dispersion": data["dispersion"],
        "_remove_devs": [d["id"] for d in data["_remove_devs"]],
        "id": data["id"],
    }


def decode_builder(doc: dict[str, Any], path: str = "<builder>") -> dict[str, Any]:
    """The inverse of :func:`encode_builder`."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BuilderFileError(f"Ring Builder file is invalid: {path}")
    if doc.get("format_version") != FORMAT_VERSION:
        raise BuilderFileError(
            f"Ring Builder file {path} has format_version {doc.get('format_version')!r}; "
            f"this swiftlite reads version {FORMAT_VERSION}"
        )
    try:
        typecode = _TYPECODES[doc.get("dev_id_bytes", 2)]
        rows = doc["_replica2part2dev"]
        devs = doc["devs"]
        by_id = {d["id"]: d for d in devs if d is not None}
        data = {k: v for k, v in doc.items() if k not in ("format", "format_version")}
        data["_replica2part2dev"] = None if rows is None else [_unpack(r, typecode) for r in rows]
        data["_last_part_moves"] = bytearray(base64.b64decode(doc["_last_part_moves"]))
        data["_dispersion_graph"] = {tuple(t): c for t, c in doc.get("_dispersion_graph", [])}
        data["_remove_devs"] = [by_id[i] for i in doc.get("_remove_devs", [])]
    except (KeyError, TypeError, ValueError) as exc:
        raise BuilderFileError(f"Ring Builder file is invalid: {path} ({exc!r})") from None
    return data


def _file_mode(path: str) -> int:
    """Keep an existing file's mode; a new file gets what open() would give it
    (mkstemp's private 0600 would hide the builder from other operators)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _write_atomically(path: str, body: bytes) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    mode = _file_mode(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".builder")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fp:
            fp.write(body)
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def save_builder(data: dict[str, Any], path: str, backup: bool = True) -> None:
    """Write the builder file atomically and, unless it is itself in a
    ``backups`` directory, a copy at ``backups/<unix>.<name>`` beside it."""
    body = json.dumps(encode_builder(data), separators=(",", ":")).encode("utf-8")
    _write_atomically(path, body)
    parent = os.path.dirname(os.path.abspath(path))
    if backup and os.path.basename(parent) != "backups":
        backup_dir = os.path.join(parent, "backups")
        os.makedirs(backup_dir, exist_ok=True)
        name = f"{int(time())}.{os.path.basename(path)}"
        _write_atomically(os.path.join(backup_dir, name), body)


def load_builder(path: str) -> dict[str, Any]:
    """Read a builder file into a ``to_dict``-style dictionary."""
    with open(path, "rb") as fp:
        body = fp.read()
    # Pickle protocol 2+ starts with PROTO (0x80); protocols 0/1 with "(" or "}".
    if body[:1] == b"\x80" or body[:2] in (b"(d", b"}q", b"(l"):
        raise PickledBuilderError(
            f"{path} is a Swift (pickle) builder file; swiftlite never unpickles. "
            "Recreate a builder from its ring file with "
            "'swiftlite-ring-builder <ring.gz> write_builder'."
        )
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BuilderFileError(f"Ring Builder file is invalid: {path}") from None
    return decode_builder(doc, path)
