"""tempauth: Swift's test auth system (``swift/common/middleware/tempauth.py``).

Tokens are issued at ``<auth_prefix>v1.0`` (also ``<auth_prefix>auth`` and
``<auth_prefix>v1/<account>/auth``) for the users in the config and kept in
``request["swift.cache"]`` (the ``cache`` middleware must come before this
one) for ``token_life`` seconds. A request with a valid token gets
``request["REMOTE_USER"]`` (the user's groups, comma separated, as Swift's
environ) and ``request["swift.authorize"]``, which the proxy calls with the
request (and again with ``request["swift.acl"]`` once it knows the
container's read or write ACL). Allowing an account owner marks the request
``request["swift_owner"] = True``.

Users, in the YAML section::

    users:
      "test:tester": {key: testing, groups: [.admin]}
      "test2:tester2": "testing2 .admin"          # Swift's value syntax
    user_test_tester3: testing3                    # or Swift's own key style

A value may end with a storage URL (``http://...`` or ``$HOST/v1/AUTH_x``).
Other settings keep Swift's names and defaults: ``reseller_prefix`` (AUTH;
several as a comma list, ``''`` for none), ``<PREFIX>_require_group``,
``require_group``, ``auth_prefix`` (/auth/), ``token_life`` (86400),
``allow_overrides`` (true), ``storage_url_scheme`` (default). Fernet tokens
and s3api are not supported.

As in Swift, the proxy does the rest with what this middleware leaves in
the request: it cleans container ACLs with ``request["swift.clean_acl"]``,
and shows owner-only headers (ACLs, temp-url keys, the account ACL) only to
requests marked ``swift_owner``.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote, urlparse

from aiohttp import web
from multidict import CIMultiDict

from swiftlite.common.config import ConfigError
from swiftlite.common.http import split_path, swift_response
from swiftlite.common.memcache import MemcacheConnectionError
from swiftlite.proxy.pipeline import Handler, Middleware, PipelineContext

DEFAULT_TOKEN_LIFE = 86400
ACCOUNT_ACL_HEADER = "X-Account-Access-Control"
ACCOUNT_ACL_SYSMETA = "X-Account-Sysmeta-Core-Access-Control"
TEMPAUTH_ACL_KEYS = ("admin", "read-write", "read-only")

AuthResult = web.StreamResponse | None


# -- ACLs (Swift's swift/common/middleware/acl.py semantics) ---------------


def clean_acl(name: str, value: str) -> str:
    """Normalize a container ACL header value; ValueError if it is invalid."""
    name = name.lower()
    values: list[str] = []
    for raw in value.split(","):
        raw = raw.strip()
        if not raw:
            continue
        if ":" not in raw:
            values.append(raw)
            continue
        first, second = (v.strip() for v in raw.split(":", 1))
        if not first or not first.startswith("."):
            values.append(raw)
        elif first in (".r", ".ref", ".referer", ".referrer"):
            if "write" in name:
                raise ValueError(f"Referrers not allowed in write ACL: {raw!r}")
            negate = False
            if second and second.startswith("-"):
                negate = True
                second = second[1:].strip()
            if second and second != "*" and second.startswith("*"):
                second = second[1:].strip()
            if not second or second == ".":
                raise ValueError(
                    f"No host/domain value after referrer designation in ACL: {raw!r}"
                )
            values.append(".r:" + ("-" if negate else "") + second)
        else:
            raise ValueError(f"Unknown designator {first!r} in ACL: {raw!r}")
    return ",".join(values)


def parse_acl_v1(acl: str | None) -> tuple[list[str], list[str]]:
    """(referrers, groups) of a container ACL."""
    referrers: list[str] = []
    groups: list[str] = []
    if acl:
        for value in acl.split(","):
            if value.startswith(".r:"):
                referrers.append(value[3:])
            else:
                groups.append(unquote(value))
    return referrers, groups


def parse_acl_v2(data: str | None) -> dict[str, Any] | None:
    """An account ACL (JSON object); None when absent or not a JSON object."""
    if data is None:
        return None
    if data == "":
        return {}
    try:
        result = json.loads(data)
    except ValueError:
        return None
    return result if type(result) is dict else None


def format_acl_v2(acl: Mapping[str, Any]) -> str:
    return json.dumps(acl, ensure_ascii=True, separators=(",", ":"), sort_keys=True)


def referrer_allowed(referrer: str | None, referrer_acl: list[str]) -> bool:
    allow = False
    if referrer_acl:
        try:
            rhost = urlparse(referrer or "").hostname or "unknown"
        except ValueError:
            rhost = "unknown"
        for mhost in referrer_acl:
            if mhost.startswith("-"):
                mhost = mhost[1:]
                if mhost == rhost or (mhost.startswith(".") and rhost.endswith(mhost)):
                    allow = False
            elif mhost == "*" or mhost == rhost or (
                mhost.startswith(".") and rhost.endswith(mhost)
            ):
                allow = True
    return allow


def acls_from_sysmeta(value: str | None) -> dict[str, list[str]] | None:
    acl = parse_acl_v2(value)
    if acl is None:
        return None
    admin = acl.get("admin", [])
    read_write = acl.get("read-write", [])
    read_only = acl.get("read-only", [])
    if not any((admin, read_write, read_only)):
        return None
    return {"admin": admin, "read-write": read_write, "read-only": read_only}


def account_acl_errors(data: str) -> str | None:
    """Why an X-Account-Access-Control value is unacceptable (Swift's words)."""
    result = parse_acl_v2(data)
    if result is None:
        return f"Syntax error in input ({data!r})"
    for key in result:
        if key not in TEMPAUTH_ACL_KEYS:
            return f"Key {json.dumps(key)} not recognized"
    for key in TEMPAUTH_ACL_KEYS:
        if key not in result:
            continue
        if not isinstance(result[key], list):
            return f"Value for key {json.dumps(key)} must be a list"
        for grantee in result[key]:
            if not isinstance(grantee, str):
                return f"Elements of {json.dumps(key)} list must be strings"
    return None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lname = name.lower()
    for key, value in headers.items():
        if key.lower() == lname:
            return value
    return None


# -- configuration ---------------------------------------------------------


def _append_underscore(prefix: str) -> str:
    if prefix and not prefix.endswith("_"):
        prefix += "_"
    return prefix


def _true(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "1", "yes", "on", "t", "y")


class TempAuthConf:
    """The parsed settings (raises ConfigError on anything it cannot use)."""

    def __init__(self, conf: dict[str, Any]) -> None:
        conf = dict(conf)
        raw_prefixes = conf.pop("reseller_prefix", "AUTH")
        items = raw_prefixes if isinstance(raw_prefixes, list) else str(raw_prefixes).split(",")
        self.reseller_prefixes: list[str] = []
        for item in items:
            prefix = str(item).strip()
            if not prefix and not isinstance(raw_prefixes, list):
                continue
            if prefix in ("''", '""'):
                prefix = ""
            prefix = _append_underscore(prefix)
            if prefix not in self.reseller_prefixes:
                self.reseller_prefixes.append(prefix)
        if not self.reseller_prefixes:
            self.reseller_prefixes.append("")
        self.reseller_prefix = self.reseller_prefixes[0]
        default_group = str(conf.pop("require_group", "") or "")
        self.require_group: dict[str, str] = {}
        for prefix in self.reseller_prefixes:
            name = (prefix or "''") + "require_group"
            self.require_group[prefix] = str(conf.pop(name, default_group) or "")
        auth_prefix = str(conf.pop("auth_prefix", "/auth/") or "")
        if not auth_prefix.strip("/"):
            auth_prefix = "/auth/"
        if not auth_prefix.startswith("/"):
            auth_prefix = "/" + auth_prefix
        if not auth_prefix.endswith("/"):
            auth_prefix += "/"
        self.auth_prefix = auth_prefix
        try:
            self.token_life = int(conf.pop("token_life", DEFAULT_TOKEN_LIFE))
        except (TypeError, ValueError):
            raise ConfigError("token_life must be an integer") from None
        if self.token_life <= 0:
            raise ConfigError("token_life must be > 0")
        self.allow_overrides = _true(conf.pop("allow_overrides", True))
        self.storage_url_scheme = str(conf.pop("storage_url_scheme", "default"))
        conf.pop("log_headers", None)  # accepted for Swift configs; nothing to log
        self.users: dict[str, dict[str, Any]] = {}
        users = conf.pop("users", None) or {}
        if not isinstance(users, dict):
            raise ConfigError("users must be a mapping of 'account:user' to settings")
        for account_user, spec in users.items():
            if not isinstance(account_user, str) or ":" not in account_user:
                raise ConfigError(f"users: {account_user!r} is not 'account:user'")
            account, _, user = account_user.partition(":")
            self._add_user(account, user, spec, f"users: {account_user}")
        for key in [k for k in conf if k.startswith(("user_", "user64_"))]:
            spec = conf.pop(key)
            try:
                account, user = key.split("_", 1)[1].split("_")
            except ValueError:
                raise ConfigError(f"key {key} was provided in an invalid format") from None
            if key.startswith("user64_"):
                # Swift strips trailing '=' (config parsers eat them); pad back.
                account = base64.b64decode(account + "=" * (-len(account) % 4)).decode("utf8")
                user = base64.b64decode(user + "=" * (-len(user) % 4)).decode("utf8")
            self._add_user(account, user, spec, key)
        if any(k.startswith("fernet_key") or k == "active_fernet_key_id" for k in conf):
            raise ConfigError("fernet tokens are not supported; tokens live in swift.cache")
        if conf:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(conf))}")

    def _add_user(self, account: str, user: str, spec: Any, where: str) -> None:
        url: str | None = None
        if isinstance(spec, dict):
            spec = dict(spec)
            key = spec.pop("key", None)
            groups = spec.pop("groups", []) or []
            url = spec.pop("url", None) or spec.pop("storage_url", None)
            if spec:
                raise ConfigError(f"{where}: unknown setting(s): {', '.join(sorted(spec))}")
            if isinstance(groups, str):
                groups = groups.split()
            if not key or not isinstance(key, str | int):
                raise ConfigError(f"{where} has no key set")
            key = str(key)
            groups = [str(g) for g in groups]
        else:
            values = str(spec if spec is not None else "").split()
            if not values:
                raise ConfigError(f"{where} has no key set")
            key = values.pop(0)
            if values and ("://" in values[-1] or "$HOST" in values[-1]):
                url = values.pop()
            groups = values
        if not account or not user:
            raise ConfigError(f"{where}: account and user must not be empty")
        if url is None:
            url = f"$HOST/v1/{self.reseller_prefix}{quote(account)}"
        self.users[f"{account}:{user}"] = {"key": key, "url": str(url), "groups": groups}


