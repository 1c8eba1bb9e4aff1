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
