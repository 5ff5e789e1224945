#!/usr/bin/env python3
"""Run OpenStack Swift's own functional tests against a ``swiftlite saio``.

    python tests/conformance/run_swift_functional.py [--results DIR] [--keep]
        [--cache DIR] [--exclude FILE] [FILE ...]

1. Gets the pinned ``swift`` sdist from PyPI (``pip download``) into a cache
   directory (``$SWIFTLITE_CONFORMANCE_CACHE``, else
   ``${XDG_CACHE_HOME:-~/.cache}/swiftlite-conformance``), reused when present,
   and unpacks it there.
2. Starts ``swiftlite saio --data <tmp> --port <free>`` and waits for "Ready.".
3. Writes Swift's ``test.conf`` for it (saio's tempauth users).
4. Runs ``tests.py``, ``test_account.py``, ``test_container.py`` and
   ``test_object.py`` (or the FILEs given) with pytest from the sdist root,
   one pytest process per file, junit xml into the results directory.
5. Stops the saio (SIGTERM, then SIGKILL for whatever is left), always.
6. Compares the outcome with ``exclude.txt`` (next to this script): exits 1 if
   a test that is not listed there failed or errored, and prints
   passed / failed / excluded / unexpectedly passing.

Exit status: 0 all good, 1 unexpected failures, 2 could not run (no sdist,
saio did not start, a pytest run produced no junit file).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

SWIFT_VERSION = "2.38.3"
SDIST_NAME = f"swift-{SWIFT_VERSION}"
HERE = Path(__file__).resolve().parent
DEFAULT_EXCLUDE = HERE / "exclude.txt"
DEFAULT_FILES = (
    "test/functional/tests.py",
    "test/functional/test_account.py",
    "test/functional/test_container.py",
    "test/functional/test_object.py",
)
# Safety limits, not measurements: a slow CI box starts a dozen processes.
READY_LIMIT = 180.0
STOP_LIMIT = 40.0
PER_TEST_TIMEOUT = 120
PER_FILE_TIMEOUT = 900


class RunError(Exception):
    """The suite could not be run at all (exit 2)."""


class _Terminated(Exception):
    """SIGTERM/SIGHUP to this script: leave through the cleanup paths."""


def cache_dir() -> Path:
    env = os.environ.get("SWIFTLITE_CONFORMANCE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "swiftlite-conformance"


def cached_sdist(cache: Path) -> Path | None:
    """The unpacked sdist root if it is already in the cache, else None."""
    root = cache / SDIST_NAME
    if (root / "test" / "functional" / "tests.py").is_file():
        return root
    tarball = cache / f"{SDIST_NAME}.tar.gz"
    return tarball if tarball.is_file() else None


def fetch_sdist(cache: Path) -> Path:
    """Download (if needed) and unpack the pinned sdist; return its root."""
    root = cache / SDIST_NAME
    if (root / "test" / "functional" / "tests.py").is_file():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"{SDIST_NAME}.tar.gz"
    if not tarball.is_file():
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               f"swift=={SWIFT_VERSION}", "-d", str(cache)]
        print("downloading:", " ".join(cmd), flush=True)
        res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if res.returncode != 0 or not tarball.is_file():
            raise RunError(f"pip download failed (rc={res.returncode}):\n{res.stdout[-2000:]}")
    # Unpack next to the final place and rename, so an interrupted unpack is
    # never taken for a complete one.
    tmp = Path(tempfile.mkdtemp(prefix="unpack-", dir=cache))
    try:
        with tarfile.open(tarball) as tar:
            tar.extractall(tmp, filter="data")
        if root.exists():
            shutil.rmtree(root)
        os.rename(tmp / SDIST_NAME, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


TEST_CONF = """\
# Written by tests/conformance/run_swift_functional.py for a swiftlite saio.
[func_test]
auth_uri = http://127.0.0.1:{port}/auth/v1.0
auth_version = 1

# Primary functional test account (admin of the account)
account = test
username = tester
password = testing

# User on a second account (admin of that account)
account2 = test2
username2 = tester2
password2 = testing2

# User on the first account without admin access
username3 = tester3
password3 = testing3

