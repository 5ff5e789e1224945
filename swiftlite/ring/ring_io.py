"""Ring files: Swift's ``.ring.gz`` formats, read and written without pickle.

Format v1 (Swift's default) is written byte for byte as Swift writes it, so an
md5 of two ring files says whether two rings are the same whichever of Swift
or swiftlite wrote them, and operators can move ring files between the two:

* one gzip member, header mtime fixed (1300507380 by default) and the FNAME
  field holding the target's basename without ``.gz``;
* the 6-byte magic ``R1NG`` + big-endian version, deflated at level 0 and
  closed with a full flush (so ``file`` can identify a ring), then the rest at
  level 9;
* a 4-byte big-endian JSON length, the JSON (sorted keys, ASCII, Python's
  default separators), then one row of host-order device ids per replica,
  the byte order named by the JSON key ``byteorder``.

Format v2 (opt-in in Swift) keeps each part in a named section behind a zlib
full flush, with network-order device ids (2, 4 or 8 bytes each), sha256
checksums and an index at the tail. We read it by inflating the whole file
and following the index's uncompressed offsets, and write it the way Swift
does so that either side can read what the other wrote.
"""

from __future__ import annotations

import array
import hashlib
import json
import os
import struct
import sys
import tempfile
import time
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "DEFAULT_GZIP_MTIME",
    "DevIdBytesTooSmall",
    "RingData",
    "RingFormatError",
    "calc_replica_count",
    "none_dev_id",
]

RING_MAGIC = b"R1NG"
# Swift pins the gzip header time so identical rings give identical bytes.
DEFAULT_GZIP_MTIME = 1300507380
SUPPORTED_FORMAT_VERSIONS = (1, 2)
_TYPECODE_FOR_BYTES = {2: "H", 4: "I", 8: "Q"}
_V2_SIZE = struct.Struct("!Q")
_V1_JSON_SIZE = struct.Struct("!I")
_SECTION_METADATA = "swift/ring/metadata"
_SECTION_DEVICES = "swift/ring/devices"
_SECTION_ASSIGNMENTS = "swift/ring/assignments"


class RingFormatError(ValueError):
    """The file is not a ring file we can read (bad magic, version, checksum...)."""


class DevIdBytesTooSmall(ValueError):
    """Device ids do not fit the width the chosen ring format allows."""


def none_dev_id(dev_id_bytes: int) -> int:
    """The id reserved for "no device" in an assignment row of this width."""
    return 2 ** (8 * dev_id_bytes) - 1


def calc_replica_count(replica2part2dev_id: Sequence[Sequence[int]]) -> float:
    """Full rows count one each; a short last row counts its fraction."""
    if not replica2part2dev_id:
        return 0
    base = len(replica2part2dev_id) - 1
    return base + len(replica2part2dev_id[-1]) / len(replica2part2dev_id[0])


def _as_dev_array(row: Iterable[int]) -> array.array:
    if isinstance(row, array.array):
        return row
    values = list(row)
    # 'H' like Swift unless an id does not fit (or collides with the
    # 2-byte "no device" marker), in which case the row needs 4 bytes.
    code = "H" if not values or max(values) < 0xFFFF else "I"
    return array.array(code, values)


def _normalize_devices(devs: Sequence[dict[str, Any] | None]) -> None:
    # Old rings may lack the replication address; every consumer expects it,
    # and Swift fills it in the same way (in place) before writing.
    for dev in devs:
        if dev is None:
            continue
        if "ip" in dev:
            dev.setdefault("replication_ip", dev["ip"])
        if "port" in dev:
            dev.setdefault("replication_port", dev["port"])


def _json_bytes(data: Any) -> bytes:
    # Swift's writer: sorted keys, ASCII escapes, default separators.
    return json.dumps(data, sort_keys=True, ensure_ascii=True).encode("ascii")


def _network_order(row: array.array) -> bytes:
    if sys.byteorder == "little":
        swapped = array.array(row.typecode, row)
        swapped.byteswap()
        return swapped.tobytes()
    return row.tobytes()


