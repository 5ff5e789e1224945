import pytest
from swift.common import constraints as swift_constraints
from swift.common.swob import Request

from swiftlite.common.constraints import check_metadata, check_utf8


def swift_answer(headers, target):
    req = Request.blank("/v1/a/c/o", headers=headers)
    resp = swift_constraints.check_metadata(req, target)
    return None if resp is None else resp.body.decode()


CASES = [
    {"X-Object-Meta-Color": "blue"},
    {"X-Object-Meta-": "x"},
    {"X-Object-Meta-" + "n" * 128: "v"},
    {"X-Object-Meta-" + "n" * 129: "v"},
    {"X-Object-Meta-Name": "v" * 256},
    {"X-Object-Meta-Name": "v" * 257},
    {f"X-Object-Meta-K{i}": "v" for i in range(90)},
    {f"X-Object-Meta-K{i}": "v" for i in range(91)},
    {f"X-Object-Meta-K{i:03d}": "v" * 40 for i in range(90)},
    {"X-Container-Meta-Color": "blue", "X-Object-Meta-Skip": "x" * 300},
]


@pytest.mark.parametrize("headers", CASES)
@pytest.mark.parametrize("target", ["object", "container"])
def test_check_metadata_matches_swift(headers, target):
    assert check_metadata(headers, target) == swift_answer(headers, target)


def test_check_metadata_counts_utf8_bytes():
    # 86 three-byte characters are 258 bytes: over the 256-byte value limit.
    err = check_metadata({"X-Object-Meta-K": "\u20ac" * 86}, "object")
    assert err == "Metadata value longer than 256: x-object-meta-K"


def test_check_utf8():
    assert check_utf8("abc")
    assert not check_utf8("")
    assert not check_utf8("a\x00b")
    assert not check_utf8(b"\xff")
    assert not check_utf8("\udcff")
