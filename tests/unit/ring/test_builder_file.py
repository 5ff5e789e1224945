"""Builder file (versioned JSON, backups, no pickle), get_ring and from_ring."""

from __future__ import annotations

import json
import os

import pytest

from swiftlite.ring.builder import (
    BuilderFileError,
    PickledBuilderError,
    RingBuilder,
)
from swiftlite.ring.ring_io import RingData
from tests.unit.ring.builder_helpers import make_builder, snapshot, zoned_layout


def built(overload: float = 0.0, replicas: float = 3) -> RingBuilder:
    b = make_builder(8, replicas, zoned_layout(3, 2, 2), overload=overload)
    b.rebalance(seed=3)
    b.remove_dev(4)  # pending removal must survive a save
    b.devs[1]["meta"] = "café ☃"
    return b


def state(b: RingBuilder) -> dict:
    d = b.to_dict()
    d["_replica2part2dev"] = [list(r) for r in d["_replica2part2dev"] or []]
    d["_last_part_moves"] = bytes(d["_last_part_moves"])
    d["_remove_devs"] = [x["id"] for x in d["_remove_devs"]]
    return d


@pytest.mark.parametrize("replicas", [3, 2.5])
def test_round_trip(tmp_path, replicas):
    b = built(overload=0.25, replicas=replicas)
    path = str(tmp_path / "object.builder")
    b.save(path)
    loaded = RingBuilder.load(path)
    assert state(loaded) == state(b)
    assert loaded.id == b.id
    assert loaded._remove_devs[0] is loaded.devs[4]
    loaded.validate()
    # A loaded builder keeps working, and identically to the original.
    for x in (b, loaded):
        x.pretend_min_part_hours_passed()
        x.rebalance(seed=11)
    assert snapshot(loaded) == snapshot(b)
    assert loaded.devs[4] is None


def test_file_is_tagged_json_with_compact_rows(tmp_path):
    b = built()
    path = tmp_path / "object.builder"
    b.save(str(path))
    doc = json.loads(path.read_bytes())
    assert doc["format"] == "swiftlite-builder"
    assert doc["format_version"] == 1
    assert all(isinstance(r, str) for r in doc["_replica2part2dev"])
    assert doc["_remove_devs"] == [4]
    # base64 of 2-byte ids: about 2.7 bytes per slot
    assert path.stat().st_size < 3 * 256 * 3 + 4000


def test_save_writes_backup_and_is_atomic(tmp_path):
    b = built()
    path = tmp_path / "object.builder"
    b.save(str(path))
    backups = os.listdir(tmp_path / "backups")
    assert len(backups) == 1
    stamp, name = backups[0].split(".", 1)
    assert name == "object.builder" and stamp.isdigit()
    assert (tmp_path / "backups" / backups[0]).read_bytes() == path.read_bytes()
    # No temp files left behind.
    assert sorted(os.listdir(tmp_path)) == ["backups", "object.builder"]
    # Saving into a backups directory does not nest another one.
    b.save(str(tmp_path / "backups" / "123.object.builder"))
    assert not (tmp_path / "backups" / "backups").exists()
    b.save(str(tmp_path / "other.builder"), backup=False)
    assert len(os.listdir(tmp_path / "backups")) == 2


def test_unsaved_id_is_not_kept_when_save_fails(tmp_path):
    b = built()
    with pytest.raises(OSError):
        b.save(str(tmp_path / "missing-dir" / "x.builder"))
    with pytest.raises(AttributeError):
        _ = b.id


def test_swift_pickle_file_is_refused_without_unpickling(tmp_path):
    from swift.common.ring.builder import RingBuilder as SwiftBuilder

    path = tmp_path / "object.builder"
    sb = make_builder(6, 3, zoned_layout(3, 1, 1), cls=SwiftBuilder)
    sb.save(str(path))  # Swift pickles; swiftlite must refuse to read it
    with pytest.raises(PickledBuilderError, match="write_builder"):
        RingBuilder.load(str(path))


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b'{"format": "other"}', b"[1, 2]", b'{"format": "swiftlite-builder"}'],
)
def test_invalid_files(tmp_path, body):
    path = tmp_path / "x.builder"
    path.write_bytes(body)
    with pytest.raises(BuilderFileError):
        RingBuilder.load(str(path))


def test_future_format_version_is_refused(tmp_path):
    b = built()
    path = tmp_path / "x.builder"
    b.save(str(path))
    doc = json.loads(path.read_bytes())
    doc["format_version"] = 2
    path.write_text(json.dumps(doc))
    with pytest.raises(BuilderFileError, match="format_version"):
        RingBuilder.load(str(path))


