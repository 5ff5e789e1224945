"""Ring file io: round trips, and byte-for-byte agreement with Swift's writer."""

from __future__ import annotations

import array
import gzip
import json
import os
import struct
import sys

import pytest

from swiftlite.ring.ring_io import (
    DevIdBytesTooSmall,
    RingData,
    RingFormatError,
    calc_replica_count,
)

swift_ring = pytest.importorskip("swift.common.ring")
swift_builder = pytest.importorskip("swift.common.ring.builder")


def _swift_ring_data(part_power: int = 8, replicas: float = 3, ndevs: int = 6, holes: int = 0):
    """A small ring built by Swift's own builder."""
    builder = swift_builder.RingBuilder(part_power, replicas, 1)
    for i in range(ndevs):
        builder.add_dev(
            {
                "region": 1 + i % 2,
                "zone": i % 3,
                "ip": f"10.0.{i % 2}.{i}",
                "port": 6200 + i,
                "device": f"sd{chr(97 + i)}",
                "weight": 100.0 + i,
                "meta": "m\u00e9ta" if i == 0 else "",
            }
        )
    builder.rebalance(seed=7)
    for dev_id in range(holes):
        builder.remove_dev(dev_id)
        builder.pretend_min_part_hours_passed()
        builder.rebalance(seed=8)
    return builder.get_ring()


def _rows(rd) -> list[list[int]]:
    return [list(r) for r in rd._replica2part2dev_id]


def _save_both(tmp_path, swift_rd, fmt: int):
    """Save with Swift and (from what we loaded) with swiftlite under the same basename."""
    (tmp_path / "swift").mkdir(exist_ok=True)
    (tmp_path / "lite").mkdir(exist_ok=True)
    swift_path = str(tmp_path / "swift" / "object.ring.gz")
    lite_path = str(tmp_path / "lite" / "object.ring.gz")
    swift_rd.save(swift_path, format_version=fmt)
    RingData.load(swift_path).save(lite_path, format_version=fmt)
    return swift_path, lite_path


@pytest.mark.parametrize("fmt", [1, 2])
@pytest.mark.parametrize(
    "part_power,replicas,ndevs,holes",
    [(8, 3, 6, 0), (10, 3.25, 7, 0), (9, 2.5, 8, 2), (6, 1, 1, 0), (8, 4, 5, 1)],
)
def test_resave_of_swift_ring_is_byte_identical(tmp_path, fmt, part_power, replicas, ndevs, holes):
    swift_rd = _swift_ring_data(part_power, replicas, ndevs, holes)
    swift_path, lite_path = _save_both(tmp_path, swift_rd, fmt)
    with open(swift_path, "rb") as a, open(lite_path, "rb") as b:
        assert a.read() == b.read()
    loaded = RingData.load(swift_path)
    assert loaded.format_version == fmt
    assert _rows(loaded) == _rows(swift_rd)
    assert loaded.devs == swift_rd.devs
    assert loaded.replica_count == pytest.approx(replicas)
    assert loaded.part_power == part_power
    assert loaded.version == swift_rd.version


@pytest.mark.parametrize("fmt", [1, 2])
def test_swift_loads_what_we_write(tmp_path, fmt):
    rows = [array.array("H", [(p * 7 + r) % 5 for p in range(256)]) for r in range(3)]
    rows.append(array.array("H", [p % 5 for p in range(64)]))
    devs = [
        {
            "id": i,
            "region": 1,
            "zone": i,
            "ip": "127.0.0.1",
            "port": 6200 + i,
            "device": "d",
            "weight": 1.5,
            "meta": "",
        }
        for i in range(5)
    ]
    devs.insert(5, None)
    rd = RingData(rows, devs, 24, next_part_power=9, version=42)
    path = str(tmp_path / "x.ring.gz")
    rd.save(path, format_version=fmt)
    theirs = swift_ring.RingData.load(path)
    assert _rows(theirs) == [list(r) for r in rows]
    assert theirs.devs == rd.devs
    assert theirs.devs[0]["replication_ip"] == "127.0.0.1"
    assert theirs.devs[0]["replication_port"] == 6200
    assert theirs.next_part_power == 9
    assert theirs.version == 42
    assert theirs.replica_count == pytest.approx(3.25)
    # And Swift writing the same data gives the same bytes.
    os.makedirs(tmp_path / "sub")
    theirs.save(str(tmp_path / "sub" / "x.ring.gz"), format_version=fmt)
    assert (tmp_path / "sub" / "x.ring.gz").read_bytes() == (tmp_path / "x.ring.gz").read_bytes()


