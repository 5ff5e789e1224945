"""``swiftlite saio``: run an all-in-one cluster on loopback.

The layout (configs, rings, devices, credentials) comes from
:mod:`swiftlite.cli.saio_layout`. This module starts every daemon whose code
exists as its own process (its module's ``main`` with the config path, through
:mod:`swiftlite.cli.saio_launch`; output into
``DIR/log/<daemon>.log``), waits until each HTTP server answers
``/healthcheck``, prints where everything is, and on SIGINT/SIGTERM stops
them all: SIGTERM to each, a wait, then SIGKILL for whatever is left.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType
from typing import TextIO

from swiftlite.cli.saio_layout import (
    DAEMONS,
    LOOPBACK,
    TEMPAUTH_USERS,
    DaemonSpec,
    Layout,
    LayoutError,
    default_data_dir,
    prepare,
)
from swiftlite.common.config import ConfigError

START_TIMEOUT = 60.0  # seconds for every HTTP server to answer
STOP_TIMEOUT = 15.0  # seconds between SIGTERM and SIGKILL
POLL_INTERVAL = 0.2
LOG_TAIL_LINES = 30


@dataclasses.dataclass
class Child:
    spec: DaemonSpec
    proc: subprocess.Popen[bytes]
    port: int | None
    log_path: str


class _Stop(Exception):
    """Raised from the signal handler to leave waiting at once."""


def _pdeathsig() -> None:
    """In the child, before exec: get SIGTERM if saio itself dies (Linux), so a
    killed ``swiftlite saio`` does not leave a cluster running behind it."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return
    try:
        ctypes.CDLL(libc_name, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def start_daemon(spec: DaemonSpec, layout: Layout) -> Child:
    log_path = layout.log_path(spec)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "swiftlite.cli.saio_launch", spec.module,
             layout.config_path(spec)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own process group: a terminal's Ctrl-C reaches only saio,
            # which then stops the daemons in order; and SIGKILL can reach a
            # daemon's forked workers through the group.
            start_new_session=True,
            preexec_fn=_pdeathsig if sys.platform.startswith("linux") else None,
        )
    port = layout.ports[spec.port_role] if spec.is_server and spec.port_role else None
    return Child(spec=spec, proc=proc, port=port, log_path=log_path)


