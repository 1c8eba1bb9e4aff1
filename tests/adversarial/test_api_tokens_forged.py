"""A hostile client of the API tries tokens it does not hold, against a real reconciler over HTTP: forged ones
of the right shape, the real one truncated, extended or with a letter changed, the sha256 the store keeps (as
read from a stolen store or backup), a cluster-key token once named tokens exist, control characters and a
huge header. Each gets 401 (or the server's refusal of a malformed request), never a 2xx, never a 500.

And a timing probe: a token that differs from a real one in its last character only is answered no slower
or faster than one that differs from the first: the token is never compared character by character (the
store is asked for the sha256 of what was sent), so a prefix cannot be guessed a character at a time."""
import http.client
import json
import secrets
import statistics
import time

import pytest

from corral.auth import api_token, token_hash
from tests.integration.test_api_auth import ask, make_token
from tests.support import reconciler_process


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with reconciler_process(tmp_path_factory.mktemp("forged"), name="r-forged") as (port, key):
        yield port, key, make_token(port, api_token(key), "root", "admin")


def near_misses(token, key):
    flip = "A" if token[-1] != "A" else "B"
    return {
        "a forged token of the right shape": "corral_" + secrets.token_urlsafe(32),
        "the real token less its last character": token[:-1],
        "the real token less half": token[: len(token) // 2],
        "the real token and one more character": token + "A",
        "the real token with its last character changed": token[:-1] + flip,
        "the real token in upper case": token.upper(),
        "the sha256 the store keeps": token_hash(token),
        "the prefix alone": "corral_",
        "the cluster-key admin token, now that named tokens exist": api_token(key),
        "the real token and a NUL": token + "\x00",
    }


def test_every_near_miss_is_refused_with_401(served):
    port, key, token = served
    assert ask(port, "GET", "/v1/whoami", f"Bearer {token}")[0] == 200
    wrong = []
    for what, forged in near_misses(token, key).items():
        for path in ("/v1/whoami", "/v1/tokens", "/v1/backup"):
            try:
                status, _, body = ask(port, "GET", path, f"Bearer {forged}")
            except (ValueError, http.client.HTTPException):
                continue   # the client library itself refused to send it (a NUL in a header)
            if status != 401 or "error" not in json.loads(body):
                wrong.append(f"{what} on {path}: {status} {body[:120]!r}")
    assert not wrong, "\n".join(wrong)


def test_a_huge_authorization_header_is_refused_without_a_500(served):
    port, _, token = served
    status = ask(port, "GET", "/v1/whoami", "Bearer " + token * 2000)[0]
    assert status in (400, 401, 431), status
    assert ask(port, "GET", "/v1/whoami", f"Bearer {token}")[0] == 200   # and the server still serves


def test_a_token_one_character_from_the_real_one_takes_as_long_as_one_that_is_all_wrong(served):
    """Interleaved samples of two probes; their medians within 25% (and 1 ms) of each other. A
    character-by-character comparison would not show on one request, but this says there is no lookup
    that a near token takes further than a far one: both are a sha256 the store does not have."""
    port, _, token = served
    near = token[:-1] + ("A" if token[-1] != "A" else "B")
    far = ("B" if token[7] != "B" else "C") + token[1:]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    took = {"near": [], "far": []}
    try:
        for i in range(400):
            which, probe = ("near", near) if i % 2 else ("far", far)
            began = time.perf_counter()
            conn.request("GET", "/v1/whoami", headers={"Authorization": f"Bearer {probe}"})
            resp = conn.getresponse()
            resp.read()
            took[which].append(time.perf_counter() - began)
            assert resp.status == 401
    finally:
        conn.close()
    near_ms, far_ms = (statistics.median(took[k]) * 1000 for k in ("near", "far"))
    assert abs(near_ms - far_ms) <= max(1.0, 0.25 * min(near_ms, far_ms)), (near_ms, far_ms)
