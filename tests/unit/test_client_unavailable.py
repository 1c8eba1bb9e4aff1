"""A 503 without a body (an answer to HEAD) still reads as one sentence saying the store is down."""
import pytest

from corral.cli.client import Client, ClientError
from tests.httpstub import StubServer


def test_a_head_answered_503_names_the_unavailable_store():
    with StubServer({"HEAD /v1/sources/sha256:x": (503, None)}) as url:
        with pytest.raises(ClientError, match=r"the API at .* is unavailable \(HTTP 503\), its store is down"):
            Client([url], "token").request("HEAD", "/v1/sources/sha256:x")
