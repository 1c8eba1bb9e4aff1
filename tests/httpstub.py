"""A canned HTTP server in a process of its own, for client tests.

A server thread inside the test process only runs when that process lets it:
once a test module has greened the process (eventlet), a socketserver whose
selector was picked before that blocks the one OS thread in a real poll and
never yields (seen as a whole-suite hang; see tests/support.serve_bytes). A
child process answers regardless.
"""
import json
import re
import subprocess
import sys

SERVER = r"""
import http.server, json, sys
answers = json.loads(sys.argv[1])   # {"GET /path": [status, body or null]}

class Handler(http.server.BaseHTTPRequestHandler):
    def _answer(self, with_body=True):
        status, body = answers.get(f"{self.command} {self.path.split('?')[0]}", [501, {"error": "no such stub"}])
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if with_body:
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def do_HEAD(self):
        self._answer(with_body=False)

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print("port", server.server_port, flush=True)
server.serve_forever()
"""


class StubServer:
    """``with StubServer({"GET /v1/apps": (200, {...})}) as url:`` an HTTP server answering
    each ``"METHOD /path"`` with ``(status, JSON body or None)``; anything else is a 501."""

    def __init__(self, answers):
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, json.dumps(answers)], stdout=subprocess.PIPE,
                                     text=True)

    def __enter__(self):
        port = re.match(r"port (\d+)", self.proc.stdout.readline()).group(1)
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()
