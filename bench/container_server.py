#!/usr/bin/env python3
"""Container server benchmark: swiftlite-container-server vs OpenStack Swift's.

One run measures, against both servers on the same machine and storage:

- object-row PUT updates per second at concurrency 32 into one container, with
  0, 100,000 and 1,000,000 rows already present;
- listing 10,000 names at 1,000,000 rows: plain (JSON, from a marker in the
  middle of the container) and with prefix + delimiter (10,000 subdirs).

It prints the figures, the swiftlite/Swift ratios and each system's slowdown
from 0 to 1,000,000 rows, first on an XFS loop image, then on a plain ext4
directory.

    python3 bench/container_server.py            # full run (~5-10 minutes, more under load)
    python3 bench/container_server.py --quick    # smoke test (< 1 minute)
    python3 bench/container_server.py --no-xfs --json out.json

Prefill (not measured, the same method for both): the container is created
over HTTP, then rows go straight into its DB through each system's own broker
``merge_items`` (the bulk path both use for replication), 10,000 rows per
transaction, in a separate process; a HEAD then checks the object count the
server reports. Names: even rows ``flat/<i>``, odd rows
``tree/<dir>/<i>`` with 5 objects per dir, so ``prefix=tree/&delimiter=/``
has 100,000 subdirs at 1M rows.

Updates are Swift backend row PUTs (X-Timestamp, X-Size, X-Content-Type,
X-Etag) with random names, as object servers send them. The update rate is
counted up to and including one HEAD afterwards, which makes each server
commit what it holds in its pending file, so rows are in the DB when the
clock stops. Both servers: 1 worker, log level WARNING, mount_check off.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

import _harness as h
import aiohttp

ACCOUNT = "AUTH_bench"
CONTAINER = "bench"
LEVELS_FULL = [0, 100_000, 1_000_000]
LEVELS_QUICK = [0, 2_000, 20_000]
PREFILL_BATCH = 10_000
ETAG = hashlib.md5(b"x" * 4096).hexdigest()
LIST_LIMIT = 10_000


def container_path(container: str = CONTAINER) -> str:
    return f"/{h.DEVICE}/{h.partition(ACCOUNT, container)}/{ACCOUNT}/{container}"


def container_hash(container: str = CONTAINER) -> str:
    """Swift's hash of /account/container: the DB's directory and file name."""
    path = f"/{ACCOUNT}/{container}"
    return hashlib.md5((h.HASH_PREFIX + path + h.HASH_SUFFIX).encode()).hexdigest()


def prefill_name(i: int) -> str:
    if i % 2 == 0:
        return f"flat/{i:08d}"
    return f"tree/{(i // 2) // 5:06d}/{i:08d}"


# --------------------------------------------------------------------------
# prefill (runs in a child process: Swift's broker pulls in eventlet, and a
# child keeps the bench process's memory and event loop clean)


def prefill_worker(system: str, db_file: str, start: int, end: int) -> None:
    base_ts = time.time() - 3600
    if system == "swift":
        from swift.container.backend import ContainerBroker as SwiftBroker

        broker: Any = SwiftBroker(db_file, account=ACCOUNT, container=CONTAINER)
    else:
        from swiftlite.container.backend import ContainerBroker as LiteBroker

        broker = LiteBroker(db_file, account=ACCOUNT, container=CONTAINER)
    for lo in range(start, end, PREFILL_BATCH):
        items = [
            {
                "name": prefill_name(i),
                "created_at": f"{base_ts + i * 1e-5:016.5f}",
                "size": 4096,
                "content_type": "application/octet-stream",
                "etag": ETAG,
                "deleted": 0,
                "storage_policy_index": 0,
                "ctype_timestamp": None,
                "meta_timestamp": None,
            }
            for i in range(lo, min(end, lo + PREFILL_BATCH))
        ]
        broker.merge_items(items)


def start_prefill(system: str, devices: str, start: int, end: int) -> subprocess.Popen[str]:
    """Start adding prefill rows ``start..end-1`` to the container's DB in a child process."""
    digest = container_hash()
    dbs = glob.glob(os.path.join(devices, h.DEVICE, "containers", "*", "*", digest, digest + ".db"))
    if len(dbs) != 1:
        raise h.ServerFailed(f"{system}: expected one container DB, found {dbs}")
    argv = [sys.executable, os.path.abspath(__file__), "--prefill-worker", system, dbs[0]]
    return subprocess.Popen(
        [*argv, str(start), str(end)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def finish_prefill(system: str, proc: subprocess.Popen[str]) -> bool:
    _out, err = proc.communicate()
    if proc.returncode != 0:
        raise h.ServerFailed(f"{system}: prefill failed: {err.strip()[-1500:]}")
    return True


# --------------------------------------------------------------------------
# HTTP steps


async def head_count(base_url: str, container: str = CONTAINER) -> tuple[int, float]:
    """HEAD the container (which commits pending rows); return (object count, seconds)."""
    async with aiohttp.ClientSession() as session:
        t0 = time.perf_counter()
        async with session.head(base_url + container_path(container)) as resp:
            took = time.perf_counter() - t0
            if resp.status not in (200, 204):
                raise h.ServerFailed(f"HEAD container answered {resp.status}")
            return int(resp.headers.get("X-Container-Object-Count", "-1")), took


async def create_container(base_url: str, container: str = CONTAINER) -> None:
    async with aiohttp.ClientSession() as session:
        headers = {"X-Timestamp": h.timestamp(), "X-Backend-Storage-Policy-Index": "0"}
        async with session.put(base_url + container_path(container), headers=headers) as resp:
            if resp.status not in (201, 202):
                raise h.ServerFailed(f"container PUT answered {resp.status}")


async def setup(base_url: str) -> None:
    """Create the bench container, and warm the server up on a separate one.

    The warm-up (unmeasured) keeps the first measured round from paying for
    cold code paths, thread pools and connections, without adding rows to the
    container being measured.
    """
    await create_container(base_url)
    await create_container(base_url, "warmup")
    res = await updates(base_url, 500, "warmup", "warmup")
    if res["errors"]:
        raise h.ServerFailed(f"warm-up: {res['first_error']}")


async def updates(
    base_url: str,
    n: int,
    tag: str,
    container: str = CONTAINER,
    cpu: Callable[[], float] | None = None,
) -> dict[str, Any]:
    names = [f"upd/{tag}/{uuid.uuid4().hex}" for _ in range(n)]
    cpath = container_path(container)

    def make(i: int) -> h.Req:
        headers = {
            "X-Timestamp": h.timestamp(),
            "X-Size": "4096",
            "X-Content-Type": "application/octet-stream",
            "X-Etag": ETAG,
            "X-Backend-Storage-Policy-Index": "0",
        }
        return h.Req("PUT", f"{cpath}/{names[i]}", headers)

    cpu0 = cpu() if cpu else 0.0
    res = await h.run_load(base_url, make, n, 32, [201])
    _count, flush = await head_count(base_url, container)
    # Server CPU per row, the flushing HEAD (the commit) included.
    res.server_cpu = cpu() - cpu0 if cpu else None
    out = res.summary()
    out["flush_ms"] = round(flush * 1000, 3)
    # The headline rate: rows accepted and committed per second.
    out["ops_s"] = round((n - res.errors) / (res.elapsed + flush), 1)
    out["ops_s_acked"] = round(res.ops_s, 1)
    return out


def listings(rows: int) -> dict[str, tuple[str, int]]:
    """Listing name -> (query, entries expected) for a container of ``rows`` prefill rows."""
    marker = prefill_name((rows // 4) & ~1)
    return {
        "plain": (f"?format=json&limit={LIST_LIMIT}&marker={marker}", LIST_LIMIT),
        "prefix+delimiter": (
            f"?format=json&limit={LIST_LIMIT}&prefix=tree/&delimiter=/",
            min(LIST_LIMIT, rows // 10),
        ),
    }


async def listing(
    base_url: str, query: str, expect: int, reps: int, cpu: Callable[[], float] | None = None
) -> dict[str, Any]:
    """``reps`` listings one at a time; the first answer's entry count is checked."""
    url = base_url + container_path() + query
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        body = await resp.read()
        if resp.status != 200:
            raise h.ServerFailed(f"listing {query} answered {resp.status}")
        entries = json.loads(body)
    path = container_path() + query
    res = await h.run_load(base_url, lambda i: h.Req("GET", path, {}), reps, 1, [200], cpu=cpu)
    out = res.summary()
    out["entries"] = len(entries)
    if len(entries) != expect:
        out["first_error"] = f"expected {expect} entries, got {len(entries)}"
        out["errors"] += 1
    return out


# --------------------------------------------------------------------------
# orchestration


def order(rounds: int, ceiling: bool = False) -> list[str]:
    """A B (C) B A (C) ...; C, the in-memory ceiling server, runs under the same load."""
    seq: list[str] = []
    for r in range(rounds):
        seq += ["swiftlite", "swift"] if r % 2 == 0 else ["swift", "swiftlite"]
        if ceiling:
            seq.append("ceiling")
    return seq


class System:
    def __init__(self, name: str, proc: h.ServerProc, devices: str) -> None:
        self.name = name
        self.proc = proc
        self.devices = devices
        self.url = f"http://127.0.0.1:{proc.port}"
        self.prefilled = 0
        self.updated = 0
        self.failed: str | None = None


def guarded(
    report: dict[str, Any], sys_: System, what: str, fn: Callable[..., Any], *args: Any
) -> Any:
    """Run ``fn(*args)`` (to completion when it is a coroutine function) as one step.

    A failure marks the system failed (printed and reported) and returns None.
    """
    if sys_.failed:
        return None
    try:
        sys_.proc.check_alive()
        out = fn(*args)
        if asyncio.iscoroutine(out):
            out = h.run(out)
        sys_.proc.check_alive()
        return out
    except (h.ServerFailed, aiohttp.ClientError, OSError, ValueError) as exc:
        sys_.failed = f"{what}: {type(exc).__name__}: {exc}"
        report["failed"][sys_.name] = sys_.failed
        print(f"!! {sys_.name} failed during {what}: {exc}", flush=True)
        return None


def bench_storage(kind: str, args: argparse.Namespace, work: str) -> dict[str, Any]:
    levels = LEVELS_QUICK if args.quick else LEVELS_FULL
    n_upd = args.updates or (300 if args.quick else 3000)
    reps = 3 if args.quick else 10
    lite_set = h.parse_settings(args.lite_set)
    report: dict[str, Any] = {
        "storage": kind,
        "levels": levels,
        "updates_per_round": n_upd,
        "listing_reps": reps,
        "failed": {},
        "updates": {},
        "listings": {},
        "prefill_s": {},
    }
    with h.storage_root(kind, work, size=args.xfs_size) as root:
        systems: dict[str, System] = {}
        try:
            for name in ("swiftlite", "swift", "ceiling"):
                devices = h.make_devices(root, name)
                port = h.free_port()
                etc = os.path.join(work, "etc", f"{name}-{kind}")
                log = os.path.join(args.logs, f"{name}-container-{kind}.log")
                if name == "ceiling":
                    proc = h.ceiling_server(port, log)
                elif name == "swift":
                    conf = h.write_swift_configs(etc, "container", devices, port)
                    proc = h.swift_server("container", conf, port, log)
                else:
                    # disk_limit above the 32 client connections (see object_server.py).
                    conf = h.write_swiftlite_configs(
                        etc, "container", devices, port, {"disk_limit": 64, **lite_set}
                    )
                    proc = h.swiftlite_server("container", conf, port, log)
                sys_ = System(name, proc, devices)
                systems[name] = sys_
                try:
                    proc.start()
                except h.ServerFailed as exc:
                    sys_.failed = f"start: {exc}"
                    report["failed"][name] = sys_.failed
                    print(f"!! {name} container server failed to start: {exc}", flush=True)
                    continue
                guarded(report, sys_, "setup and warm-up", setup, sys_.url)
            for level in levels:
                # Both systems prefill at once (setup only, not measured).
                t0 = time.monotonic()
                jobs: dict[str, subprocess.Popen[str]] = {}
                for s in systems.values():
                    if s.failed or level <= s.prefilled or s.name == "ceiling":
                        continue
                    job = guarded(
                        report,
                        s,
                        f"prefill to {level}",
                        start_prefill,
                        s.name,
                        s.devices,
                        s.prefilled,
                        level,
                    )
                    if job is not None:
                        jobs[s.name] = job
                for name, job in jobs.items():
                    s = systems[name]
                    if not guarded(report, s, f"prefill to {level}", finish_prefill, name, job):
                        continue
                    report["prefill_s"].setdefault(name, {})[str(level)] = round(
                        time.monotonic() - t0, 1
                    )
                    s.prefilled = level
                    head = guarded(report, s, "HEAD", head_count, s.url)
                    count = head[0] if head is not None else None
                    expect = s.prefilled + s.updated
                    if count is not None and count != expect:
                        s.failed = f"after prefill HEAD says {count} objects, expected {expect}"
                        report["failed"][s.name] = s.failed
                        print(f"!! {s.name}: {s.failed}", flush=True)
                if jobs:
                    print(
                        f"   {kind}: prefilled {', '.join(jobs)} to {level:,} rows in "
                        f"{time.monotonic() - t0:.1f}s (both at once)",
                        flush=True,
                    )
                per_sys: dict[str, list[dict[str, Any]]] = {}
                for i, name in enumerate(order(args.rounds, ceiling=True)):
                    s = systems[name]
                    tag = f"l{level}r{i}"
                    res = guarded(
                        report,
                        s,
                        f"updates at {level}",
                        updates,
                        s.url,
                        n_upd,
                        tag,
                        CONTAINER,
                        s.proc.cpu_seconds,
                    )
                    if res is None:
                        continue
                    s.updated += n_upd - res["errors"]
                    per_sys.setdefault(name, []).append(res)
                    print(
                        f"   {kind}: {name} {n_upd} updates at {level}+ rows: "
                        f"{res['ops_s']:.0f}/s ({res['errors']} errors)",
                        flush=True,
                    )
                report["updates"][str(level)] = {
                    name: median_with_flush(rs) for name, rs in per_sys.items()
                }
            top = levels[-1]
            for label, (query, expect) in listings(top).items():
                per: dict[str, dict[str, Any]] = {}
                for name in order(1):
                    s = systems[name]
                    res = guarded(
                        report,
                        s,
                        f"listing {label}",
                        listing,
                        s.url,
                        query,
                        expect,
                        reps,
                        s.proc.cpu_seconds,
                    )
                    if res is not None:
                        per[name] = res
                report["listings"][label] = per
            report["listing_rows"] = top
        finally:
            for s in systems.values():
                s.proc.stop()
    return report


def median_with_flush(rs: list[dict[str, Any]]) -> dict[str, Any]:
    out = h.median_summary(rs)
    out["ops_s_acked"] = statistics.median(r["ops_s_acked"] for r in rs)
    out["flush_ms"] = statistics.median(r["flush_ms"] for r in rs)
    return out


def print_report(report: dict[str, Any]) -> None:
    kind = report["storage"]
    label = "XFS loop image" if kind == "xfs" else "plain ext4 directory (root fs)"
    rows = []
    ups = report["updates"]
    for level in report["levels"]:
        per = ups.get(str(level), {})
        a, b = per.get("swiftlite"), per.get("swift")

        def cell(x: dict[str, Any] | None, key: str, fmt: str) -> str:
            return format(x[key], fmt) if x and x.get(key) is not None else "-"

        rows.append(
            [
                f"{level:,}",
                cell(a, "ops_s", ".0f"),
                cell(b, "ops_s", ".0f"),
                h.fmt_ratio(h.ratio(a and a["ops_s"], b and b["ops_s"])),
                cell(a, "ops_s_acked", ".0f"),
                cell(b, "ops_s_acked", ".0f"),
                cell(a, "p50_ms", ".2f"),
                cell(b, "p50_ms", ".2f"),
                cell(a, "p99_ms", ".2f"),
                cell(b, "p99_ms", ".2f"),
                cell(a, "cpu_ms_op", ".3f"),
                cell(b, "cpu_ms_op", ".3f"),
                cell(a, "flush_ms", ".1f"),
                cell(b, "flush_ms", ".1f"),
                str((a or {}).get("errors", "-")) + "/" + str((b or {}).get("errors", "-")),
                cell(per.get("ceiling"), "ops_s", ".0f"),
            ]
        )
    h.print_table(
        f"Container row PUTs at concurrency 32 on {label} "
        f"({report['updates_per_round']} per round, medians; rate counts the flushing HEAD)",
        rows,
        [
            "rows before",
            "lite upd/s",
            "swift upd/s",
            "ratio",
            "lite acked/s",
            "swift acked/s",
            "lite p50ms",
            "swift p50ms",
            "lite p99ms",
            "swift p99ms",
            "lite cpu ms/row",
            "swift cpu ms/row",
            "lite flush ms",
            "swift flush ms",
            "errors l/s",
            "ceiling upd/s",
        ],
    )
    first, last = str(report["levels"][0]), str(report["levels"][-1])
    for name in ("swiftlite", "swift"):
        a = ups.get(first, {}).get(name)
        b = ups.get(last, {}).get(name)
        if a and b and a["ops_s"]:
            change = (b["ops_s"] / a["ops_s"] - 1) * 100
            line = f"  {name}: update rate at {int(last):,} rows vs 0 rows: {change:+.0f}%"
            # Server CPU per row hardly depends on other load on the machine,
            # so it shows the effect of the row count better than the rate.
            if a.get("cpu_ms_op") and b.get("cpu_ms_op"):
                cpu_change = (b["cpu_ms_op"] / a["cpu_ms_op"] - 1) * 100
                line += f"; server CPU per row {cpu_change:+.0f}%"
            print(line)
    rows = []
    for lab, per in report["listings"].items():
        a, b = per.get("swiftlite"), per.get("swift")
        rows.append(
            [
                lab,
                format(a["p50_ms"], ".1f") if a else "-",
                format(b["p50_ms"], ".1f") if b else "-",
                h.fmt_ratio(h.ratio(b and b["p50_ms"], a and a["p50_ms"])),
                format(a["ops_s"], ".1f") if a else "-",
                format(b["ops_s"], ".1f") if b else "-",
                format(a["p99_ms"], ".1f") if a else "-",
                format(b["p99_ms"], ".1f") if b else "-",
                format(a["cpu_ms_op"], ".1f") if a and a.get("cpu_ms_op") is not None else "-",
                format(b["cpu_ms_op"], ".1f") if b and b.get("cpu_ms_op") is not None else "-",
                str((a or {}).get("entries", "-")) + "/" + str((b or {}).get("entries", "-")),
            ]
        )
    h.print_table(
        f"Listing {LIST_LIMIT:,} names at {report.get('listing_rows', 0):,} prefilled rows "
        f"(+ updates) on {label}, {report['listing_reps']} sequential GETs "
        "(speedup = swift p50 / swiftlite p50)",
        rows,
        [
            "listing",
            "lite p50ms",
            "swift p50ms",
            "speedup",
            "lite list/s",
            "swift list/s",
            "lite p99ms",
            "swift p99ms",
            "lite cpu ms",
            "swift cpu ms",
            "entries l/s",
        ],
    )
    if report["prefill_s"]:
        print(f"  prefill seconds (unmeasured setup): {report['prefill_s']}")
    for name, why in report["failed"].items():
        print(f"  FAILED {name}: {h.short_reason(why)}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--prefill-worker":
        system, db_file, start, end = argv[1:5]
        prefill_worker(system, db_file, int(start), int(end))
        return 0
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a < 1 minute smoke test")
    parser.add_argument("--no-xfs", action="store_true", help="plain ext4 directory only")
    parser.add_argument("--json", metavar="PATH", help="write all figures to this JSON file")
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="update rounds per system per level (default 3, quick 1)",
    )
    parser.add_argument("--updates", type=int, default=None, help="row PUTs per round")
    parser.add_argument("--work", default="/work/bench-tmp", help="where images and dirs go")
    parser.add_argument("--xfs-size", default="4G", help="size of the XFS loop image")
    parser.add_argument(
        "--client",
        choices=["raw", "aiohttp"],
        default="raw",
        help="load client for small requests (default raw: the leaner one, see _harness)",
    )
    parser.add_argument(
        "--lite-set",
        action="append",
        metavar="KEY=VALUE",
        help="extra swiftlite server setting (repeatable), e.g. threads_per_disk=8",
    )
    parser.add_argument("--logs", default=None, help="directory for server logs")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if os.geteuid() != 0 and not args.no_xfs:
        print("XFS loop images need root; run as root or pass --no-xfs", file=sys.stderr)
        return 2
    h.install_uvloop()
    h.CLIENT = args.client
    os.makedirs(args.work, exist_ok=True)
    work = tempfile.mkdtemp(prefix="contbench-", dir=args.work)
    args.logs = args.logs or os.path.join(work, "logs")
    os.makedirs(args.logs, exist_ok=True)
    started = time.monotonic()
    print(
        f"container server bench: {h.cpu_note()}; {args.rounds} update rounds per system "
        f"per level; 1 worker each; {args.client} client; logs in {args.logs}",
        flush=True,
    )
    results: dict[str, Any] = {"storage": []}
    ok = True
    try:
        for kind in ["ext4"] if args.no_xfs else ["xfs", "ext4"]:
            print(f"-- {kind}", flush=True)
            report = bench_storage(kind, args, work)
            results["storage"].append(report)
            print_report(report)
            if report["failed"]:
                ok = False
    finally:
        if args.json:
            with open(args.json, "w") as fp:
                json.dump(results, fp, indent=1)
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            shutil.rmtree(os.path.join(work, "etc"), ignore_errors=True)
    print(f"\nfinished in {time.monotonic() - started:.0f}s", flush=True)
    if not ok:
        print(f"some system failed: see above and the logs in {args.logs}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
