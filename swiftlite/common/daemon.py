"""The runner every swiftlite daemon uses.

Command line, as Swift's: ``<daemon> <conf.yaml> [once] [-v]``.

HTTP servers (:func:`run_server`) bind their port, then run ``workers``
processes that each listen on it with SO_REUSEPORT, so the kernel spreads
connections over them; ``workers: 0`` serves from the parent process, as in
Swift. SIGTERM/SIGINT stop gracefully (in-flight requests finish, up to
``shutdown_timeout``); SIGHUP re-reads the config and replaces the workers one
generation at a time, so a reload drops no connection. A worker that dies is
replaced.

Background daemons subclass :class:`Daemon` (``run_once``/``run_forever``) and
start through :func:`run_daemon`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from aiohttp import web

from swiftlite.common.config import ConfigError, DaemonConfig, ServerConfig, load_config
from swiftlite.common.logs import get_logger

C = TypeVar("C")
SHUTDOWN_TIMEOUT = 10.0


def install_uvloop() -> None:
    """Use uvloop when it is importable; the stock loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def parse_args(argv: Sequence[str] | None, prog: str | None = None) -> tuple[str, bool, bool]:
    """``<conf> [once] [-v]`` → (conf_path, once, verbose)."""
    parser = argparse.ArgumentParser(prog=prog, description="Run a swiftlite daemon.")
    parser.add_argument("conf", help="path to the daemon's YAML config")
    parser.add_argument("once", nargs="?", choices=["once"], help="run one pass and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to the console too")
    args = parser.parse_args(list(argv) if argv is not None else None)
    return args.conf, args.once == "once", args.verbose


def load_or_exit(path: str, cls: type[C]) -> C:
    """Load a config, printing the error and exiting 1 when it is wrong."""
    try:
        return load_config(path, cls)
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def bind_socket(host: str, port: int, reuse_port: bool = True) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port and hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


async def serve_app(
    app: web.Application, sock: socket.socket, stop: asyncio.Event, shutdown_timeout: float
) -> None:
    """Serve ``app`` on a bound socket until ``stop`` is set, then drain."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.SockSite(runner, sock, shutdown_timeout=shutdown_timeout)
    await site.start()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _serve_in_this_process(
    conf: ServerConfig,
    make_app: Callable[[Any], web.Application],
    sock: socket.socket,
) -> None:
    install_uvloop()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # A worker ignores SIGHUP: the parent handles reloads by replacing it.
        loop.add_signal_handler(signal.SIGHUP, lambda: None)
        app = make_app(conf)
        await serve_app(app, sock, stop, SHUTDOWN_TIMEOUT)

    asyncio.run(main())


def _fork_worker(
    conf: ServerConfig, make_app: Callable[[Any], web.Application]
) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            sock = bind_socket(conf.bind_ip, conf.bind_port)
            sock.listen(conf.max_clients)
            _serve_in_this_process(conf, make_app, sock)
        except BaseException as exc:  # a worker must never return into the parent's code
            if not isinstance(exc, SystemExit | KeyboardInterrupt):
                print(f"worker {os.getpid()} failed: {exc!r}", file=sys.stderr)
                code = 1
        os._exit(code)
    return pid


def run_server(
    conf: ServerConfig,
    make_app: Callable[[Any], web.Application],
    reload_conf: Callable[[], ServerConfig] | None = None,
) -> int:
    """Serve ``make_app(conf)`` on ``bind_ip:bind_port`` with ``workers`` processes."""
    logger = get_logger(conf.log_name, conf.log_level, conf.log_file)
    try:
        # The parent's socket reserves the port (and fails early if it is taken).
        parent_sock = bind_socket(conf.bind_ip, conf.bind_port)
    except OSError as exc:
        print(f"Error: cannot bind {conf.bind_ip}:{conf.bind_port}: {exc}", file=sys.stderr)
        return 1
    if conf.workers == 0:
        parent_sock.listen(conf.max_clients)
        logger.info("serving on %s:%s (no workers)", conf.bind_ip, conf.bind_port)
        _serve_in_this_process(conf, make_app, parent_sock)
        return 0

    stopping = False
    reload_requested = False
    workers: dict[int, float] = {}

    def on_stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    def on_hup(signum: int, frame: Any) -> None:
        nonlocal reload_requested
        reload_requested = True

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    for _ in range(conf.workers):
        workers[_fork_worker(conf, make_app)] = time.monotonic()
    logger.info(
        "serving on %s:%s with %d workers", conf.bind_ip, conf.bind_port, conf.workers
    )
    while not stopping:
        if reload_requested:
            reload_requested = False
            if reload_conf is not None:
                try:
                    conf = reload_conf()
                except ConfigError as exc:
                    logger.error("reload refused, keeping the old config: %s", exc)
                    continue
            old = list(workers)
            for _ in range(conf.workers):
                workers[_fork_worker(conf, make_app)] = time.monotonic()
            for pid in old:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            logger.info("reloaded: %d new workers", conf.workers)
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pid = 0
        if pid and pid in workers:
            started = workers.pop(pid)
            if not stopping and len(workers) < conf.workers:
                # Back off when a worker dies young, so a broken app does not spin.
                if time.monotonic() - started < 1:
                    time.sleep(1)
                logger.warning("worker %d exited (%d); starting another", pid, status)
                workers[_fork_worker(conf, make_app)] = time.monotonic()
            continue
        time.sleep(0.1)
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + SHUTDOWN_TIMEOUT + 5
    while workers and time.monotonic() < deadline:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid:
            workers.pop(pid, None)
        else:
            time.sleep(0.05)
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    parent_sock.close()
    return 0


def reexec_with_python_parser(module: str, argv: Sequence[str]) -> None:
    """Re-run this process (``python -m <module> <argv>``) with aiohttp's
    pure-Python HTTP parser, unless that is already the case.

    aiohttp's C parser (llhttp) only knows the standard methods and answers
    400 to Swift's REPLICATE verb before any handler runs; the pure-Python
    parser takes any token. The choice is made when aiohttp is imported,
    hence a fresh process with ``AIOHTTP_NO_EXTENSIONS`` set (an aiohttp
    setting). Parsing costs a little more; disk work dominates a request.
    """
    if os.environ.get("AIOHTTP_NO_EXTENSIONS"):
        return
    env = dict(os.environ, AIOHTTP_NO_EXTENSIONS="1")
    os.execve(sys.executable, [sys.executable, "-m", module, *argv], env)


def server_main(
    argv: Sequence[str] | None,
    conf_cls: type[ServerConfig],
    make_app: Callable[[Any], web.Application],
    prog: str,
) -> int:
    """Entry point body shared by the storage servers' console scripts."""
    conf_path, _once, verbose = parse_args(argv, prog)
    conf = load_or_exit(conf_path, conf_cls)
    if verbose:
        conf.log_level = "DEBUG"
    return run_server(conf, make_app, reload_conf=lambda: load_config(conf_path, conf_cls))


