"""The actor a request names (X-Corral-Actor) is recorded as a bounded, plain claim: it cannot
write control characters, fake lines or a daemon's name into the audit trail (reconciler/actor.py)."""
import pytest

from reconciler.actor import MAX_CLAIM, actor


@pytest.mark.parametrize("header, recorded", [
    (None, "cli"),
    ("", "cli"),
    ("alice@laptop", "cli:alice@laptop"),
    ("reconciler/r1", "cli:reconciler?r1"),
    ("eve\nNormal 12:00 app/hello Deleted", "cli:eve?Normal?12:00?app?hello?Deleted"),
    ("\x1b[2Jroot", "cli:??2Jroot"),
    ("a" * 500, "cli:" + "a" * MAX_CLAIM),
], ids=["absent", "empty", "plain", "a-daemon's-name", "newline", "terminal-escape", "overlong"])
def test_the_claim_is_marked_cut_and_plain(header, recorded):
    environ = {} if header is None else {"HTTP_X_CORRAL_ACTOR": header}
    assert actor(environ) == recorded


def test_a_checked_token_names_the_actor_and_the_claim_follows_in_brackets():
    from reconciler.credentials import Principal
    token = {"corral.principal": Principal("ci", "deploy")}
    assert actor(token) == "token/ci"
    assert actor(dict(token, HTTP_X_CORRAL_ACTOR="alice@laptop")) == "token/ci (alice@laptop)"
    assert actor(dict(token, HTTP_X_CORRAL_ACTOR="x) token/root (y")) == "token/ci (x??token?root??y)"
