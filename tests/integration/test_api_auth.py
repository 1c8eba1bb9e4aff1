"""Every door of the API is locked, and each role opens only its own: a real reconciler (its own process, a
SQLite store) serves the API over HTTP with named tokens (corral token) of each role, made through the API.
Every route of its route table that takes the API token answers 401 with a JSON error to no token, a wrong
token, a ``Basic`` header, a revoked and an expired token; each role is let in where its role reaches and
refused with 403 and a sentence naming the role needed elsewhere. The routes open without the API token
are named here; a route added open anywhere else fails this test.

The routes are read from the table the daemon builds (``reconciler.api.Api(...).routes``, which takes in
the gitops, rollout, stream and token routes), so a new route is covered the day it is added.
"""
import base64
import http.client
import itertools
import json
import os
import re
import time

import pytest

from corral.auth import allows, api_token, metrics_token, token_hash
from corral.store import ApiTokenRecord, open_store
from reconciler.api import Api, role_needed
from tests.support import reconciler_process

# (method, pattern) of the routes that do not take the API token, and why.
OPEN = {
    ("GET", r"/healthz"): "liveness probes carry no secret; it says only name, leadership, versions and bus counters",
    ("POST", r"/v1/gitsources/(?P<name>[^/]+)/webhook"): "a git host cannot be given the API token; the "
                                                         "source's own webhook token guards it (401 without)",
    ("GET", r"/ui"): "the dashboard's address, sent on to /ui/",
    ("GET", r"/ui/(?P<name>[^/]*)"): "the dashboard's own files hold nothing secret; the page asks for a token "
                                     "and calls the locked routes with it",
}
WEBHOOK = ("POST", r"/v1/gitsources/(?P<name>[^/]+)/webhook")


def route_table(with_handlers=False):
    """``(method, pattern, needs the API token)`` of every route, as the reconciler daemon builds its Api
    (with a stream relay and a services keeper, as ``reconciler.daemon.run`` does, so the logs, exec,
    services and backups routes are in); each with its handler last when ``with_handlers``."""
    api = Api(store=None, state=None, token="unused", kick=lambda *apps: None, relay=object(), services=object())
    return [(method, pattern, auth, *([handler] if with_handlers else [])) for method, pattern, handler, auth
            in api.routes]


_GROUP = re.compile(r"\(\?P<(?P<name>\w+)>(?P<body>[^()]*)\)")


def example_paths(pattern):
    """Every path the test asks for ``pattern``: a name where the route takes any segment (``[^/]+``), each
    word where it takes one of a few (``cordon|uncordon``). A group of another shape is refused: this
    function must learn it, rather than a route go untested."""
    choices = []
    for group in _GROUP.finditer(pattern):
        body = group["body"]
        if body in ("[^/]+", "[^/]*"):
            choices.append(["no-such-" + group["name"]])
        elif re.fullmatch(r"\w+(\|\w+)*", body):
            choices.append(body.split("|"))
        else:
            raise AssertionError(f"cannot make a path for group {group[0]!r} of route {pattern!r}")
    paths = []
    for picked in itertools.product(*choices):
        values = iter(picked)
        path = _GROUP.sub(lambda m: next(values), pattern)
        assert re.fullmatch(pattern, path), f"{path!r} is not a path of route {pattern!r}: teach example_paths"
        paths.append(path)
    return paths


def requests_of(table):
    """``(method, path, needs the API token, pattern)`` for every example path of every route."""
    return [(method, path, auth, pattern) for method, pattern, auth in table for path in example_paths(pattern)]


def make_token(port, admin, name, role, expires_in=None):
    """A named token made through the API with the token ``admin``: its secret."""
    status, _, body = ask(port, "POST", "/v1/tokens", f"Bearer {admin}",
                          json.dumps({"name": name, "role": role, "expiresIn": expires_in}).encode())
    assert status == 201, body
    return json.loads(body)["token"]


