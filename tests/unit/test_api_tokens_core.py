"""The pure parts of named API tokens (corral/auth.py): their shape, their hash, names, lifetimes, and the
sentence a revoked or expired one is refused with."""
import hashlib

import pytest

from corral.auth import bearer, check_name, is_named_token, new_token, parse_expiry, refusal, token_hash
from corral.store import ApiTokenRecord


def test_a_new_token_has_256_random_bits_and_the_store_keeps_its_sha256():
    a, b = new_token(), new_token()
    assert a != b and is_named_token(a) and len(a) == len("corral_") + 43
    assert token_hash(a) == hashlib.sha256(a.encode()).hexdigest()
    assert not is_named_token(a[:-1]) and not is_named_token(a + "x") and not is_named_token(token_hash(a))


@pytest.mark.parametrize("header, token", [
    ("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic abc", None), ("Bearer", None), (None, None), ("", None)])
def test_bearer(header, token):
    assert bearer(header) == token


@pytest.mark.parametrize("text, seconds", [("90m", 5400), ("12h", 43200), ("30d", 2592000), ("2w", 1209600)])
def test_lifetimes(text, seconds):
    assert parse_expiry(text) == seconds


@pytest.mark.parametrize("text", ["", "0d", "30", "1y", "-1d", "1.5d", "99999w"])
def test_a_bad_lifetime_is_one_sentence(text):
    with pytest.raises(ValueError, match=r"^--expires .* is not a lifetime: say a whole number"):
        parse_expiry(text)


@pytest.mark.parametrize("name", ["", "Root", "a b", "-x", "x" * 64, "a/b", None])
def test_a_bad_name_is_one_sentence(name):
    with pytest.raises(ValueError, match="is not allowed: use 1 to 63 lower-case"):
        check_name(name)


def test_refusal_says_revoked_before_expired_and_nothing_for_a_live_token():
    live = ApiTokenRecord(name="ci", token_hash="h", role="read", created_at=0.0, created_by="x", expires_at=100.0)
    assert refusal(live, 99.9) is None
    assert refusal(live, 100.0) == "API token 'ci' expired at 1970-01-01T00:01:40Z; ask an admin for a new one"
    gone = ApiTokenRecord(**{**live.__dict__, "revoked_at": 50.0})
    assert refusal(gone, 10.0).startswith("API token 'ci' was revoked at 1970-01-01T00:00:50Z")


def test_a_streams_check_asks_the_store_at_most_once_a_second_and_says_why_once_refused(monkeypatch):
    from reconciler import credentials
    from reconciler.credentials import Credentials, Principal

    class Store:
        record = ApiTokenRecord(name="ops", token_hash="h", role="admin", created_at=0.0, created_by="x")
        asked = 0

        def find_api_token(self, token_hash):
            Store.asked += 1
            return self.record if token_hash == "h" else None

    now = [1000.0]
    monkeypatch.setattr(credentials.time, "monotonic", lambda: now[0])
    creds = Credentials(Store(), {}, clock=lambda: 50.0)
    check = creds.checker(Principal("ops", "admin", token_hash="h"))
    assert check() is None and Store.asked == 0      # within a second of the stream's opening
    now[0] += 1.0
    assert check() is None and Store.asked == 1
    Store.record = ApiTokenRecord(**{**Store.record.__dict__, "revoked_at": 40.0})
    assert check() is None and Store.asked == 1      # not asked again so soon
    now[0] += 1.0
    assert check().startswith("API token 'ops' was revoked at ") and Store.asked == 2
    rotated = creds.checker(Principal("ops", "admin", token_hash="old"))
    now[0] += 1.0
    assert rotated() == "API token 'ops' has a new secret now; ask for it"
