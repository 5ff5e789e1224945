import itertools
import logging

import pytest
from swift.common.utils import split_path as swift_split_path

from swiftlite.common.http import default_body, split_path, swift_response
from swiftlite.common.logs import TxnIdFilter, generate_trans_id, set_txn_id

PATHS = ["/a", "/a/", "/a/c", "/a/c/", "/a/c/o", "/a/c/o/r", "//a", "/a//c", "/a/c//o", "", "a/c",
         "/a/c/o/", "/d/p/a/c/o/x/y", "/sda/1/a/c/o"]


@pytest.mark.parametrize("path", PATHS)
def test_split_path_matches_swift(path):
    for lo, hi, rest in itertools.product(range(1, 5), range(1, 6), [False, True]):
        if lo > hi:
            continue
        try:
            mine = split_path(path, lo, hi, rest)
        except ValueError:
            mine = "error"
        try:
            theirs = swift_split_path(path, lo, hi, rest)
        except ValueError:
            theirs = "error"
        assert mine == theirs, (path, lo, hi, rest)


def test_default_bodies():
    assert default_body(404) == "<html><h1>Not Found</h1><p>The resource could not be found.</p></html>"
    assert default_body(204) == ""
    assert "Drive: sdb" in default_body(507, "sdb")
    resp = swift_response(412)
    assert resp.status == 412
    assert resp.content_type == "text/html"
    assert swift_response(201, body="").body == b""


def test_log_lines_carry_txn_id():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    token = set_txn_id("tx-abc")
    try:
        TxnIdFilter().filter(record)
    finally:
        from swiftlite.common.logs import txn_id

        txn_id.reset(token)
    assert record.txn_suffix == " (txn: tx-abc)"
    other = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    TxnIdFilter().filter(other)
    assert other.txn_suffix == ""
    tid = generate_trans_id()
    assert tid.startswith("tx") and len(tid) == 34


def test_is_valid_partition_ascii_only():
    from swiftlite.common.http import is_valid_partition

    assert is_valid_partition("0") and is_valid_partition("1023")
    assert not is_valid_partition("\u0663")  # an Arabic-Indic digit
    assert not is_valid_partition("") and not is_valid_partition("-1")
