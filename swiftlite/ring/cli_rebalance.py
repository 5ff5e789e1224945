"""Commands that rebalance, report on and write rings, and the builder-wide
settings (min_part_hours, replicas, overload)."""

from __future__ import annotations

import inspect
import logging
import optparse
import os
import sys
from collections.abc import Callable
from time import time
from typing import Any

from swiftlite.ring.cli_format import EmptyRing, dispersion_table, hms
from swiftlite.ring.cli_ringcmp import ring_assignments
from swiftlite.ring.cli_session import EXIT_SUCCESS, EXIT_WARNING, Session
from swiftlite.ring.cli_usage import USAGE

FORMAT_CHOICES = ["1", "2"]
DEV_ID_BYTES_CHOICES = ["2", "4", "8"]
DEFAULT_FORMAT_VERSION = 1

_FORMAT_NOTE = (
    "Defaulting to --format-version=1. This ensures the ring\n"
    "written will be readable by older versions of Swift.\n"
    "In a future release, the default will change to\n"
    "--format-version=2\n"
)

_RULE = "-" * 79

_VALIDATION_FAILED = (
    "An error has occurred during ring validation. Common\n"
    "causes of failure are rings that are empty or do not\n"
    "have enough devices to accommodate the replica count.\n"
    "Original exception message:\n %s"
)


def _format_version(value: str | None) -> int:
    if value is None:
        print(_FORMAT_NOTE)
        return DEFAULT_FORMAT_VERSION
    return int(value)


def _save_ring(s: Session, path: str, format_version: int) -> None:
    s.builder.get_ring().save(path, format_version=format_version)


def _enable_debug(s: Session) -> None:
    logger = logging.getLogger(s.engine.debug_logger)
    logger.disabled = False
    logger.setLevel(logging.DEBUG)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger.addHandler(handler)
    s.extra.setdefault("cleanup", []).append(lambda: logger.removeHandler(handler))


def rebalance(s: Session) -> int:
    parser = optparse.OptionParser(USAGE["rebalance"])
    parser.add_option("-f", "--force", action="store_true", help="Force a rebalanced ring to save even if < 1% of parts changed")
    parser.add_option("-s", "--seed", help="seed to use for rebalance")
    parser.add_option("-d", "--debug", action="store_true", help="print debug information")
    parser.add_option("--format-version", choices=FORMAT_CHOICES, default=None, help="specify ring format version")
    options, args = parser.parse_args(s.argv)
    format_version = _format_version(options.format_version)
    # The seed may also be given positionally, right after "rebalance".
    seed = options.seed or (args[3] if len(args) > 3 else None)
    if options.debug:
        _enable_debug(s)
    b = s.builder
    if s.next_part_power():
        s.fail("Partition power increase in progress.", "You need to finish the increase first before rebalancing.")

    devs_changed = b.devs_changed
    seconds_left = b.min_part_seconds_left
    errors: tuple[type[BaseException], ...] = (*s.engine.builder_errors, EmptyRing)
    try:
        last_balance = b.get_balance()
        last_dispersion = b.dispersion
        parts, balance, removed_devs = b.rebalance(seed=seed)
        new_dispersion = b.dispersion
    except errors as exc:
        s.fail(_RULE, _VALIDATION_FAILED % (exc,), _RULE)

    if not (parts or options.force or removed_devs):
        print("No partitions could be reassigned.")
        if seconds_left > 0:
            print(
                "The time between rebalances must be at least min_part_hours: "
                f"{b.min_part_hours} hours ({hms(b.min_part_seconds_left)} remaining)"
            )
        else:
            print("There is no need to do so at this time")
        return EXIT_WARNING

    max_balance = 999.99
    if not (options.force or devs_changed):
        # Save only if balance or dispersion moved by at least one point (a
        # zero-weight device still holding parts pins balance at the max).
        balance_changed = abs(last_balance - balance) >= 1 or (
            last_balance == max_balance and balance == max_balance
        )
        dispersion_changed = last_dispersion is None or abs(last_dispersion - new_dispersion) >= 1
        if not (balance_changed or dispersion_changed):
            s.fail("Cowardly refusing to save rebalance as it did not change at least 1%.", code=EXIT_WARNING)

    try:
        b.validate()
    except s.engine.validation_errors as exc:
        s.fail(_RULE, _VALIDATION_FAILED % (exc,), _RULE)
    print(
        f"Reassigned {parts} ({100.0 * parts / b.parts:.02f}%) partitions. "
        f"Balance is now {balance:.02f}.  Dispersion is now {b.dispersion:.02f}"
    )
    status = EXIT_SUCCESS
    if b.dispersion > 0:
        print(_RULE)
        print(
            f"NOTE: Dispersion of {b.dispersion:.06f} indicates some parts are not\n"
            "      optimally dispersed.\n\n"
            "      You may want to adjust some device weights, increase\n"
            "      the overload or review the dispersion report."
        )
        status = EXIT_WARNING
        print(_RULE)
    elif balance > 5 and balance / 100.0 > b.overload:
        print(_RULE)
        print(f"NOTE: Balance of {balance:.02f} indicates you should push this ")
        print(f"      ring, wait at least {b.min_part_hours} hours, and rebalance/repush.")
        print(_RULE)
        status = EXIT_WARNING
    ts = time()
    _save_ring(s, s.backup_path(s.ring_file, ts), format_version)
    s.save_builder(s.backup_path(s.builder_file, ts))
    _save_ring(s, s.ring_file, format_version)
    s.save_builder()
    return status