# Service-token user (group "service" only)
account5 = test5
username5 = tester5
password5 = testing5
service_prefix = SERVICE

# Reseller admin
account6 = test
username6 = tester6
password6 = testing6

collate = C
insecure = no

[unit_test]
fake_syslog = False
"""


def write_test_conf(path: Path, port: int) -> None:
    path.write_text(TEST_CONF.format(port=port))


@dataclass
class Saio:
    proc: subprocess.Popen[str]
    data_dir: str
    port: int
    output: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)


def _pump(saio: Saio) -> None:
    assert saio.proc.stdout is not None
    for line in saio.proc.stdout:
        saio.output.append(line)
        if line.startswith("Ready."):
            saio.ready.set()
    saio.ready.set()  # EOF: saio exited; the waiter checks poll()


def _pids_naming(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (the saio's
    daemons and their forked workers all name the private data dir)."""
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            cmdline = Path("/proc", entry, "cmdline").read_bytes()
            status = Path("/proc", entry, "status").read_text()
        except OSError:
            continue
        if text.encode() in cmdline and "State:\tZ" not in status:
            found.append(int(entry))
    return found


@contextmanager
def running_saio(data_dir: str, port: int) -> Iterator[Saio]:
    cmd = [sys.executable, "-m", "swiftlite.cli.main", "saio", "--data", data_dir,
           "--port", str(port)]
    print("starting:", " ".join(cmd), flush=True)
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True)
    saio = Saio(proc, data_dir, port)
    pump = threading.Thread(target=_pump, args=(saio,), daemon=True)
    pump.start()
    try:
        if not saio.ready.wait(READY_LIMIT) or proc.poll() is not None:
            raise RunError("swiftlite saio did not get ready:\n" + "".join(saio.output[-40:]))
        print(f"saio ready on port {port} (data {data_dir})", flush=True)
        yield saio
    finally:
        stop_saio(saio)
        pump.join(5)


def stop_saio(saio: Saio) -> None:
    """SIGTERM saio (it stops its daemons), then SIGKILL whatever of it is left."""
    proc = saio.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_LIMIT)
        except subprocess.TimeoutExpired:
            print("saio did not stop in time; killing it", flush=True)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)
    # The daemons die with saio (parent-death signal), but do not rely on it:
    # anything still naming our private data dir was started by this run.
    deadline = time.monotonic() + 10
    while True:
        left = _pids_naming(saio.data_dir)
        if not left:
            break
        if time.monotonic() > deadline:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            break
        time.sleep(0.2)
    print(f"saio stopped (rc={proc.returncode})", flush=True)


def junit_name(test_file: str) -> str:
    return test_file.replace("/", "_").replace(".", "_")


