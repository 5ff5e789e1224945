"""best_response and quorum, checked against Swift's own functions."""

from __future__ import annotations

import logging

from hypothesis import given, settings
from hypothesis import strategies as st
from swift.common.swob import Request
from swift.common.utils import quorum_size as swift_quorum_size
from swift.proxy.controllers.base import Controller as SwiftController
from swift.proxy.controllers.obj import num_container_updates as swift_num_updates

from swiftlite.proxy.best_response import (
    NodeResponse,
    best_response,
    num_container_updates,
    quorum_size,
)

STATUSES = [200, 201, 202, 204, 206, 301, 304, 400, 404, 409, 412, 416, 422, 499, 500, 503, 507]


class _SwiftStub:
    """Just enough of Swift's Controller to call its best_response."""

    logger = logging.getLogger("swift-oracle")
    _quorum_size = SwiftController._quorum_size
    best_response = SwiftController.best_response
    _compute_quorum_response = SwiftController._compute_quorum_response


def swift_answer(statuses: list[int], overrides: dict[int, int] | None) -> tuple[int, bytes]:
    req = Request.blank("/v1/a/c/o")
    bodies = [f"body{i}".encode() for i in range(len(statuses))]
    headers = [{"X-Which": str(i)} for i in range(len(statuses))]
    resp = _SwiftStub().best_response(
        req, statuses, ["r"] * len(statuses), bodies, "Object", headers=headers, overrides=overrides
    )
    return resp.status_int, resp.body if "X-Which" in resp.headers else b""


def ours(statuses: list[int], overrides: dict[int, int] | None) -> tuple[int, bytes]:
    responses = [NodeResponse(s, "r", f"body{i}".encode()) for i, s in enumerate(statuses)]
    resp = best_response(responses, overrides=overrides)
    return resp.status, resp.body


def test_quorum_size_matches_swift() -> None:
    for n in range(0, 12):
        assert quorum_size(n) == swift_quorum_size(n)


def test_num_container_updates_matches_swift() -> None:
    for c in range(1, 6):
        for o in range(1, 6):
            args = (c, quorum_size(c), o, quorum_size(o))
            assert num_container_updates(*args) == swift_num_updates(*args)
    assert num_container_updates(3, 2, 3, 2) == 3


def test_table() -> None:
    assert ours([201, 201, 201], None) == (201, b"body0")
    assert ours([201, 201, 503], None)[0] == 201
    assert ours([201, 503, 503], None)[0] == 503
    assert ours([404, 404, 204], None) == (404, b"body0")
    assert ours([204, 404, 404], {404: 204})[0] == 404
    # DELETE: a lone 204 among failures wins once 404s count as 204s.
    assert ours([204, 404, 503], {404: 204}) == (204, b"body0")
    assert ours([404, 404, 503], {404: 204})[0] == 404
    assert ours([], None)[0] == 503
    for statuses, overrides in [
        ([201, 201, 503], None),
        ([204, 404, 503], {404: 204}),
        ([404, 404, 503], {404: 204}),
        ([409, 201, 202], None),
    ]:
        assert ours(statuses, overrides) == swift_answer(statuses, overrides)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from(STATUSES), min_size=1, max_size=6),
    st.sampled_from([None, {404: 204}, {404: 202, 409: 202}]),
)
def test_best_response_matches_swift(statuses: list[int], overrides: dict[int, int] | None) -> None:
    assert ours(statuses, overrides) == swift_answer(statuses, overrides)