class Daemon:
    """A background daemon: one pass in :meth:`run_once`, repeated forever."""

    def __init__(self, conf: DaemonConfig) -> None:
        self.conf = conf
        self.logger = get_logger(conf.log_name, conf.log_level, conf.log_file)
        self.stopping = asyncio.Event()

    async def run_once(self) -> None:
        raise NotImplementedError

    async def run_forever(self) -> None:
        while not self.stopping.is_set():
            begin = time.monotonic()
            try:
                await self.run_once()
            except Exception:
                self.logger.exception("pass failed")
            elapsed = time.monotonic() - begin
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(
                    self.stopping.wait(), timeout=max(0.0, self.conf.interval - elapsed)
                )

    def reload(self, conf: DaemonConfig) -> None:
        """SIGHUP: take the new settings from the next pass on."""
        self.conf = conf


def run_daemon(
    daemon_cls: Callable[[Any], Daemon],
    conf_cls: type[DaemonConfig],
    argv: Sequence[str] | None = None,
    prog: str | None = None,
) -> int:
    conf_path, once, verbose = parse_args(argv, prog)
    conf = load_or_exit(conf_path, conf_cls)
    if verbose:
        conf.log_level = "DEBUG"
    install_uvloop()

    async def main() -> None:
        daemon = daemon_cls(conf)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, daemon.stopping.set)

        def on_hup() -> None:
            try:
                daemon.reload(load_config(conf_path, conf_cls))
            except ConfigError as exc:
                daemon.logger.error("reload refused, keeping the old config: %s", exc)

        loop.add_signal_handler(signal.SIGHUP, on_hup)
        if once:
            await daemon.run_once()
        else:
            await daemon.run_forever()

    asyncio.run(main())
    return 0


__all__ = [
    "Daemon",
    "bind_socket",
    "install_uvloop",
    "load_or_exit",
    "parse_args",
    "reexec_with_python_parser",
    "run_daemon",
    "run_server",
    "serve_app",
    "server_main",
]
