"""A 503 without a body (an answer to HEAD) still reads as one sentence saying the store is down."""
import http.server
import threading

import pytest

from corral.cli.client import Client, ClientError


class Unavailable(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_head_answered_503_names_the_unavailable_store():
    server = http.server.HTTPServer(("127.0.0.1", 0), Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        with pytest.raises(ClientError, match=r"the API at .* is unavailable \(HTTP 503\), its store is down"):
            Client([url], "token").request("HEAD", "/v1/sources/sha256:x")
    finally:
        server.shutdown()
