"""tempauth: tokens, the token check on every request, and authorization.

The authorization decision table is checked against Swift's own TempAuth
(driven in-process with swob): the same request, user groups, container ACL,
referrer and account ACL give the same allow/deny status and owner marking.
"""

from __future__ import annotations

import inspect
import itertools
import json
import logging
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from swiftlite.common.config import ConfigError
from swiftlite.proxy.middleware import tempauth as ta
from swiftlite.proxy.pipeline import build_pipeline

from .conftest import Build, make_ctx  # noqa: TID252

USERS = {
    "test:tester": {"key": "testing", "groups": [".admin"]},
    "test2:tester2": "testing2 .admin",
    "test:tester3": {"key": "testing3"},
    "test5:tester5": {"key": "testing5", "groups": [".admin", "service"]},
    "test:tester6": {"key": "testing6", "groups": [".reseller_admin"]},
}
FILTERS = {"tempauth": {"users": USERS, "user_ext_person": "pw .admin http://example.com/v1/AUTH_ext"}}
PIPELINE = ["catch_errors", "cache", "tempauth"]
SYSMETA = "X-Account-Sysmeta-Core-Access-Control"


class FakeProxy:
    """Stands in for proxy_server: calls swift.authorize as the proxy does
    (once, then again with the container ACL) and answers account HEADs
    (tempauth's own lookups) with the account's sysmeta."""

    def __init__(self) -> None:
        self.container_acl: str | None = None
        self.account_acl: str | None = None
        self.seen: list[web.Request] = []
        self.extra_headers: dict[str, str] = {}

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request)
        if request.get("swift.source") == "TA":
            headers = {SYSMETA: self.account_acl} if self.account_acl else {}
            return web.Response(status=204, headers=headers)
        auth = request.get("swift.authorize")
        if auth is not None:
            denial = await _call(auth, request)
            if denial is not None and self.container_acl is not None:
                request["swift.acl"] = self.container_acl
                denial = await _call(auth, request)
            if denial is not None:
                return denial
        headers = dict(self.extra_headers)
        if self.account_acl:
            headers[SYSMETA] = self.account_acl
        return web.Response(text="ok", headers=headers)


async def _call(auth: Any, request: web.Request) -> Any:
    result = auth(request)
    if inspect.isawaitable(result):
        result = await result
    return result


async def _client(build: Build, **filters: Any) -> tuple[Any, FakeProxy, Any]:
    proxy = FakeProxy()
    conf = {**FILTERS["tempauth"], **filters}
    client, ctx = await build(PIPELINE, proxy, filters={"tempauth": conf})
    return client, proxy, ctx


async def _token(client: Any, user: str, key: str) -> tuple[str, str]:
    resp = await client.get("/auth/v1.0", headers={"X-Auth-User": user, "X-Auth-Key": key})
    assert resp.status == 200, await resp.text()
    return resp.headers["X-Auth-Token"], resp.headers["X-Storage-Url"]


# -- tokens -------------------------------------------------------------------


async def test_get_token_forms(build: Build) -> None:
    client, _proxy, ctx = await _client(build)
    resp = await client.get("/auth/v1.0", headers={"X-Auth-User": "test:tester",
                                                   "X-Auth-Key": "testing"})
    assert resp.status == 200
    token = resp.headers["X-Auth-Token"]
    assert token.startswith("AUTH_tk") and len(token) == len("AUTH_tk") + 32
    assert resp.headers["X-Storage-Token"] == token
    host = f"{client.server.host}:{client.server.port}"
    assert resp.headers["X-Storage-Url"] == f"http://{host}/v1/AUTH_test"
    assert 0 < int(resp.headers["X-Auth-Token-Expires"]) <= 86400
    swift_resp = _swift_get_token("/auth/v1.0", {"X-Auth-User": "test:tester",
                                                 "X-Auth-Key": "testing"})
    assert swift_resp.status_int == 200
    ids = {"x-trans-id", "x-openstack-request-id"}  # from catch_errors, not tempauth
    assert {k.lower() for k in swift_resp.headers if k.lower().startswith("x-")} == {
        k.lower() for k in resp.headers if k.lower().startswith("x-")} - ids
    # The same user gets the same live token back.
    again, _url = await _token(client, "test:tester", "testing")
    assert again == token
    # X-Storage-User/-Pass, /auth/auth and /auth/v1/<account>/auth forms.
    resp = await client.get("/auth/auth", headers={"X-Storage-User": "test:tester3",
                                                   "X-Storage-Pass": "testing3"})
    assert resp.status == 200
    resp = await client.get("/auth/v1/test2/auth", headers={"X-Storage-User": "tester2",
                                                            "X-Storage-Pass": "testing2"})
    assert resp.status == 200
    assert resp.headers["X-Storage-Url"].endswith("/v1/AUTH_test2")
    resp = await client.get("/auth/v1/test2/auth", headers={"X-Auth-User": "test2:tester2",
                                                            "X-Auth-Key": "testing2"})
    assert resp.status == 200
    # A storage URL from the config is given as is.
    resp = await client.get("/auth/v1.0", headers={"X-Auth-User": "ext:person",
                                                   "X-Auth-Key": "pw"})
    assert resp.headers["X-Storage-Url"] == "http://example.com/v1/AUTH_ext"
    assert ctx.info["tempauth"] == {"account_acls": True}