class _GzipRingWriter:
    """A gzip member built by hand so every flush point is under our control.

    Swift drives :class:`gzip.GzipFile` and swaps its compressor to change
    the level; writing the header, deflate stream and trailer ourselves gives
    the same bytes without depending on that class's private attributes.
    """

    def __init__(self, fp: Any, name: str, mtime: float | None) -> None:
        self.fp = fp
        self.compressed_pos = 0
        self.uncompressed_pos = 0
        self.crc = 0
        self.flushed = True
        try:
            fname = os.path.basename(name).encode("latin-1")
        except UnicodeEncodeError:
            fname = b""
        if fname.endswith(b".gz"):
            fname = fname[:-3]
        stamp = int(time.time() if mtime is None else mtime)
        header = b"\x1f\x8b\x08" + (b"\x08" if fname else b"\x00")
        # XFL 2 = "maximum compression", OS 255 = unknown, as gzip.py writes.
        header += struct.pack("<I", stamp & 0xFFFFFFFF) + b"\x02\xff"
        if fname:
            header += fname + b"\x00"
        self._raw_write(header)
        self.compressor = self._new_compressor(9)

    @staticmethod
    def _new_compressor(level: int) -> Any:
        return zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, zlib.DEF_MEM_LEVEL, 0)

    def _raw_write(self, data: bytes) -> None:
        if data:
            self.fp.write(data)
            self.compressed_pos += len(data)

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.flushed = False
        self._raw_write(self.compressor.compress(data))
        self.crc = zlib.crc32(data, self.crc)
        self.uncompressed_pos += len(data)

    def flush(self) -> None:
        # Full flushes only: a reader may start inflating at any flush point.
        if not self.flushed:
            self._raw_write(self.compressor.flush(zlib.Z_FULL_FLUSH))
            self.flushed = True

    def set_level(self, level: int) -> None:
        # The deflate streams join into one valid stream because the old one
        # ends on a full flush, not a final block.
        self.flush()
        self.compressor = self._new_compressor(level)

    def write_magic(self, version: int) -> None:
        # Stored (level 0) so tools like libmagic can see the magic.
        self.set_level(0)
        self.write(RING_MAGIC + struct.pack("!H", version))
        self.set_level(9)

    def close(self) -> None:
        self._raw_write(self.compressor.flush(zlib.Z_FINISH))
        self._raw_write(struct.pack("<II", self.crc, self.uncompressed_pos & 0xFFFFFFFF))


def _write_atomically(path: str, mtime: float | None, body: Any) -> None:
    """Write via a temp file in the same directory, fsync, then rename."""
    directory = os.path.dirname(path) or "."
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as fp:
            writer = _GzipRingWriter(fp, path, mtime)
            body(writer)
            writer.close()
            fp.flush()
            os.fsync(fp.fileno())
        os.chmod(tmp_path, 0o644)
        os.rename(tmp_path, path)
    except BaseException:
        try:
            os.unlink(tmp_path)
        except FileNotFoundError:
            pass
        raise


