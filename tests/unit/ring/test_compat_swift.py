"""swiftlite's ring against OpenStack Swift's, the compatibility oracle.

Rings are built with Swift's own ``swift-ring-builder`` CLI in several
topologies; both implementations load the same file and must agree on the
partition, the primaries and the handoff order for many random names, and
files written by either side must load (and compare equal) on the other.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import zlib
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swiftlite.common import hashing
from swiftlite.ring.ring import Ring
from swiftlite.ring.ring_io import RingData

swift_utils = pytest.importorskip("swift.common.utils")
swift_ring = pytest.importorskip("swift.common.ring")

CLI = shutil.which("swift-ring-builder")
pytestmark = pytest.mark.skipif(CLI is None, reason="swift-ring-builder not installed")

PREFIX = "pr\u00e9fix-7"
SUFFIX = "s\u00fcffix-3"
PATHS_PER_TOPOLOGY = 10_000


def _dev(region: int, zone: int, ip: str, port: int, device: str, weight: float) -> list[str]:
    return [f"r{region}z{zone}-{ip}:{port}/{device}", str(weight)]


def _topologies() -> dict[str, dict[str, Any]]:
    one_region = [
        _dev(1, z, f"10.1.{z}.{h}", 6200, f"sd{d}", 100)
        for z in range(1, 5)
        for h in range(1, 3)
        for d in "ab"
    ]
    two_regions = [
        _dev(r, z, f"10.{r}.{z}.{h}", 6200 + h, f"d{d}", 50 + 25 * d)
        for r in (1, 2)
        for z in range(1, 4)
        for h in range(1, 3)
        for d in range(2)
    ]
    fractional = [
        _dev(1, z, f"10.3.{z}.1", 6200, f"sd{d}", 100) for z in range(1, 4) for d in "abc"
    ]
    holes = [_dev(1, z, f"10.4.{z}.1", 6200, f"sd{d}", 100) for z in range(1, 5) for d in "ab"]
    unequal = [
        _dev(r, z, f"10.5.{r}{z}.1", 6000 + z, f"sd{d}", w)
        for r, z, w in ((1, 1, 200), (1, 2, 100), (2, 1, 300), (3, 1, 50))
        for d in "abc"
    ]
    return {
        "1region-4zones-pp10": dict(part_power=10, replicas=3, devs=one_region),
        "2regions-pp12": dict(part_power=12, replicas=3, devs=two_regions),
        "fractional-2.5-pp9": dict(part_power=9, replicas=2.5, devs=fractional),
        "holes-pp8": dict(part_power=8, replicas=3, devs=holes, remove=["d0", "d5", "d6"]),
        "3regions-unequal-3.75-pp11": dict(part_power=11, replicas=3.75, devs=unequal),
        "v2-2regions-pp10": dict(part_power=10, replicas=3, devs=two_regions, fmt=2),
    }


TOPOLOGIES = _topologies()


def _cli(*args: str) -> None:
    assert CLI is not None
    proc = subprocess.run([CLI, *args], capture_output=True, text=True, check=False)
    # 1 is Swift's "warning" exit (e.g. dispersion not perfect): still written.
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr


def _build_with_swift(directory: Path, spec: dict[str, Any]) -> Path:
    builder = str(directory / "object.builder")
    fmt = str(spec.get("fmt", 1))
    _cli(builder, "create", str(spec["part_power"]), str(spec["replicas"]), "1")
    _cli(builder, "add", *[arg for dev in spec["devs"] for arg in dev])
    _cli(builder, "rebalance", "-s", "11", "--format-version", fmt)
    if spec.get("remove"):
        for search in spec["remove"]:
            _cli(builder, "remove", search)
        _cli(builder, "pretend_min_part_hours_passed")
        _cli(builder, "rebalance", "-s", "12", "--format-version", fmt)
    return directory / "object.ring.gz"


class _LazyRings(dict):
    """Builds a topology's ring on first use (xdist workers build only theirs)."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        super().__init__()
        self.factory = factory

    def __missing__(self, name: str) -> Path:
        directory = self.factory.mktemp(name.replace(".", "_"))
        path = self[name] = _build_with_swift(directory, TOPOLOGIES[name])
        return path


@pytest.fixture(scope="module")
def swift_rings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _LazyRings(tmp_path_factory)


@pytest.fixture(autouse=True)
def same_secrets(monkeypatch: pytest.MonkeyPatch):
    """Both implementations hash with the same (non-ASCII) secrets."""
    monkeypatch.setattr(swift_utils, "HASH_PATH_PREFIX", PREFIX.encode("latin-1"))
    monkeypatch.setattr(swift_utils, "HASH_PATH_SUFFIX", SUFFIX.encode("latin-1"))
    old = hashing.get_hash_path_secrets()
    hashing.set_hash_path_secrets(PREFIX, SUFFIX)
    yield
    hashing.set_hash_path_secrets(*old)


