"""State of one ``swiftlite-ring-builder`` invocation and the small helpers
the commands share (exiting, saving, reading builder internals)."""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from typing import Any, NoReturn

from swiftlite.ring.cli_engine import Engine
from swiftlite.ring.cli_format import EmptyRing, balance_per_dev, format_device
from swiftlite.ring.cli_parse import search_devs
from swiftlite.ring.cli_usage import USAGE

EXIT_SUCCESS, EXIT_WARNING, EXIT_ERROR = 0, 1, 2


class CliExit(Exception):
    """Ends the command with an exit code (Swift's tool calls sys.exit deep
    inside helpers; raising keeps main() callable in-process)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class Session:
    argv: list[str]  # program name at index 0, as in Swift's tool
    engine: Engine
    builder_file: str
    ring_file: str
    backup_dir: str
    builder: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    # -- exiting --------------------------------------------------------

    def fail(self, *lines: str, code: int = EXIT_ERROR) -> NoReturn:
        for line in lines:
            print(line)
        raise CliExit(code)

    def usage(self, command: str, search_help: bool = False) -> NoReturn:
        from swiftlite.ring.cli_parse import SEARCH_VALUE_HELP

        print(USAGE[command])
        if search_help:
            print()
            print(SEARCH_VALUE_HELP)
        raise CliExit(EXIT_ERROR)

    # -- files ----------------------------------------------------------

    def backup_path(self, path: str, ts: float) -> str:
        return os.path.join(self.backup_dir, f"{int(ts)}." + os.path.basename(path))

    def save_builder(self, path: str | None = None) -> None:
        """Save without the engine's automatic backup: like Swift's tool, the
        CLI itself writes backups exactly where Swift does (create, rebalance,
        write_ring), so the backups directory looks the same."""
        save = self.builder.save
        if "backup" in inspect.signature(save).parameters:
            save(path or self.builder_file, backup=False)
        else:
            save(path or self.builder_file)

    # -- builder views (engine-neutral) -----------------------------------

    def devs(self) -> list[dict[str, Any] | None]:
        return list(self.builder.devs)

    def assignments(self) -> list[Any]:
        """replica -> part -> dev id rows; empty before the first rebalance."""
        b = self.builder
        for name in ("_replica2part2dev", "replica2part2dev"):
            rows = getattr(b, name, None)
            if rows is not None:
                return list(rows)
        return []

    def removing_ids(self) -> set[int]:
        pending = getattr(self.builder, "_remove_devs", None)
        if pending is None:
            pending = getattr(self.builder, "remove_devs", [])
        return {d["id"] if isinstance(d, dict) else int(d) for d in pending}

    def next_part_power(self) -> int | None:
        return getattr(self.builder, "next_part_power", None)

    def builder_id(self) -> str:
        try:
            value = self.builder.id
        except AttributeError:
            value = None
        return value if value else "(not assigned)"

    def dev_id_bytes(self) -> int:
        value = getattr(self.builder, "dev_id_bytes", None)
        if isinstance(value, int):
            return value
        rows = self.assignments()
        if rows and hasattr(rows[0], "itemsize"):
            return int(rows[0].itemsize)
        return 2 if len(self.devs()) < 0xFFFF else 4

    def balances(self) -> dict[int, float]:
        """Raises :class:`EmptyRing` if there is no weight at all."""
        return balance_per_dev(self.devs(), self.builder.parts, self.builder.replicas)

    def balance_or_none(self) -> float | None:
        try:
            values = self.balances()
        except EmptyRing:
            return None
        return max((abs(v) for v in values.values()), default=0.0)

    def search(self, values: dict[str, Any]) -> list[dict[str, Any]]:
        finder = getattr(self.builder, "search_devs", None)
        found = finder(values) if finder else search_devs(self.devs(), values)
        return list(found or [])

    # -- confirmation -----------------------------------------------------

    def check_devs(self, devs: list[dict[str, Any]], question: str, yes: bool, abort_msg: str) -> None:
        """No match is an error; several matches need --yes or a typed 'y'."""
        if not devs:
            self.fail("Search value matched 0 devices.\nThe on-disk ring builder is unchanged.")
        if len(devs) > 1:
            print("Matched more than one device:")
            for dev in devs:
                print(f"    {format_device(dev)}")
            try:
                abort = not yes and input(question) != "y"
            except (EOFError, KeyboardInterrupt):
                abort = True
            if abort:
                self.fail(abort_msg)