class RingData:
    """A ring's assignment table, devices and shift, as stored in a ring file.

    ``replica2part2dev_id[r][p]`` is the device id holding replica ``r`` of
    partition ``p``; the last row may be short (fractional replicas).
    ``devs`` is indexed by device id and may hold ``None`` for removed ids.
    """

    def __init__(
        self,
        replica2part2dev_id: list[array.array],
        devs: list[dict[str, Any] | None],
        part_shift: int,
        next_part_power: int | None = None,
        version: int | None = None,
    ) -> None:
        _normalize_devices(devs)
        self.devs = devs
        for i, row in enumerate(replica2part2dev_id):
            replica2part2dev_id[i] = _as_dev_array(row)
        self.replica2part2dev_id = replica2part2dev_id
        self.part_shift = part_shift
        self.next_part_power = next_part_power
        self.version = version
        # Set by load(): which format the file had, its size on disk and
        # inflated.
        self.format_version: int | None = None
        self.size: int | None = None
        self.raw_size: int | None = None
        # Only meaningful when the table was not loaded (metadata_only).
        self._replica_count: float = 0
        self._dev_id_bytes = 2

    # Swift's attribute names, for code written against Swift's RingData.
    @property
    def _replica2part2dev_id(self) -> list[array.array]:
        return self.replica2part2dev_id

    @property
    def _part_shift(self) -> int:
        return self.part_shift

    @property
    def part_power(self) -> int:
        return 32 - self.part_shift

    @property
    def partition_count(self) -> int:
        return 1 << self.part_power

    @property
    def replica_count(self) -> float:
        if self.replica2part2dev_id:
            return calc_replica_count(self.replica2part2dev_id)
        return self._replica_count

    @property
    def dev_id_bytes(self) -> int:
        if self.replica2part2dev_id:
            return max(row.itemsize for row in self.replica2part2dev_id)
        return self._dev_id_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "devs": self.devs,
            "replica2part2dev_id": self.replica2part2dev_id,
            "part_shift": self.part_shift,
            "next_part_power": self.next_part_power,
            "dev_id_bytes": self.dev_id_bytes,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RingData:
        ring = cls(
            data["replica2part2dev_id"],
            data["devs"],
            data["part_shift"],
            data.get("next_part_power"),
            data.get("version"),
        )
        if "replica_count" in data:
            ring._replica_count = data["replica_count"]
        ring._dev_id_bytes = data.get("dev_id_bytes", 2)
        return ring

    # -- writing ---------------------------------------------------------

    def save(
        self,
        path: str,
        format_version: int = 1,
        mtime: float | None = DEFAULT_GZIP_MTIME,
    ) -> None:
        """Write the ring file atomically; ``mtime=None`` stamps the current time."""
        if format_version == 1:
            if self.dev_id_bytes != 2:
                raise DevIdBytesTooSmall("Ring v1 only supports 2-byte dev IDs")
            _write_atomically(path, mtime, self._write_v1)
        elif format_version == 2:
            _write_atomically(path, mtime, self._write_v2)
        else:
            raise ValueError(f"format_version must be one of {SUPPORTED_FORMAT_VERSIONS!r}")

    def _write_v1(self, writer: _GzipRingWriter) -> None:
        writer.write_magic(1)
        meta: dict[str, Any] = {
            "devs": self.devs,
            "part_shift": self.part_shift,
            "replica_count": len(self.replica2part2dev_id),
            "byteorder": sys.byteorder,
        }
        if self.version is not None:
            meta["version"] = self.version
        if self.next_part_power is not None:
            meta["next_part_power"] = self.next_part_power
        text = _json_bytes(meta)
        writer.write(_V1_JSON_SIZE.pack(len(text)) + text)
        for row in self.replica2part2dev_id:
            writer.write(row.tobytes())

    def _write_v2(self, writer: _GzipRingWriter) -> None:
        writer.write_magic(2)
        width = self.dev_id_bytes
        code = _TYPECODE_FOR_BYTES[width]
        meta: dict[str, Any] = {
            "part_shift": self.part_shift,
            "dev_id_bytes": width,
            "replica_count": calc_replica_count(self.replica2part2dev_id),
            "version": self.version,
        }
        if self.next_part_power is not None:
            meta["next_part_power"] = self.next_part_power
        index: dict[str, list[Any]] = {}

        def section(name: str, chunks: Iterable[bytes]) -> None:
            writer.flush()
            cstart, ustart = writer.compressed_pos, writer.uncompressed_pos
            digest = hashlib.sha256()
            for chunk in chunks:
                digest.update(chunk)
                writer.write(chunk)
            writer.flush()
            index[name] = [
                cstart,
                ustart,
                writer.compressed_pos,
                writer.uncompressed_pos,
                "sha256",
                digest.hexdigest(),
            ]

        def blob(data: bytes) -> list[bytes]:
            return [_V2_SIZE.pack(len(data)), data]

        section(_SECTION_METADATA, blob(_json_bytes(meta)))
        section(_SECTION_DEVICES, blob(_json_bytes(self.devs)))
        rows = [r if r.typecode == code else array.array(code, r) for r in self.replica2part2dev_id]
        total = sum(len(r) for r in rows) * width
        section(_SECTION_ASSIGNMENTS, [_V2_SIZE.pack(total)] + [_network_order(r) for r in rows])

        # The index, then its uncompressed and compressed offsets, each of
        # the two offsets stored (level 0) behind its own full flush so a
        # reader can find the index 31 bytes from the end of the file.
        writer.flush()
        ustart, cstart = writer.uncompressed_pos, writer.compressed_pos
        for chunk in blob(_json_bytes(index)):
            writer.write(chunk)
        writer.set_level(0)
        writer.write(_V2_SIZE.pack(ustart))
        writer.flush()
        writer.write(_V2_SIZE.pack(cstart))
        writer.flush()

    # -- reading ---------------------------------------------------------

    @classmethod
    def load(cls, path: str, metadata_only: bool = False, include_devices: bool = True) -> RingData:
        """Read a v1 or v2 ring file (either byte order for v1)."""
        with open(path, "rb") as fp:
            compressed = fp.read()
        try:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            raw = inflater.decompress(compressed)
        except zlib.error as exc:
            raise RingFormatError(f"{path!r} is not a gzip ring file: {exc}") from None
        if raw[:4] != RING_MAGIC:
            raise RingFormatError(f"Bad ring magic: {raw[:4]!r} in {path!r}")
        if len(raw) < 6:
            raise RingFormatError(f"Truncated ring file {path!r}")
        (version,) = struct.unpack_from("!H", raw, 4)
        if version == 1:
            data = _parse_v1(raw, metadata_only)
        elif version == 2:
            data = _parse_v2(raw, metadata_only, include_devices)
        else:
            raise RingFormatError(f"Unsupported ring version: {version} for {path!r}")
        ring = cls.from_dict(data)
        ring.format_version = version
        ring.size = len(compressed)
        ring.raw_size = len(raw)
        return ring


