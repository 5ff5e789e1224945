"""Ring benchmark: swiftlite's builder and lookups against OpenStack Swift's.

Run from the repository root: ``python bench/ring.py`` (about a minute with
the defaults; ``--rounds`` trades time for steadier medians).

What is measured, in one process, for both implementations:

* rebalance of a new builder: part power 16, 3 replicas, 100 devices (one
  region, 5 zones x 4 servers x 5 disks, equal weights), seed 1;
* rebalance after adding 10 devices (one new 2-disk server per zone), with
  ``pretend_min_part_hours_passed`` first so partitions may move, seed 2;
* ring file load time;
* ``get_nodes`` lookups per second on one and the same ring file (written
  by Swift's builder): a first pass of 200,000 names right after loading,
  then a second pass (steady state), and ``get_nodes`` plus the first three
  handoffs.

Runs alternate A B B A ... (this machine's back-to-back runs of the same
code vary by up to +-35%) and the figures are medians. Times are this
process's CPU time (``time.process_time``): the work is single-threaded and
CPU-bound, and CPU time is far less disturbed by other load on a shared
machine than wall-clock time. Ratios are
swiftlite/swift: below 1 is better for times, above 1 for rates.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from itertools import islice
from typing import Any

PART_POWER = 16
REPLICAS = 3
MIN_PART_HOURS = 1
HASH_PREFIX = "benchprefix"
HASH_SUFFIX = "benchsuffix"


def _devices() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """100 devices in 5 zones, and the 10 added later."""
    initial = [
        {
            "region": 1,
            "zone": zone,
            "ip": f"10.0.{zone}.{server}",
            "port": 6200,
            "device": f"d{disk}",
            "weight": 100.0,
            "meta": "",
        }
        for zone in range(1, 6)
        for server in range(1, 5)
        for disk in range(5)
    ]
    added = [
        {
            "region": 1,
            "zone": zone,
            "ip": f"10.0.{zone}.9",
            "port": 6200,
            "device": f"d{disk}",
            "weight": 100.0,
            "meta": "",
        }
        for zone in range(1, 6)
        for disk in range(2)
    ]
    return initial, added


def _builder_classes() -> dict[str, Any]:
    from swift.common.ring.builder import RingBuilder as SwiftRingBuilder

    from swiftlite.ring.builder import RingBuilder as LiteRingBuilder

    return {"swift": SwiftRingBuilder, "swiftlite": LiteRingBuilder}


def _time_rebalances(builder_cls: Any, ring_path: str | None) -> dict[str, Any]:
    initial, added = _devices()
    builder = builder_cls(PART_POWER, REPLICAS, MIN_PART_HOURS)
    for dev in initial:
        builder.add_dev(dict(dev))
    gc.collect()
    start = time.process_time()
    moved1, balance1, _ = builder.rebalance(seed=1)
    first = time.process_time() - start
    if ring_path:
        builder.get_ring().save(ring_path)
    for dev in added:
        builder.add_dev(dict(dev))
    builder.pretend_min_part_hours_passed()
    gc.collect()
    start = time.process_time()
    moved2, balance2, _ = builder.rebalance(seed=2)
    second = time.process_time() - start
    return {
        "rebalance_s": first,
        "rebalance_after_add_s": second,
        "moved_first": moved1,
        "moved_after_add": moved2,
        "balance_first": balance1,
        "balance_after_add": balance2,
    }


def _names(count: int) -> list[tuple[str, str, str]]:
    return [
        (f"AUTH_acct{i % 37}", f"cont{i % 101}", f"photos/2024/{i:08d}.jpg") for i in range(count)
    ]


def _rate(fn: Callable[[], None], count: int) -> float:
    gc.collect()
    start = time.process_time()
    fn()
    return count / (time.process_time() - start)


def _lookup_figures(ring: Any, names: list[tuple[str, str, str]]) -> dict[str, float]:
    get_nodes = ring.get_nodes
    get_more_nodes = ring.get_more_nodes

    def lookups() -> None:
        for account, container, obj in names:
            get_nodes(account, container, obj)

    with_handoffs_names = names[: len(names) // 4]

    def lookups_and_handoffs() -> None:
        for account, container, obj in with_handoffs_names:
            part, _nodes = get_nodes(account, container, obj)
            for _ in islice(get_more_nodes(part), 3):
                pass

    # The first pass over a freshly loaded ring is where swiftlite computes
    # and keeps each partition's primaries; the second is the steady state
    # of a long-running server.
    first = _rate(lookups, len(names))
    return {
        "get_nodes_fresh_ring_per_s": first,
        "get_nodes_per_s": _rate(lookups, len(names)),
        "get_nodes_3_handoffs_per_s": _rate(lookups_and_handoffs, len(with_handoffs_names)),
    }


def _load_ring(kind: str, path: str) -> tuple[Any, float]:
    start = time.process_time()
    if kind == "swift":
        from swift.common.ring import Ring as SwiftRing

        ring = SwiftRing(path)
    else:
        from swiftlite.ring.ring import Ring as LiteRing

        ring = LiteRing(path)
    return ring, time.process_time() - start


def _order(rounds: int) -> list[str]:
    # A B B A A B ...: each side gets the early and the late slots equally.
    order: list[str] = []
    for i in range(rounds):
        order += ["swift", "swiftlite"] if i % 2 == 0 else ["swiftlite", "swift"]
    return order


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rebalance runs per implementation")
    parser.add_argument(
        "--lookup-rounds", type=int, default=5, help="lookup runs per implementation"
    )
    parser.add_argument("--names", type=int, default=200_000, help="names per lookup run")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)

    import swift.common.utils as swift_utils

    from swiftlite.common.hashing import set_hash_path_secrets
    from swiftlite.ring.ring import Ring as LiteRing

    swift_utils.HASH_PATH_PREFIX = HASH_PREFIX.encode()
    swift_utils.HASH_PATH_SUFFIX = HASH_SUFFIX.encode()
    set_hash_path_secrets(HASH_PREFIX, HASH_SUFFIX)
    builders = _builder_classes()

    results: dict[str, dict[str, list[float]]] = {"swift": {}, "swiftlite": {}}
    extra: dict[str, dict[str, Any]] = {}

    def record(kind: str, figures: dict[str, Any]) -> None:
        for key, value in figures.items():
            results[kind].setdefault(key, []).append(value)

    with tempfile.TemporaryDirectory(prefix="ringbench") as tmp:
        ring_path = os.path.join(tmp, "object.ring.gz")
        print(
            f"rebalance: part power {PART_POWER}, {REPLICAS} replicas, 100 devices in 5 zones,"
            f" then +10 devices; {args.rounds} round(s) each, alternating",
            flush=True,
        )
        for kind in _order(args.rounds):
            want_file = kind == "swift" and not os.path.exists(ring_path)
            figures = _time_rebalances(builders[kind], ring_path if want_file else None)
            for key in ("moved_first", "moved_after_add", "balance_first", "balance_after_add"):
                extra.setdefault(kind, {})[key] = figures.pop(key)
            record(kind, figures)
            print(
                f"  {kind:9s} rebalance {figures['rebalance_s']:7.3f} s,"
                f" after +10 devices {figures['rebalance_after_add_s']:7.3f} s",
                flush=True,
            )

        names = _names(args.names)
        print(
            f"lookups: {len(names)} names per run, {args.lookup_rounds} run(s) each, one ring file"
        )
        rings: dict[str, Any] = {}
        for kind in _order(args.lookup_rounds):
            ring, load_s = _load_ring(kind, ring_path)
            rings[kind] = ring
            figures = {"ring_load_s": load_s, **_lookup_figures(ring, names)}
            record(kind, figures)
            print(
                f"  {kind:9s} get_nodes {figures['get_nodes_fresh_ring_per_s']:10,.0f}/s fresh,"
                f" {figures['get_nodes_per_s']:10,.0f}/s warm,"
                f" +3 handoffs {figures['get_nodes_3_handoffs_per_s']:10,.0f}/s,"
                f" load {figures['ring_load_s'] * 1000:6.1f} ms",
                flush=True,
            )
        # Same answers, or the speed means nothing.
        for account, container, obj in names[:2000]:
            assert rings["swift"].get_nodes(account, container, obj) == rings[
                "swiftlite"
            ].get_nodes(account, container, obj)
        assert isinstance(rings["swiftlite"], LiteRing)

    medians = {
        kind: {k: statistics.median(v) for k, v in figs.items()} for kind, figs in results.items()
    }
    rows = [
        ("rebalance, new ring (s)", "rebalance_s", "{:.3f}", True),
        ("rebalance after +10 devices (s)", "rebalance_after_add_s", "{:.3f}", True),
        ("ring file load (ms)", "ring_load_s", "{:.1f}", True),
        ("get_nodes/s, first pass on new ring", "get_nodes_fresh_ring_per_s", "{:,.0f}", False),
        ("get_nodes/s, steady state", "get_nodes_per_s", "{:,.0f}", False),
        ("get_nodes + 3 handoffs/s", "get_nodes_3_handoffs_per_s", "{:,.0f}", False),
    ]
    print()
    print(f"{'median':36s} {'swift':>12s} {'swiftlite':>12s} {'swiftlite/swift':>16s}")
    for label, key, fmt, lower_better in rows:
        scale = 1000 if key == "ring_load_s" else 1
        a = medians["swift"][key] * scale
        b = medians["swiftlite"][key] * scale
        ratio = b / a if a else float("nan")
        better = "faster" if (ratio < 1) == lower_better else "slower"
        print(f"{label:36s} {fmt.format(a):>12s} {fmt.format(b):>12s} {ratio:>10.3f} ({better})")
    for kind in ("swift", "swiftlite"):
        e = extra[kind]
        print(
            f"{kind}: moved {e['moved_first']} then {e['moved_after_add']} part-replicas;"
            f" balance {e['balance_first']:.3f} then {e['balance_after_add']:.3f}"
        )
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    if args.json:
        with open(args.json, "w") as fp:
            json.dump({"medians": medians, "samples": results, "builds": extra}, fp, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
