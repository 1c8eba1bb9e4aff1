"""Which role each API request needs (reconciler.api.role_needed), and which token has which role."""
import pytest

from corral.auth import ROLES, allows, api_token, role_of, role_tokens
from reconciler.api import role_needed


@pytest.mark.parametrize("method,path,query,needed", [
    ("GET", "/v1/apps", {}, "read"),
    ("GET", "/v1/watch", {}, "read"),
    ("GET", "/v1/instances/x/logs", {}, "read"),
    ("HEAD", "/v1/sources/sha256:ab", {}, "read"),
    ("POST", "/v1/diff", {}, "read"),
    ("GET", "/v1/apps", {"showSecrets": "true"}, "admin"),
    ("GET", "/v1/backup", {}, "admin"),
    ("POST", "/v1/exec", {}, "admin"),
    ("POST", "/v1/exec/s1/input", {}, "admin"),
    ("POST", "/v1/apply", {}, "deploy"),
    ("POST", "/v1/apps/hello/scale", {}, "deploy"),
    ("POST", "/v1/nodes/node-1/drain", {}, "deploy"),
    ("DELETE", "/v1/apps/hello", {}, "deploy"),
    ("PUT", "/v1/sources/sha256:ab", {}, "deploy"),
    ("GET", "/v1/services", {}, "read"),
    ("GET", "/v1/backups", {}, "read"),
    ("POST", "/v1/apps/hello/backups", {}, "deploy"),
    ("POST", "/v1/services/hello/db/rotate", {}, "deploy"),
    ("POST", "/v1/apps/hello/backups/hello-db-20261203T081500Z/restore", {}, "admin"),
    ("POST", "/v1/node-tokens", {}, "admin"),          # lets a machine into the cluster
    ("POST", "/v1/nodes/node-1/revoke", {}, "admin"),   # cuts a node off
])
def test_role_needed(method, path, query, needed):
    assert role_needed(method, path, query) == needed


@pytest.mark.parametrize("role,needed,ok", [
    ("read", "read", True), ("read", "deploy", False), ("read", "admin", False),
    ("deploy", "read", True), ("deploy", "deploy", True), ("deploy", "admin", False),
    ("admin", "admin", True), ("root", "read", False), (None, "read", False),
])
def test_allows(role, needed, ok):
    assert allows(role, needed) is ok


def test_each_role_has_its_own_token_and_admin_keeps_the_old_one():
    key = b"k" * 32
    tokens = role_tokens(key)
    assert len(set(tokens.values())) == len(ROLES)
    assert tokens["admin"] == api_token(key)
    for role, token in tokens.items():
        assert role_of(tokens, f"Bearer {token}") == role
    assert role_of(tokens, "Bearer " + "0" * 64) is None
    assert role_of(tokens, f"Basic {tokens['admin']}") is None
    assert role_of(tokens, None) is None


def test_every_token_route_needs_admin_even_the_list():
    for method, path in (("GET", "/v1/tokens"), ("POST", "/v1/tokens"), ("POST", "/v1/tokens/ci/revoke"),
                         ("POST", "/v1/tokens/ci/rotate")):
        assert role_needed(method, path, {}) == "admin", (method, path)
