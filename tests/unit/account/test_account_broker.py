"""AccountBroker: listings against Swift's AccountBroker, merge order
independence, totals, deletion and concurrency."""

from __future__ import annotations

import itertools
import os
import random
import sqlite3
import tempfile
import threading
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from swift.account.backend import AccountBroker as SwiftAccountBroker

from swiftlite.account.backend import AccountBroker, merge_row
from swiftlite.common.timestamp import Timestamp


def ts(n: float) -> str:
    return Timestamp(n).internal


def make_broker(path: str, account: str = "a") -> AccountBroker:
    broker = AccountBroker(path, account=account)
    broker.initialize(ts(1))
    return broker


# Names chosen so prefixes, delimiters and markers hit edges: shared stems,
# delimiter runs, the reserved byte, multi-byte UTF-8 (bytewise order differs
# from UTF-16 order for the astral character).
NAMES = [
    "a",
    "a-",
    "a-b",
    "a-b-c",
    "a--",
    "a-c",
    "a:b",
    "ab",
    "b",
    "b-",
    "b--x",
    "b-y",
    "c",
    "c-d-e",
    "caf\u00e9",
    "caf\u00e9-x",
    "cafe",
    "\u2603",
    "\u2603-x",
    "\U0001f954",
    "\U0001f954-y",
    "\uffff",
    "z",
    "\x00hidden",
    "\x00hidden-x",
    "d\u00e9-",
    "d\u00e9--",
    "e",
    "e-",
    "e-f",
    "f",
]


@pytest.fixture(scope="module")
def listing_pair(tmp_path_factory: Any) -> tuple[AccountBroker, SwiftAccountBroker]:
    root = tmp_path_factory.mktemp("listing")
    ours = make_broker(str(root / "ours.db"))
    theirs = SwiftAccountBroker(str(root / "swift.db"), account="a")
    theirs.initialize(ts(1))
    rng = random.Random(7)
    for i, name in enumerate(NAMES):
        count = rng.randrange(0, 5)
        args = (name, ts(10 + i), ts(0), count, count * 10, rng.choice([0, 1]))
        ours.put_container(*args)
        theirs.put_container(*args)
    # A deleted container is never listed.
    ours.put_container("gone", ts(2), ts(3), 0, 0, 0)
    theirs.put_container("gone", ts(2), ts(3), 0, 0, 0)
    return ours, theirs


