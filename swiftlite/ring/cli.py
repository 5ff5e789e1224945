"""``swiftlite-ring-builder``: Swift's ``swift-ring-builder`` for swiftlite.

Same command syntax, output lines and exit codes (0 ok, 1 warning,
2 error) as Swift's tool, so operators' scripts keep working. Builder files
are versioned JSON (never pickle); ring files are Swift's ``.ring.gz``.

``main(argv)`` takes the arguments *without* the program name, e.g.
``main(["object.builder", "create", "10", "3", "1"])``, and returns the exit
code instead of exiting, so tests can run it in-process.
"""

from __future__ import annotations

import io
import os
import sys
import traceback
from collections.abc import Sequence

from swiftlite.ring import cli_commands as cmds
from swiftlite.ring import cli_rebalance as rcmds
from swiftlite.ring.cli_engine import Engine, swiftlite_engine
from swiftlite.ring.cli_parse import SEARCH_VALUE_HELP, builder_and_ring_names
from swiftlite.ring.cli_session import CliExit, Session
from swiftlite.ring.cli_usage import PROG, full_help

EXIT_SUCCESS, EXIT_WARNING, EXIT_ERROR = 0, 1, 2

# Commands that work without an existing builder file.
_NO_BUILDER_NEEDED = ("create", "write_builder", "version")

COMMANDS = {
    "default": cmds.default,
    "create": cmds.create,
    "add": cmds.add,
    "search": cmds.search,
    "list_parts": cmds.list_parts,
    "set_weight": cmds.set_weight,
    "set_region": cmds.set_region,
    "set_zone": cmds.set_zone,
    "set_info": cmds.set_info,
    "remove": cmds.remove,
    "rebalance": rcmds.rebalance,
    "dispersion": rcmds.dispersion,
    "validate": rcmds.validate,
    "write_ring": rcmds.write_ring,
    "write_builder": rcmds.write_builder,
    "pretend_min_part_hours_passed": rcmds.pretend_min_part_hours_passed,
    "set_min_part_hours": rcmds.set_min_part_hours,
    "set_replicas": rcmds.set_replicas,
    "set_overload": rcmds.set_overload,
    "version": rcmds.version,
}


def _load_builder(s: Session, command: str) -> None:
    path = s.builder_file
    if not os.path.exists(path) or not os.access(path, os.R_OK):
        if command in _NO_BUILDER_NEEDED:
            return
        if os.path.exists(path):
            s.fail(f"Ring Builder file cannot be accessed: {path}")
        s.fail(f"Ring Builder file does not exist: {path}")
    try:
        s.builder = s.engine.builder_cls.load(path)
    except s.engine.builder_errors as exc:
        # The engine's own message: invalid file, or a Swift pickle builder
        # (refused, never unpickled) with the way to recreate it.
        s.fail(str(exc))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, EOFError):
        s.fail(f"Ring Builder file is invalid: {path}")
    except Exception as exc:
        s.fail(f"Problem occurred while reading builder file: {path}. {exc}")


def _run(argv: list[str], engine: Engine | None) -> int:
    if not argv:
        names = sorted(c for c in COMMANDS if c != "default")
        print(full_help(names, SEARCH_VALUE_HELP))
        return EXIT_SUCCESS
    builder_file, ring_file = builder_and_ring_names(argv[0])
    command = argv[1] if len(argv) > 1 else "default"
    if builder_file != argv[0] and command not in ("write_builder", "version"):
        print(f"Note: using {builder_file} instead of {argv[0]} as builder file")
    # Swift's argv indexing (program name at 0) is kept inside commands so
    # that every "argv[n]" check reads the same as in Swift's tool.
    s = Session(
        argv=[PROG, *argv],
        engine=engine or swiftlite_engine(),
        builder_file=builder_file,
        ring_file=ring_file,
        backup_dir=os.path.join(os.path.dirname(builder_file), "backups"),
    )
    _load_builder(s, command)
    os.makedirs(s.backup_dir, exist_ok=True)
    handler = COMMANDS.get(command)
    if handler is None:
        s.fail(f"Unknown command: {command}")
    assert handler is not None
    try:
        result = handler(s)
    finally:
        for undo in s.extra.get("cleanup", []):
            undo()
    return EXIT_SUCCESS if result is None else result


def main(argv: Sequence[str] | None = None, engine: Engine | None = None) -> int:
    """Run one command; returns the exit code (console script exits with it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return _run(args, engine)
    except CliExit as done:
        return done.code
    except SystemExit as done:  # optparse usage errors
        return done.code if isinstance(done.code, int) else EXIT_ERROR
    except BrokenPipeError:
        # Output cut short by a closed pipe (e.g. "| head"): not a crash, but
        # not complete either. Point stdout at /dev/null so the interpreter's
        # final flush does not complain again.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, io.UnsupportedOperation):
            pass
        return EXIT_ERROR
    except Exception:
        # Like Swift: an unexpected failure shows its traceback and is an error.
        traceback.print_exc()
        return EXIT_ERROR
