"""swiftlite-ring-builder's parsers against Swift's (swift.common.ring.utils)
on hand-picked and generated inputs: same result, or the same error text."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swiftlite.ring import cli_parse as lite

swift_utils = pytest.importorskip("swift.common.ring.utils")


def outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except ValueError as exc:
        return "error", str(exc)


SEARCH_VALUES = [
    "d74",
    "r4",
    "z1",
    "z1-1.2.3.4",
    "1.2.3.4",
    "z1:5678",
    ":5678",
    "R5.6.7.8",
    "R:5678",
    "1.2.3.4R5.6.7.8",
    "/sdb1",
    "_shiny",
    '_"snet: 5.6.7.8"',
    "[::1]",
    "z1-[::1]:5678",
    "d74r4z1-1.2.3.4:5678/sdb1_\"snet: 5.6.7.8\"",
    "d1r2z3-[FE80::0001]:6200R[fe80::2]:6300/sdb_m",
    "R[::2]:7/dev_x",
    "d",
    "dx",
    "z1-",
    "1.2.3",
    "999.1.1.1",
    "[nothost]",
    "host.example",
    "-1.2.3.4",
    "d1 ",
    "",
    "/",
    "_",
    "r1z1-1.2.3.4:",
]


@pytest.mark.parametrize("value", SEARCH_VALUES)
def test_search_value_matches_swift(value: str) -> None:
    assert outcome(lite.parse_search_value, value) == outcome(swift_utils.parse_search_value, value)


ADD_VALUES = [
    "r1z1-127.0.0.1:6200/sda",
    "z1-127.0.0.1:6200/sda",
    "r2z3-127.0.0.1:6200R127.0.0.2:6300/sdb_meta data",
    "r1z1-[::1]:6200/sda",
    "r1z1-[FE80::1]:6200R[fe80::2]:6300/sda_m",
    "r1z1-127.0.0.1:6200/ sda",
    "r1z1-127.0.0.1:6200/",
    "r1z1-127.0.0.1/sda",
    "r1z1-127.0.0.1:x/sda",
    "r1z1-127.0.0.1:6200",
    "r1z1-localhost:6200/sda",
    "r1-127.0.0.1:6200/sda",
    "r1z1127.0.0.1:6200/sda",
    "rz1-127.0.0.1:6200/sda",
    "r1z1-127.0.0.1:6200Rx/sda",
    "r1z1-127.0.0.1:6200R127.0.0.2/sda",
    "r1z1-300.0.0.1:6200/sda",
    "",
]


@pytest.mark.parametrize("value", ADD_VALUES)
def test_add_value_matches_swift(value: str) -> None:
    assert outcome(lite.parse_add_value, value) == outcome(swift_utils.parse_add_value, value)


_alphabet = st.sampled_from(list("drzR-:/_.[]0123456789abf ") + ["1.2.3.4", "::1", "6200", "sdb"])
_fragments = st.lists(_alphabet, max_size=12).map("".join)


@settings(max_examples=300, deadline=None)
@given(_fragments)
def test_generated_search_values_match_swift(value: str) -> None:
    assert outcome(lite.parse_search_value, value) == outcome(swift_utils.parse_search_value, value)


@settings(max_examples=300, deadline=None)
@given(st.tuples(st.sampled_from(["", "r1", "r", "r12"]), st.sampled_from(["z1", "z", "", "z7"]), _fragments).map("".join))
def test_generated_add_values_match_swift(value: str) -> None:
    assert outcome(lite.parse_add_value, value) == outcome(swift_utils.parse_add_value, value)


@pytest.mark.parametrize(
    "address",
    ["1.2.3.4", "[::1]", "::1", "FE80::1", "host.Example.com", "bad_host", "[1.2.3.4]", "[host]", "-x", "a" * 64],
)
def test_addresses_normalize_like_swift(address: str) -> None:
    assert outcome(lite.normalize_address, address) == outcome(swift_utils.validate_and_normalize_address, address)
    assert outcome(lite.normalize_ip, address) == outcome(swift_utils.validate_and_normalize_ip, address)


@pytest.mark.parametrize(
    "name",
    ["object.builder", "object.ring.gz", "object", "dir/container.builder", "a.b.ring.gz", "/x/y"],
)
def test_builder_and_ring_names(name: str) -> None:
    assert lite.builder_and_ring_names(name) == swift_utils.parse_builder_ring_filename_args(["prog", name])


@pytest.mark.parametrize(
    "argv",
    [
        ["--region", "1", "--zone", "2", "--ip", "127.0.0.1", "--port", "6200", "--device", "sda", "--weight", "1"],
        ["-r", "0", "-z", "0", "-i", "[::1]", "-p", "1", "-d", "x", "-w", "0", "-m", "meta", "-j", "h.example"],
        ["-r", "1", "-z", "2", "-i", "127.0.0.1", "-p", "6200", "-d", "sda"],
        ["-r", "1", "-z", "2", "-i", "bad_ip", "-p", "6200", "-d", "sda", "-w", "1"],
        ["-r", "1", "-z", "2", "-i", "1.2.3.4", "-p", "6200", "-d", " sda", "-w", "1"],
        ["--id", "0", "--yes"],
        ["d1", "5"],
    ],
)
def test_option_forms_match_swift(argv: list[str]) -> None:
    long_form, opts, args = lite.parse_device_opts(argv)
    s_long, s_opts, s_args = swift_utils.validate_args(argv)
    assert (bool(long_form), args) == (bool(s_long), s_args)
    assert outcome(lite.dev_from_opts, opts) == outcome(swift_utils.build_dev_from_opts, s_opts)
    assert outcome(lite.search_values_from_opts, opts) == outcome(swift_utils.parse_search_values_from_opts, s_opts)


def test_change_values_from_opts_match_swift() -> None:
    argv = ["--ip", "1.2.3.4", "--change-ip", "[FE80::1]", "--change-port", "7", "--change-meta", "m"]
    _, opts, _ = lite.parse_device_opts(argv)
    _, s_opts, _ = swift_utils.validate_args(argv)
    assert lite.change_values_from_opts(opts) == swift_utils.parse_change_values_from_opts(s_opts)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.2.3.4:7", {"ip": "1.2.3.4", "port": 7}),
        ("[FE80::1]", {"ip": "fe80::1"}),
        ("R5.6.7.8:9/sdx_meta", {"replication_ip": "5.6.7.8", "replication_port": 9, "device": "sdx", "meta": "meta"}),
        ('_"snet: 5.6.7.8"', {"meta": '"snet: 5.6.7.8"'}),
        (":6201", {"port": 6201}),
        ("junk", {"": "junk"}),
        ("", {}),
    ],
)
def test_change_value(value: str, expected: dict[str, Any]) -> None:
    assert lite.parse_change_value(value) == expected


def test_search_devs_fallback_semantics() -> None:
    devs: list[dict[str, Any] | None] = [
        {"id": 0, "region": 1, "zone": 1, "ip": "10.0.0.1", "port": 6200, "replication_ip": "10.0.0.1",
         "replication_port": 6200, "device": "sda", "weight": 1.0, "meta": "fast disk"},
        None,
        {"id": 2, "region": 1, "zone": 2, "ip": "FE80::1", "port": 6201, "replication_ip": "fe80::1",
         "replication_port": 6201, "device": "sdb", "weight": 0.0, "meta": ""},
    ]
    assert [d["id"] for d in lite.search_devs(devs, {"zone": 1})] == [0]
    assert [d["id"] for d in lite.search_devs(devs, {"meta": "fast"})] == [0]
    assert [d["id"] for d in lite.search_devs(devs, {"ip": "fe80::1"})] == [2]
    assert [d["id"] for d in lite.search_devs(devs, {"weight": 0.0})] == [2]
    assert [d["id"] for d in lite.search_devs(devs, {"region": 1, "meta": ""})] == [0, 2]
    assert lite.search_devs(devs, {"port": 1}) == []
