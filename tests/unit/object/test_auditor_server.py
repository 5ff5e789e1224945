"""The auditor over objects written by the real object server (PUT, POST, DELETE)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from swiftlite.object.auditor import ALL, ZBF, ObjectAuditor
from swiftlite.object.daemon_config import ObjectAuditorConfig
from swiftlite.object.server import ObjectServer
from tests.unit.object import objsrv_helpers as helpers

Clock = helpers.Clock
clock = helpers.clock
devices = helpers.devices
make_client = helpers.make_client
server = helpers.server

Server = tuple[ObjectServer, TestClient[Any, Any]]
BIG = bytes(range(256)) * 8192  # 2 MiB: several read steps


def auditor(devices: str, tmp_path: Path, at: float | None = None) -> ObjectAuditor:
    conf = ObjectAuditorConfig(
        devices=devices,
        mount_check=False,
        recon_cache_path=str(tmp_path / "recon"),
        files_per_second=0,
        bytes_per_second=0,
        zero_byte_files_per_second=0,
    )
    return ObjectAuditor(
        conf, helpers.cluster_config(), wall_clock=(lambda: at) if at else time.time
    )


async def run(aud: ObjectAuditor, kind: str) -> Any:
    try:
        return await aud.audit_pass(kind)
    finally:
        aud.close()


async def put(client: TestClient[Any, Any], path: str, ts: str, body: bytes, **hdrs: str) -> None:
    headers = {"X-Timestamp": ts, "Content-Type": "text/plain", **hdrs}
    resp = await client.put(path, data=body, headers=headers)
    assert resp.status == 201, await resp.text()


async def test_server_written_objects(
    server: Server, clock: Clock, devices: str, tmp_path: Path
) -> None:
    _srv, client = server
    soon = str(int(time.time()) + 600)
    await put(client, "/sda/1/a/c/plain", clock(), b"hello")
    await put(client, "/sda/1/a/c/empty", clock(), b"")
    await put(client, "/sda/2/a/c/big", clock(), BIG)
    await put(client, "/sda/3/a/c/expiring", clock(), b"tick", **{"X-Delete-At": soon})
    await put(client, "/sda/3/a/c/posted", clock(), b"meta")
    resp = await client.post(
        "/sda/3/a/c/posted",
        headers={"X-Timestamp": clock(), "X-Object-Meta-Color": "red", "X-Delete-At": soon},
    )
    assert resp.status == 202
    await put(client, "/sdb/4/a/c/gone", clock(), b"x")
    resp = await client.delete("/sdb/4/a/c/gone", headers={"X-Timestamp": clock()})
    assert resp.status == 204
    await put(
        client,
        "/sdb/5/a/c/other-policy",
        clock(),
        b"silver",
        **{"X-Backend-Storage-Policy-Index": "1"},
    )

    stats = await run(auditor(devices, tmp_path), ALL)
    assert stats.files_processed == 7
    assert stats.quarantined == 0 and stats.errors == 0 and stats.expired_removed == 0
    assert stats.bytes_processed == 5 + len(BIG) + 4 + 4 + 6
    assert (await run(auditor(devices, tmp_path), ZBF)).quarantined == 0

    # One flipped byte in the middle of the big object: only the full pass sees it.
    big_dir = os.path.join(devices, "sda", "objects", "2")
    (data,) = [
        os.path.join(r, f) for r, _d, fs in os.walk(big_dir) for f in fs if f.endswith(".data")
    ]
    with open(data, "r+b") as fp:
        fp.seek(len(BIG) // 2)
        fp.write(b"\xff" if BIG[len(BIG) // 2] != 0xFF else b"\x00")
    assert (await run(auditor(devices, tmp_path), ZBF)).quarantined == 0
    assert (await run(auditor(devices, tmp_path), ALL)).quarantined == 1
    resp = await client.get("/sda/2/a/c/big")
    assert resp.status == 404

    # Ten minutes later both expiring objects (one set by PUT, one by POST)
    # are gone from the disk, without tombstones.
    later = await run(auditor(devices, tmp_path, at=time.time() + 3600), ZBF)
    assert later.expired_removed == 2
    part_dir = os.path.join(devices, "sda", "objects", "3")
    left = [
        f for _r, _d, fs in os.walk(part_dir) for f in fs if f.endswith((".data", ".meta", ".ts"))
    ]
    assert left == []
    for name in ("expiring", "posted"):
        resp = await client.head(f"/sda/3/a/c/{name}")
        assert resp.status == 404 and "X-Backend-Timestamp" not in resp.headers
    resp = await client.head("/sda/1/a/c/plain")
    assert resp.status == 200
