"""Named API tokens in the store (both backends): only the hash is kept, names are taken for good,
revocation and rotation are one transaction with their event, and a second daemon sees them at once."""
import hashlib

import pytest

from corral.store import ApiTokenRecord, Conflict
from corral.store.tokenrows import TOKEN_COLUMNS

SECRET = "corral_" + "s" * 43


def hashed(secret=SECRET):
    return hashlib.sha256(secret.encode()).hexdigest()


def record(name="ci", role="deploy", secret=SECRET, expires_at=None):
    return ApiTokenRecord(name=name, token_hash=hashed(secret), role=role, created_at=0.0, created_by="",
                          expires_at=expires_at)


def test_a_token_is_stored_by_its_hash_and_found_by_it_and_its_secret_is_in_no_column(store):
    assert not store.has_api_tokens()
    made = store.add_api_token(record(expires_at=2e9), actor="token/root")
    assert made.created_at > 0 and made.created_by == "token/root" and made.expires_at == 2e9
    assert store.find_api_token(hashed()) == made
    assert store.find_api_token(hashed("corral_other")) is None
    assert store.has_api_tokens()

    def every_value(cur):
        cur.execute(f"SELECT {TOKEN_COLUMNS} FROM api_tokens")
        return [str(v) for row in cur.fetchall() for v in row]
    values = store.read_snapshot(every_value)
    assert hashed() in values and not any(SECRET in v or SECRET[7:] in v for v in values)
    [event] = store.list_events(kind="token")
    assert (event.name, event.reason, event.actor) == ("ci", "Created", "token/root") and SECRET not in event.message


def test_a_name_is_taken_for_good_unless_replaced(store):
    store.add_api_token(record(), actor="a")
    store.revoke_api_token("ci", actor="a")
    with pytest.raises(Conflict, match="an API token named 'ci' exists already"):
        store.add_api_token(record(secret="corral_two"), actor="a")
    again = store.add_api_token(record(role="read", secret="corral_two"), actor="up", replace=True)
    assert again.revoked_at is None and again.role == "read"
    assert store.find_api_token(hashed()) is None and store.find_api_token(hashed("corral_two")) == again
    assert [e.reason for e in store.list_events(kind="token")] == ["Created", "Revoked", "Replaced"]


def test_revoking_twice_changes_nothing_and_a_second_daemon_sees_it_at_once(store, open_twin):
    store.add_api_token(record(), actor="a")
    twin = open_twin()
    assert twin.find_api_token(hashed()).revoked_at is None
    first = store.revoke_api_token("ci", actor="token/root")
    assert first.revoked_at is not None and first.revoked_by == "token/root"
    assert twin.find_api_token(hashed()).revoked_at == first.revoked_at
    assert store.revoke_api_token("ci", actor="other") == first
    assert store.revoke_api_token("nope", actor="a") is None
    assert [e.reason for e in store.list_events(kind="token")] == ["Created", "Revoked"]


def test_rotation_gives_a_live_token_a_new_secret_and_refuses_a_revoked_one(store):
    made = store.add_api_token(record(expires_at=2e9), actor="a")
    store.touch_api_token("ci", 123.0)
    rotated = store.rotate_api_token("ci", hashed("corral_new"), actor="token/ci")
    assert (rotated.role, rotated.expires_at, rotated.last_used_at) == ("deploy", 2e9, None)
    assert rotated.created_at >= made.created_at and store.find_api_token(hashed()) is None
    assert store.rotate_api_token("nope", hashed("x"), actor="a") is None
    store.revoke_api_token("ci", actor="a")
    with pytest.raises(Conflict, match="revoked"):
        store.rotate_api_token("ci", hashed("corral_newer"), actor="a")


def test_tokens_are_listed_by_name_with_their_last_use(store):
    for name in ("zed", "alpha"):
        store.add_api_token(record(name=name, secret=name), actor="a")
    store.touch_api_token("zed", 42.0)
    assert [(t.name, t.last_used_at) for t in store.list_api_tokens()] == [("alpha", None), ("zed", 42.0)]


def test_a_cluster_secret_is_made_once_and_kept(store, open_twin):
    assert store.cluster_secret("webhook-key", lambda: "first") == "first"
    assert open_twin().cluster_secret("webhook-key", lambda: "second") == "first"
