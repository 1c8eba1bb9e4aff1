"""The example app: answers every request with a greeting and where it runs."""
import json
import os


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/healthz":
        body = b"ok\n"
    else:
        body = json.dumps({
            "greeting": os.environ.get("GREETING", "hello"),
            "app": os.environ.get("CORRAL_APP"),
            "instance": os.environ.get("CORRAL_INSTANCE"),
            "node": os.environ.get("CORRAL_NODE"),
            "path": environ.get("PATH_INFO"),
        }).encode() + b"\n"
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