def named_tokens(port, key, folder):
    """``{"admin", "deploy", "read", "revoked", "expired"}``: tokens of the reconciler at ``port``. The first
    admin one is made with the cluster-key bootstrap token; the others with it; the expired one is written to
    the store with an expiry passed (the API takes lifetimes, not past times)."""
    tokens = {"admin": make_token(port, api_token(key), "root", "admin")}
    tokens["deploy"] = make_token(port, tokens["admin"], "ci", "deploy", expires_in=3600)
    tokens["read"] = make_token(port, tokens["admin"], "viewer", "read")
    tokens["revoked"] = make_token(port, tokens["admin"], "gone", "admin")
    assert ask(port, "POST", "/v1/tokens/gone/revoke", f"Bearer {tokens['admin']}")[0] == 200
    tokens["expired"] = "corral_" + "e" * 43
    store = open_store(f"sqlite:///{os.path.join(folder, 'corral.db')}")
    try:
        store.add_api_token(ApiTokenRecord(name="old", token_hash=token_hash(tokens["expired"]), role="admin",
                                           created_at=0.0, created_by="", expires_at=time.time() - 60), actor="test")
    finally:
        store.close()
    return tokens


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A reconciler process on a fresh SQLite store; yields (port, {role or state: named token}, cluster key)."""
    folder = str(tmp_path_factory.mktemp("api-auth"))
    with reconciler_process(folder, name="r-auth") as (port, key):
        yield port, named_tokens(port, key, folder), key


def ask(port, method, path, authorization=None, body=b""):
    """One request over a fresh connection; ``(status, content type, body bytes)``. The body of a stream
    that does not end (the change stream) is not read."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Content-Length": str(len(body))}
        if authorization is not None:
            headers["Authorization"] = authorization
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        ctype = resp.getheader("Content-Type")
        return resp.status, ctype, b"" if ctype == "text/event-stream" else resp.read()
    finally:
        conn.close()


def refusals(token):
    """The ``Authorization`` headers that must not open a locked door: none, a wrong bearer token, the right
    token under the ``Basic`` scheme (as a user:password pair, and bare)."""
    basic = base64.b64encode(f"corral:{token}".encode()).decode()
    return {"no token": None, "a wrong token": "Bearer " + "0" * len(token), "a Basic header": f"Basic {basic}",
            "the token under Basic": f"Basic {token}"}


def test_the_open_routes_are_exactly_the_ones_named_here():
    table = route_table(with_handlers=True)
    assert len({(m, p) for m, p, _, _ in table}) == len(table), "a route is declared twice"
    assert {(m, p) for m, p, auth, _ in table if not auth} == set(OPEN)
    # The table read is the whole one: the API's own routes and those of gitops, rollouts, streams and services.
    assert {handler.__module__ for *_, handler in table} == {
        "reconciler.api", "reconciler.dashboard", "reconciler.gitops.routes", "reconciler.rollout_api",
        "reconciler.runs_api", "reconciler.session_relay", "reconciler.service_routes", "reconciler.token_routes",
        "reconciler.node_keys"}


def test_every_route_that_takes_the_token_refuses_every_other_header_with_a_json_error(served):
    port, tokens, key = served
    token = tokens["admin"]
    headers = {**refusals(token), "a revoked token": f"Bearer {tokens['revoked']}",
               "an expired token": f"Bearer {tokens['expired']}", "a truncated token": f"Bearer {token[:-1]}",
               "the cluster-key token, once named tokens exist": f"Bearer {api_token(key)}"}
    wrong = []
    for method, path, auth, _pattern in requests_of(route_table()):
        if not auth:
            continue
        for what, header in headers.items():
            status, ctype, body = ask(port, method, path, header)
            if status != 401 or ctype != "application/json":
                wrong.append(f"{method} {path} with {what}: {status} {ctype}")
            elif method != "HEAD" and not isinstance(json.loads(body).get("error"), str):  # HEAD has no body
                wrong.append(f"{method} {path} with {what}: 401 without an error sentence: {body!r}")
    assert not wrong, "doors open or refusing without a JSON error:\n" + "\n".join(wrong)


def test_every_route_that_takes_the_token_serves_the_right_one(served):
    """The 401s above come from the token check, not from a route the server does not have."""
    port, tokens, _ = served
    token = tokens["admin"]
    for method, path, auth, _pattern in requests_of(route_table()):
        if auth:
            status, ctype, body = ask(port, method, path, f"Bearer {token}")
            want = {"/v1/watch": "text/event-stream", "/metrics": "text/plain; version=0.0.4; charset=utf-8"}.get(
                path, "application/json")   # the change stream's events, the Prometheus text format
            assert status not in (401, 403, 405) and ctype == want, f"{method} {path}: {status} {ctype}"
            if status == 404 and body:  # the named thing's 404, not the route's
                assert not json.loads(body)["error"].startswith("no such API route"), f"{method} {path}"