def _call_dispersion_report(s: Session, search_filter: str | None, verbose: bool, recalculate: bool) -> dict[str, Any]:
    report = s.engine.dispersion_report
    params = inspect.signature(report).parameters
    if "recalculate" in params:
        return report(s.builder, search_filter=search_filter, verbose=verbose, recalculate=recalculate)
    if recalculate:
        # An engine without the flag keeps no stale cache to rebuild.
        for name in ("_build_dispersion_graph", "build_dispersion_graph"):
            rebuild = getattr(s.builder, name, None)
            if rebuild is not None:
                rebuild()
                break
    return report(s.builder, search_filter=search_filter, verbose=verbose)


def dispersion(s: Session) -> int:
    if not s.assignments():
        s.fail(f'Specified builder file "{s.builder_file}" is not rebalanced yet. Please rebalance first.')
    parser = optparse.OptionParser(USAGE["dispersion"])
    parser.add_option("--recalculate", action="store_true", help="Rebuild cached dispersion info and save")
    parser.add_option("-v", "--verbose", action="store_true", help="Display dispersion report for tiers")
    options, args = parser.parse_args(s.argv)
    search_filter = args[3] if len(args) > 3 else None
    b = s.builder
    orig_version = b.version
    report = _call_dispersion_report(s, search_filter, bool(options.verbose), bool(options.recalculate))
    if b.version != orig_version:
        # The report had to (re)compute the graph; keep the work.
        s.save_builder()
    print(
        f"Dispersion is {b.dispersion:.06f}, Balance is {b.get_balance():.06f}, "
        f"Overload is {b.overload * 100:0.2f}%"
    )
    print(f"Required overload is {b.get_required_overload() * 100:.6f}%")
    status = EXIT_SUCCESS
    if report["worst_tier"]:
        status = EXIT_WARNING
        print(f"Worst tier is {report['max_dispersion']:.06f} ({report['worst_tier']})")
    if report["graph"]:
        for line in dispersion_table(report["graph"], b.parts, b.replicas):
            print(line)
    return status


def validate(s: Session) -> int:
    # A failure propagates: main() prints the traceback and exits 2, as Swift.
    s.builder.validate()
    return EXIT_SUCCESS


def write_ring(s: Session) -> int:
    parser = optparse.OptionParser(USAGE["write_ring"])
    parser.add_option("--format-version", choices=FORMAT_CHOICES, default=None, help="specify ring format version")
    parser.add_option("--dev-id-bytes", choices=DEV_ID_BYTES_CHOICES, default=None, help="dev id size (v2 only)")
    options, _args = parser.parse_args(s.argv)
    format_version = _format_version(options.format_version)
    b = s.builder
    if not b.devs:
        s.fail("Unable to write empty ring.")
    try:
        if options.dev_id_bytes:
            b.set_dev_id_bytes(int(options.dev_id_bytes))
        ring = b.get_ring()
        if not ring_assignments(ring) and any(d is not None for d in ring.devs):
            print(
                "WARNING: Writing a ring with no partition assignments but with devices; "
                'did you forget to run "rebalance"?',
                file=sys.stderr,
            )
        ring.save(s.backup_path(s.ring_file, time()), format_version=format_version)
        ring.save(s.ring_file, format_version=format_version)
    except ValueError as exc:
        s.fail(str(exc))
    return EXIT_SUCCESS


def write_builder(s: Session) -> int:
    if os.path.exists(s.builder_file):
        s.fail(f"Cowardly refusing to overwrite existing Ring Builder file: {s.builder_file}")
    if len(s.argv) > 3:
        min_part_hours = int(s.argv[3])
    else:
        print("WARNING: default min_part_hours may not match the value in the lost builder.\n", file=sys.stderr)
        min_part_hours = 24
    ring = _load_ring(s, s.engine.ring_data_cls.load, s.ring_file)
    s.builder = builder_from_ring(s, ring, min_part_hours)
    s.save_builder()
    return EXIT_SUCCESS