@pytest.mark.parametrize(
    "path, headers, status, realm",
    [
        ("/auth/v1.0", {"X-Auth-User": "test:tester", "X-Auth-Key": "wrong"}, 401, "test"),
        ("/auth/v1.0", {"X-Auth-User": "test:nobody", "X-Auth-Key": "x"}, 401, "test"),
        ("/auth/v1.0", {"X-Auth-User": "tester", "X-Auth-Key": "testing"}, 401, "unknown"),
        ("/auth/v1.0", {}, 401, "unknown"),
        ("/auth/v1.0", {"X-Auth-User": "test:tester"}, 401, "test"),
        ("/auth/v1/test/auth", {"X-Auth-User": "test2:tester2", "X-Auth-Key": "testing2"},
         401, "test"),
        ("/auth/v1/test/auth", {"X-Auth-User": "tester"}, 401, "test"),
        ("/auth/v2", {}, 400, None),
        ("/auth/v1", {}, 400, None),
        ("/auth/v1/test/other", {}, 400, None),
        ("/auth/", {}, 404, None),
    ],
)
async def test_get_token_refused(build: Build, path: str, headers: dict[str, str],
                                 status: int, realm: str | None) -> None:
    client, _proxy, _ctx = await _client(build)
    resp = await client.get(path, headers=headers)
    assert resp.status == status
    if realm is None:
        assert "Www-Authenticate" not in resp.headers
    else:
        assert resp.headers["Www-Authenticate"] == f'Swift realm="{realm}"'
    # Swift's TempAuth answers the same.
    swift_resp = _swift_get_token(path, headers)
    assert swift_resp.status_int == status
    assert swift_resp.headers.get("Www-Authenticate") == resp.headers.get("Www-Authenticate")


class _DictCache:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, **kwargs: Any) -> Any:
        return self.data.get(key)

    def set(self, key: str, value: Any, **kwargs: Any) -> None:
        self.data[key] = value


def _swift_get_token(path: str, headers: dict[str, str]) -> Any:
    from swift.common.middleware import tempauth as swift_tempauth
    from swift.common.swob import Request

    conf = {f"user_{k.replace(':', '_')}": (v if isinstance(v, str) else
            " ".join([v["key"], *v.get("groups", [])])) for k, v in USERS.items()}
    swift_ta = swift_tempauth.filter_factory({}, **conf)(lambda env, sr: [])
    req = Request.blank(path, headers=headers, environ={"swift.cache": _DictCache()})
    return req.get_response(swift_ta)


async def test_auth_only_answers_get(build: Build) -> None:
    client, _proxy, _ctx = await _client(build)
    resp = await client.post("/auth/v1.0", headers={"X-Auth-User": "test:tester",
                                                    "X-Auth-Key": "testing"})
    assert resp.status == 405


async def test_token_expires_and_groups_change(build: Build) -> None:
    client, _proxy, _ctx = await _client(build, token_life=1000)
    resp = await client.get("/auth/v1.0", headers={"X-Auth-User": "test:tester",
                                                   "X-Auth-Key": "testing"})
    assert 990 <= int(resp.headers["X-Auth-Token-Expires"]) <= 1000


async def test_no_cache_is_a_500(build: Build) -> None:
    client, _ctx = await build(["catch_errors", "tempauth"], FakeProxy(),
                               filters={"tempauth": {"users": USERS}})
    resp = await client.get("/auth/v1.0", headers={"X-Auth-User": "test:tester",
                                                   "X-Auth-Key": "testing"})
    assert resp.status == 500


# -- requests with tokens ----------------------------------------------------------


