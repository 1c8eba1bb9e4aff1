"""Which finished environment a new one is derived from (pure)."""
import pytest

from builder.layers import nearest_env

PY, PLAT = "3.11.7", "linux-x86_64-cpython"
WEB = ["django==4.2.16", "gunicorn==23.0.0", "six==1.16.0", "redis==5.0.8"]


def cand(layer_id, pins, python=PY, platform=PLAT, **marker):
    return (layer_id, {"python": python, "platform": platform, "pins": [k.split()[0] for k in pins], "pinned": pins,
                       **marker})


def test_the_layer_with_most_pins_in_common_wins():
    candidates = [cand("a", WEB[:2]), cand("b", WEB[:3]), cand("c", ["flask==3.0.0"])]
    assert nearest_env(candidates, PY, PLAT, WEB) == "b"


def test_on_a_tie_the_one_with_less_to_remove_wins_then_the_id():
    candidates = [cand("z", WEB[:3] + ["extra==1"]), cand("y", WEB[:3]), cand("x", WEB[:3])]
    assert nearest_env(candidates, PY, PLAT, WEB) == "x"


@pytest.mark.parametrize("candidate", [
    cand("a", WEB, python="3.12.1"),
    cand("a", WEB, platform="linux-aarch64-cpython"),
    cand("a", WEB[:1]),
], ids=["other-python", "other-platform", "too-little-in-common"])
def test_no_base_when_nothing_fits(candidate):
    assert nearest_env([candidate], PY, PLAT, WEB) is None


def test_an_empty_lock_is_a_fresh_venv():
    assert nearest_env([cand("a", WEB)], PY, PLAT, []) is None


def test_a_layer_that_holds_a_pin_with_other_files_is_never_a_base():
    """An installer keeps a distribution of the right name and version whatever index it came from: a
    base holding six==1.16.0 from another index would leave that six in the new environment."""
    theirs = [k.replace("six==1.16.0", "six==1.16.0 sha256:" + "e" * 64) for k in WEB]
    ours = [k.replace("six==1.16.0", "six==1.16.0 sha256:" + "a" * 64) for k in WEB]
    assert nearest_env([cand("evil", theirs)], PY, PLAT, ours) is None
    assert nearest_env([cand("evil", theirs), cand("fine", ours[:3])], PY, PLAT, ours) == "fine"


def test_a_layer_of_before_content_keys_or_an_apps_own_is_never_a_base():
    before = ("old", {"python": PY, "platform": PLAT, "pins": WEB})
    assert nearest_env([before], PY, PLAT, WEB) is None
    assert nearest_env([cand("own", WEB, own=True)], PY, PLAT, WEB) is None
