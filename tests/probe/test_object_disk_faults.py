"""Object server under disk faults: a really stalled disk, a killed PUT."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

BODY = b"x" * 4096


def put(server, path: str, body: bytes = BODY, ts: float | None = None) -> int:
    status, _, _ = server.request(
        "PUT",
        path,
        body=body,
        headers={
            "X-Timestamp": f"{ts or time.time():016.5f}",
            "Content-Type": "application/octet-stream",
            "Content-Length": str(len(body)),
        },
    )
    return status


def data_files(devroot: Path, device: str = "*") -> list[Path]:
    return sorted(devroot.glob(f"{device}/objects*/*/*/*/*.data"))


def diskio(server) -> dict:
    status, _, body = server.request("GET", "/diskio", timeout=5)
    assert status == 200
    return json.loads(body)


def in_flight(view: dict, device: str) -> int:
    return int(view["in_flight"].get(device, 0))


def test_stalled_disk_costs_only_its_own_requests(start_server):
    limit = 4
    server = start_server("object", disk_limit=limit, threads_per_disk=limit)
    assert put(server, "/sda/0/a/c/stuck") == 201
    for i in range(5):
        assert put(server, f"/sdb/0/a/c/o{i}") == 201
    (stuck_data,) = data_files(server.devices, "sda")
    # A FIFO where the .data file should be: opening it for reading blocks in
    # the kernel until a writer comes, exactly like a disk that stopped
    # answering. Nothing in the server is mocked.
    os.unlink(stuck_data)
    os.mkfifo(stuck_data)

    results: list[int | str] = []

    def blocked_get() -> None:
        try:
            status, _, _ = server.request("GET", "/sda/0/a/c/stuck", timeout=120)
            results.append(status)
        except OSError as exc:
            results.append(repr(exc))

    threads = [threading.Thread(target=blocked_get, daemon=True) for _ in range(limit)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while in_flight(diskio(server), "sda") < limit:
        assert time.monotonic() < deadline, f"sda never reached its limit: {diskio(server)}"
        time.sleep(0.05)

    try:
        # The other device keeps serving, and the loop answers health checks.
        latencies = []
        for i in range(5):
            begin = time.monotonic()
            status, _, body = server.request("GET", f"/sdb/0/a/c/o{i}", timeout=10)
            latencies.append(time.monotonic() - begin)
            assert status == 200 and body == BODY
        assert put(server, "/sdb/0/a/c/new") == 201
        status, _, _ = server.request("GET", "/healthcheck", timeout=10)
        assert status == 200
        print("sdb GET latencies while sda is stalled:", [f"{x * 1000:.1f} ms" for x in latencies])

        # The stalled device refuses at once instead of queueing forever.
        begin = time.monotonic()
        status, headers, _ = server.request("GET", "/sda/0/a/c/other", timeout=10)
        refused_after = time.monotonic() - begin
        assert status == 503
        assert headers.get("X-Disk-Usage") == str(limit)
        status, _, _ = server.request(
            "PUT", "/sda/0/a/c/new", body=BODY,
            headers={"X-Timestamp": f"{time.time():016.5f}", "Content-Type": "a/b"}, timeout=10,
        )
        assert status == 503
        print(f"sda refused after {refused_after * 1000:.1f} ms")
        assert results == []  # the blocked GETs are still blocked
    finally:
        # Un-stall: a writer opens and closes the FIFO, the readers see EOF.
        fd = os.open(stuck_data, os.O_WRONLY)
        os.close(fd)
        for t in threads:
            t.join(60)
    assert len(results) == limit
    # Once unstalled the device serves again.
    deadline = time.monotonic() + 30
    while in_flight(diskio(server), "sda") != 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert put(server, "/sda/0/a/c/after") == 201
    status, _, body = server.request("GET", "/sda/0/a/c/after")
    assert status == 200 and body == BODY


def test_sigkill_mid_put_leaves_no_visible_object(start_server):
    server = start_server("object")
    total = 4 * 1024 * 1024
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    ts = f"{time.time():016.5f}"
    sock.sendall(
        (
            f"PUT /sda/0/a/c/half HTTP/1.1\r\nHost: x\r\nX-Timestamp: {ts}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {total}\r\n\r\n"
        ).encode()
    )
    sock.sendall(b"y" * (total // 2))
    tmpdir = server.devices / "sda" / "tmp"
    deadline = time.monotonic() + 30
    while not (tmpdir.is_dir() and any(tmpdir.iterdir())):
        assert time.monotonic() < deadline, "no temp file appeared"
        time.sleep(0.02)
    # Let the half body reach the temp file, then kill the server outright.
    time.sleep(0.2)
    server.kill(signal.SIGKILL)
    sock.close()
    leftovers = list(tmpdir.iterdir())
    assert leftovers, "expected the killed PUT's temp file"
    assert data_files(server.devices) == []

    # Age the leftover as if it were a day old, then start the server again
    # on the same devices: the object is not there, and the sweep removes it.
    old = time.time() - 2 * 86400
    for f in leftovers:
        os.utime(f, (old, old))
    fresh = start_server("object", name="node1", bind_port=server.port)
    status, _, _ = fresh.request("GET", "/sda/0/a/c/half")
    assert status == 404
    deadline = time.monotonic() + 30
    while any(f.exists() for f in leftovers):
        assert time.monotonic() < deadline, "stale temp file was never cleaned"
        time.sleep(0.1)
    # A complete PUT of the same name works and reads back whole.
    body = os.urandom(65536)
    assert put(fresh, "/sda/0/a/c/half", body=body) == 201
    status, headers, got = fresh.request("GET", "/sda/0/a/c/half")
    assert status == 200 and got == body
    etag = {k.lower(): v for k, v in headers.items()}["etag"]
    assert etag.strip('"') == hashlib.md5(body).hexdigest()