async def test_owner_and_other_users(build: Build) -> None:
    client, proxy, _ctx = await _client(build)
    token, url = await _token(client, "test:tester", "testing")
    path = "/v1/AUTH_test"
    resp = await client.get(f"{path}/c", headers={"X-Auth-Token": token})
    assert resp.status == 200
    request = proxy.seen[-1]
    assert request["swift_owner"] is True
    assert request["REMOTE_USER"] == "test,test:tester,AUTH_test"
    assert request["swift.access_logging"]["user_id"] == "test:tester"
    # X-Storage-Token works too; an account PUT/DELETE is not the owner's to make.
    resp = await client.get(path, headers={"X-Storage-Token": token})
    assert resp.status == 200
    assert (await client.put(path, headers={"X-Auth-Token": token})).status == 403
    assert (await client.delete(path, headers={"X-Auth-Token": token})).status == 403
    # Another account's admin may not touch this one.
    token2, _ = await _token(client, "test2:tester2", "testing2")
    resp = await client.get(f"{path}/c", headers={"X-Auth-Token": token2})
    assert resp.status == 403
    # A non-admin user of the same account is not its owner.
    token3, _ = await _token(client, "test:tester3", "testing3")
    assert (await client.get(f"{path}/c", headers={"X-Auth-Token": token3})).status == 403
    # A reseller admin may do anything, even PUT accounts.
    token6, _ = await _token(client, "test:tester6", "testing6")
    resp = await client.put("/v1/AUTH_other", headers={"X-Auth-Token": token6})
    assert resp.status == 200
    assert proxy.seen[-1]["reseller_request"] is True


async def test_bad_token_and_anonymous(build: Build) -> None:
    client, proxy, _ctx = await _client(build)
    resp = await client.get("/v1/AUTH_test/c", headers={"X-Auth-Token": "AUTH_tkbogus"})
    assert resp.status == 401
    assert resp.headers["Www-Authenticate"] == 'Swift realm="AUTH_test"'
    assert proxy.seen == []  # denied before the proxy
    resp = await client.get("/v1/AUTH_test/c")
    assert resp.status == 401
    assert resp.headers["Www-Authenticate"] == 'Swift realm="AUTH_test"'
    # Not our account and no token: denied by the stand-in (401).
    resp = await client.get("/v1/OTHER_x/c")
    assert resp.status == 401
    # A token of another auth system is left alone (denied here: nobody else).
    resp = await client.get("/v1/OTHER_x/c", headers={"X-Auth-Token": "OTHER_tkx"})
    assert resp.status == 401


async def test_container_acls_through_the_pipeline(build: Build) -> None:
    client, proxy, _ctx = await _client(build)
    token3, _ = await _token(client, "test:tester3", "testing3")
    proxy.container_acl = "test:tester3"
    resp = await client.get("/v1/AUTH_test/c/o", headers={"X-Auth-Token": token3})
    assert resp.status == 200
    assert "swift_owner" not in proxy.seen[-1]
    proxy.container_acl = ".r:*"
    assert (await client.get("/v1/AUTH_test/c/o")).status == 200
    assert (await client.get("/v1/AUTH_test/c")).status == 401  # no .rlistings
    proxy.container_acl = ".r:*,.rlistings"
    assert (await client.get("/v1/AUTH_test/c")).status == 200
    proxy.container_acl = ".r:.example.com"
    assert (await client.get("/v1/AUTH_test/c/o",
                             headers={"Referer": "http://www.example.com/x"})).status == 200
    assert (await client.get("/v1/AUTH_test/c/o",
                             headers={"Referer": "http://evil.com/"})).status == 401


async def test_service_token(build: Build) -> None:
    client, proxy, _ctx = await _client(
        build, reseller_prefix="AUTH, SERVICE", SERVICE_require_group="service"
    )
    user_token, _ = await _token(client, "test5:tester5", "testing5")
    other_token, _ = await _token(client, "test:tester", "testing")
    # SERVICE_ accounts need the service group: test:tester's token alone
    # may not, with test5's service token added it may.
    assert (await client.get("/v1/SERVICE_test/c",
                             headers={"X-Auth-Token": other_token})).status == 403
    resp = await client.get("/v1/SERVICE_test/c", headers={"X-Auth-Token": other_token,
                                                          "X-Service-Token": user_token})
    assert resp.status == 200
    assert "service" in proxy.seen[-1]["REMOTE_USER"].split(",")
    assert (await client.get("/v1/AUTH_test/c",
                             headers={"X-Auth-Token": other_token})).status == 200


