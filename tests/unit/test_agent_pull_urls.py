"""Which URLs an agent fetches a layer from (nodeagent/pull.py): a layer's list in order, and the newest
assignment's URLs only when they name exactly the same layers."""
import pytest

from nodeagent.pull import fresher, layer_urls, shown

ENV = {"kind": "env", "id": "sha256:" + "e" * 64, "sha256": "1" * 64, "size": 10, "url": "http://b1/layers/env/e.tar?sig=1"}
CODE = {"kind": "code", "id": "sha256:" + "c" * 64, "sha256": "2" * 64, "size": 20, "url": "http://b1/layers/code/c.tar?sig=1"}


def resigned(layer, **over):
    return dict(layer, url=layer["url"].replace("sig=1", "sig=2"), **over)


def test_the_newest_urls_are_taken_when_they_name_the_same_layers():
    mine = {"layers": [ENV, CODE]}
    latest = {"layers": [resigned(CODE), resigned(ENV)]}
    assert fresher(mine, latest) is latest
    assert fresher(mine, None) is mine


@pytest.mark.parametrize("change", [{"sha256": "3" * 64}, {"size": 11}, {"id": "sha256:" + "d" * 64}, {"kind": "env"}],
                         ids=["other-digest", "other-size", "other-id", "other-kind"])
def test_an_artifact_naming_anything_else_is_not_taken(change):
    mine = {"layers": [ENV, CODE]}
    assert fresher(mine, {"layers": [ENV, resigned(CODE, **change)]}) is mine


@pytest.mark.parametrize("latest", [{"layers": None}, {"layers": [1, 2]}, {}, {"layers": [ENV]}],
                         ids=["null", "not-dicts", "no-layers", "one-layer"])
def test_a_malformed_newer_artifact_is_not_taken(latest):
    mine = {"layers": [ENV, CODE]}
    assert fresher(mine, latest) is mine


def test_a_layer_is_fetched_from_its_urls_in_order_else_its_url():
    assert layer_urls(dict(ENV, urls=["http://b2/x", "http://b1/x"])) == ["http://b2/x", "http://b1/x"]
    assert layer_urls(ENV) == [ENV["url"]]
    assert layer_urls(dict(ENV, urls=[])) == [ENV["url"]]
    assert layer_urls(dict(ENV, urls=[3])) == [ENV["url"]]


def test_a_url_is_shown_without_its_credential():
    assert shown("http://b1:7072/layers/env/e.tar?node=n1&exp=1&sig=ab") == "http://b1:7072/layers/env/e.tar"
    assert shown(None) == ""
