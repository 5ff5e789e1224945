"""Commands that create, show, search and edit a builder's devices.

Each command takes the :class:`Session` and returns an exit code (or raises
:class:`CliExit`). Output and exit codes follow ``swift-ring-builder``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from itertools import islice
from typing import Any

from swiftlite.ring.cli_format import (
    EMPTY_RING_MESSAGE,
    EmptyRing,
    device_table,
    format_device,
    hms,
    search_table,
)
from swiftlite.ring.cli_parse import (
    change_values_from_opts,
    dev_from_opts,
    parse_add_value,
    parse_change_value,
    parse_device_opts,
    parse_search_value,
    search_values_from_opts,
)
from swiftlite.ring.cli_ringcmp import ring_matches_builder
from swiftlite.ring.cli_session import EXIT_SUCCESS, Session


def _pairs(values: Sequence[str]) -> list[tuple[str, str]]:
    # Swift pairs up the raw arguments (options included), so an option
    # placed first shifts the pairs; kept for identical behaviour.
    return list(zip(islice(values, 0, None, 2), islice(values, 1, None, 2), strict=False))


def create(s: Session) -> int:
    argv = s.argv
    if len(argv) < 6:
        s.usage("create")
    try:
        builder = s.engine.builder_cls(int(argv[3]), float(argv[4]), int(argv[5]))
    except ValueError as exc:
        s.fail(str(exc))
    os.makedirs(s.backup_dir, exist_ok=True)
    s.builder = builder
    from time import time

    s.save_builder(s.backup_path(s.builder_file, time()))
    s.save_builder()
    return EXIT_SUCCESS


def default(s: Session) -> int:
    b = s.builder
    devs = [d for d in s.devs() if d is not None]
    print(f"{s.builder_file}, build version {b.version}, id {s.builder_id()}")
    empty_error = None
    try:
        balances = s.balances()
        balance = max((abs(v) for v in balances.values()), default=0.0)
    except EmptyRing:
        balances, balance, empty_error = {}, 0.0, EMPTY_RING_MESSAGE
    regions = len({d["region"] for d in devs})
    zones = len({(d["region"], d["zone"]) for d in devs})
    trailer = "" if b.dispersion is None else f", {b.dispersion:.02f} dispersion"
    print(
        f"{b.parts} partitions, {b.replicas:.6f} replicas, {regions} regions, {zones} zones, "
        f"{len(devs)} devices, {s.dev_id_bytes()}-byte IDs, {balance:.02f} balance{trailer}"
    )
    print(
        f"The minimum number of hours before a partition can be reassigned is "
        f"{b.min_part_hours} ({hms(b.min_part_seconds_left)} remaining)"
    )
    print(f"The overload factor is {b.overload * 100:0.2f}% ({b.overload:.6f})")
    up_to_date = False
    if not os.path.exists(s.ring_file):
        print(f"Ring file {s.ring_file} not found, probably it hasn't been written yet")
    else:
        try:
            up_to_date = ring_matches_builder(s)
        except Exception as exc:
            print(f"Ring file {s.ring_file} is invalid: {exc!r}")
        else:
            state = "up-to-date" if up_to_date else "obsolete"
            print(f"Ring file {s.ring_file} is {state}")
    for line in device_table(s.devs(), balances, s.removing_ids()):
        print(line)
    npp = s.next_part_power()
    if npp and npp == b.part_power + 1:
        print(f"\nPreparing increase of partition power ({b.part_power} -> {npp})")
        print('Run "swift-object-relinker relink" on all nodes before moving on to increase_partition_power.')
    if npp and npp == b.part_power:
        print(f"\nIncreased partition power ({b.part_power} -> {npp})")
        if not up_to_date:
            print(
                'First run "swiftlite-ring-builder <builderfile> write_ring" now and copy the '
                "updated .ring.gz file to all nodes."
            )
        print('Run "swift-object-relinker cleanup" on all nodes before moving on to finish_increase_partition_power.')
    if empty_error:
        print(empty_error)
    return EXIT_SUCCESS


def _search_values(s: Session, argv: list[str], command: str) -> dict[str, Any]:
    long_form, opts, args = parse_device_opts(argv)
    try:
        if args:
            if long_form or len(args) != 1:
                s.usage(command)
            return parse_search_value(args[0])
        return search_values_from_opts(opts)
    except ValueError as exc:
        s.fail(str(exc))


def search(s: Session) -> int:
    if len(s.argv) < 4:
        s.usage("search", search_help=True)
    matches = s.search(_search_values(s, s.argv[3:], "search"))
    if not matches:
        s.fail("No matching devices found")
    b = s.builder
    for line in search_table(matches, s.devs(), b.parts, b.replicas):
        print(line)
    return EXIT_SUCCESS


def list_parts(s: Session) -> int:
    if len(s.argv) < 4:
        s.usage("list_parts", search_help=True)
    rows = s.assignments()
    if not rows:
        s.fail(f'Specified builder file "{s.builder_file}" is not rebalanced yet. Please rebalance first.')
    long_form, opts, args = parse_device_opts(s.argv[3:])
    devs: list[dict[str, Any]] = []
    try:
        if args:
            if long_form:
                s.usage("list_parts")
            for arg in args:
                devs.extend(s.search(parse_search_value(arg)))
        else:
            devs.extend(s.search(search_values_from_opts(opts)))
    except ValueError as exc:
        s.fail(str(exc))
    if not devs:
        s.fail("No matching devices found")
    wanted = {d["id"] for d in devs}
    counts: dict[int, int] = {}
    # Replica rows in order, parts ascending: ties keep first-seen order.
    for row in rows:
        for part, dev_id in enumerate(row):
            if dev_id in wanted:
                counts[part] = counts.get(part, 0) + 1
    if not counts:
        s.fail("No matching devices found")
    print("Partition   Matches")
    for part, count in sorted(counts.items(), key=lambda kv: kv[1], reverse=True):
        print(f"{part:9d}   {count:7d}")
    return EXIT_SUCCESS


def _parse_add_values(s: Session, argv: list[str]) -> list[dict[str, Any]]:
    long_form, opts, args = parse_device_opts(argv)
    if not args:
        return [dev_from_opts(opts)]
    if long_form or len(args) % 2:
        s.usage("add")
    parsed = []
    for devstr, weightstr in _pairs(args):
        dev = parse_add_value(devstr)
        if dev["region"] is None:
            print(f"WARNING: No region specified for {devstr}. Defaulting to region 1.\n", file=sys.stderr)
            dev["region"] = 1
        if dev["replication_ip"] is None:
            dev["replication_ip"] = dev["ip"]
        if dev["replication_port"] is None:
            dev["replication_port"] = dev["port"]
        weight = float(weightstr)
        if weight < 0:
            raise ValueError(f"Invalid weight value: {devstr}")
        dev["weight"] = weight
        parsed.append(dev)
    return parsed


def add(s: Session) -> int:
    if len(s.argv) < 5:
        s.usage("add")
    if s.next_part_power():
        s.fail("Partition power increase in progress. You need ", "to finish the increase first before adding devices.")
    try:
        for new in _parse_add_values(s, s.argv[3:]):
            for dev in s.devs():
                if dev and (dev["ip"], dev["port"], dev["device"]) == (new["ip"], new["port"], new["device"]):
                    s.fail(
                        f"Device {dev['id']} already uses {dev['ip']}:{dev['port']}/{dev['device']}.",
                        "The on-disk ring builder is unchanged.\n",
                    )
            dev_id = s.builder.add_dev(new)
            new.setdefault("id", dev_id)
            print(f"Device {format_device(new)} with {new['weight']} weight got id {dev_id}")
    except ValueError as exc:
        s.fail(str(exc), "The on-disk ring builder is unchanged.")
    s.save_builder()
    return EXIT_SUCCESS


# -- set_weight / set_region / set_zone -----------------------------------


def _apply(s: Session, devs: list[dict[str, Any]], what: str, value: Any, yes: bool) -> None:
    s.check_devs(
        devs,
        f"Are you sure you want to update the {what} for these {len(devs)} devices? (y/N) ",
        yes,
        "Aborting device modifications",
    )
    setter: Callable[[int, Any], None] = getattr(s.builder, f"set_dev_{what}")
    for dev in devs:
        setter(dev["id"], value)
        # Print from the builder's own record: it holds the value now set.
        current = _dev_by_id(s, dev["id"]) or dev
        print(f"{format_device(current)} {what} set to {current[what]}")


def _dev_by_id(s: Session, dev_id: int) -> dict[str, Any] | None:
    devs = s.devs()
    return devs[dev_id] if 0 <= dev_id < len(devs) else None


def _set_attr(s: Session, what: str, convert: Callable[[str], Any]) -> int:
    command = f"set_{what}"
    if len(s.argv) < 5:
        s.usage(command, search_help=True)
    argv = s.argv[3:]
    long_form, opts, args = parse_device_opts(argv)
    try:
        if not long_form:
            if len(args) % 2:
                s.usage(command)
            for devstr, valuestr in _pairs(argv):
                # One search per pair (Swift accumulates matches across pairs
                # for region/zone, re-applying later values to earlier
                # devices; that is a bug we do not reproduce).
                devs = s.search(parse_search_value(devstr))
                _apply(s, devs, what, convert(valuestr), opts.yes)
        else:
            if len(args) != 1:
                s.usage(command)
            devs = s.search(search_values_from_opts(opts))
            _apply(s, devs, what, convert(args[0]), opts.yes)
    except ValueError as exc:
        s.fail(str(exc))
    s.save_builder()
    return EXIT_SUCCESS


def set_weight(s: Session) -> int:
    return _set_attr(s, "weight", float)


def set_region(s: Session) -> int:
    return _set_attr(s, "region", int)


def set_zone(s: Session) -> int:
    return _set_attr(s, "zone", int)


# -- set_info ---------------------------------------------------------------


def _set_info_values(s: Session, devs: list[dict[str, Any]], change: dict[str, Any], yes: bool) -> None:
    s.check_devs(
        devs,
        f"Are you sure you want to update the info for these {len(devs)} devices? (y/N) ",
        yes,
        "Aborting device modifications",
    )
    for dev in devs:
        before = format_device(dev)
        probe = {**dev, **change}
        for other in s.devs():
            if not other or other["id"] == probe["id"]:
                continue
            if (other["ip"], other["port"], other["device"]) == (probe["ip"], probe["port"], probe["device"]):
                s.fail(f"Device {other['id']} already uses {other['ip']}:{other['port']}/{other['device']}.")
        _change_dev(s, dev, change)
        print(f"Device {before} is now {format_device(_dev_by_id(s, dev['id']) or dev)}")


def _change_dev(s: Session, dev: dict[str, Any], change: dict[str, Any]) -> None:
    setter = getattr(s.builder, "set_dev_info", None)
    if setter is not None:
        setter(dev["id"], change)
    else:
        # Swift edits the device dict in place; info does not affect
        # placement, so no builder bookkeeping is needed.
        dev.update(change)


def set_info(s: Session) -> int:
    if len(s.argv) < 5:
        s.usage("set_info", search_help=True)
    argv = s.argv[3:]
    try:
        long_form, opts, args = parse_device_opts(argv)
        if long_form:
            devs = s.search(search_values_from_opts(opts))
            _set_info_values(s, devs, change_values_from_opts(opts), opts.yes)
        else:
            if len(args) % 2:
                s.usage("set_info")
            for search_value, change_value in _pairs(argv):
                devs = s.search(parse_search_value(search_value))
                change = parse_change_value(change_value)
                if "" in change or not change:
                    # Swift names the first change value whichever pair failed.
                    raise ValueError(f"Invalid set info change value: {argv[1]!r}")
                _set_info_values(s, devs, change, opts.yes)
    except ValueError as exc:
        s.fail(str(exc))
    s.save_builder()
    return EXIT_SUCCESS


# -- remove -------------------------------------------------------------------


def remove(s: Session) -> int:
    if len(s.argv) < 4:
        s.usage("remove", search_help=True)
    if s.next_part_power():
        s.fail("Partition power increase in progress. You need ", "to finish the increase first before removing devices.")
    long_form, opts, args = parse_device_opts(s.argv[3:])
    devs: list[dict[str, Any]] = []
    try:
        if args:
            if long_form:
                s.usage("remove")
            for arg in args:
                devs.extend(s.search(parse_search_value(arg)))
        else:
            devs.extend(s.search(search_values_from_opts(opts)))
    except ValueError as exc:
        s.fail(str(exc))
    s.check_devs(
        devs,
        f"Are you sure you want to remove these {len(devs)} devices? (y/N) ",
        opts.yes,
        "Aborting device removals",
    )
    for dev in devs:
        try:
            s.builder.remove_dev(dev["id"])
        except s.engine.builder_errors as exc:
            rule = "-" * 79
            s.fail(
                rule,
                f"An error occurred while removing device with id {dev['id']}\n"
                "This usually means that you attempted to remove\n"
                "the last device in a ring. If this is the case,\n"
                "consider creating a new ring instead.\n"
                "The on-disk ring builder is unchanged.\n"
                f"Original exception message: {exc}",
                rule,
            )
        print(f"{format_device(dev)} marked for removal and will be removed next rebalance.")
    s.save_builder()
    return EXIT_SUCCESS

