"""The bootstrap question of reconciler/credentials.py: does the store hold a named token (so the
cluster-key tokens are off)? Asked at start, then aside; a request never waits for it once answered."""
import corral.green

corral.green.patch()

import eventlet  # noqa: E402

from corral.store import StoreError  # noqa: E402
from reconciler.credentials import Credentials  # noqa: E402


class Store:
    def __init__(self, answers):
        self.answers = list(answers)
        self.asked = 0

    def has_api_tokens(self):
        self.asked += 1
        answer = self.answers.pop(0) if self.answers else False
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_asked_at_start_then_aside_and_a_token_made_here_is_never_unseen():
    store = Store([False, False])
    creds = Credentials(store, {"admin": "x"})
    creds.warm()
    assert store.asked == 1 and not creds.named_tokens_exist()
    creds._answered_at -= 5   # a second and more since: the next request asks again, aside
    assert not creds.named_tokens_exist() and creds._asking
    creds.named_token_made()   # made through this reconciler while the old answer is on its way
    eventlet.sleep(0)
    assert store.asked == 2 and creds.named_tokens_exist(), "an answer read before the token undid it"


def test_a_store_that_does_not_answer_is_not_asked_again_at_every_request():
    store = Store([StoreError("store unreachable: timed out")])
    creds = Credentials(store, {"admin": "x"})
    creds.warm()
    for _ in range(50):
        assert not creds.named_tokens_exist()
    assert store.asked == 1, "each request asked a store that did not answer: each would wait for it"