def test_v1_layout_by_hand(tmp_path):
    """The v1 layout read with nothing but gzip/struct/json."""
    rows = [array.array("H", [1, 2, 3, 4]), array.array("H", [4, 3, 2, 1])]
    devs = [
        {"id": i, "region": 1, "zone": 1, "ip": "1.2.3.4", "port": 1, "device": "a"}
        for i in range(5)
    ]
    path = str(tmp_path / "r.ring.gz")
    RingData(rows, devs, 30, version=3).save(path)
    raw_file = (tmp_path / "r.ring.gz").read_bytes()
    assert struct.unpack("<I", raw_file[4:8])[0] == 1300507380
    assert raw_file[10:17] == b"r.ring\x00"  # FNAME without ".gz"
    raw = gzip.decompress(raw_file)
    assert raw[:6] == b"R1NG\x00\x01"
    (jlen,) = struct.unpack("!I", raw[6:10])
    meta = json.loads(raw[10 : 10 + jlen])
    assert set(meta) == {"devs", "part_shift", "replica_count", "byteorder", "version"}
    assert meta["byteorder"] == sys.byteorder and meta["replica_count"] == 2
    assert raw[10 : 10 + jlen] == json.dumps(meta, sort_keys=True).encode()
    assert array.array("H", raw[10 + jlen : 18 + jlen]).tolist() == [1, 2, 3, 4]


def test_v1_other_byte_order(tmp_path):
    """A v1 ring written on a host of the other endianness loads the same."""
    other = "big" if sys.byteorder == "little" else "little"
    rows = [array.array("H", [0, 1, 258, 3]), array.array("H", [3, 2, 1, 0])]
    meta = {
        "devs": [{"id": i} for i in range(259)],
        "part_shift": 30,
        "replica_count": 2,
        "byteorder": other,
    }
    text = json.dumps(meta, sort_keys=True).encode()
    body = b"R1NG" + struct.pack("!HI", 1, len(text)) + text
    for row in rows:
        swapped = array.array("H", row)
        swapped.byteswap()
        body += swapped.tobytes()
    path = tmp_path / "o.ring.gz"
    path.write_bytes(gzip.compress(body))
    loaded = RingData.load(str(path))
    assert _rows(loaded) == [list(r) for r in rows]


def test_metadata_only(tmp_path):
    path = str(tmp_path / "m.ring.gz")
    swift_rd = _swift_ring_data(8, 3.5)
    for fmt in (1, 2):
        swift_rd.save(path, format_version=fmt)
        meta = RingData.load(path, metadata_only=True)
        assert meta.replica2part2dev_id == []
        assert meta.part_power == 8
        assert meta.devs == swift_rd.devs
        assert meta.replica_count == (4 if fmt == 1 else 3.5)
    no_devs = RingData.load(path, include_devices=False)
    assert no_devs.devs == []
    assert _rows(no_devs) == _rows(swift_rd)


def test_wide_device_ids(tmp_path):
    rows = [array.array("I", [70000, 1, 2, 3])]
    devs: list = [None] * 70001
    devs[70000] = {"id": 70000, "ip": "h", "port": 1}
    rd = RingData(rows, devs, 30)
    assert rd.dev_id_bytes == 4
    with pytest.raises(DevIdBytesTooSmall):
        rd.save(str(tmp_path / "w.ring.gz"))
    rd.save(str(tmp_path / "w.ring.gz"), format_version=2)
    ours = RingData.load(str(tmp_path / "w.ring.gz"))
    theirs = swift_ring.RingData.load(str(tmp_path / "w.ring.gz"))
    assert _rows(ours) == _rows(theirs) == [[70000, 1, 2, 3]]
    assert ours.dev_id_bytes == 4
    # Plain lists are accepted and get a wide enough array type.
    assert RingData([[1, 2], [70000, 0]], devs, 31).dev_id_bytes == 4
    assert RingData([[1, 2]], devs, 31).replica2part2dev_id[0].typecode == "H"


def test_rejects_garbage(tmp_path):
    bad = tmp_path / "bad.ring.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(RingFormatError):
        RingData.load(str(bad))
    bad.write_bytes(gzip.compress(b"NOPE\x00\x01"))
    with pytest.raises(RingFormatError, match="magic"):
        RingData.load(str(bad))
    bad.write_bytes(gzip.compress(b"R1NG\x00\x07"))
    with pytest.raises(RingFormatError, match="version"):
        RingData.load(str(bad))
    with pytest.raises(ValueError):
        RingData([array.array("H", [0])], [{"id": 0}], 31).save(str(bad), format_version=3)


def test_v2_checksum_is_verified(tmp_path):
    path = tmp_path / "c.ring.gz"
    devs = [{"id": 0, "ip": "a", "port": 1}, {"id": 1, "ip": "b", "port": 2}]
    RingData([array.array("H", [0, 1])], devs, 31).save(str(path), format_version=2)
    raw = bytearray(gzip.decompress(path.read_bytes()))
    where = raw.find(b'"ip": "b"')
    raw[where + 7] = ord("c")
    # Re-gzipping keeps the uncompressed offsets the index points at.
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(RingFormatError, match="Hash mismatch"):
        RingData.load(str(path))


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "a.ring.gz"
    rd = RingData([array.array("H", [0, 0])], [{"id": 0, "ip": "x", "port": 1}], 31)
    rd.save(str(path))
    first = path.read_bytes()
    rd.save(str(path), mtime=None)  # current time in the header
    assert os.listdir(tmp_path) == ["a.ring.gz"]
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    assert gzip.decompress(path.read_bytes()) == gzip.decompress(first)


def test_calc_replica_count():
    assert calc_replica_count([]) == 0
    assert calc_replica_count([[0] * 8, [0] * 8, [0] * 2]) == 2.25
