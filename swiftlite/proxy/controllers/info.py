"""``GET /info``: what this cluster offers, with Swift's keys."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from swiftlite.common.http import swift_response

if TYPE_CHECKING:
    from swiftlite.proxy.app import ProxyApp

VERSION = "2.38.3"
DISALLOWED_SECTIONS = ("swift.auto_create_account_prefix", "swift.valid_api_versions")


def core_info(app: ProxyApp) -> dict[str, Any]:
    """The ``swift`` section: version, flags, policies and constraints."""
    constraints = app.constraints
    policies = []
    for policy in app.cluster.policies:
        entry: dict[str, Any] = {"name": policy.name, "aliases": ", ".join([policy.name, *policy.aliases])}
        if policy.default:
            entry["default"] = True
        if policy.deprecated:
            entry["deprecated"] = True
        policies.append(entry)
    info: dict[str, Any] = {
        "version": VERSION,
        "strict_cors_mode": True,
        "allow_account_management": app.conf.allow_account_management,
        "account_autocreate": app.conf.account_autocreate,
        "allow_open_expired": False,
        "policies": policies,
    }
    for name in (
        "max_file_size",
        "max_meta_name_length",
        "max_meta_value_length",
        "max_meta_count",
        "max_meta_overall_size",
        "max_header_size",
        "max_request_line",
        "max_object_name_length",
        "container_listing_limit",
        "account_listing_limit",
        "max_account_name_length",
        "max_container_name_length",
        "extra_header_count",
        "valid_api_versions",
        "auto_create_account_prefix",
    ):
        info[name] = getattr(constraints, name)
    return info


def public_info(app: ProxyApp) -> dict[str, Any]:
    out: dict[str, Any] = {"swift": core_info(app)}
    for name, data in app.info.items():
        out[name] = dict(data)
    for section in DISALLOWED_SECTIONS:
        top, _, key = section.partition(".")
        if key:
            out.get(top, {}).pop(key, None)
        else:
            out.pop(top, None)
    return out


class InfoController:
    def __init__(self, app: ProxyApp) -> None:
        self.app = app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return swift_response(405, headers={"Allow": "GET, HEAD"})
        if not self.app.conf.expose_info:
            return swift_response(403)
        body = json.dumps(public_info(self.app), sort_keys=True).encode()
        return swift_response(200, body, content_type="application/json; charset=UTF-8")