PARAM = st.one_of(
    st.none(),
    st.just(""),
    st.sampled_from(NAMES),
    st.sampled_from(
        ["a", "a-", "b-", "caf", "c", "d\u00e9", "\u2603", "\x00", "\x00h", "zz", "e-f"]
    ),
)
DELIM = st.one_of(st.none(), st.just(""), st.sampled_from(["-", ":", "--", "b", "\u00e9-", "x"]))


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    limit=st.integers(min_value=0, max_value=12),
    marker=PARAM,
    end_marker=PARAM,
    prefix=PARAM,
    delimiter=DELIM,
    reverse=st.booleans(),
    allow_reserved=st.booleans(),
)
def test_list_containers_iter_matches_swift(
    listing_pair: tuple[AccountBroker, SwiftAccountBroker],
    limit: int,
    marker: str | None,
    end_marker: str | None,
    prefix: str | None,
    delimiter: str | None,
    reverse: bool,
    allow_reserved: bool,
) -> None:
    ours, theirs = listing_pair
    args = (limit, marker or "", end_marker, prefix, delimiter, reverse, allow_reserved)
    got = [(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in ours.list_containers_iter(*args)]
    expected = [
        (r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in theirs.list_containers_iter(*args)
    ]
    assert got == expected


GRID_MARKERS = [
    "",
    "a",
    "a-",
    "a--",
    "a-b",
    "b-",
    "caf\u00e9",
    "d\u00e9-",
    "e-",
    "\u2603",
    "\x00",
    "\x00hidden-",
    "zz",
    "\U0001f954-",
]
GRID_PREFIXES = [None, "", "a", "a-", "d\u00e9", "\x00hidden"]
GRID_DELIMS = [None, "-", "--", ":", "\u00e9-"]


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("delimiter", GRID_DELIMS)
def test_listing_grid_matches_swift(
    listing_pair: tuple[AccountBroker, SwiftAccountBroker], delimiter: str | None, reverse: bool
) -> None:
    """Every marker/end_marker/prefix combination of a grid, for each delimiter."""
    ours, theirs = listing_pair
    for marker, end_marker, prefix, limit in itertools.product(
        GRID_MARKERS, [None, *GRID_MARKERS[1:6]], GRID_PREFIXES, [2, 100]
    ):
        args = (limit, marker, end_marker, prefix, delimiter, reverse, prefix == "\x00hidden")
        got = [tuple(r[:5]) + (bool(r[5]),) for r in ours.list_containers_iter(*args)]
        expected = [tuple(r[:5]) + (bool(r[5]),) for r in theirs.list_containers_iter(*args)]
        assert got == expected, args


def test_bytewise_utf8_order(listing_pair: tuple[AccountBroker, SwiftAccountBroker]) -> None:
    ours, _ = listing_pair
    names = [r[0] for r in ours.list_containers_iter(100, "", None, None, None, False, True)]
    assert names == sorted(names, key=lambda n: n.encode("utf-8"))
    assert "\U0001f954" in names and names.index("\uffff") < names.index("\U0001f954")


# --- merge order independence ------------------------------------------------

REPORT = st.tuples(
    st.sampled_from(["c1", "c2", "c3"]),
    st.integers(min_value=1, max_value=6),  # put timestamp
    st.integers(min_value=0, max_value=6),  # delete timestamp
)


def figures(name: str, put: int, delete: int) -> tuple[int, int, int]:
    """Reports with equal timestamps carry equal figures, as one container's state."""
    seed = zlib.crc32(f"{name}-{put}-{delete}".encode()) & 0xFFFF
    count = 0 if delete > put and seed % 2 else seed % 7
    return count, count * 100 + seed % 13, seed % 2


def as_item(report: tuple[str, int, int]) -> dict[str, Any]:
    name, put, delete = report
    count, nbytes, policy = figures(name, put, delete)
    return {
        "name": name,
        "put_timestamp": ts(put),
        "delete_timestamp": ts(delete),
        "object_count": count,
        "bytes_used": nbytes,
        "deleted": 0,
        "storage_policy_index": policy,
    }


def state(broker: AccountBroker) -> tuple[Any, ...]:
    broker.get_info()  # merges the pending file first
    with broker.get() as conn:
        rows = sorted(
            tuple(r)
            for r in conn.execute(
                "SELECT name, put_timestamp, delete_timestamp, object_count, bytes_used, "
                "deleted, storage_policy_index FROM container"
            )
        )
        stat = tuple(
            conn.execute(
                "SELECT container_count, object_count, bytes_used, hash FROM account_stat"
            ).fetchone()
        )
        # A policy row, once created, stays (at zero) like Swift's: which
        # zero rows exist depends on history, their figures do not.
        policy = sorted(
            tuple(r) for r in conn.execute("SELECT * FROM policy_stat") if tuple(r)[1:] != (0, 0, 0)
        )
    return rows, stat, policy


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(reports=st.lists(REPORT, min_size=1, max_size=12), seed=st.integers(0, 2**32))
def test_merge_is_order_independent(tmp_path: Any, reports: list, seed: int) -> None:
    items = [as_item(r) for r in reports]
    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)
    sub = tempfile.mkdtemp(dir=tmp_path)
    a = make_broker(os.path.join(sub, "a.db"))
    b = make_broker(os.path.join(sub, "b.db"))
    c = make_broker(os.path.join(sub, "c.db"))
    for item in items:
        a.merge_items([dict(item)])
    for item in shuffled:
        b.merge_items([dict(item)])
    # Through the pending file, in one batch, in reverse.
    for item in reversed(items):
        c.put_container(
            item["name"],
            item["put_timestamp"],
            item["delete_timestamp"],
            item["object_count"],
            item["bytes_used"],
            item["storage_policy_index"],
        )
    assert state(a) == state(b) == state(c)


def test_in_order_reports_match_swift_rows_and_hash(tmp_path: Any) -> None:
    ours = make_broker(str(tmp_path / "ours.db"))
    theirs = SwiftAccountBroker(str(tmp_path / "swift.db"), account="a")
    theirs.initialize(ts(1))
    reports = [
        ("c1", 2, 0, 1, 10, 0),
        ("c2", 3, 0, 2, 20, 1),
        ("c1", 2, 0, 5, 50, 0),
        ("c2", 3, 4, 0, 0, 1),
        ("c3", 5, 0, 0, 0, 0),
        ("c2", 6, 4, 1, 1, 0),
        ("c\u00e9", 7, 0, 3, 3, 1),
        ("c3", 5, 8, 0, 0, 0),
    ]
    for report in reports:
        ours.put_container(report[0], ts(report[1]), ts(report[2]), *report[3:])
        theirs.put_container(report[0], ts(report[1]), ts(report[2]), *report[3:])
    mine = state(ours)
    theirs.get_info()  # merges Swift's pending file
    with theirs.get() as conn:
        swift_rows = sorted(
            tuple(r)
            for r in conn.execute(
                "SELECT name, put_timestamp, delete_timestamp, object_count, bytes_used, "
                "deleted, storage_policy_index FROM container"
            )
        )
        swift_stat = tuple(
            conn.execute(
                "SELECT container_count, object_count, bytes_used, hash FROM account_stat"
            ).fetchone()
        )
    assert mine[0] == swift_rows
    assert mine[1] == swift_stat
    assert ours.get_policy_stats() == theirs.get_policy_stats()
    info, sinfo = ours.get_info(), theirs.get_info()
    for key in ("container_count", "object_count", "bytes_used", "hash", "put_timestamp"):
        assert info[key] == sinfo[key]


def test_stale_report_does_not_roll_counts_back(tmp_path: Any) -> None:
    broker = make_broker(str(tmp_path / "a.db"))
    broker.merge_items([as_item(("c", 5, 0)) | {"object_count": 9, "bytes_used": 90}])
    broker.merge_items([as_item(("c", 3, 0)) | {"object_count": 1, "bytes_used": 10}])
    row = broker.list_containers_iter(10, "", None, None, None)[0]
    assert (row[1], row[2], row[3]) == (9, 90, ts(5))
    # Same timestamps: the later report wins (a container updater's new counts).
    broker.merge_items([as_item(("c", 5, 0)) | {"object_count": 4, "bytes_used": 40}])
    row = broker.list_containers_iter(10, "", None, None, None)[0]
    assert (row[1], row[2]) == (4, 40)


def test_merge_row_marks_tombstones() -> None:
    rec = merge_row(None, as_item(("c", 1, 2)) | {"object_count": 0})
    assert rec["deleted"] == 1
    rec = merge_row(rec, as_item(("c", 3, 2)) | {"object_count": 0})
    assert rec["deleted"] == 0 and rec["delete_timestamp"] == ts(2)
    # Deleted exactly when Swift would call it deleted: newest delete strictly
    # after newest put (a tie keeps the container).
    rec = merge_row(merge_row(None, as_item(("c", 5, 0))), as_item(("c", 1, 5)))
    assert rec["deleted"] == 0 and rec["put_timestamp"] == ts(5)
    rec = merge_row(merge_row(None, as_item(("c", 5, 0))), as_item(("c", 1, 6)))
    assert rec["deleted"] == (1 if rec["object_count"] == 0 else 0)
    assert rec["delete_timestamp"] == ts(6)


# --- account status ----------------------------------------------------------


def test_delete_marks_status_and_clears_metadata(tmp_path: Any) -> None:
    broker = make_broker(str(tmp_path / "a.db"))
    broker.update_metadata({"X-Account-Meta-A": ("x", ts(2))})
    assert not broker.is_deleted() and not broker.is_status_deleted()
    broker.delete_db(ts(5))
    assert broker.is_deleted() and broker.is_status_deleted()
    assert broker.metadata["X-Account-Meta-A"][0] == ""
    with broker.get() as conn:
        row = conn.execute("SELECT status, status_changed_at FROM account_stat").fetchone()
    assert tuple(row) == ("DELETED", ts(5))


def test_newer_delete_timestamp_without_containers_is_deleted(tmp_path: Any) -> None:
    broker = make_broker(str(tmp_path / "a.db"))
    broker.merge_timestamps(ts(1), ts(1), ts(3))
    assert broker.is_deleted()
    broker.put_container("c", ts(4), ts(0), 1, 1, 0)
    # A live container keeps it alive unless the status says DELETED.
    assert not broker.is_deleted() and not broker.empty()


def test_rows_are_never_updated(tmp_path: Any) -> None:
    broker = make_broker(str(tmp_path / "a.db"))
    broker.put_container("c", ts(2), ts(0), 1, 1, 0)
    broker.get_info()
    with broker.get() as conn, pytest.raises(sqlite3.DatabaseError):
        conn.execute("UPDATE container SET object_count = 5")


def test_rowids_grow_and_unchanged_reports_keep_their_row(tmp_path: Any) -> None:
    broker = make_broker(str(tmp_path / "a.db"))
    broker.merge_items([as_item(("c", 2, 0))])
    first = broker.get_items_since(-1, 10)
    broker.merge_items([as_item(("c", 2, 0))])
    assert broker.get_items_since(-1, 10) == first
    broker.merge_items([as_item(("c", 3, 0))])
    again = broker.get_items_since(-1, 10)
    assert len(again) == 1 and again[0]["ROWID"] > first[0]["ROWID"]


def test_merge_items_from_source_sets_sync_point(tmp_path: Any) -> None:
    broker = make_broker(str(tmp_path / "a.db"))
    items = [as_item(("c1", 2, 0)) | {"ROWID": 7}, as_item(("c2", 2, 0)) | {"ROWID": 9}]
    broker.merge_items(items, source="peer")
    assert broker.get_sync("peer") == 9
    broker.merge_items([as_item(("c3", 2, 0)) | {"ROWID": 4}], source="peer")
    assert broker.get_sync("peer") == 9


# --- concurrency -------------------------------------------------------------


def test_parallel_reports_from_many_threads_lose_none(tmp_path: Any) -> None:
    path = str(tmp_path / "a.db")
    make_broker(path)
    errors: list[BaseException] = []
    counter = itertools.count()

    def worker() -> None:
        try:
            for _ in range(50):
                n = next(counter)
                # A broker per report, as the server builds one per request.
                with AccountBroker(path, account="a") as broker:
                    broker.put_container(f"c{n:04d}", ts(2 + n), ts(0), 1, 10, n % 2)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    broker = AccountBroker(path, account="a")
    names = [r[0] for r in broker.list_containers_iter(10000, "", None, None, None)]
    assert names == [f"c{n:04d}" for n in range(400)]
    info = broker.get_info()
    assert (info["container_count"], info["object_count"], info["bytes_used"]) == (400, 400, 4000)
    stats = broker.get_policy_stats()
    assert stats[0]["container_count"] == stats[1]["container_count"] == 200


# --- Swift's DBs and ours ------------------------------------------------------


def test_swift_db_is_adopted_and_ours_open_in_swift(tmp_path: Any) -> None:
    swift_path = str(tmp_path / "swift.db")
    theirs = SwiftAccountBroker(swift_path, account="a")
    theirs.initialize(ts(1))
    theirs.put_container("s1", ts(2), ts(0), 3, 30, 1)
    theirs.put_container("s2", ts(3), ts(0), 1, 10, 0)
    theirs.get_info()  # merge Swift's pending file
    ours = AccountBroker(swift_path, account="a")
    assert [r[0] for r in ours.list_containers_iter(10, "", None, None, None)] == ["s1", "s2"]
    ours.put_container("s3", ts(4), ts(0), 2, 20, 1)
    info = ours.get_info()
    assert (info["container_count"], info["object_count"], info["bytes_used"]) == (3, 6, 60)
    assert ours.get_policy_stats()[1] == {
        "container_count": 2,
        "object_count": 5,
        "bytes_used": 50,
    }
    # Swift still reads the adopted DB, hash and all. Its connection switches
    # the journal mode, which needs the DB to itself: close ours first.
    ours.close()
    again = SwiftAccountBroker(swift_path, account="a")
    assert again.get_info()["hash"] == info["hash"]
    assert [r[0] for r in again.list_containers_iter(10, "", None, None, None)] == [
        "s1",
        "s2",
        "s3",
    ]
    # And a DB swiftlite created opens in Swift's broker.
    mine = make_broker(str(tmp_path / "mine.db"))
    mine.put_container("m", ts(2), ts(0), 1, 1, 0)
    mine_info = mine.get_info()
    # Swift's connection switches the journal to DELETE mode, which needs the
    # DB to itself: hand it over closed, as a replicated file would be.
    mine.close()
    swift_view = SwiftAccountBroker(str(tmp_path / "mine.db"), account="a")
    assert swift_view.get_info()["hash"] == mine_info["hash"]
    assert swift_view.list_containers_iter(10, "", None, None, None)[0][0] == "m"
    assert not swift_view.is_deleted()