async def test_account_acls(build: Build) -> None:
    client, proxy, _ctx = await _client(build)
    owner, _ = await _token(client, "test:tester", "testing")
    token3, _ = await _token(client, "test:tester3", "testing3")
    token2, _ = await _token(client, "test2:tester2", "testing2")
    # The owner sets an account ACL: it goes down as account sysmeta.
    acl = json.dumps({"read-only": ["test:tester3"], "read-write": ["test2"]})
    resp = await client.post("/v1/AUTH_test", headers={"X-Auth-Token": owner,
                                                       "X-Account-Access-Control": acl})
    assert resp.status == 200
    sent = proxy.seen[-1]
    assert sent.headers[SYSMETA] == acl and "X-Account-Access-Control" not in sent.headers
    proxy.account_acl = acl
    assert (await client.get("/v1/AUTH_test/c", headers={"X-Auth-Token": token3})).status == 200
    assert (await client.put("/v1/AUTH_test/c", headers={"X-Auth-Token": token3})).status == 403
    assert (await client.put("/v1/AUTH_test/c", headers={"X-Auth-Token": token2})).status == 200
    assert (await client.post("/v1/AUTH_test", headers={"X-Auth-Token": token2})).status == 403
    # Allowed by an account ACL, but not an owner (the proxy hides owner headers).
    resp = await client.head("/v1/AUTH_test/c", headers={"X-Auth-Token": token2})
    assert resp.status == 200
    assert "swift_owner" not in [r for r in proxy.seen if r.get("swift.source") != "TA"][-1]
    # An admin by account ACL is an owner.
    proxy.account_acl = json.dumps({"admin": ["test:tester3"]})
    assert (await client.post("/v1/AUTH_test", headers={"X-Auth-Token": token3})).status == 200
    client_requests = [r for r in proxy.seen if r.get("swift.source") != "TA"]
    assert client_requests[-1]["swift_owner"] is True


@pytest.mark.parametrize(
    "value, message",
    [
        ("not json", "Syntax error in input ('not json')"),
        ('["list"]', "Syntax error in input"),
        ('{"other": []}', 'Key "other" not recognized'),
        ('{"admin": "x"}', 'Value for key "admin" must be a list'),
        ('{"read-only": [1]}', 'Elements of "read-only" list must be strings'),
    ],
)
async def test_bad_account_acl(build: Build, value: str, message: str) -> None:
    client, _proxy, _ctx = await _client(build)
    owner, _ = await _token(client, "test:tester", "testing")
    resp = await client.post("/v1/AUTH_test", headers={"X-Auth-Token": owner,
                                                       "X-Account-Access-Control": value})
    assert resp.status == 400
    assert message in await resp.text()


async def test_container_acl_cleaner_offered(build: Build) -> None:
    """The proxy cleans container ACLs with swift.clean_acl, as Swift's does."""
    client, proxy, _ctx = await _client(build)
    owner, _ = await _token(client, "test:tester", "testing")
    resp = await client.post("/v1/AUTH_test/c", headers={"X-Auth-Token": owner})
    assert resp.status == 200
    assert proxy.seen[-1]["swift.clean_acl"] is ta.clean_acl
    assert ta.clean_acl("X-Container-Read", " .ref:*.example.com , test2 ") == (
        ".r:.example.com,test2")
    with pytest.raises(ValueError, match="Referrers not allowed in write ACL"):
        ta.clean_acl("X-Container-Write", ".r:*")


async def test_authorize_override() -> None:
    """A middleware before tempauth may take over (allow_overrides)."""
    auth = ta.TempAuth(ta.TempAuthConf({}), make_ctx(["tempauth"]))
    seen: list[web.Request] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        return web.Response(text="ok")

    request = make_mocked_request("GET", "/v1/AUTH_test/c")
    request["swift.authorize_override"] = True
    assert (await auth(request, handler)).status == 200
    assert "swift.authorize" not in seen[-1]
    closed = ta.TempAuth(ta.TempAuthConf({"allow_overrides": False}), make_ctx(["tempauth"]))
    request = make_mocked_request("GET", "/v1/AUTH_test/c")
    request["swift.authorize_override"] = True
    assert (await closed(request, handler)).status == 200
    assert "swift.authorize" in seen[-1]


# -- configuration ------------------------------------------------------------------


def test_conf_parsing() -> None:
    conf = ta.TempAuthConf({
        "reseller_prefix": "AUTH, SERVICE,''",
        "require_group": "g",
        "SERVICE_require_group": "service",
        "user_admin_admin": "admin .admin .reseller_admin",
        "user64_dGVzdA_dGVzdGVy": "pw",  # base64 of test / tester, '=' stripped
        "users": {"a:b": {"key": 5, "groups": ".admin x", "url": "$HOST/v1/X_a"}},
        "auth_prefix": "auth2",
        "token_life": "60",
        "allow_overrides": "false",
    })
    assert conf.reseller_prefixes == ["AUTH_", "SERVICE_", ""]
    assert conf.require_group == {"AUTH_": "g", "SERVICE_": "service", "": "g"}
    assert conf.users["admin:admin"] == {"key": "admin", "url": "$HOST/v1/AUTH_admin",
                                         "groups": [".admin", ".reseller_admin"]}
    assert conf.users["test:tester"]["key"] == "pw"
    assert conf.users["a:b"] == {"key": "5", "url": "$HOST/v1/X_a", "groups": [".admin", "x"]}
    assert conf.auth_prefix == "/auth2/" and conf.token_life == 60
    assert conf.allow_overrides is False


