"""hash_path, partitions and suffixes: byte-identical to Swift on random input."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swiftlite.common import hashing

swift_utils = pytest.importorskip("swift.common.utils")

# Names as clients send them: any text Swift accepts (valid UTF-8, so no
# lone surrogates), including "/" inside object names.
names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
maybe_names = st.one_of(st.none(), st.just(""), names)
# Secrets are read as latin-1 bytes from the config.
secrets = st.text(st.characters(max_codepoint=255), max_size=12)


@contextlib.contextmanager
def _secrets(prefix: str, suffix: str) -> Iterator[None]:
    """Both implementations hash with these secrets until the block ends."""
    old = hashing.get_hash_path_secrets()
    old_swift = swift_utils.HASH_PATH_PREFIX, swift_utils.HASH_PATH_SUFFIX
    hashing.set_hash_path_secrets(prefix, suffix)
    swift_utils.HASH_PATH_PREFIX = prefix.encode("latin-1")
    swift_utils.HASH_PATH_SUFFIX = suffix.encode("latin-1")
    try:
        yield
    finally:
        hashing.set_hash_path_secrets(*old)
        swift_utils.HASH_PATH_PREFIX, swift_utils.HASH_PATH_SUFFIX = old_swift


@settings(max_examples=400, deadline=None)
@given(prefix=secrets, suffix=secrets, account=names, container=maybe_names, obj=maybe_names)
def test_hash_path_matches_swift(prefix, suffix, account, container, obj):
    with _secrets(prefix, suffix):
        _check_hash_path(prefix, suffix, account, container, obj)


def _check_hash_path(prefix: str, suffix: str, account: str, container, obj) -> None:
    if obj and not container:
        with pytest.raises(ValueError):
            swift_utils.hash_path(account, container, obj)
        with pytest.raises(ValueError):
            hashing.hash_path(account, container, obj)
        return
    expected = swift_utils.hash_path(account, container, obj)
    assert hashing.hash_path(account, container, obj) == expected
    assert hashing.name_hash(account, container, obj) == expected
    raw = swift_utils.hash_path(account, container, obj, raw_digest=True)
    assert hashing.hash_path(account, container, obj, raw_digest=True) == raw
    assert hashing.hash_path_digest(account, container, obj) == raw
    # Bytes names hash as their UTF-8 text, as in Swift.
    as_bytes = [None if v is None else v.encode("utf-8") for v in (container, obj)]
    assert hashing.hash_path(account.encode("utf-8"), *as_bytes) == expected
    # Explicit secrets win over the process-wide ones.
    assert (
        hashing.hash_path(
            account,
            container,
            obj,
            prefix=prefix.encode("latin-1"),
            suffix=suffix.encode("latin-1"),
        )
        == expected
    )


@settings(max_examples=200, deadline=None)
@given(digest=st.binary(min_size=16, max_size=16), part_power=st.integers(0, 32))
def test_partition_and_suffix(digest, part_power):
    part_shift = 32 - part_power
    # Swift's Ring.get_part: the first four bytes, big-endian, shifted.
    expected = struct.unpack_from(">I", digest)[0] >> part_shift
    assert hashing.partition_for_digest(digest, part_shift) == expected
    hexhash = digest.hex()
    assert hashing.partition_for_hash(hexhash, part_power) == expected
    assert hashing.suffix_for_hash(hexhash) == hexhash[-3:]
    assert hashing.storage_directory("objects", expected, hexhash) == swift_utils.storage_directory(
        "objects", expected, hexhash
    )


def test_known_vector():
    with _secrets("", "changeme"):
        _check_known_vector()


def _check_known_vector() -> None:
    # md5(b"/AUTH_test/c/o" + b"changeme"), checked against Swift.
    assert hashing.hash_path("AUTH_test", "c", "o") == swift_utils.hash_path("AUTH_test", "c", "o")
    assert hashing.get_hash_path_secrets() == (b"", b"changeme")
    hashing.set_hash_path_secrets(b"\xff", b"x")
    assert hashing.get_hash_path_secrets() == (b"\xff", b"x")
    assert hashing.hash_path("a") != hashing.hash_path("a", prefix=b"", suffix=b"x")