_ALPHABETS = [
    "abcdefghijklmnopqrstuvwxyz0123456789-_.",
    "ABCXYZ ~!@#$%^&*()+=[]{}|;:'\",<>?/\\",
    "\u00e9\u00fc\u00df\u0142\u03a9\u0416\u05d0\u0627\u4e2d\u6587\u65e5\u672c\u3042",
    "\U0001f600\U0001f4a9\U00010348\u2603\ufb01\u200b",
]


def _random_name(rng: random.Random, max_len: int) -> str:
    alphabet = "".join(rng.sample(_ALPHABETS, rng.randint(1, len(_ALPHABETS))))
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, max_len)))


def _random_paths(seed: int, count: int) -> list[tuple[str, str | None, str | None]]:
    rng = random.Random(seed)
    paths: list[tuple[str, str | None, str | None]] = []
    for _ in range(count):
        account = "AUTH_" + _random_name(rng, 12)
        kind = rng.random()
        if kind < 0.1:
            paths.append((account, None, None))
        elif kind < 0.25:
            paths.append((account, _random_name(rng, 20), None))
        else:
            obj = "/".join(_random_name(rng, 15) for _ in range(rng.randint(1, 4)))
            paths.append((account, _random_name(rng, 20), obj))
    return paths


def _load_both(path: Path) -> tuple[Any, Ring]:
    return swift_ring.Ring(str(path)), Ring(str(path))


def _assert_same_lookups(theirs: Any, ours: Ring, paths: list, handoffs: int) -> None:
    for account, container, obj in paths:
        part, nodes = theirs.get_nodes(account, container, obj)
        assert ours.get_nodes(account, container, obj) == (part, nodes), (account, container, obj)
        if handoffs:
            assert list(islice(ours.get_more_nodes(part), handoffs)) == list(
                islice(theirs.get_more_nodes(part), handoffs)
            ), part


@pytest.mark.parametrize("topology", sorted(TOPOLOGIES))
def test_swift_built_ring_same_nodes_and_handoffs(swift_rings, topology):
    path = swift_rings[topology]
    theirs, ours = _load_both(path)
    assert ours.partition_count == theirs.partition_count
    assert ours.replica_count == theirs.replica_count
    assert ours.part_power == theirs.part_power
    assert ours.devs == theirs.devs
    assert ours.device_count == theirs.device_count
    assert ours.assigned_device_count == theirs.assigned_device_count
    assert ours.weighted_device_count == theirs.weighted_device_count
    if topology.startswith("holes"):
        assert None in ours.devs  # removed ids leave holes
    # Ten thousand random names: partition, primaries, and a prefix of the
    # handoffs long enough to leave the primaries' tiers.
    paths = _random_paths(zlib.crc32(topology.encode()), PATHS_PER_TOPOLOGY)
    _assert_same_lookups(theirs, ours, paths, handoffs=2 * int(ours.replica_count) + 2)
    # The complete handoff sequence (every pass of the tier walk down to
    # the last unused device) for a sample of partitions, and the edges.
    rng = random.Random(5)
    sample = rng.sample(range(ours.partition_count), min(150, ours.partition_count))
    for part in [0, ours.partition_count - 1, *sample]:
        full = list(ours.get_more_nodes(part))
        assert full == list(theirs.get_more_nodes(part)), part
        assert [n["handoff_index"] for n in full] == list(range(len(full)))
        assert ours.get_part_nodes(part) == theirs.get_part_nodes(part)


@pytest.mark.parametrize("topology", sorted(TOPOLOGIES))
def test_ring_resaved_by_swiftlite_is_identical_and_loads_in_swift(swift_rings, topology, tmp_path):
    source = swift_rings[topology]
    fmt = TOPOLOGIES[topology].get("fmt", 1)
    data = RingData.load(str(source))
    assert data.format_version == fmt
    # Same basename: the gzip header records it.
    ours_path = tmp_path / source.name
    data.save(str(ours_path), format_version=fmt)
    assert ours_path.read_bytes() == source.read_bytes()
    # The other format too: Swift reads it and answers as for the original.
    other = tmp_path / "other" / source.name
    other.parent.mkdir()
    data.save(str(other), format_version=3 - fmt)
    theirs_other = swift_ring.Ring(str(other))
    ours_orig = Ring(str(source))
    _assert_same_lookups(theirs_other, ours_orig, _random_paths(99, 1000), handoffs=4)


def test_write_ring_v2_from_cli_loads(swift_rings, tmp_path):
    """``write_ring --format-version 2`` from a builder file gives the same ring."""
    source = swift_rings["1region-4zones-pp10"]
    shutil.copy(source.parent / "object.builder", tmp_path / "object.builder")
    _cli(str(tmp_path / "object.builder"), "write_ring", "--format-version", "2")
    v2 = RingData.load(str(tmp_path / "object.ring.gz"))
    v1 = RingData.load(str(source))
    assert v2.format_version == 2
    assert [list(r) for r in v2.replica2part2dev_id] == [list(r) for r in v1.replica2part2dev_id]
    assert v2.devs == v1.devs
    ours = Ring(str(tmp_path / "object.ring.gz"))
    theirs = swift_ring.Ring(str(source))
    _assert_same_lookups(theirs, ours, _random_paths(3, 500), handoffs=6)


