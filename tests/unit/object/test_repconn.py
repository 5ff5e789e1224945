"""REPCONN: framing, the receiver's decisions, refusals before takeover."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import struct

import pytest

from swiftlite.common.hashing import hash_path
from swiftlite.object import repconn
from swiftlite.object.repconn import (
    ProtocolError,
    RepconnClient,
    RepconnRefused,
    decide,
    encode_message,
    parse_sync_path,
    read_message,
)
from tests.unit.object import test_replicator_support as support
from tests.unit.object.test_replicator_support import Cluster, ts

# Fixtures shared with the replicator tests.
make_cluster = support.make_cluster
python_http_parser = support.python_http_parser

NAME = "a/c/o"


def rel_for(name: str, filename: str) -> str:
    h = str(hash_path(*name.split("/")))
    return f"{h[-3:]}/{h}/{filename}"


def feed(data: bytes, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


# -- framing ------------------------------------------------------------------


async def test_message_round_trip() -> None:
    msgs = [{"type": "ping"}, {"type": "sync", "metadata": {"X-Object-Meta-\u00e9": "\u2603"}}]
    reader = feed(b"".join(encode_message(m) for m in msgs))
    assert [await read_message(reader), await read_message(reader)] == msgs
    with pytest.raises(asyncio.IncompleteReadError):
        await read_message(reader)


async def test_framing_is_big_endian_length_then_json() -> None:
    raw = encode_message({"a": 1})
    assert raw[:4] == struct.pack(">I", len(raw) - 4)
    assert json.loads(raw[4:]) == {"a": 1}


async def test_bad_frames() -> None:
    with pytest.raises(ProtocolError):
        await read_message(feed(struct.pack(">I", repconn.MAX_MESSAGE + 1)))
    with pytest.raises(ProtocolError):
        await read_message(feed(struct.pack(">I", 2) + b"[]"))
    with pytest.raises(ProtocolError):
        await read_message(feed(struct.pack(">I", 3) + b"{x}"))
    with pytest.raises(asyncio.IncompleteReadError):
        await read_message(feed(struct.pack(">I", 10) + b"{}"))


def test_parse_sync_path() -> None:
    h = "d41d8cd98f00b204e9800998ecf8427e"
    assert parse_sync_path(f"27e/{h}/1400000000.00000.data")[3] == ".data"
    for bad in (
        f"27f/{h}/1400000000.00000.data",  # suffix is not the hash's
        f"27e/{h}/1400000000.00000.pkl",
        f"27e/{h}/x.data",
        f"../{h}/1400000000.00000.data",
        f"27e/{h[:-1]}/1400000000.00000.data",
        f"x/27e/{h}/1400000000.00000.data",
        None,
    ):
        with pytest.raises(ValueError):
            parse_sync_path(bad)


def test_decide_by_names(tmp_path: os.PathLike[str]) -> None:
    d = os.path.join(tmp_path, "h")
    assert decide(d, "0000000002.00000.data") == "go"  # nothing there
    os.makedirs(d)
    for name in ("0000000002.00000.data", "0000000003.00000.meta"):
        open(os.path.join(d, name), "w").close()
    assert decide(d, "0000000002.00000.data") == "exists"
    assert decide(d, "0000000001.00000.data") == "newer"
    assert decide(d, "0000000001.00000.ts") == "newer"
    assert decide(d, "0000000002.50000.meta") == "newer"  # older than the .meta here
    assert decide(d, "0000000004.00000.meta") == "go"
    assert decide(d, "0000000003.00000.data") == "go"
    assert decide(d, "0000000005.00000.ts") == "go"
    os.unlink(os.path.join(d, "0000000002.00000.data"))
    os.unlink(os.path.join(d, "0000000003.00000.meta"))
    open(os.path.join(d, "0000000004.00000.ts"), "w").close()
    assert decide(d, "0000000003.00000.data") == "newer"  # a newer delete wins
    assert decide(d, "0000000004.00000.data") == "newer"  # same time: the .ts wins
    assert decide(d, "0000000005.00000.data") == "go"


# -- the receiver over a real connection ---------------------------------------


async def connect(cluster: Cluster, node: int = 0, **kw: object) -> RepconnClient:
    n = cluster.nodes[node]
    return await RepconnClient.connect("127.0.0.1", n.port, n.device, 0, **kw)  # type: ignore[arg-type]


def data_offer(body: bytes, t: str, name: str = NAME) -> tuple[str, dict[str, str], int]:
    meta = {
        "name": "/" + name,
        "X-Timestamp": t,
        "Content-Type": "text/plain",
        "Content-Length": str(len(body)),
        "ETag": hashlib.md5(body).hexdigest(),
        "X-Object-Meta-Color": "blue",
    }
    return rel_for(name, f"{t}.data"), meta, len(body)


async def test_receiver_go_ahead_exists_newer(make_cluster) -> None:
    cluster = await make_cluster(count=1, primaries=1)
    node = cluster.nodes[0]
    conn = await connect(cluster, need_hashes=True)
    assert conn.hashes == {}
    t1, t2 = ts(-10), ts()
    rel, meta, size = data_offer(b"hello", t2)
    answer = await conn.offer(rel, meta, size)
    assert answer.go_ahead and not answer.exists
    await conn.write_bytes(b"hello")
    assert await conn.upload_result() == (True, "")
    assert node.read(NAME) == b"hello"
    assert node.files(NAME) == [f"{t2}.data"]
    # The same file again: exists, nothing sent.
    answer = await conn.offer(rel, meta, size)
    assert answer.exists and not answer.go_ahead
    # Older data: newer exists.
    rel1, meta1, size1 = data_offer(b"old", t1)
    answer = await conn.offer(rel1, meta1, size1)
    assert answer.newer_exists and not answer.go_ahead
    # A check-only offer of something new answers without a go-ahead.
    t3 = ts(10)
    rel3, meta3, size3 = data_offer(b"new", t3)
    answer = await conn.offer(rel3, meta3, size3, check=True)
    assert not (answer.exists or answer.newer_exists or answer.go_ahead)
    assert await conn.ping()
    await conn.close()
    assert node.files(NAME) == [f"{t2}.data"]


async def test_receiver_rejects_bad_paths_and_metadata(make_cluster) -> None:
    cluster = await make_cluster(count=1, primaries=1)
    conn = await connect(cluster)
    t = ts()
    rel, meta, size = data_offer(b"x", t)
    answer = await conn.offer("../../etc/passwd", meta, size)
    assert not answer.go_ahead and answer.msg
    # Metadata that does not match the file name.
    answer = await conn.offer(rel, dict(meta, **{"X-Timestamp": ts(5)}), size)
    assert not answer.go_ahead and "match" in answer.msg
    # A name that does not hash to the offered dir.
    other = rel_for("a/c/other", f"{t}.data")
    answer = await conn.offer(other, meta, size)
    assert answer.go_ahead  # decided by name; the name check comes at put
    await conn.write_bytes(b"x")
    ok, msg = await conn.upload_result()
    assert not ok and "does not belong" in msg
    # The session goes on after a rejected file.
    assert await conn.ping()
    await conn.close()
    node = cluster.nodes[0]
    assert node.files("a/c/other") == []
    assert os.listdir(os.path.join(node.device_path, "tmp")) == []


async def test_md5_mismatch_is_rejected_and_nothing_linked(make_cluster) -> None:
    cluster = await make_cluster(count=1, primaries=1)
    node = cluster.nodes[0]
    conn = await connect(cluster)
    rel, meta, size = data_offer(b"good bytes", ts())
    answer = await conn.offer(rel, meta, size)
    assert answer.go_ahead
    await conn.write_bytes(b"evil bytes")  # same length, other content
    ok, msg = await conn.upload_result()
    assert not ok and msg.startswith("md5 mismatch")
    await conn.close()
    assert node.files(NAME) == []
    assert os.listdir(os.path.join(node.device_path, "tmp")) == []


async def test_large_file_streams_in_chunks(make_cluster) -> None:
    cluster = await make_cluster(count=1, primaries=1)
    node = cluster.nodes[0]
    body = os.urandom(repconn.SMALL_FILE * 2 + 123)
    conn = await connect(cluster)
    rel, meta, size = data_offer(body, ts())
    assert (await conn.offer(rel, meta, size)).go_ahead
    for i in range(0, len(body), 300_000):
        await conn.write_bytes(body[i : i + 300_000])
    assert await conn.upload_result() == (True, "")
    await conn.close()
    assert node.read(NAME) == body


async def test_tombstone_and_meta_offers(make_cluster) -> None:
    cluster = await make_cluster(count=1, primaries=1)
    node = cluster.nodes[0]
    t1, t2, t3 = ts(-20), ts(-10), ts()
    node.put(NAME, b"abc", t1)
    conn = await connect(cluster)
    meta_rel = rel_for(NAME, f"{t2}.meta")
    meta = {"name": "/" + NAME, "X-Timestamp": t2, "X-Object-Meta-K": "v"}
    assert (await conn.offer(meta_rel, meta, 0)).go_ahead
    assert await conn.upload_result() == (True, "")
    assert node.files(NAME) == [f"{t1}.data", f"{t2}.meta"]
    # A .meta must not carry bytes.
    answer = await conn.offer(rel_for(NAME, f"{t3}.meta"), dict(meta, **{"X-Timestamp": t3}), 4)
    assert not answer.go_ahead
    ts_rel = rel_for(NAME, f"{t3}.ts")
    assert (await conn.offer(ts_rel, {"name": "/" + NAME, "X-Timestamp": t3}, 0)).go_ahead
    assert await conn.upload_result() == (True, "")
    await conn.close()
    assert node.files(NAME) == [f"{t3}.ts"]


async def test_unmounted_device_is_507_before_takeover(make_cluster) -> None:
    cluster = await make_cluster(count=1, primaries=1)
    n = cluster.nodes[0]
    with pytest.raises(RepconnRefused) as info:
        await RepconnClient.connect("127.0.0.1", n.port, "nosuchdev", 0)
    assert info.value.status == 507


async def test_busy_device_is_503_before_takeover(make_cluster) -> None:
    cluster = await make_cluster(count=1, primaries=1)
    node = cluster.nodes[0]
    node.server.conf.replication_concurrency_per_device = 2  # type: ignore[attr-defined]
    first = await connect(cluster)
    second = await connect(cluster)
    with pytest.raises(RepconnRefused) as info:
        await connect(cluster)
    assert info.value.status == 503
    await first.close()
    # The slot is free again once the session ended.
    for _ in range(100):
        if node.server.dm.usage().get(node.device, 0) < 2:
            break
        await asyncio.sleep(0.01)
    third = await connect(cluster)
    await third.close()
    await second.close()


async def test_locked_device_and_bad_requests(make_cluster) -> None:
    cluster = await make_cluster(count=1, primaries=1)
    node = cluster.nodes[0]
    open(os.path.join(node.device_path, "lock_device"), "w").close()
    with pytest.raises(RepconnRefused) as info:
        await connect(cluster)
    assert info.value.status == 503
    os.unlink(os.path.join(node.device_path, "lock_device"))
    # Without the upgrade headers (a plain HTTP client) it is a 400, not a takeover.
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    writer.write(f"REPCONN /{node.device}/0 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    status = await reader.readline()
    assert b" 400 " in status
    writer.close()
    # Upgrade without "Connection: Upgrade" is no takeover either.
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    writer.write(f"REPCONN /{node.device}/0 HTTP/1.1\r\nHost: x\r\nUpgrade: tcp\r\n\r\n".encode())
    await writer.drain()
    assert b" 400 " in await reader.readline()
    writer.close()
    with pytest.raises(RepconnRefused) as info:
        await RepconnClient.connect("127.0.0.1", node.port, node.device, "x")
    assert info.value.status == 400
    with pytest.raises(RepconnRefused) as info:
        await RepconnClient.connect("127.0.0.1", node.port, node.device, 0, policy_index=7)
    assert info.value.status == 503


async def test_garbage_after_takeover_closes_the_session(make_cluster) -> None:
    cluster = await make_cluster(count=1, primaries=1)
    node = cluster.nodes[0]
    conn = await connect(cluster)
    conn.writer.write(struct.pack(">I", 5) + b"nope!")
    await conn.writer.drain()
    assert await conn.reader.read() == b""  # the receiver hung up
    await conn.close(done=False)
    for _ in range(100):
        if node.server.dm.usage().get(node.device, 0) == 0:
            break
        await asyncio.sleep(0.01)
    assert node.server.dm.usage().get(node.device, 0) == 0


async def test_full_device_refuses_data_but_takes_tombstones(make_cluster) -> None:
    cluster = await make_cluster(count=1, primaries=1, fallocate_reserve="100%")
    node = cluster.nodes[0]
    conn = await connect(cluster)
    rel, meta, size = data_offer(b"no room", ts(-5))
    answer = await conn.offer(rel, meta, size)
    assert not answer.go_ahead and answer.msg == "insufficient storage"
    t = ts()
    answer = await conn.offer(rel_for(NAME, f"{t}.ts"), {"name": "/" + NAME, "X-Timestamp": t}, 0)
    assert answer.go_ahead  # deletes free space in the end: never refused
    assert await conn.upload_result() == (True, "")
    await conn.close()
    assert node.files(NAME) == [f"{t}.ts"]
