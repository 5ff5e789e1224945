#!/usr/bin/env python3
"""Object server benchmark: swiftlite-object-server vs OpenStack Swift's object server.

One run measures, against both servers on the same machine and storage:
PUT, GET, HEAD and DELETE of 4 KiB objects at concurrency 1 and 32, and PUT and
GET of 64 MiB objects (concurrency 1); it prints ops/s, MB/s, p50, p99 and the
swiftlite/Swift ratios, first on XFS loop images, then on plain ext4
directories. The systems alternate (A B B A ...) and every figure is the median
over rounds. An in-memory "ceiling" server runs the same workload after every
pair of rounds (so under the same background load), so the
output says how close a figure is to what the client alone can do.

    python3 bench/object_server.py            # full run (~4-9 minutes, more under load)
    python3 bench/object_server.py --quick    # smoke test (< 1 minute)
    python3 bench/object_server.py --no-xfs --json out.json

Requests are Swift backend requests without X-Container-* headers, so neither
server sends container updates. Both servers: 1 worker, fsync on, log level
WARNING, mount_check off, fallocate off. Run as root (loop mounts).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import _harness as h

ACCOUNT = "AUTH_bench"
CONTAINER = "bench"
SMALL = 4096
BIG = 64 * 1024 * 1024

# (test name, size, concurrency) in the order a round runs them.
TESTS = [
    ("PUT 4KiB c1", SMALL, 1),
    ("PUT 4KiB c32", SMALL, 32),
    ("GET 4KiB c1", SMALL, 1),
    ("GET 4KiB c32", SMALL, 32),
    ("HEAD 4KiB c1", SMALL, 1),
    ("HEAD 4KiB c32", SMALL, 32),
    ("DELETE 4KiB c1", SMALL, 1),
    ("DELETE 4KiB c32", SMALL, 32),
    ("PUT 64MiB c1", BIG, 1),
    ("GET 64MiB c1", BIG, 1),
]


def obj_path(name: str) -> str:
    part = h.partition(ACCOUNT, CONTAINER, name)
    return f"/{h.DEVICE}/{part}/{ACCOUNT}/{CONTAINER}/{name}"


def counts(quick: bool) -> dict[str, int]:
    if quick:
        return {"c1": 40, "c32": 200, "big": 2}
    return {"c1": 300, "c32": 2000, "big": 4}


def run_round(proc: h.ServerProc, tag: str, n: dict[str, int]) -> dict[str, dict[str, Any]]:
    """One round of every test against one server; names are unique per ``tag``."""
    out = h.run(small_round(f"http://127.0.0.1:{proc.port}", tag, n, proc.cpu_seconds))
    out.update(big_round(proc.port, tag, n, proc.cpu_seconds))
    return out


def put_req(path: str, body: bytes) -> h.Req:
    headers = {
        "X-Timestamp": h.timestamp(),
        "Content-Length": str(len(body)),
        "Content-Type": "application/octet-stream",
    }
    return h.Req("PUT", path, headers, body)


def big_round(
    port: int, tag: str, n: dict[str, int], cpu: Callable[[], float]
) -> dict[str, dict[str, Any]]:
    """64 MiB PUT then GET, one at a time, with the blocking client (see big_transfer)."""
    body = _big_body()
    big = [obj_path(f"{tag}/big/{i:03d}") for i in range(n["big"])]
    out = {}
    res = h.run_big_load(port, lambda i: put_req(big[i], body), len(big), [201], cpu)
    out["PUT 64MiB c1"] = res.summary()
    res = h.run_big_load(port, lambda i: h.Req("GET", big[i], {}), len(big), [200], cpu)
    out["GET 64MiB c1"] = res.summary()
    # Unmeasured clean-up so the loop image never fills over many rounds.
    h.run_big_load(
        port, lambda i: h.Req("DELETE", big[i], {"X-Timestamp": h.timestamp()}), len(big), [204]
    )
    return out


_BIG: list[bytes] = []


def _big_body() -> bytes:
    if not _BIG:
        _BIG.append(os.urandom(BIG))
    return _BIG[0]


async def small_round(
    base_url: str, tag: str, n: dict[str, int], cpu: Callable[[], float]
) -> dict[str, dict[str, Any]]:
    small_body = os.urandom(SMALL)
    names = {
        1: [obj_path(f"{tag}/c1/{i:06d}") for i in range(n["c1"])],
        32: [obj_path(f"{tag}/c32/{i:06d}") for i in range(n["c32"])],
    }
    out: dict[str, dict[str, Any]] = {}

    def put(paths: list[str], body: bytes) -> Callable[[int], h.Req]:
        return lambda i: put_req(paths[i], body)

    def simple(method: str, paths: list[str]) -> Callable[[int], h.Req]:
        def make(i: int) -> h.Req:
            headers = {"X-Timestamp": h.timestamp()} if method == "DELETE" else {}
            return h.Req(method, paths[i], headers)

        return make

    for conc in (1, 32):
        res = await h.run_load(
            base_url, put(names[conc], small_body), len(names[conc]), conc, [201], cpu=cpu
        )
        out[f"PUT 4KiB c{conc}"] = res.summary()
    for method, ok in (("GET", [200]), ("HEAD", [200]), ("DELETE", [204])):
        for conc in (1, 32):
            res = await h.run_load(
                base_url, simple(method, names[conc]), len(names[conc]), conc, ok, cpu=cpu
            )
            summary = res.summary()
            if method == "HEAD":
                # A HEAD moves no payload; MB/s would only be noise.
                summary["mb_s"] = 0.0
            out[f"{method} 4KiB c{conc}"] = summary
    return out


def start_systems(
    root: str, etc_base: str, logs: str, kind: str, lite_set: dict[str, Any]
) -> tuple[dict[str, h.ServerProc], dict[str, str]]:
    """Start both object servers on ``root``; a failure is recorded, not raised."""
    servers: dict[str, h.ServerProc] = {}
    failed: dict[str, str] = {}
    for system in ("swiftlite", "swift", "ceiling"):
        devices = h.make_devices(root, system)
        port = h.free_port()
        etc = os.path.join(etc_base, f"{system}-{kind}")
        log = os.path.join(logs, f"{system}-object-{kind}.log")
        if system == "ceiling":
            proc = h.ceiling_server(port, log)
        elif system == "swift":
            conf = h.write_swift_configs(etc, "object", devices, port)
            proc = h.swift_server("object", conf, port, log)
        else:
            # disk_limit above the client's 32 connections: swiftlite's default
            # (25) would answer some c32 requests 503 by design, and Swift has
            # no such limit, so the rates would not compare.
            conf = h.write_swiftlite_configs(
                etc, "object", devices, port, {"disk_limit": 64, **lite_set}
            )
            proc = h.swiftlite_server("object", conf, port, log)
        try:
            proc.start()
        except h.ServerFailed as exc:
            failed[system] = str(exc)
            print(f"!! {system} object server failed to start on {kind}: {exc}", flush=True)
            continue
        try:
            h.run(warm_up(f"http://127.0.0.1:{port}"))
        except h.ServerFailed as exc:
            failed[system] = str(exc)
            print(f"!! {system} object server failed its warm-up on {kind}: {exc}", flush=True)
            proc.stop()
            continue
        servers[system] = proc
    return servers, failed


async def warm_up(base_url: str) -> None:
    """Unmeasured PUT + GET of 200 small objects, so no measured round pays for a cold start."""
    body = os.urandom(SMALL)
    paths = [obj_path(f"warmup/{i:04d}") for i in range(200)]
    res = await h.run_load(base_url, lambda i: put_req(paths[i], body), len(paths), 32, [201])
    if res.errors:
        raise h.ServerFailed(f"warm-up PUT: {res.first_error}")
    res = await h.run_load(base_url, lambda i: h.Req("GET", paths[i], {}), len(paths), 32, [200])
    if res.errors:
        raise h.ServerFailed(f"warm-up GET: {res.first_error}")


def order(rounds: int) -> list[str]:
    """A B C B A C ...: each system gets ``rounds`` rounds, neither always goes
    first, and the client ceiling (C) is measured under the same load."""
    seq: list[str] = []
    for r in range(rounds):
        seq += ["swiftlite", "swift"] if r % 2 == 0 else ["swift", "swiftlite"]
        seq.append("ceiling")
    return seq


def bench_storage(
    kind: str, args: argparse.Namespace, work: str, n: dict[str, int]
) -> dict[str, Any]:
    report: dict[str, Any] = {"storage": kind, "systems": {}, "failed": {}}
    with h.storage_root(kind, work, size=args.xfs_size) as root:
        servers, failed = start_systems(
            root, os.path.join(work, "etc"), args.logs, kind, h.parse_settings(args.lite_set)
        )
        report["failed"].update(failed)
        rounds: dict[str, list[dict[str, dict[str, Any]]]] = {s: [] for s in servers}
        try:
            for i, system in enumerate(order(args.rounds)):
                proc = servers.get(system)
                if proc is None or system in report["failed"]:
                    continue
                t0 = time.monotonic()
                try:
                    proc.check_alive()
                    res = run_round(proc, f"r{i}", n)
                    proc.check_alive()
                except h.ServerFailed as exc:
                    report["failed"][system] = str(exc)
                    print(f"!! {system} failed on {kind}: {exc}", flush=True)
                    continue
                rounds[system].append(res)
                errs = sum(r["errors"] for r in res.values())
                print(
                    f"   {kind}: round {i + 1}/{3 * args.rounds} {system}: "
                    f"{time.monotonic() - t0:.1f}s, {errs} errors",
                    flush=True,
                )
        finally:
            for proc in servers.values():
                proc.stop()
    for system, rs in rounds.items():
        if rs:
            report["systems"][system] = {
                test: h.median_summary([r[test] for r in rs]) for test, _, _ in TESTS
            }
    return report


def print_report(report: dict[str, Any]) -> None:
    kind = report["storage"]
    label = "XFS loop image" if kind == "xfs" else "plain ext4 directory (root fs)"
    systems = report["systems"]
    lite = systems.get("swiftlite", {})
    swift = systems.get("swift", {})
    ceiling = systems.get("ceiling", {})
    rows = []
    for test, _size, _conc in TESTS:
        a = lite.get(test)
        b = swift.get(test)
        c = ceiling.get(test)

        def cell(x: dict[str, Any] | None, key: str, fmt: str) -> str:
            return format(x[key], fmt) if x and x.get(key) is not None else "-"

        rows.append(
            [
                test,
                cell(a, "ops_s", ".0f"),
                cell(b, "ops_s", ".0f"),
                h.fmt_ratio(h.ratio(a and a["ops_s"], b and b["ops_s"])),
                cell(a, "mb_s", ".1f"),
                cell(b, "mb_s", ".1f"),
                cell(a, "p50_ms", ".2f"),
                cell(b, "p50_ms", ".2f"),
                cell(a, "p99_ms", ".2f"),
                cell(b, "p99_ms", ".2f"),
                cell(a, "cpu_ms_op", ".3f"),
                cell(b, "cpu_ms_op", ".3f"),
                str((a or {}).get("errors", "-")) + "/" + str((b or {}).get("errors", "-")),
                cell(c, "ops_s", ".0f"),
            ]
        )
    header = [
        "test",
        "lite op/s",
        "swift op/s",
        "ratio",
        "lite MB/s",
        "swift MB/s",
        "lite p50ms",
        "swift p50ms",
        "lite p99ms",
        "swift p99ms",
        "lite cpu ms/op",
        "swift cpu ms/op",
        "errors l/s",
        "ceiling op/s",
    ]
    nrounds = max((v.get("PUT 4KiB c1", {}).get("rounds", 0) for v in systems.values()), default=0)
    h.print_table(
        f"Object server on {label}: medians of {nrounds} rounds per system "
        "(ratio = swiftlite/swift ops/s)",
        rows,
        header,
    )
    for system, why in report["failed"].items():
        print(f"  FAILED {system}: {h.short_reason(why)}")
    for system, res in systems.items():
        errs = [(t, r["first_error"]) for t, r in res.items() if r.get("first_error")]
        for test, err in errs[:3]:
            print(f"  {system} {test} first error: {err}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="small counts: a < 1 minute smoke test"
    )
    parser.add_argument("--no-xfs", action="store_true", help="plain ext4 directories only")
    parser.add_argument("--json", metavar="PATH", help="write all figures to this JSON file")
    parser.add_argument(
        "--rounds", type=int, default=None, help="rounds per system (default 3, quick 1)"
    )
    parser.add_argument("--work", default="/work/bench-tmp", help="where images and dirs go")
    parser.add_argument("--xfs-size", default="6G", help="size of the XFS loop image")
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
    parser.add_argument(
        "--logs", default=None, help="directory for server logs (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if os.geteuid() != 0 and not args.no_xfs:
        print("XFS loop images need root; run as root or pass --no-xfs", file=sys.stderr)
        return 2
    h.install_uvloop()
    h.CLIENT = args.client
    os.makedirs(args.work, exist_ok=True)
    work = tempfile.mkdtemp(prefix="objbench-", dir=args.work)
    args.logs = args.logs or os.path.join(work, "logs")
    os.makedirs(args.logs, exist_ok=True)
    n = counts(args.quick)
    started = time.monotonic()
    print(
        f"object server bench: {h.cpu_note()}; 4 KiB x {n['c1']} (c1) / {n['c32']} (c32), "
        f"64 MiB x {n['big']}; {args.rounds} rounds per system; 1 worker each; "
        f"{args.client} client; logs in {args.logs}",
        flush=True,
    )
    results: dict[str, Any] = {"counts": n, "rounds": args.rounds, "storage": []}
    ok = True
    try:
        kinds = ["ext4"] if args.no_xfs else ["xfs", "ext4"]
        for kind in kinds:
            print(f"-- {kind}", flush=True)
            report = bench_storage(kind, args, work, n)
            results["storage"].append(report)
            print_report(report)
            if report["failed"] or len(report["systems"]) < 3:
                ok = False
    finally:
        if args.json:
            with open(args.json, "w") as fp:
                json.dump(results, fp, indent=1)
        # Server logs are kept only when something failed.
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            etc = os.path.join(work, "etc")
            shutil.rmtree(etc, ignore_errors=True)
    print(f"\nfinished in {time.monotonic() - started:.0f}s", flush=True)
    if not ok:
        print(f"some system failed: see above and the logs in {args.logs}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