def test_ring_name_form_matches_swift(swift_rings):
    source = swift_rings["fractional-2.5-pp9"]
    ours = Ring(str(source.parent), ring_name="object")
    theirs = swift_ring.Ring(str(source.parent), ring_name="object")
    assert ours.serialized_path == theirs.serialized_path
    _assert_same_lookups(theirs, ours, _random_paths(4, 200), handoffs=3)


def test_swiftlite_builder_ring_loads_in_swift(tmp_path):
    """A ring built by swiftlite's RingBuilder answers the same in Swift."""
    builder_mod = pytest.importorskip("swiftlite.ring.builder", exc_type=ModuleNotFoundError)
    builder = builder_mod.RingBuilder(10, 3, 1)
    for r in (1, 2):
        for z in range(1, 4):
            for d in range(2):
                builder.add_dev(
                    {
                        "region": r,
                        "zone": z,
                        "ip": f"10.{r}.{z}.1",
                        "port": 6200,
                        "device": f"sd{d}",
                        "weight": 100.0 + 10 * d,
                    }
                )
    builder.rebalance(seed=3)
    path = tmp_path / "object.ring.gz"
    builder.get_ring().save(str(path))
    theirs, ours = _load_both(path)
    assert theirs.replica_count == 3
    assert theirs.partition_count == 1024
    _assert_same_lookups(theirs, ours, _random_paths(8, PATHS_PER_TOPOLOGY), handoffs=8)
    for part in range(0, 1024, 97):
        assert list(ours.get_more_nodes(part)) == list(theirs.get_more_nodes(part))


def test_large_part_power_handoff_stride(tmp_path):
    """Part power 17: the handoff walk strides (inc = parts // 65536 = 2)."""
    rng = random.Random(17)
    devs = [
        {
            "id": i,
            "region": 1 + i % 3,
            "zone": i % 5,
            "ip": f"10.9.{i % 7}.1",
            "port": 6200 + i % 2,
            "device": f"sd{i}",
            "weight": 100.0,
            "meta": "",
        }
        for i in range(40)
    ]
    parts = 1 << 17
    rows = [[rng.randrange(40) for _ in range(parts)] for _ in range(3)]
    rows.append(rows[0][: parts // 3])  # and a short (fractional) row
    path = tmp_path / "big.ring.gz"
    RingData([*rows], devs, 32 - 17).save(str(path))
    theirs, ours = _load_both(path)
    _assert_same_lookups(theirs, ours, _random_paths(17, 2000), handoffs=12)
    for part in (0, 1, parts - 1, 4242, 99999):
        assert list(ours.get_more_nodes(part)) == list(theirs.get_more_nodes(part))


@st.composite
def _random_ring(draw: st.DrawFn) -> tuple[list, list, int]:
    part_power = draw(st.integers(min_value=0, max_value=7))
    ndevs = draw(st.integers(min_value=1, max_value=12))
    devs: list[dict[str, Any] | None] = []
    for i in range(ndevs):
        region = draw(st.integers(1, 3))
        zone = draw(st.integers(0, 2))
        devs.append(
            {
                "id": i,
                "region": region,
                "zone": zone,
                "ip": f"10.{region}.{zone}.{draw(st.integers(1, 2))}",
                "port": 6200,
                "device": "d",
                "weight": 1.0,
                "meta": "",
            }
        )
    holes = draw(st.sets(st.integers(0, ndevs - 1), max_size=ndevs - 1))
    live = [i for i in range(ndevs) if i not in holes]
    for i in holes:
        devs[i] = None
    parts = 1 << part_power
    nrows = draw(st.integers(1, 4))
    rows = [
        draw(st.lists(st.sampled_from(live), min_size=parts, max_size=parts)) for _ in range(nrows)
    ]
    short = draw(st.integers(0, parts - 1))
    if short:
        rows.append(rows[0][:short])
    return rows, devs, part_power


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(_random_ring())
def test_random_rings_same_as_swift(tmp_path, ring):
    """Arbitrary assignments (duplicates, holes, short rows): same answers."""
    rows, devs, part_power = ring
    path = tmp_path / "random.ring.gz"
    RingData([*rows], devs, 32 - part_power).save(str(path))
    theirs, ours = _load_both(path)
    for part in range(1 << part_power):
        assert ours.get_part_nodes(part) == theirs.get_part_nodes(part)
        assert list(ours.get_more_nodes(part)) == list(theirs.get_more_nodes(part))
    _assert_same_lookups(theirs, ours, _random_paths(part_power, 50), handoffs=0)