def answers(port: int, path: str = "/healthcheck", timeout: float = 1.0) -> int | None:
    """The status of ``GET path`` on loopback, None if nothing answers."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def log_tail(path: str, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as fp:
            fp.seek(0, os.SEEK_END)
            fp.seek(max(0, fp.tell() - 64 * 1024))
            data = fp.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    return "\n".join(data.splitlines()[-lines:])


def wait_ready(children: list[Child], out: TextIO, timeout: float = START_TIMEOUT) -> bool:
    """Wait until every server answers; False (after printing why) if a daemon
    died or a server never answered."""
    deadline = time.monotonic() + timeout
    pending = [c for c in children if c.port is not None]
    while True:
        for child in children:
            if child.proc.poll() is not None:
                out.write(
                    f"\n{child.spec.name} exited at start-up (status {child.proc.returncode});"
                    f" last lines of {child.log_path}:\n{log_tail(child.log_path)}\n"
                )
                return False
        pending = [c for c in pending if c.port is None or answers(c.port) is None]
        if not pending:
            return True
        if time.monotonic() > deadline:
            names = ", ".join(c.spec.name for c in pending)
            out.write(f"\nno answer from {names} after {timeout:.0f}s; see {layout_logs(pending)}\n")
            return False
        time.sleep(POLL_INTERVAL)


def layout_logs(children: list[Child]) -> str:
    return ", ".join(c.log_path for c in children)


def stop_all(children: list[Child], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM every daemon (last started first), wait, SIGKILL what is left."""
    for child in reversed(children):
        if child.proc.poll() is None:
            try:
                child.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    for child in reversed(children):
        try:
            child.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for child in children:
        # The whole group: also reaches workers a dead parent left behind.
        try:
            os.killpg(child.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if child.proc.poll() is None:
            child.proc.wait()


def describe(layout: Layout, children: list[Child], skipped: list[DaemonSpec]) -> str:
    lines = [
        f"swiftlite saio: data directory {layout.data_dir} "
        f"({'created' if layout.created else 'reused'})",
        f"  configs and rings: {layout.etc_dir}",
        f"  devices: {layout.devices_dir}/d1..d4 (3 replicas)",
        "daemons:",
    ]
    for child in children:
        port = f"port {child.port}" if child.port is not None else "background"
        lines.append(
            f"  {child.spec.name:<20} pid {child.proc.pid:<7} {port:<11} log {child.log_path}"
        )
    if skipped:
        lines.append("not in this swiftlite yet: " + ", ".join(s.name for s in skipped))
    if any(c.spec.name == "proxy-server" for c in children):
        lines.append(f"Endpoint: http://{LOOPBACK}:{layout.ports['proxy']}/v1")
        lines.append(f"Auth URL: {layout.auth_url}")
        lines.append("Credentials (user / key, groups):")
        for user, spec in TEMPAUTH_USERS.items():
            groups = " ".join(spec["groups"]) or "-"
            lines.append(f"  {user:<14} {spec['key']:<9} {groups}")
        lines.append(
            f"Try: swift -A {layout.auth_url} -U test:tester -K testing stat"
        )
    else:
        lines.append(
            "The proxy server does not exist yet: only the storage servers were started "
            "and there is no client endpoint yet."
        )
        lines.append(f"Credentials for when it lands: {layout.credentials_path}")
    lines.append("Ready. Press Ctrl-C to stop.")
    return "\n".join(lines) + "\n"


def run(data_dir: str, port: int | None, out: TextIO = sys.stdout) -> int:
    """Prepare the layout, start the daemons, wait for a signal, stop them."""
    try:
        layout = prepare(data_dir, port)
    except (LayoutError, ConfigError, OSError) as exc:
        out.write(f"swiftlite saio: {exc}\n")
        return 1
    specs = [s for s in DAEMONS if s.available()]
    skipped = [s for s in DAEMONS if s not in specs]

    stopping: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)
        raise _Stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    children: list[Child] = []
    status = 0
    try:
        try:
            out.write(f"swiftlite saio: starting {len(specs)} daemons from {layout.etc_dir}\n")
            out.flush()
            for spec in specs:
                children.append(start_daemon(spec, layout))
            if not wait_ready(children, out):
                status = 1
            else:
                out.write(describe(layout, children, skipped))
                out.flush()
                status = _watch(children, out)
        except _Stop:
            pass
        finally:
            # No second signal may interrupt the stopping itself.
            for s in old:
                signal.signal(s, signal.SIG_IGN)
            out.write("swiftlite saio: stopping\n")
            out.flush()
            stop_all(children)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    out.write("swiftlite saio: stopped\n")
    out.flush()
    return status


def _watch(children: list[Child], out: TextIO) -> int:
    """Sleep until a signal (raises _Stop) or a daemon dies (returns 1)."""
    while True:
        for child in children:
            if child.proc.poll() is not None:
                out.write(
                    f"\n{child.spec.name} exited (status {child.proc.returncode}); last lines"
                    f" of {child.log_path}:\n{log_tail(child.log_path)}\n"
                )
                return 1
        time.sleep(0.5)


def add_arguments(parser: object) -> None:
    """Options of ``swiftlite saio`` (used by :mod:`swiftlite.cli.main`)."""
    import argparse

    assert isinstance(parser, argparse.ArgumentParser)
    parser.add_argument(
        "--data",
        default=None,
        help=f"data directory (default: {default_data_dir()})",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="proxy port (default: 8080 at first run, then the one used before)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="swiftlite saio", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(args.data or default_data_dir(), args.port)
