"""Backend answer headers as the proxy relays them to clients."""

from __future__ import annotations

from swiftlite.proxy.controllers.base import response_headers


def test_etag_is_relayed_unquoted_as_swift_proxy_does() -> None:
    out = response_headers({"Etag": '"5d41402abc4b2a76b9719d911017c592"', "X-Object-Meta-A": "b"})
    assert out["Etag"] == "5d41402abc4b2a76b9719d911017c592"
    assert out["X-Object-Meta-A"] == "b"


def test_unquoted_etag_unchanged_and_hop_headers_dropped() -> None:
    out = response_headers({"ETag": "abc", "Content-Length": "3", "Connection": "close"})
    assert out["Etag"] == "abc"
    assert "Content-Length" not in out
    assert "Connection" not in out


def test_header_names_title_cased_as_swift() -> None:
    out = response_headers({"x-object-meta-color": "blUe", "X-OBJECT-META-FOOD": "PizZa"})
    assert list(out.items()) == [("X-Object-Meta-Color", "blUe"), ("X-Object-Meta-Food", "PizZa")]