def test_the_metrics_token_opens_metrics_and_nothing_else(tmp_path):
    with reconciler_process(tmp_path, name="r-metrics") as (port, key):
        opened = []
        for method, path, auth, _pattern in requests_of(route_table()):
            if auth:
                status, _, _ = ask(port, method, path, f"Bearer {metrics_token(key)}")
                if status != 401:
                    opened.append(f"{method} {path}: {status}")
        assert opened == ["GET /metrics: 200"]
        assert ask(port, "GET", "/metrics", f"Bearer {api_token(key, 'read')}")[0] == 200   # a read token too


def test_the_open_routes_answer_without_a_token_and_the_webhook_takes_only_its_own(served):
    port, tokens, _ = served
    token = tokens["admin"]
    status, ctype, body = ask(port, "GET", "/healthz")
    assert (status, ctype) == (200, "application/json") and json.loads(body)["name"] == "r-auth"
    for path in example_paths(WEBHOOK[1]):
        for what, header in [*refusals(token).items(), ("the API token", f"Bearer {token}")]:
            status, ctype, body = ask(port, "POST", path, header)
            assert (status, ctype) == (401, "application/json"), f"webhook with {what}: {status} {ctype}"
            assert json.loads(body)["error"].startswith("missing or wrong webhook token")


@pytest.mark.parametrize("role", ["read", "deploy", "admin"])
def test_each_role_is_refused_with_403_where_its_role_ends_and_let_in_elsewhere(served, role):
    """Each role against every route: a route its role does not allow answers 403 with a sentence naming
    the role needed, before the route does anything; every other one is served (neither 401 nor 403)."""
    port, tokens, _ = served
    wrong = []
    for method, path, auth, _pattern in requests_of(route_table()):
        if not auth:
            continue
        status, _, body = ask(port, method, path, f"Bearer {tokens[role]}")
        needed = role_needed(method, path, {})
        if allows(role, needed):
            if status in (401, 403):
                wrong.append(f"{method} {path}: {status} for a {role} token")
        elif status != 403 or f"needs the {needed} role" not in json.loads(body)["error"]:
            wrong.append(f"{method} {path}: {status} {body[:100]!r} for a {role} token (needs {needed})")
    assert not wrong, "\n".join(wrong)
    status, _, body = ask(port, "GET", "/v1/whoami", f"Bearer {tokens[role]}")
    assert (status, json.loads(body)) == (200, {"role": role, "name": {"admin": "root", "deploy": "ci",
                                                                       "read": "viewer"}[role]})


@pytest.mark.parametrize("which, says", [("revoked", "API token 'gone' was revoked at "),
                                         ("expired", "API token 'old' expired at ")])
def test_a_revoked_or_expired_token_gets_401_with_a_sentence_saying_so(served, which, says):
    port, tokens, _ = served
    status, ctype, body = ask(port, "GET", "/v1/whoami", f"Bearer {tokens[which]}")
    assert (status, ctype) == (401, "application/json")
    assert json.loads(body)["error"].startswith(says) and json.loads(body)["error"].endswith("ask an admin for a new one")


def test_the_cluster_key_token_works_until_the_first_named_token_and_never_after(tmp_path):
    """The bootstrap: a cluster without named tokens takes its cluster-key tokens; the first named token must
    be an admin one (else the holder would lock itself out), and once it exists the cluster-key tokens of every
    role answer 401 with a sentence saying they are off."""
    with reconciler_process(tmp_path, name="r-boot") as (port, key):
        boot = f"Bearer {api_token(key)}"
        assert ask(port, "GET", "/v1/whoami", boot)[:1] == (200,)
        assert json.loads(ask(port, "GET", "/v1/whoami", boot)[2]) == {"name": "cluster-key/admin", "role": "admin"}
        status, _, body = ask(port, "POST", "/v1/tokens", boot, b'{"name": "ci", "role": "deploy"}')
        assert status == 409 and "the first named token must be an admin one" in json.loads(body)["error"]
        admin = make_token(port, api_token(key), "root", "admin")
        for role in ("admin", "deploy", "read"):
            status, _, body = ask(port, "GET", "/v1/apps", f"Bearer {api_token(key, role)}")
            assert status == 401 and json.loads(body)["error"].startswith("the cluster-key API tokens are off")
        status, _, body = ask(port, "GET", "/v1/events?kind=token", f"Bearer {admin}")
        [event] = json.loads(body)
        assert (event["name"], event["reason"], event["actor"]) == ("root", "Created", "token/cluster-key/admin")