def builder_from_ring(s: Session, ring: Any, min_part_hours: int) -> Any:
    """A builder holding the ring's devices and assignments (lossy: the
    move history, overload and min_part_hours are not in ring files)."""
    cls = s.engine.builder_cls
    from_ring = getattr(cls, "from_ring", None)
    if from_ring is not None:
        return from_ring(ring, min_part_hours)
    devs = []
    for dev in ring.devs:
        if dev is not None:
            dev = dict(dev)
            # Old rings lack replication addresses; Swift's Ring defaults them.
            dev.setdefault("replication_ip", dev.get("ip"))
            dev.setdefault("replication_port", dev.get("port"))
            dev.update(parts=0, parts_wanted=0)
        devs.append(dev)
    rows = ring_assignments(ring)
    builder = cls.from_dict(
        {
            "part_power": 32 - ring._part_shift,
            "replicas": float(len(rows)),
            "min_part_hours": min_part_hours,
            "parts": 2 ** (32 - ring._part_shift),
            "devs": devs,
            "devs_changed": False,
            "version": ring.version or 0,
            "_replica2part2dev": rows,
            "_last_part_moves_epoch": None,
            "_last_part_moves": None,
            "_last_part_gather_start": 0,
            "_remove_devs": [],
        }
    )
    for row in rows:
        for dev_id in row:
            builder.devs[dev_id]["parts"] += 1
    return builder


def pretend_min_part_hours_passed(s: Session) -> int:
    s.builder.pretend_min_part_hours_passed()
    s.save_builder()
    return EXIT_SUCCESS


def set_min_part_hours(s: Session) -> int:
    if len(s.argv) < 4:
        s.usage("set_min_part_hours")
    s.builder.change_min_part_hours(int(s.argv[3]))
    print(f"The minimum number of hours before a partition can be reassigned is now set to {s.argv[3]}")
    s.save_builder()
    return EXIT_SUCCESS


def set_replicas(s: Session) -> int:
    if len(s.argv) < 4:
        s.usage("set_replicas")
    raw = s.argv[3]
    try:
        replicas = float(raw)
    except ValueError:
        print(USAGE["set_replicas"])
        s.fail(f'"{raw}" is not a valid number.')
    if replicas < 1:
        s.fail("Replica count must be at least 1.")
    s.builder.set_replicas(replicas)
    print(f"The replica count is now {s.builder.replicas:.6f}.")
    print("The change will take effect after the next rebalance.")
    s.save_builder()
    return EXIT_SUCCESS


def set_overload(s: Session) -> int:
    if len(s.argv) < 4:
        s.usage("set_overload")
    raw = s.argv[3]
    percent = raw.endswith("%")
    if percent:
        raw = raw.rstrip("%")
    try:
        overload = float(raw)
    except ValueError:
        print(USAGE["set_overload"])
        s.fail(f"{raw!r} is not a valid number.")
    if percent:
        overload *= 0.01
    if overload < 0:
        s.fail("Overload must be non-negative.")
    status = EXIT_SUCCESS
    if overload > 1 and not percent:
        print("!?! Warning overload is greater than 100% !?!")
        status = EXIT_WARNING
    b = s.builder
    b.set_overload(overload)
    print(f"The overload factor is now {b.overload * 100:0.2f}% ({b.overload:.6f})")
    print("The change will take effect after the next rebalance.")
    s.save_builder()
    return status


def version(s: Session) -> int:
    if len(s.argv) < 3:
        s.usage("create")
    ring = _load_ring(s, _load_ring_metadata, s)
    print(
        f"{s.ring_file}: Serialization version: {ring.format_version} "
        f"({ring.dev_id_bytes}-byte IDs), build version: {ring.version}"
    )
    return EXIT_SUCCESS


def _load_ring(s: Session, loader: Callable[[Any], Any], arg: Any) -> Any:
    """Load a ring file; a missing or unreadable one is a one-line error
    (exit 2) where Swift's tool dies with a traceback (also exit 2)."""
    try:
        return loader(arg)
    except FileNotFoundError:
        s.fail(f"Ring file does not exist: {s.ring_file}")
    except OSError as exc:
        s.fail(f"Ring file cannot be read: {s.ring_file}: {exc.strerror or exc}")
    except ValueError as exc:
        s.fail(str(exc))


def _load_ring_metadata(s: Session) -> Any:
    load = s.engine.ring_data_cls.load
    if "metadata_only" in inspect.signature(load).parameters:
        return load(s.ring_file, metadata_only=True)
    return load(s.ring_file)

