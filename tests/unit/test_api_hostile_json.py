"""A JSON body nested past Python's recursion limit is the client's error (400), not an internal one."""
import io

import pytest

from reconciler.httpio import HttpError, json_body


def environ(body):
    return {"CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}


def test_deeply_nested_json_is_a_400_with_one_sentence():
    with pytest.raises(HttpError) as e:
        json_body(environ(b"[" * 100000 + b"]" * 100000))
    assert e.value.status == 400 and "nests JSON deeper" in e.value.message
