"""Client headers a container/account POST passes to the backend servers."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from swiftlite.common.timestamp import Timestamp
from swiftlite.proxy.controllers.account import AccountController
from swiftlite.proxy.controllers.container import ContainerController


def transferred(cls: Any, headers: list[tuple[str, str]]) -> dict[str, str]:
    request = make_mocked_request("POST", "/v1/AUTH_a/c", headers=CIMultiDict(headers))
    request["swiftlite.timestamp"] = Timestamp.now()
    controller = cls(None, "AUTH_a", "c" if cls is ContainerController else None, None)
    out = controller.backend_headers(request, transfer=True)
    return {k.lower(): v for k, v in out.items()}


def test_remove_meta_becomes_empty_value_as_swift() -> None:
    out = transferred(ContainerController, [("X-Remove-Container-Meta-Test", "true"),
                                            ("X-Container-Meta-Keep", "v"),
                                            ("X-Remove-Container-Read", "x")])
    assert out["x-container-meta-test"] == ""
    assert out["x-container-read"] == ""
    assert out["x-container-meta-keep"] == "v"
    assert not any(k.startswith("x-remove-") for k in out)


def test_set_wins_over_remove_of_same_item() -> None:
    out = transferred(ContainerController, [("X-Container-Meta-Test", "new"),
                                            ("X-Remove-Container-Meta-Test", "1")])
    assert out["x-container-meta-test"] == "new"


def test_account_remove_meta() -> None:
    out = transferred(AccountController, [("X-Remove-Account-Meta-Color", "x"),
                                          ("X-Container-Meta-Other", "not for accounts")])
    assert out["x-account-meta-color"] == ""
    assert "x-container-meta-other" not in out
