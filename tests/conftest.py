"""Fixtures for the whole suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from swiftlite.common.hashing import get_hash_path_secrets, set_hash_path_secrets


@pytest.fixture(autouse=True)
def _restore_hash_path_secrets() -> Iterator[None]:
    """Hash path secrets are process-wide (as in Swift): a test that installs
    some must not change where the next test's objects hash to."""
    saved = get_hash_path_secrets()
    yield
    set_hash_path_secrets(*saved)
