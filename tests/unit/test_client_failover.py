"""The CLI's client passes over a reconciler that accepts connections and never answers
(a frozen or overloaded process) for reads, and remembers the one that answered."""
import http.server
import json
import socket
import threading

import pytest

from corral.cli.client import Client, ClientError


class Answers(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"ok": True}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def urls():
    frozen = socket.socket()          # listens, never accepts: the kernel completes the handshake
    frozen.bind(("127.0.0.1", 0))
    frozen.listen(8)
    live = http.server.HTTPServer(("127.0.0.1", 0), Answers)
    threading.Thread(target=live.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{frozen.getsockname()[1]}", f"http://127.0.0.1:{live.server_port}"
    live.shutdown()
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
    with pytest.raises(ClientError, match="Error code: 501"):   # the live test server has no POST
        client.request("POST", "/v1/apply", json={}, idempotent=True)
    assert client.urls == [live, frozen]
