"""The cluster suite's app: answers every GET with its instance id, on all addresses, port $PORT."""
import http.server
import json
import os

BODY = json.dumps({"instance": os.environ.get("CORRAL_INSTANCE"), "node": os.environ.get("CORRAL_NODE"),
                   "greeting": os.environ.get("GREETING")}).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