@pytest.mark.parametrize(
    "settings",
    [
        {"user_bad": "x"},
        {"user_a_b": ""},
        {"users": {"nocolon": {"key": "k"}}},
        {"users": {"a:b": {"groups": []}}},
        {"users": {"a:b": {"key": "k", "colour": "red"}}},
        {"users": ["a:b"]},
        {"token_life": "soon"},
        {"fernet_key_1": "x"},
        {"bogus": 1},
    ],
)
def test_bad_conf(settings: dict[str, Any]) -> None:
    async def inner(request: web.Request) -> web.StreamResponse:
        return web.Response()

    ctx = make_ctx(["cache", "tempauth"], {"tempauth": settings})
    with pytest.raises(ConfigError, match="tempauth"):
        build_pipeline(inner, ctx)


# -- the decision table, against Swift's TempAuth --------------------------------

GROUPS = {
    "anonymous": "",
    "owner": "test,test:tester,AUTH_test,SERVICE_test",
    "member": "test,test:tester3",
    "other": "test2,test2:tester2,AUTH_test2",
    "reseller": "test,test:tester6,.reseller_admin",
    "reader": "x,x:y,.reseller_reader",
    "service": "test,test:tester,AUTH_test,SERVICE_test,test5,test5:tester5,AUTH_test5,service",
}
PATHS = ["/v1/AUTH_test", "/v1/AUTH_test/c", "/v1/AUTH_test/c/o", "/v1/OTHER_x/c",
         "/v1/AUTH_.dot/c", "/v1/SERVICE_test/c/o", "/v1/AUTH_", "/v1"]
METHODS = ["GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS"]
# (container ACL, Referer) pairs: referrers only matter with referrer ACLs.
ACL_REFERERS = [
    (None, None), (None, "http://www.example.com/page"), (".r:*", None),
    (".r:*", "http://evil.com/"), (".r:*,.rlistings", None), ("test:tester3", None),
    ("test2", None), (".r:.example.com,.rlistings", "http://www.example.com/page"),
    (".r:.example.com,.rlistings", "http://evil.com/"), (".r:*,.r:-evil.com", "http://evil.com/"),
    (".r:*,.r:-evil.com", "http://ok.com/"), ("AUTH_test2,test%3Atester3", None),
]
ACCOUNT_ACLS = [None, {"read-only": ["test:tester3"]}, {"read-write": ["test2"]},
                {"admin": ["test:tester3"]}, {}, "garbage"]


def _swift_authorize(swift_ta: Any, app: Any, method: str, path: str, groups: str,
                     acl: str | None, referer: str | None, account_acl: Any) -> tuple[Any, bool]:
    from swift.common.swob import Request

    app.acl = account_acl
    env = {"REQUEST_METHOD": method}
    if groups:
        env["REMOTE_USER"] = groups
    headers = {"Referer": referer} if referer else {}
    req = Request.blank(path, environ=env, headers=headers)
    req.acl = acl
    result = swift_ta.authorize(req)
    if result is None:
        return 0, bool(req.environ.get("swift_owner"))
    if result.status_int == 401:
        # swob adds this header when the 401 is sent.
        return (401, result.www_authenticate()), bool(req.environ.get("swift_owner"))
    return result.status_int, bool(req.environ.get("swift_owner"))


_BASE_REQUESTS: dict[tuple[str, str, str | None], web.Request] = {}


async def _our_authorize(auth: ta.TempAuth, method: str, path: str, groups: str,
                         acl: str | None, referer: str | None, account_acl: Any) -> tuple[Any, bool]:
    async def handler(request: web.Request) -> web.StreamResponse:
        assert request.get("swift.source") == "TA" and request.method == "HEAD"
        assert "swift.authorize" not in request
        headers = {SYSMETA: account_acl} if account_acl is not None else {}
        return web.Response(status=204, headers=headers)

    # make_mocked_request is slow (mocks): make one per shape, clone it per case.
    shape = (method, path, referer)
    if shape not in _BASE_REQUESTS:
        headers = {"Referer": referer} if referer else {}
        _BASE_REQUESTS[shape] = make_mocked_request(method, path, headers=headers)
    request = _BASE_REQUESTS[shape].clone()
    if groups:
        request["REMOTE_USER"] = groups
    if acl is not None:
        request["swift.acl"] = acl
    result, owner = await auth.authorize(request, handler)
    assert owner == bool(request.get("swift_owner"))
    if result is None:
        return 0, owner
    if result.status == 401:
        return (401, result.headers["Www-Authenticate"]), owner
    return result.status, owner


