"""`corral get -w`'s printing: server-sent events parsed as they arrive in any cut, rows aligned to the
listing, and which objects a NAME selects."""
import io
import json

import pytest

from corral.cli.client import ClientError
from corral.cli.watch import Rows, events, selects

APP = {"name": "hello", "ready": 2, "desired": 2, "revision": "1", "conditions": [], "created_at": None}


class Cut(io.BytesIO):
    """A response whose body arrives ``size`` bytes at a time."""

    def __init__(self, data, size):
        super().__init__(data)
        self.size = size

    def read1(self, n=-1):
        return self.read(self.size)


STREAM = (b'data: {"kind":"app","type":"ADDED","object":{"name":"a"}}\n\n'
          b': keepalive\n\n'
          b'event: synced\ndata: {}\n\n'
          b'data: {"kind":"app","type":"DELETED","object":{"name":"a"}}\n\n')


@pytest.mark.parametrize("size", [1, 7, 4096])
def test_events_come_whole_whatever_the_cut(size):
    got = list(events(Cut(STREAM, size)))
    assert [name for name, _ in got] == ["message", "synced", "message"]
    assert json.loads(got[2][1])["type"] == "DELETED"


def test_a_lost_connection_is_one_sentence():
    class Broken:
        def read1(self, n):
            raise ConnectionResetError("Connection reset by peer")
    with pytest.raises(ClientError, match="the connection to the API was lost"):
        list(events(Broken()))


def test_rows_keep_the_listings_widths_and_say_the_change_first():
    rows = Rows("apps", wide=False)
    header, first = rows.listing([{"type": "ADDED", "object": APP}])
    assert header.split()[:3] == ["EVENT", "NAME", "READY"] and first.split()[:3] == ["ADDED", "hello", "2/2"]
    later = rows.row({"type": "MODIFIED", "object": dict(APP, ready=1)})
    assert later.split()[:3] == ["MODIFIED", "hello", "1/2"]
    assert later.index("1/2") == header.index("READY") == first.index("2/2")


@pytest.mark.parametrize("resource,name,obj,picked", [
    ("apps", None, {"name": "a"}, True),
    ("apps", "a", {"name": "a"}, True),
    ("apps", "a", {"name": "b"}, False),
    ("instances", "hello", {"id": "hello-web-1", "app": "hello"}, True),
    ("instances", "hello-web-1", {"id": "hello-web-1", "app": "hello"}, True),
    ("instances", "other", {"id": "hello-web-1", "app": "hello"}, False),
    ("events", "hello", {"kind": "app", "name": "hello"}, True),
])
def test_selects(resource, name, obj, picked):
    assert selects(resource, name, obj) is picked


def sse(*items):
    """A stream's body: each item a change dict, or the name of a bare event."""
    out = b""
    for item in items:
        out += (f"event: {item}\ndata: {{}}\n\n" if isinstance(item, str)
                else f"data: {json.dumps(item)}\n\n").encode()
    return out


def app(name, ready):
    return {"kind": "app", "type": "ADDED", "object": dict(APP, name=name, ready=ready)}


class Broken(io.BytesIO):
    """A response that delivers its body, then loses its connection."""

    def read1(self, n=-1):
        block = self.read(n)
        if not block:
            raise ConnectionResetError("Connection reset by peer")
        return block


def test_a_lost_watch_reconnects_and_prints_only_what_changed_meanwhile(monkeypatch):
    from corral.cli import stream as stream_module
    from corral.cli.stream import NoAnswer
    from corral.cli.watch import watch
    first = sse(app("a", 2), app("b", 1), "synced", dict(app("b", 2), type="MODIFIED"))
    # meanwhile: a went to 1 ready, b was deleted, c was made
    second = sse(app("a", 1), app("c", 0), "synced", dict(app("c", 1), type="MODIFIED"))
    answers = [Broken(first), NoAnswer("no corral API answered (r1: refused; r2: refused)"), Cut(second, 4096)]

    def open_stream(client, method, path, **kw):
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return f"http://r{3 - len(answers)}", answer

    monkeypatch.setattr(stream_module, "open_stream", open_stream)
    printed, said, slept = [], io.StringIO(), []
    with pytest.raises(IndexError):   # the fake runs out of answers: the watch would go on
        watch(None, "apps", None, "json", out=lambda line, flush: printed.append(json.loads(line)),
              err=said, sleep=slept.append)
    assert [(c["type"], c["object"]["name"], c["object"]["ready"]) for c in printed] == [
        ("ADDED", "a", 2), ("ADDED", "b", 1), ("MODIFIED", "b", 2),      # the first stream
        ("MODIFIED", "a", 1), ("DELETED", "b", 2), ("ADDED", "c", 0),    # what the second listing says changed
        ("MODIFIED", "c", 1)]
    assert slept == [0.5]
    lines = said.getvalue().splitlines()
    assert lines[0].startswith("watch: the connection to the API was lost") and lines[0].endswith("reconnecting")
    assert lines[1] == "watch: no corral API answered (r1: refused; r2: refused); trying again in 0.5s"
    assert lines[2] == "watch: reading http://r3 again"


def test_a_watch_that_never_connected_or_is_refused_ends_with_the_sentence(monkeypatch):
    from corral.cli import stream as stream_module
    from corral.cli.stream import NoAnswer
    from corral.cli.watch import watch

    def refused(client, method, path, **kw):
        raise NoAnswer("no corral API answered (r1: refused)")
    monkeypatch.setattr(stream_module, "open_stream", refused)
    with pytest.raises(NoAnswer):
        watch(None, "apps", None, "json", out=print, sleep=lambda s: pytest.fail("it waited to try again"))

    def unauthorized(client, method, path, **kw):
        raise ClientError("the token was not accepted")
    monkeypatch.setattr(stream_module, "open_stream", unauthorized)
    with pytest.raises(ClientError, match="not accepted"):
        watch(None, "apps", None, "json", out=print, sleep=lambda s: pytest.fail("it waited to try again"))
