"""The dashboard's files keep to what their Content-Security-Policy enforces, and insert text only."""
import html.parser
import os
import re

from reconciler import dashboard


class Tags(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []
        self.inline = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        if self.tags and self.tags[-1][0] == "script" and data.strip():
            self.inline.append(data)


def test_the_page_has_no_inline_script_no_handler_attribute_and_nothing_from_elsewhere():
    with open(dashboard.files()["index.html"]) as f:
        page = Tags()
        page.feed(f.read())
    scripts = [a for t, a in page.tags if t == "script"]
    assert scripts and all(a.get("src") and "//" not in a["src"] for a in scripts)
    assert not page.inline
    assert not [(t, k) for t, a in page.tags for k in a if k.startswith("on")]
    assert not [a for t, a in page.tags for k, v in a.items() if k in ("src", "href") and re.match(r"\w+:|//", v)]


def test_the_script_never_inserts_markup_or_evaluates_text():
    with open(dashboard.files()["app.js"]) as f:
        script = f.read()
    assert not re.search(r"(inner|outer)HTML\s*\+?=(?!=)", script), "markup assigned"
    for sink in ("insertAdjacentHTML", "DOMParser", "document.write", "eval(", "new Function",
                 "setTimeout(\"", "localStorage"):
        assert sink not in script, sink


def test_only_the_static_files_are_served():
    names = dashboard.files()
    assert set(names) >= {"index.html", "app.js", "app.css"}
    assert all(os.path.dirname(p) == dashboard.STATIC for p in names.values())
    for name in ("..", "../api.py", ".hidden", "__init__.py", "nothing.html"):
        status, body = dashboard.serve({}, {}, name)
        assert status == 404 and "has no file" in body["error"]
    status, body = dashboard.serve({}, {}, "")
    assert status == 200 and dict(body.headers)["Content-Security-Policy"] == dashboard.CSP