async def test_authorize_matches_swift() -> None:
    from swift.common.middleware import tempauth as swift_tempauth
    from swift.common.swob import Response

    class AccountApp:
        acl: Any = None

        def __call__(self, env: dict[str, Any], start_response: Any) -> Any:
            headers = {"X-Account-Container-Count": "0"}
            if self.acl is not None:
                headers[SYSMETA] = self.acl
            return Response(status=204, headers=headers)(env, start_response)

    app = AccountApp()
    settings = {"reseller_prefix": "AUTH, SERVICE", "SERVICE_require_group": "service"}
    swift_ta = swift_tempauth.filter_factory({}, **settings)(app)
    logging.getLogger("tempauth").setLevel(logging.ERROR)
    ours = ta.TempAuth(ta.TempAuthConf(dict(settings)), make_ctx(["tempauth"]))
    checked = 0
    mismatches = []
    for method, path, who, (acl, referer), account_acl in itertools.product(
        METHODS, PATHS, GROUPS, ACL_REFERERS, ACCOUNT_ACLS
    ):
        stored = account_acl if not isinstance(account_acl, dict) else json.dumps(account_acl)
        args = (method, path, GROUPS[who], acl, referer, stored)
        expected = _swift_authorize(swift_ta, app, *args)
        got = await _our_authorize(ours, *args)
        checked += 1
        if got != expected:
            mismatches.append((args, expected, got))
    assert not mismatches, mismatches[:10]
    assert checked > 10000


def test_clean_acl_matches_swift() -> None:
    from swift.common.middleware.acl import clean_acl as swift_clean

    values = [
        "", "a,b", " .r:*", ".r:*.example.com", ".ref:-.bad.com", ".r:", ".r:.",
        ".referrer:*", "a:b,.r:x", ".x:y", "acct:user, .rlistings", ".r:-", ":x", ".r :  y ",
    ]
    for name in ("X-Container-Read", "X-Container-Write"):
        for value in values:
            try:
                expected: Any = swift_clean(name, value)
            except ValueError as exc:
                expected = ("error", str(exc))
            try:
                got: Any = ta.clean_acl(name, value)
            except ValueError as exc:
                got = ("error", str(exc))
            assert got == expected, (name, value)


def test_account_acl_errors_match_swift() -> None:
    from swift.common.middleware import tempauth as swift_tempauth
    from swift.common.swob import Request

    swift_ta = swift_tempauth.filter_factory({})(lambda env, sr: [])
    for value in ["x", "[]", "{}", '{"admin": ["a"]}', '{"foo": []}', '{"admin": "a"}',
                  '{"read-write": [1, "a"]}', '{"read-only": ["a"], "admin": {}}', "null"]:
        req = Request.blank("/v1/AUTH_a", headers={"X-Account-Access-Control": value})
        assert ta.account_acl_errors(value) == swift_ta.extract_acl_and_report_errors(req), value


# -- with the real proxy application ------------------------------------------------


async def test_with_the_proxy_app(tmp_path: Any, aiohttp_client: Any) -> None:
    """Through swiftlite's own proxy (storage nodes all down): the proxy
    calls swift.authorize before going to any node."""
    from swiftlite.common.config import config_from_dict, load_cluster_config
    from swiftlite.proxy.config import ProxyServerConfig
    from swiftlite.proxy.server import make_app as make_proxy
    from swiftlite.ring.builder import RingBuilder

    from .conftest import free_port  # noqa: TID252

    (tmp_path / "swiftlite.yaml").write_text("hash_path_prefix: p\nhash_path_suffix: s\n")
    port = free_port()
    for name in ("account", "container", "object"):
        builder = RingBuilder(4, 3, 0)
        for i in range(3):
            builder.add_dev({"region": 1, "zone": i, "ip": "127.0.0.1", "port": port,
                             "device": f"d{i}", "weight": 1})
        builder.rebalance()
        builder.get_ring().save(str(tmp_path / f"{name}.ring.gz"))
    conf = config_from_dict(ProxyServerConfig, {
        "swift_dir": str(tmp_path), "bind_port": 0, "node_timeout": 2,
        "pipeline": ["catch_errors", "gatekeeper", "proxy_logging", "cache", "tempauth",
                     "proxy_server"],
        "filters": {"tempauth": {"users": USERS}},
    })
    client = await aiohttp_client(make_proxy(conf, load_cluster_config(str(tmp_path))))
    info = await (await client.get("/info")).json()
    assert info["tempauth"] == {"account_acls": True}
    resp = await client.get("/v1/AUTH_test")
    assert resp.status == 401
    assert resp.headers["Www-Authenticate"] == 'Swift realm="AUTH_test"'
    assert "X-Trans-Id" in resp.headers
    token, url = await _token(client, "test:tester", "testing")
    assert url.endswith("/v1/AUTH_test")
    # Allowed: the proxy then finds no storage node.
    resp = await client.get("/v1/AUTH_test", headers={"X-Auth-Token": token})
    assert resp.status == 503
    # Another user: tempauth's account lookup (a HEAD subrequest) fails too,
    # so no account ACL grants anything.
    token2, _ = await _token(client, "test2:tester2", "testing2")
    resp = await client.post("/v1/AUTH_test", headers={"X-Auth-Token": token2})
    assert resp.status == 403


