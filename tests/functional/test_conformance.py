"""OpenStack Swift's own functional tests (tests.py, test_account.py,
test_container.py, test_object.py of the pinned swift sdist) against a
``swiftlite saio``, through tests/conformance/run_swift_functional.py.

The run fails when a test that is not in tests/conformance/exclude.txt fails.
It needs the sdist: cached, or downloadable from PyPI (CI can reach PyPI, so
there it always runs); without either it is skipped. The comparison logic of
the script has fast tests of its own below, which always run.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "conformance" / "run_swift_functional.py"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_swift_functional", SCRIPT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


rsf = _load_script()


def _sdist_available() -> bool:
    """Cached, or fetched now through pip (PyPI or whatever index pip is
    configured for); only a failed download makes the suite skip."""
    try:
        rsf.fetch_sdist(rsf.cache_dir())
    except (rsf.RunError, OSError):
        return False
    return True


# The whole suite takes a few minutes (Swift itself: ~4 on 2 cores).
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_swift_functional_suite(tmp_path: Path) -> None:
    if not _sdist_available():
        pytest.skip("swift sdist neither cached nor downloadable from PyPI")
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--results", str(tmp_path / "results")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ), cwd=ROOT,
    )
    print(res.stdout)
    assert res.returncode == 0, res.stdout[-6000:]


def test_exclude_file_has_a_reason_on_every_line() -> None:
    excluded = rsf.load_exclude(rsf.DEFAULT_EXCLUDE)
    for tid, reason in excluded.items():
        assert tid.split("::")[0] in rsf.DEFAULT_FILES, tid
        assert reason, tid


def test_exclude_line_without_reason_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "exclude.txt"
    path.write_text("# comment\n\ntest/functional/tests.py::TestFile::testCopy\n")
    with pytest.raises(rsf.RunError, match="no '# reason'"):
        rsf.load_exclude(path)


def test_compare_sorts_outcomes() -> None:
    f = "test/functional/tests.py"
    outcome = {
        f"{f}::A::ok": "passed",
        f"{f}::A::bad": "failed",
        f"{f}::A::known": "failed",
        f"{f}::A::known_err": "error",
        f"{f}::A::fixed": "passed",
        f"{f}::A::skip": "skipped",
    }
    excluded = {
        f"{f}::A::known": "x", f"{f}::A::known_err": "y", f"{f}::A::fixed": "z",
        f"{f}::A::gone": "renamed",
        "test/functional/test_slo.py::B::other": "file not run",
    }
    s = rsf.compare(outcome, excluded, [f])
    assert s.passed == [f"{f}::A::fixed", f"{f}::A::ok"]
    assert s.failed == [f"{f}::A::bad (failed)"]
    assert s.excluded == [f"{f}::A::known", f"{f}::A::known_err"]
    assert s.unexpectedly_passing == [f"{f}::A::fixed"]
    assert s.skipped == [f"{f}::A::skip"]
    assert s.missing == [f"{f}::A::gone"]
    assert not s.ok
    del outcome[f"{f}::A::bad"]
    assert rsf.compare(outcome, excluded, [f]).ok


def test_parse_junit_ids_and_worst_outcome(tmp_path: Path) -> None:
    xml = tmp_path / "r.xml"
    xml.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="test.functional.tests.TestFile" name="testCopy"/>'
        '<testcase classname="test.functional.tests.TestFile" name="testGone">'
        '<failure message="x"/></testcase>'
        '<testcase classname="test.functional.tests.TestFile" name="testGone">'
        '<error message="teardown"/></testcase>'
        '<testcase classname="test.functional.tests.TestFile" name="testSkip">'
        '<skipped message="s"/></testcase>'
        '<testcase classname="test.functional.tests.TestFile" name="testTear">'
        '<error message="teardown"/></testcase>'
        '<testcase classname="test.functional.tests.TestFile" name="testTear"/>'
        "</testsuite></testsuites>"
    )
    got = rsf.parse_junit(xml, "test/functional/tests.py")
    base = "test/functional/tests.py::TestFile::"
    assert got == {
        base + "testCopy": "passed",
        base + "testGone": "error",
        base + "testSkip": "skipped",
        base + "testTear": "error",
    }