def _parse_v1(raw: bytes, metadata_only: bool) -> dict[str, Any]:
    (json_len,) = _V1_JSON_SIZE.unpack_from(raw, 6)
    pos = 6 + _V1_JSON_SIZE.size
    data = json.loads(raw[pos : pos + json_len])
    pos += json_len
    data["replica2part2dev_id"] = []
    if metadata_only:
        return data
    swap = data.get("byteorder", sys.byteorder) != sys.byteorder
    row_bytes = 2 << (32 - data["part_shift"])
    for _ in range(data["replica_count"]):
        row = array.array("H", raw[pos : pos + row_bytes])
        pos += row_bytes
        if swap:
            row.byteswap()
        data["replica2part2dev_id"].append(row)
    return data


def _v2_section(raw: bytes, index: dict[str, list[Any]], name: str) -> bytes:
    try:
        _cstart, ustart, _cend, uend, method, expected = index[name]
    except (KeyError, ValueError):
        raise RingFormatError(f"ring index has no usable section {name!r}") from None
    (length,) = _V2_SIZE.unpack_from(raw, ustart)
    if _V2_SIZE.size + length != uend - ustart:
        raise RingFormatError(f"Inconsistent section size for {name!r}")
    if method not in ("md5", "sha1", "sha256", "sha512"):
        raise RingFormatError(f"Unsupported checksum {method}:{expected} for section {name!r}")
    whole = raw[ustart:uend]
    found = hashlib.new(method, whole).hexdigest()
    if found != expected:
        raise RingFormatError(
            f"Hash mismatch in block {name!r}: {found!r} found; {expected!r} expected"
        )
    return whole[_V2_SIZE.size :]


def _parse_v2(raw: bytes, metadata_only: bool, include_devices: bool) -> dict[str, Any]:
    if len(raw) < 6 + 2 * _V2_SIZE.size:
        raise RingFormatError("Truncated v2 ring file")
    # The tail holds the index's uncompressed then compressed offset.
    (index_start,) = _V2_SIZE.unpack_from(raw, len(raw) - 2 * _V2_SIZE.size)
    (index_len,) = _V2_SIZE.unpack_from(raw, index_start)
    body = index_start + _V2_SIZE.size
    index = json.loads(raw[body : body + index_len])
    data = json.loads(_v2_section(raw, index, _SECTION_METADATA))
    data["replica2part2dev_id"] = []
    data["devs"] = []
    if include_devices:
        data["devs"] = json.loads(_v2_section(raw, index, _SECTION_DEVICES))
    if metadata_only:
        return data
    width = data["dev_id_bytes"]
    try:
        code = _TYPECODE_FOR_BYTES[width]
    except KeyError:
        raise RingFormatError(f"Unsupported dev_id_bytes {width!r}") from None
    table = _v2_section(raw, index, _SECTION_ASSIGNMENTS)
    row_bytes = width << (32 - data["part_shift"])
    for pos in range(0, len(table), row_bytes):
        row = array.array(code, table[pos : pos + row_bytes])
        if sys.byteorder == "little":
            row.byteswap()
        data["replica2part2dev_id"].append(row)
    return data