async def test_empty_reseller_prefix(build: Build) -> None:
    """With reseller_prefix '' tempauth cannot know a token or an account
    is not its own: it never refuses outright, the proxy's call does."""
    client, proxy, _ctx = await _client(build, reseller_prefix="''")
    token, url = await _token(client, "test:tester", "testing")
    assert token.startswith("tk") and url.endswith("/v1/test")
    assert (await client.get("/v1/test/c", headers={"X-Auth-Token": token})).status == 200
    assert proxy.seen[-1]["swift_owner"] is True
    resp = await client.get("/v1/test/c", headers={"X-Auth-Token": "tkbogus"})
    assert resp.status == 401
    assert len(proxy.seen) == 2  # reached the proxy, denied there
    assert (await client.get("/v1/other/c")).status == 401


async def test_expired_or_garbled_token(build: Build) -> None:
    client, proxy, _ctx = await _client(build)
    token, _ = await _token(client, "test:tester", "testing")
    assert (await client.get("/v1/AUTH_test/c", headers={"X-Auth-Token": token})).status == 200
    cache = proxy.seen[-1]["swift.cache"]
    key = f"AUTH_/token/{token}"
    entry = await cache.get(key)
    assert entry[1] == "test,test:tester,AUTH_test"
    await cache.set(key, [entry[0] - 100000, entry[1]])
    resp = await client.get("/v1/AUTH_test/c", headers={"X-Auth-Token": token})
    assert resp.status == 401 and resp.headers["Www-Authenticate"] == 'Swift realm="AUTH_test"'
    # A new token replaces the expired one.
    token2, _ = await _token(client, "test:tester", "testing")
    assert token2 != token
    await cache.set(f"AUTH_/token/{token2}", "garbage")
    assert (await client.get("/v1/AUTH_test/c", headers={"X-Auth-Token": token2})).status == 401


# -- end to end: real storage servers, swiftlite's proxy, python-swiftclient --------


