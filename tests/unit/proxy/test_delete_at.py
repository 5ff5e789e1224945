"""X-Delete-At / X-Delete-After normalisation in the object controller."""

from __future__ import annotations

from typing import Any

import pytest
from multidict import CIMultiDict

from swiftlite.common.timestamp import Timestamp
from swiftlite.proxy.controllers.obj import ObjectController
from swiftlite.proxy.request_body import HTTPError


def check(headers: dict[str, str]) -> CIMultiDict[str]:
    hdrs: CIMultiDict[str] = CIMultiDict(headers)
    request: Any = {"swiftlite.timestamp": Timestamp.now()}
    # The check reads only the request's timestamp, not the controller.
    ObjectController._check_delete_headers(None, request, hdrs)  # type: ignore[arg-type]
    return hdrs


def test_far_future_delete_at_is_capped_as_swift() -> None:
    assert check({"X-Delete-At": "1" * 100})["X-Delete-At"] == "9999999999"


def test_delete_at_is_ten_digits() -> None:
    assert check({"X-Delete-At": "09999999998"})["X-Delete-At"] == "9999999998"


def test_delete_after_becomes_delete_at() -> None:
    now = int(Timestamp.now().raw / 100000)
    out = check({"X-Delete-After": "1000"})
    assert "X-Delete-After" not in out
    assert now + 999 <= int(out["X-Delete-At"]) <= now + 1001


def test_past_and_garbage_refused() -> None:
    for hdrs, text in (({"X-Delete-At": "100"}, "X-Delete-At in past"),
                       ({"X-Delete-At": "x"}, "Non-integer X-Delete-At"),
                       ({"X-Delete-After": "-1"}, "X-Delete-After in past")):
        with pytest.raises(HTTPError) as err:
            check(hdrs)
        assert text in str(err.value.args) or text in repr(vars(err.value)), err.value
