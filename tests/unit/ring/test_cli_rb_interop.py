"""Ring files cross between swift-ring-builder and swiftlite-ring-builder:
a ring written by swiftlite's CLI loads in Swift's Ring with the same
assignments, and ``write_builder`` recreates a usable builder from a ring
that Swift's tool (the real console script on PATH) wrote."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from swiftlite.ring.cli import main
from swiftlite.ring.ring_io import RingData

swift_ring = pytest.importorskip("swift.common.ring")
swift_utils = pytest.importorskip("swift.common.utils")
SWIFT_CLI = shutil.which("swift-ring-builder")
needs_swift_cli = pytest.mark.skipif(SWIFT_CLI is None, reason="swift-ring-builder not on PATH")

DEVICES = [
    "r1z1-10.0.0.1:6200/sda", "100",
    "r1z2-10.0.0.2:6200R10.1.0.2:6300/sdb_fast", "100",
    "r1z3-[fe80::3]:6200/sdc", "100",
    "r2z1-10.0.1.1:6200/sdd", "50",
    "r2z2-10.0.1.2:6200/sde", "150",
]


def lite(cwd: Path, *argv: str) -> tuple[int, list[str]]:
    out = io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            code = main(list(argv))
    finally:
        os.chdir(old)
    return code, out.getvalue().splitlines()


def swift(cwd: Path, *argv: str) -> tuple[int, list[str]]:
    assert SWIFT_CLI is not None
    proc = subprocess.run([SWIFT_CLI, *argv], cwd=cwd, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout.splitlines()


def swift_inprocess(cwd: Path, *argv: str) -> int:
    from swift.cli import ringbuilder

    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            ringbuilder.main(["swift-ring-builder", *argv])
    except SystemExit as done:
        return int(done.code or 0)
    finally:
        os.chdir(old)
    return 0


def _rows(ring: object) -> list[list[int]]:
    rows = getattr(ring, "_replica2part2dev_id", None)
    if rows is None:
        rows = ring.replica2part2dev_id  # type: ignore[attr-defined]
    return [list(r) for r in rows]


@pytest.mark.parametrize("format_version", ["1", "2"])
def test_ring_written_by_swiftlite_loads_in_swift(
    tmp_path: Path, format_version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Swift's Ring wants a hash prefix/suffix (normally from swift.conf).
    monkeypatch.setattr(swift_utils, "HASH_PATH_PREFIX", b"prefix")
    monkeypatch.setattr(swift_utils, "HASH_PATH_SUFFIX", b"suffix")
    assert lite(tmp_path, "o.builder", "create", "7", "3", "1")[0] == 0
    assert lite(tmp_path, "o.builder", "add", *DEVICES)[0] == 0
    code, out = lite(tmp_path, "o.builder", "rebalance", "-s", "5", "--format-version", format_version)
    assert code in (0, 1), out
    ring_path = str(tmp_path / "o.ring.gz")

    ours = RingData.load(ring_path)
    theirs = swift_ring.RingData.load(ring_path)
    assert _rows(theirs) == _rows(ours)
    assert theirs.devs == ours.devs
    assert theirs._part_shift == 32 - 7

    ring = swift_ring.Ring(ring_path)
    assert ring.partition_count == 128
    assert ring.replica_count == 3
    for part in range(ring.partition_count):
        ids = [n["id"] for n in ring.get_part_nodes(part)]
        assert ids == [row[part] for row in _rows(ours)]
        assert len(set(ids)) == 3
    part, nodes = ring.get_nodes("AUTH_test", "c", "o")
    assert [n["id"] for n in nodes] == [row[part] for row in _rows(ours)]
    # The IPv6 address was normalized on input and stored unbracketed.
    assert {d["ip"] for d in ring.devs if d} >= {"fe80::3"}


@needs_swift_cli
def test_write_builder_from_a_swift_ring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    swift_dir, lite_dir = tmp_path / "swift", tmp_path / "lite"
    swift_dir.mkdir()
    lite_dir.mkdir()
    assert swift(swift_dir, "object.builder", "create", "7", "3", "1")[0] == 0
    assert swift(swift_dir, "object.builder", "add", *DEVICES)[0] == 0
    assert swift(swift_dir, "object.builder", "rebalance", "-s", "3")[0] in (0, 1)
    assert swift(swift_dir, "object.builder", "remove", "d4")[0] == 0
    assert swift(swift_dir, "object.builder", "pretend_min_part_hours_passed")[0] == 0
    assert swift(swift_dir, "object.builder", "rebalance", "-s", "4")[0] in (0, 1)
    # Swift leaves a hole for the removed device in its ring.
    shutil.copy(swift_dir / "object.ring.gz", lite_dir / "object.ring.gz")
    # Swift's own write_builder on the same ring, as the reference.
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    shutil.copy(swift_dir / "object.ring.gz", ref_dir / "object.ring.gz")
    # (in-process: Swift's write_builder loads a Ring, which wants the hash
    # prefix/suffix of a swift.conf that this machine does not have)
    monkeypatch.setattr(swift_utils, "HASH_PATH_PREFIX", b"prefix")
    assert swift_inprocess(ref_dir, "object.ring.gz", "write_builder", "6") == 0

    code, out = lite(lite_dir, "object.ring.gz", "write_builder", "6")
    assert (code, out) == (0, [])
    assert (lite_dir / "object.builder").exists()
    # Refuses to overwrite the builder it just wrote.
    code, out = lite(lite_dir, "object.ring.gz", "write_builder")
    assert code == 2
    assert out == ["Cowardly refusing to overwrite existing Ring Builder file: object.builder"]

    # The recreated builders describe the same ring, line for line.
    for argv in (
        ["object.builder"],
        ["object.builder", "list_parts", "d0", "d2"],
        ["object.builder", "search", "r2"],
        ["object.builder", "dispersion", "-v"],
        ["object.builder", "validate"],
    ):
        s_code, s_out = swift(ref_dir, *argv)
        l_code, l_out = lite(lite_dir, *argv)
        assert l_code == s_code, argv
        if argv == ["object.builder"]:
            # Builder ids are random; everything else must match.
            s_out, l_out = s_out[1:], l_out[1:]
        assert l_out == s_out, argv

    # The recreated builder is a working builder: change and rebalance it.
    assert lite(lite_dir, "object.builder", "add", "r2z3-10.0.1.3:6200/sdf", "100")[0] == 0
    code, out = lite(lite_dir, "object.builder", "rebalance", "-s", "1")
    assert code in (0, 1), out
    assert any(line.startswith("Reassigned ") for line in out)
    ring = swift_ring.Ring(str(lite_dir / "object.ring.gz"))
    assert any(n["device"] == "sdf" for p in range(ring.partition_count) for n in ring.get_part_nodes(p))
    assert lite(lite_dir, "object.builder", "validate")[0] == 0


def test_swift_pickle_builder_is_refused_with_a_way_out(tmp_path: Path) -> None:
    if SWIFT_CLI is None:
        pytest.skip("swift-ring-builder not on PATH")
    assert swift(tmp_path, "p.builder", "create", "6", "1", "1")[0] == 0
    code, out = lite(tmp_path, "p.builder")
    assert code == 2
    assert len(out) == 1 and "write_builder" in out[0]


def test_console_script_exit_codes(tmp_path: Path) -> None:
    exe = shutil.which("swiftlite-ring-builder")
    cmd = [exe] if exe else [sys.executable, "-c", "import sys; from swiftlite.ring.cli import main; sys.exit(main())"]
    run = lambda *a: subprocess.run([*cmd, *a], cwd=tmp_path, capture_output=True, text=True, check=False)  # noqa: E731
    assert run("c.builder", "create", "6", "1", "1").returncode == 0
    missing = run("nope.builder")
    assert (missing.returncode, missing.stdout) == (2, "Ring Builder file does not exist: nope.builder\n")
    assert run("c.builder", "add", "r1z1-10.0.0.1:6200/sda", "1").returncode == 0
    assert run("c.builder", "rebalance").returncode == 0
    again = run("c.builder", "rebalance")
    assert again.returncode == 1
    assert "No partitions could be reassigned." in again.stdout
    assert run("c.builder", "set_overload", "2").returncode == 1
    assert run("c.builder", "bogus").returncode == 2
    no_ring = run("nope.ring.gz", "version")
    assert (no_ring.returncode, no_ring.stdout) == (2, "Ring file does not exist: nope.ring.gz\n")
    no_ring = run("nope.ring.gz", "write_builder", "1")
    assert (no_ring.returncode, no_ring.stdout) == (2, "Ring file does not exist: nope.ring.gz\n")