class _Cluster:
    """One account, one container and one object server (each holding
    every device of its ring) and the proxy with proxy_logging, cache (on
    memcached when given) and tempauth: real processes on loopback, stopped
    by the fixture."""

    def __init__(self, root: Any, memcache: str | None) -> None:
        import subprocess
        import sys

        from swiftlite.ring.builder import RingBuilder

        from .conftest import free_port  # noqa: TID252

        self.subprocess, self.sys = subprocess, sys
        self.root = root
        self.memcache = memcache
        etc = root / "etc"
        etc.mkdir()
        (etc / "swiftlite.yaml").write_text("hash_path_prefix: ta-e2e\nhash_path_suffix: s\n")
        devices = ["d1", "d2", "d3"]
        srv = root / "srv"
        for dev in devices:
            (srv / dev).mkdir(parents=True)
        common = f"bind_ip: 127.0.0.1\nworkers: 0\nmount_check: false\nswift_dir: {etc}\n"
        self.servers: list[tuple[str, Any, int]] = []
        for kind in ("account", "container", "object"):
            port = free_port()
            conf = root / f"{kind}-server.yaml"
            conf.write_text(f"{common}bind_port: {port}\ndevices: {srv}\nlog_requests: false\n")
            self.servers.append((f"swiftlite.{kind}.server", conf, port))
            builder = RingBuilder(4, 3, 0)
            for i, dev in enumerate(devices):
                builder.add_dev({"region": 1, "zone": i, "ip": "127.0.0.1", "port": port,
                                 "device": dev, "weight": 1})
            builder.rebalance()
            builder.get_ring().save(str(etc / f"{kind}.ring.gz"))
        self.port = free_port()
        self.access_log = root / "access.log"
        users = {
            "users": {
                "test:tester": {"key": "testing", "groups": [".admin"]},
                "test:tester3": {"key": "testing3"},
                "test2:tester2": {"key": "testing2", "groups": [".admin"]},
            }
        }
        proxy_conf = {
            "bind_ip": "127.0.0.1", "bind_port": self.port, "workers": 1,
            "swift_dir": str(etc), "account_autocreate": True, "node_timeout": 5,
            "pipeline": ["catch_errors", "gatekeeper", "healthcheck", "proxy_logging", "cache",
                         "tempauth", "proxy_server"],
            "filters": {"tempauth": users,
                        "cache": {"memcache_servers": memcache} if memcache else {},
                        "proxy_logging": {"access_log_file": str(self.access_log)}},
        }
        conf = root / "proxy-server.yaml"
        conf.write_text(json.dumps(proxy_conf))  # JSON is YAML
        self.servers.append(("swiftlite.proxy.server", conf, self.port))
        self.procs: list[Any] = []

    def start(self) -> None:
        import socket
        import time

        for module, conf, _port in self.servers:
            log = open(conf.with_suffix(".log"), "ab")  # noqa: SIM115
            self.procs.append(self.subprocess.Popen(
                [self.sys.executable, "-m", module, str(conf)], stdout=log, stderr=log))
            log.close()
        for (module, conf, port), proc in zip(self.servers, self.procs, strict=True):
            for _ in range(600):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    if proc.poll() is not None:
                        pytest.fail(f"{module} exited: {conf.with_suffix('.log').read_text()}")
                    time.sleep(0.05)
            else:
                pytest.fail(f"{module} did not start")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(20)
            except self.subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: Any, request: pytest.FixtureRequest) -> Any:
    import shutil

    # Tokens in memcached when it is installed, else in the in-process cache.
    memcache = request.getfixturevalue("memcached") if shutil.which("memcached") else None
    cluster = _Cluster(tmp_path_factory.mktemp("tempauth-e2e"), memcache)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def test_end_to_end_with_swiftclient(cluster: Any) -> None:
    import time
    import urllib.error
    import urllib.request

    from swiftclient import client as swift

    auth_url = f"http://127.0.0.1:{cluster.port}/auth/v1.0"
    url, token = swift.get_auth(auth_url, "test:tester", "testing")
    assert url == f"http://127.0.0.1:{cluster.port}/v1/AUTH_test"
    _url3, token3 = swift.get_auth(auth_url, "test:tester3", "testing3")
    _url2, token2 = swift.get_auth(auth_url, "test2:tester2", "testing2")

    def status_of(fn: Any, *args: Any, **kwargs: Any) -> int:
        try:
            fn(*args, **kwargs)
        except swift.ClientException as exc:
            return int(exc.http_status or 0)
        return 200

    swift.put_container(url, token, "c", headers={"X-Container-Read": "test:tester3"})
    swift.put_object(url, token, "c", "o", b"payload")
    # A user named in the container's read ACL reads, but may not write or list the account.
    assert swift.get_object(url, token3, "c", "o")[1] == b"payload"
    assert status_of(swift.put_object, url, token3, "c", "o2", b"x") == 403
    assert status_of(swift.get_account, url, token3) == 403
    # Owners see the ACL, ACL readers do not.
    assert swift.head_container(url, token, "c")["x-container-read"] == "test:tester3"
    assert "x-container-read" not in swift.head_container(url, token3, "c")
    # Anonymous: .r:* allows objects, listings need .rlistings.
    swift.post_container(url, token, "c", headers={"X-Container-Read": ".r:*"})
    with urllib.request.urlopen(f"{url}/c/o") as resp:
        assert resp.read() == b"payload"
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{url}/c")
    assert info.value.code == 401
    assert info.value.headers["Www-Authenticate"] == 'Swift realm="AUTH_test"'
    # Account ACLs: read-write for another account's user.
    acl = json.dumps({"read-write": ["test2:tester2"]})
    swift.post_account(url, token, headers={"X-Account-Access-Control": acl})
    assert json.loads(swift.head_account(url, token)["x-account-access-control"]) == json.loads(acl)
    swift.put_object(url, token2, "c", "from-test2", b"hi")
    assert [o["name"] for o in swift.get_container(url, token2, "c")[1]] == ["from-test2", "o"]
    assert "x-account-access-control" not in swift.head_account(url, token2)
    assert status_of(swift.post_account, url, token2, headers={"X-Account-Meta-X": "y"}) == 403
    assert status_of(swift.get_account, url, "AUTH_tkbogus") == 401
    # One access line per client request, with the user.
    lines = []
    for _ in range(100):
        lines = [line for line in cluster.access_log.read_text().splitlines()
                 if " PUT /v1/AUTH_test/c/from-test2 " in line]
        if lines:
            break
        time.sleep(0.05)
    assert len(lines) == 1
    fields = lines[0].split(" proxy-server INFO: ")[1].split(" ")
    assert (fields[6], fields[10], fields[21]) == ("201", "2", "test2:tester2")
    if cluster.memcache:
        # The token lives in memcached, where Swift's own client reads it.
        from swift.common.memcached import MemcacheRing as SwiftRing
        from swift.common.utils import get_logger

        ring = SwiftRing([cluster.memcache], logger=get_logger({}, log_route="h11-e2e"))
        expires, groups = ring.get(f"AUTH_/token/{token}")
        assert groups == "test,test:tester,AUTH_test" and expires > time.time()