# -- the middleware ----------------------------------------------------------


def _realm(path: str) -> str:
    """Swift's ``Www-Authenticate`` realm: the account in the path, else unknown."""
    try:
        _version, realm, _rest = split_path(path, 2, 3, True)
    except ValueError:
        return "unknown"
    if realm in ("v1.0", "auth") or not realm:
        return "unknown"
    return quote(realm)


def unauthorized(path: str, realm: str | None = None) -> web.Response:
    realm = realm if realm is not None else _realm(path)
    return swift_response(401, headers={"Www-Authenticate": f'Swift realm="{realm}"'})


class TempAuth:
    def __init__(self, conf: TempAuthConf, ctx: PipelineContext) -> None:
        self.conf = conf
        self.ctx = ctx
        self.logger = ctx.logger

    # -- helpers -------------------------------------------------------------

    def account_prefix(self, account: str | None) -> str | None:
        if account is None:
            return None
        for prefix in self.conf.reseller_prefixes:
            if prefix and account.startswith(prefix):
                return prefix
        if "" in self.conf.reseller_prefixes:
            return ""
        return None

    def is_definitive(self, path: str) -> bool:
        try:
            _version, account, _rest = split_path(path, 1, 3, True)
        except ValueError:
            return False
        return bool(account) and self.account_prefix(account) is not None

    def dot_account(self, account: str) -> bool:
        prefix = self.account_prefix(account)
        return prefix is not None and account[len(prefix) : len(prefix) + 1] == "."

    def user_groups(self, account: str, account_user: str, account_id: str) -> str:
        """``account,account:user,groups...``; ``.admin`` becomes the account
        ids under every reseller prefix (so the user owns them)."""
        groups = [account, account_user, *self.conf.users[account_user]["groups"]]
        if ".admin" in groups:
            groups.remove(".admin")
            for prefix in self.conf.reseller_prefixes:
                if prefix:
                    groups.append(f"{prefix}{account}")
            if account_id not in groups:
                groups.append(account_id)
        return ",".join(groups)

    @staticmethod
    def cache_of(request: web.Request) -> Any:
        cache = request.get("swift.cache")
        if cache is None:
            # As Swift: tempauth cannot work without a cache (500).
            raise RuntimeError("Memcache required (put 'cache' before 'tempauth')")
        return cache

    async def groups_for_token(self, request: web.Request, token: str) -> str | None:
        prefix = self.conf.reseller_prefix + "tk"
        if not token.startswith(prefix):
            return None
        cache = self.cache_of(request)
        data = await cache.get(f"{self.conf.reseller_prefix}/token/{token}")
        if not isinstance(data, list) or len(data) != 2:
            return None
        expires, groups = data
        if not isinstance(expires, int | float) or expires < time.time():
            return None
        return groups if isinstance(groups, str) else None

    # -- the request path ----------------------------------------------------

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        conf = self.conf
        if conf.allow_overrides and request.get("swift.authorize_override"):
            return await handler(request)
        path = request.path
        if path.startswith(conf.auth_prefix):
            return await self.handle_auth(request)
        token = request.headers.get("X-Auth-Token") or request.headers.get("X-Storage-Token")
        service_token = request.headers.get("X-Service-Token")
        mine = False
        if token and token.startswith(conf.reseller_prefix):
            groups = await self.groups_for_token(request, token)
            if service_token:
                service_groups = await self.groups_for_token(request, service_token)
                if groups and service_groups:
                    groups += "," + service_groups
            if groups:
                group_list = groups.split(",", 2)
                user = group_list[1] if len(group_list) > 1 else group_list[0]
                request["REMOTE_USER"] = groups
                request.setdefault("swift.access_logging", {})["user_id"] = user
                if ".reseller_admin" in groups:
                    request["reseller_request"] = True
                mine = True
            elif conf.reseller_prefix:
                # The definitive auth for this token: deny it outright (the
                # realm is the raw second path segment here, as in Swift).
                try:
                    realm = split_path(path, 2, 3, True)[1] or "unknown"
                except ValueError:
                    realm = "unknown"
                return unauthorized(path, realm)
            elif "swift.authorize" not in request:
                request["swift.authorize"] = self.denied_response
        elif self.is_definitive(path):
            mine = True
        elif conf.reseller_prefix == "":
            mine = "swift.authorize" not in request
        elif "swift.authorize" not in request:
            request["swift.authorize"] = self.denied_response
        if not mine:
            return await handler(request)
        return await self.call_authorized(request, handler)

    async def call_authorized(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        async def authorize(req: web.Request) -> AuthResult:
            return (await self.authorize(req, handler))[0]

        request["swift.authorize"] = authorize
        request["swift.clean_acl"] = clean_acl
        request, error = self.move_account_acl(request)
        if error is not None:
            return error
        return await handler(request)

    def move_account_acl(
        self, request: web.Request
    ) -> tuple[web.Request, web.StreamResponse | None]:
        """As Swift's tempauth: a client's X-Account-Access-Control must be
        valid (else 400) and goes to the account as sysmeta. Only an owner
        gets past authorize with it to an account POST/PUT."""
        acl = request.headers.get(ACCOUNT_ACL_HEADER)
        if acl is None:
            return request, None
        error = account_acl_errors(acl)
        if error:
            body = f"X-Account-Access-Control invalid: {error}\n\nInput: {acl}\n"
            return request, swift_response(400, body, content_type="text/plain; charset=UTF-8")
        headers: CIMultiDict[str] = CIMultiDict(request.headers)
        del headers[ACCOUNT_ACL_HEADER]
        headers[ACCOUNT_ACL_SYSMETA] = acl
        return request.clone(headers=headers), None

    # -- authorization ---------------------------------------------------------

    def denied_response(self, request: web.Request) -> web.StreamResponse:
        """403 for a known user, 401 for an anonymous one."""
        if request.get("REMOTE_USER"):
            return swift_response(403)
        return unauthorized(request.path)

    async def authorize(self, req: web.Request, handler: Handler) -> tuple[AuthResult, bool]:
        """(None if allowed else the denial, whether the user owns the account)."""
        try:
            _version, account, container, obj = split_path(req.path, 1, 4, True)
        except ValueError:
            return swift_response(404), False
        if account is None or self.account_prefix(account) is None:
            return self.denied_response(req), False
        user_groups = (req.get("REMOTE_USER") or "").split(",")
        if (
            ".reseller_admin" in user_groups
            and account not in self.conf.reseller_prefixes
            and not self.dot_account(account)
        ):
            req["swift_owner"] = True
            return None, True
        if (
            ".reseller_reader" in user_groups
            and account not in self.conf.reseller_prefixes
            and not self.dot_account(account)
            and req.method in ("GET", "HEAD")
        ):
            return None, False
        if account in user_groups and (req.method not in ("DELETE", "PUT") or container):
            prefix = self.account_prefix(account)
            require_group = self.conf.require_group.get(prefix or "", "")
            if not require_group or require_group in user_groups:
                req["swift_owner"] = True
                return None, True
        if req.method == "OPTIONS":
            return None, False
        referrers, groups = parse_acl_v1(req.get("swift.acl"))
        if referrer_allowed(req.headers.get("Referer"), referrers) and (
            obj or ".rlistings" in groups
        ):
            return None, False
        for group in user_groups:
            if group in groups:
                return None, False
        acls = await self.account_acls(req, handler, account)
        if acls:
            have = set(user_groups)
            if have.intersection(acls["admin"]):
                req["swift_owner"] = True
                return None, True
            if have.intersection(acls["read-write"]) and (
                container or req.method in ("GET", "HEAD")
            ):
                return None, False
            if have.intersection(acls["read-only"]) and req.method in ("GET", "HEAD"):
                return None, False
        return self.denied_response(req), False

    async def account_acls(
        self, req: web.Request, handler: Handler, account: str
    ) -> dict[str, list[str]] | None:
        """The account's ACLs from its sysmeta: from this request's info cache
        when the proxy has already fetched the account, else a HEAD subrequest
        (not authorized: it is tempauth's own lookup, as Swift's
        get_account_info)."""
        headers: Mapping[str, str] | None = None
        infocache = req.get("swift.infocache")
        if infocache:
            cached = infocache.get(f"/{account}")
            if cached is not None:
                headers = getattr(cached, "headers", None)
        if headers is None:
            sub = self.ctx.make_subrequest(
                req, "HEAD", "/v1/" + quote(account), swift_source="TA"
            )
            sub.pop("swift.authorize", None)
            resp = await handler(sub)
            if not 200 <= resp.status < 300:
                return None
            headers = resp.headers
        value = _header(headers, ACCOUNT_ACL_SYSMETA)
        acls = None
        try:
            acls = acls_from_sysmeta(value)
        except (AttributeError, TypeError):
            self.logger.warning("Invalid ACL stored in metadata: %r", value)
        return acls

    # -- tokens ----------------------------------------------------------------

    async def handle_auth(self, request: web.Request) -> web.StreamResponse:
        if request.method != "GET":
            return swift_response(405)
        # Swift pops the first path segment (the auth prefix) before routing.
        rest = request.path[len(self.conf.auth_prefix) - 1 :]
        try:
            version, _account, _user, _junk = split_path(rest, 1, 4, True)
        except ValueError:
            return swift_response(404)
        if version not in ("v1", "v1.0", "auth"):
            return swift_response(400)
        try:
            return await self.handle_get_token(request, rest)
        except MemcacheConnectionError:
            return swift_response(503)

    async def handle_get_token(self, request: web.Request, rest: str) -> web.StreamResponse:
        headers = request.headers
        try:
            segs = split_path(rest, 1, 3, True)
        except ValueError:
            return swift_response(404)
        if segs[0] == "v1" and segs[2] == "auth":
            account = segs[1] or ""
            user = headers.get("X-Storage-User")
            if not user:
                user = headers.get("X-Auth-User")
                if not user or ":" not in user:
                    return unauthorized(rest, quote(account))
                account2, user = user.split(":", 1)
                if account != account2:
                    return unauthorized(rest, quote(account))
            key = headers.get("X-Storage-Pass") or headers.get("X-Auth-Key")
        elif segs[0] in ("auth", "v1.0"):
            user = headers.get("X-Auth-User") or headers.get("X-Storage-User")
            if not user or ":" not in user:
                return unauthorized(rest, "unknown")
            account, user = user.split(":", 1)
            key = headers.get("X-Auth-Key") or headers.get("X-Storage-Pass")
        else:
            return swift_response(400)
        realm = quote(account) if account else "unknown"
        if not (account and user and key):
            return unauthorized(rest, realm)
        account_user = f"{account}:{user}"
        request.setdefault("swift.access_logging", {})["user_id"] = account_user
        record = self.conf.users.get(account_user)
        if record is None or record["key"] != key:
            return unauthorized(rest, realm)
        account_id = record["url"].rsplit("/", 1)[-1]
        cache = self.cache_of(request)
        prefix = self.conf.reseller_prefix
        user_key = f"{prefix}/user/{account_user}"
        groups = self.user_groups(account, account_user, account_id)
        token: str | None = None
        expires = 0.0
        candidate = await cache.get(user_key)
        if candidate:
            data = await cache.get(f"{prefix}/token/{candidate}")
            if data:
                old_expires, old_groups = data
                # Reuse a live token unless the user's groups changed.
                if old_expires > time.time() and set(old_groups.split(",")) == set(
                    groups.split(",")
                ):
                    token, expires = str(candidate), float(old_expires)
        if token is None:
            token = f"{prefix}tk{uuid.uuid4().hex}"
            expires = time.time() + self.conf.token_life
            ttl = float(expires - time.time())
            await cache.set(f"{prefix}/token/{token}", [expires, groups], time=ttl,
                            raise_on_error=True)
            await cache.set(user_key, token, time=ttl, raise_on_error=True)
        url = record["url"].replace("$HOST", f"{request.scheme}://{request.host}")
        if self.conf.storage_url_scheme != "default":
            url = self.conf.storage_url_scheme + ":" + url.split(":", 1)[1]
        return swift_response(
            200,
            b"",
            {
                "X-Auth-Token": token,
                "X-Storage-Token": token,
                "X-Auth-Token-Expires": str(int(expires - time.time())),
                "X-Storage-Url": url,
            },
            content_type="text/html; charset=UTF-8",
        )


def factory(conf: dict[str, Any], ctx: PipelineContext) -> Middleware:
    settings = TempAuthConf(conf)
    pipeline = list(ctx.conf.pipeline)
    if "tempauth" in pipeline and "cache" not in pipeline[: pipeline.index("tempauth")]:
        # Not an error: a third-party cache middleware may stand in for ours.
        ctx.logger.warning("tempauth: no 'cache' before it in the pipeline: tokens need one")
    ctx.register_info("tempauth", account_acls=True)
    auth = TempAuth(settings, ctx)

    async def tempauth(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await auth(request, handler)

    return tempauth


__all__: list[str] = [
    "TempAuth",
    "TempAuthConf",
    "clean_acl",
    "factory",
    "parse_acl_v1",
    "referrer_allowed",
]
