"""``swiftlite``: the umbrella command (``swiftlite saio``, ``swiftlite version``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def version() -> str:
    """The installed distribution's version (the package may run uninstalled)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("swiftlite")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    from swiftlite.cli import saio

    parser = argparse.ArgumentParser(prog="swiftlite", description="swiftlite tools.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    saio_parser = sub.add_parser(
        "saio",
        help="run an all-in-one cluster on loopback",
        description="Create (first run) or reuse an all-in-one cluster in a data "
        "directory, start its daemons on 127.0.0.1 and stop them on Ctrl-C.",
    )
    saio.add_arguments(saio_parser)
    sub.add_parser("version", help="print swiftlite's version")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.command == "saio":
        from swiftlite.cli import saio
        from swiftlite.cli.saio_layout import default_data_dir

        return saio.run(args.data or default_data_dir(), args.port)
    if args.command == "version":
        print(f"swiftlite {version()}")
        return 0
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
