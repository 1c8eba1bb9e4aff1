"""The cluster suite's app: answers every GET with its instance id, on all addresses, port $PORT;
HTTP/1.1 with keep-alive when $KEEP_ALIVE is set (a pooled connection then outlives a request)."""
import http.server
import json
import os

BODY = json.dumps({"instance": os.environ.get("CORRAL_INSTANCE"), "node": os.environ.get("CORRAL_NODE"),
                   "greeting": os.environ.get("GREETING")}).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1" if os.environ.get("KEEP_ALIVE") else "HTTP/1.0"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