def run_pytest(sdist: Path, conf: Path, test_file: str, results: Path) -> Path:
    xml = results / f"{junit_name(test_file)}.xml"
    log = results / f"{junit_name(test_file)}.txt"
    env = dict(os.environ, SWIFT_TEST_CONFIG_FILE=str(conf))
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_XDIST_WORKER", None)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
           "-o", "addopts=", "--timeout", str(PER_TEST_TIMEOUT), "--junitxml", str(xml),
           test_file]
    start = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=sdist, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(PER_FILE_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
            out.write(f"\nkilled after {PER_FILE_TIMEOUT} s\n")
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    tail = log.read_text().strip().splitlines()[-1:] or [""]
    print(f"  {test_file:38s} rc={rc} {time.monotonic() - start:6.1f}s  {tail[0]}", flush=True)
    if not xml.is_file():
        raise RunError(f"pytest wrote no junit file for {test_file}; see {log}")
    return xml


def parse_junit(xml: Path, test_file: str) -> dict[str, str]:
    """test id -> 'passed' | 'failed' | 'error' | 'skipped'.

    The id is pytest's node id: ``<file>::<Class>::<name>``; junit's classname
    is the dotted module plus class."""
    module = test_file[:-3].replace("/", ".")
    outcome: dict[str, str] = {}
    for tc in ET.parse(xml).getroot().iter("testcase"):
        classname = tc.get("classname", "")
        cls = classname[len(module) + 1:] if classname.startswith(module + ".") else classname
        tid = "::".join(p for p in (test_file, cls, tc.get("name", "")) if p)
        tags = {child.tag for child in tc}
        if "failure" in tags:
            state = "failed"
        elif "error" in tags:
            state = "error"
        elif "skipped" in tags:
            state = "skipped"
        else:
            state = "passed"
        # A test can appear twice (a failing call plus an erroring teardown):
        # keep the worst.
        if outcome.get(tid) in ("failed", "error") and state in ("passed", "skipped"):
            continue
        outcome[tid] = state
    return outcome


def load_exclude(path: Path) -> dict[str, str]:
    """``<test id>  # reason`` per line; blank lines and ``#`` lines ignored.
    A line without a reason is an error: every exclusion says why."""
    excluded: dict[str, str] = {}
    if not path.is_file():
        return excluded
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tid, sep, reason = line.partition("#")
        if not sep or not reason.strip():
            raise RunError(f"{path}:{lineno}: no '# reason' for {tid.strip()}")
        excluded[tid.strip()] = reason.strip()
    return excluded


@dataclass
class Summary:
    passed: list[str]
    failed: list[str]  # not excluded: these fail the run
    excluded: list[str]  # failed/errored and on the list
    unexpectedly_passing: list[str]  # on the list but passed
    skipped: list[str]
    missing: list[str]  # on the list but not run at all (renamed? other file?)

    @property
    def ok(self) -> bool:
        return not self.failed


def compare(outcome: dict[str, str], excluded: dict[str, str],
            files: Sequence[str] = DEFAULT_FILES) -> Summary:
    s = Summary([], [], [], [], [], [])
    for tid, state in sorted(outcome.items()):
        if state == "passed":
            s.passed.append(tid)
            if tid in excluded:
                s.unexpectedly_passing.append(tid)
        elif state == "skipped":
            s.skipped.append(tid)
        elif tid in excluded:
            s.excluded.append(tid)
        else:
            s.failed.append(f"{tid} ({state})")
    ran_files = set(files)
    s.missing = sorted(t for t in excluded
                       if t not in outcome and t.split("::")[0] in ran_files)
    return s


def print_summary(s: Summary, results: Path) -> None:
    print()
    print(f"passed: {len(s.passed)}  failed (not excluded): {len(s.failed)}  "
          f"excluded: {len(s.excluded)}  unexpectedly passing: "
          f"{len(s.unexpectedly_passing)}  skipped: {len(s.skipped)}")
    for title, items in (("FAILED (not in exclude.txt):", s.failed),
                         ("Unexpectedly passing (remove from exclude.txt):",
                          s.unexpectedly_passing),
                         ("In exclude.txt but not run:", s.missing)):
        if items:
            print(title)
            for item in items:
                print("  " + item)
    print(f"results (junit xml, pytest output): {results}")


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise _Terminated(signum)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", default=list(DEFAULT_FILES),
                    help="test files relative to the sdist root")
    ap.add_argument("--results", help="directory for junit xml and logs (default: a temp dir)")
    ap.add_argument("--cache", help="sdist cache directory")
    ap.add_argument("--exclude", default=str(DEFAULT_EXCLUDE))
    ap.add_argument("--keep", action="store_true", help="keep the saio data directory")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)

    cache = Path(args.cache) if args.cache else cache_dir()
    results = Path(args.results or tempfile.mkdtemp(prefix="swift-functional-"))
    results.mkdir(parents=True, exist_ok=True)
    data_dir = tempfile.mkdtemp(prefix="swiftlite-saio-conformance-")
    started = time.monotonic()
    try:
        excluded = load_exclude(Path(args.exclude))
        sdist = fetch_sdist(cache)
        port = free_port()
        conf = results / "test.conf"
        write_test_conf(conf, port)
        outcome: dict[str, str] = {}
        with running_saio(data_dir, port):
            for test_file in args.files:
                xml = run_pytest(sdist, conf, test_file, results)
                outcome.update(parse_junit(xml, test_file))
    except RunError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    except (_Terminated, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"saio data kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    summary = compare(outcome, excluded, args.files)
    print_summary(summary, results)
    print(f"total time {time.monotonic() - started:.0f}s")
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