def test_missing_file():
    with pytest.raises(FileNotFoundError):
        RingBuilder.load("/nonexistent/x.builder")


def test_get_ring_strips_builder_keys_and_round_trips(tmp_path):
    b = make_builder(8, 3, zoned_layout(3, 1, 2))
    b.rebalance(seed=1)
    b.remove_dev(0)
    b.rebalance(seed=2)
    ring = b.get_ring()
    assert ring.devs[0] is None
    for dev in ring.devs[1:]:
        assert "parts" not in dev and "parts_wanted" not in dev
    assert b.devs[1]["parts"] > 0  # the builder keeps its own copy
    assert ring.part_shift == 24 and ring.version == b.version
    assert b.get_ring() is ring  # cached until the next change
    path = str(tmp_path / "object.ring.gz")
    ring.save(path)
    loaded = RingData.load(path)
    assert [list(r) for r in loaded.replica2part2dev_id] == snapshot(b)

    again = RingBuilder.from_ring(loaded, min_part_hours=6)
    assert again.min_part_hours == 6
    assert again.part_power == 8 and again.replicas == 3.0
    assert snapshot(again) == snapshot(b)
    assert [d and d["parts"] for d in again.devs] == [d and d["parts"] for d in b.devs]
    again.validate()
    assert again.get_balance() == pytest.approx(b.get_balance())
    again.add_dev({"region": 1, "zone": 1, "ip": "n", "port": 1, "device": "n", "weight": 100})
    again.rebalance(seed=3)
    again.validate()


def test_get_ring_before_rebalance():
    b = make_builder(8, 3, zoned_layout(3, 1, 1))
    ring = b.get_ring()
    assert ring.replica2part2dev_id == []
    assert len(ring.devs) == 3


def test_fractional_ring_from_swift_ring(tmp_path):
    """write_builder's path: a ring written by Swift becomes a working builder."""
    from swift.common.ring.builder import RingBuilder as SwiftBuilder

    sb = make_builder(8, 2.5, zoned_layout(3, 2, 1), cls=SwiftBuilder)
    sb.rebalance(seed=1)
    path = str(tmp_path / "swift.ring.gz")
    sb.get_ring().save(path)
    b = RingBuilder.from_ring(RingData.load(path))
    assert b.replicas == 2.5
    assert b.min_part_hours == 24
    assert snapshot(b) == [list(r) for r in sb._replica2part2dev]
    b.validate()
    assert b.get_balance() == pytest.approx(sb.get_balance())


def test_get_ring_cache_follows_device_changes():
    b = make_builder(6, 3, zoned_layout(3, 1, 1))
    b.rebalance(seed=1)
    first = b.get_ring()
    b.add_dev({"region": 1, "zone": 1, "ip": "n", "port": 1, "device": "n", "weight": 1})
    second = b.get_ring()
    assert second is not first and len(second.devs) == 4
    b.set_dev_weight(3, 2)
    assert b.get_ring() is not second


def test_four_byte_device_ids(tmp_path):
    b = make_builder(6, 2, zoned_layout(2, 1, 1))
    b.rebalance(seed=1)
    assert b.dev_id_bytes == 2
    b.add_dev(
        {"id": 70000, "region": 1, "zone": 3, "ip": "big", "port": 1, "device": "d", "weight": 100}
    )
    assert b.dev_id_bytes == 4 and b.none_dev_id == 2**32 - 1
    b.pretend_min_part_hours_passed()
    b.rebalance(seed=2)
    b.validate()
    assert any(70000 in row for row in b._replica2part2dev)
    path = str(tmp_path / "big.builder")
    b.save(path)
    loaded = RingBuilder.load(path)
    assert snapshot(loaded) == snapshot(b)
    assert loaded._replica2part2dev[0].itemsize == 4
    # Removing the big id shrinks the table back to 2-byte ids on the next rebalance.
    loaded.remove_dev(70000)
    loaded.rebalance(seed=3)
    loaded.validate()
    assert len(loaded.devs) == 2
    assert loaded.dev_id_bytes == 2 and loaded._replica2part2dev[0].typecode == "H"


def test_file_modes(tmp_path):
    b = built()
    path = tmp_path / "object.builder"
    old = os.umask(0o022)
    try:
        b.save(str(path))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    os.chmod(path, 0o640)
    b.save(str(path))
    assert path.stat().st_mode & 0o777 == 0o640
