"""The dashboard's files, served at ``/ui/`` by every reconciler's API.

Plain HTML, CSS and one script, read from this package (no build step, no
CDN). The page holds nothing secret: it asks for a token, keeps it in the
tab's ``sessionStorage`` (never in a URL), and calls the API with it like the
CLI does, the change stream (``/v1/watch``) included.

Every file goes out with a Content-Security-Policy that allows scripts, styles
and connections from this origin only and no inline script, so a hostile
string that reached the page (an app name, an event message: both are
attacker-controlled) could not run even if it were inserted as markup; and
the script only ever inserts text (``textContent``), never markup.
"""
import os

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = [("Content-Security-Policy", CSP), ("X-Content-Type-Options", "nosniff"),
           ("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer"), ("Cache-Control", "no-cache")]


class StaticFile:
    """A response body of one of the dashboard's files, with its type and the security headers."""

    def __init__(self, data, content_type, extra=()):
        self.data = data
        self.content_type = content_type
        self.headers = HEADERS + [("Content-Length", str(len(data)))] + list(extra)

    def __iter__(self):
        yield self.data


def files():
    """``{name: path}`` of the files served: exactly those of the static folder with a known type, so
    no request names anything else (no ``..``, no dot files, no folders)."""
    return {n: os.path.join(STATIC, n) for n in sorted(os.listdir(STATIC))
            if os.path.splitext(n)[1] in TYPES and not n.startswith(".")}


def serve(environ, query, name):
    """``GET /ui/NAME``: the file, ``index.html`` for ``/ui/``; 404 for any other name."""
    path = files().get(name or "index.html")
    if path is None:
        return 404, {"error": f"the dashboard has no file {name!r}"}
    with open(path, "rb") as f:
        data = f.read()
    return 200, StaticFile(data, TYPES[os.path.splitext(path)[1]])


def to_index(environ, query):
    """``GET /ui``: on to ``/ui/`` (the page's relative links need the slash)."""
    return 302, StaticFile(b"", "text/plain", [("Location", "/ui/")])
