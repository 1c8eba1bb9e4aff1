"""The CLI's client passes over a reconciler that accepts connections and never answers
(a frozen or overloaded process) for reads, and remembers the one that answered."""
import socket

import pytest

from corral.cli.client import Client, ClientError
from tests.httpstub import StubServer


@pytest.fixture
def urls():
    frozen = socket.socket()          # listens, never accepts: the kernel completes the handshake
    frozen.bind(("127.0.0.1", 0))
    frozen.listen(8)
    with StubServer({"GET /v1/apps": (200, {"ok": True})}) as live:
        yield f"http://127.0.0.1:{frozen.getsockname()[1]}", live
    frozen.close()


def test_a_read_moves_on_from_a_silent_api_and_remembers_the_live_one(urls):
    frozen, live = urls
    client = Client([frozen, live], "token", timeout=30.0, failover_read=0.5)
    assert client.get("/v1/apps") == {"ok": True}
    assert client.urls == [live, frozen]


def test_a_write_is_not_sent_twice_when_the_answer_is_late(urls):
    frozen, live = urls
    client = Client([frozen, live], "token", timeout=1.0, failover_read=0.5)
    with pytest.raises(ClientError, match="took the request but did not answer within 1s; it may or may not"):
        client.request("POST", "/v1/apps", json={})   # it may have been taken: never resent elsewhere
    assert client.urls == [frozen, live]


def test_the_last_url_gets_the_whole_timeout(urls):
    frozen, _ = urls
    client = Client([frozen], "token", timeout=1.0, failover_read=0.01)
    assert client._read_timeout("GET", 0) == 1.0
    with pytest.raises(ClientError, match="no corral API answered"):
        client.get("/v1/apps")


def test_a_write_marked_idempotent_goes_on_to_the_next_url(urls):
    frozen, live = urls
    client = Client([frozen, live], "token", timeout=0.5)
    with pytest.raises(ClientError, match="no such stub"):   # the live stub answers POST /v1/apply with a 501
        client.request("POST", "/v1/apply", json={}, idempotent=True)
    assert client.urls == [live, frozen]
