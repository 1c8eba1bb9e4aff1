"""An app tries to plant its own build of a popular distribution in other apps' environments
(issue 14, finding 5), through a real builder with real uv.

Its requirements file says ``--no-index --find-links ./wheels`` and ``six==1.16.0``, with a
six 1.16.0 wheel of its own in the source. When the environment layer was keyed by
``name==version`` alone, the next app that asked PyPI's ``six==1.16.0`` got the planted layer,
or one derived from it (an installer keeps a distribution of the right name and version). Now
each file is named by its hash: the victim's environment is its own, holds PyPI's six, and is
not derived from the attacker's.
"""
import base64
import hashlib
import zipfile

from builder.pinning import parse_requirements_lock
from corral import image_layout
from corral.source import pack_source
from tests.integration.test_builder_pipeline import (  # noqa: F401 (fixtures)
    build, put_source, run_in_image, store, worker, workshop)

PLANTED = "PLANTED"


def planted_wheel(folder):
    """A wheel of six 1.16.0 whose module says PLANTED; its path."""
    files = {"six.py": f"__version__ = '1.16.0'\nPLANTED = {PLANTED!r}\n",
             "six-1.16.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\n",
             "six-1.16.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\n"
                                           "Tag: py2-none-any\nTag: py3-none-any\n"}
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    files["six-1.16.0.dist-info/RECORD"] = "\n".join(record + ["six-1.16.0.dist-info/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "six-1.16.0-py2.py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return path


def test_an_app_with_its_own_six_shares_no_environment_with_an_app_that_has_pypis(tmp_path, store, worker,
                                                                                     workshop):
    attacker = tmp_path / "attacker"
    planted_wheel(attacker / "wheels")
    (attacker / "app.py").write_text("import six\nprint(six.PLANTED)\n")
    (attacker / "requirements.txt").write_text("--no-index\n--find-links ./wheels\nsix==1.16.0\n")
    digest, data = pack_source(str(attacker))
    store.put_source(digest, data)
    planted = build(store, worker, "k-attacker", digest, "requirements.txt")
    assert planted.state == "succeeded", planted.error
    assert run_in_image(workshop, planted.image, "import six; print(six.PLANTED)").stdout.strip() == PLANTED

    victim = build(store, worker, "k-victim", put_source(tmp_path, store, name="victim"), ["six==1.16.0"])
    assert victim.state == "succeeded", victim.error
    [theirs], [ours] = parse_requirements_lock(planted.lock), parse_requirements_lock(victim.lock)
    assert theirs.requirement == ours.requirement == "six==1.16.0" and set(theirs.hashes).isdisjoint(ours.hashes)
    assert victim.layers[0]["id"] != planted.layers[0]["id"], "the victim was given the planted environment"
    marker = image_layout.read_layer_marker(workshop.images_dir, "env", victim.layers[0]["id"])
    assert marker["derived_from"] != planted.layers[0]["id"], "the victim's environment was derived from the planted one"
    ran = run_in_image(workshop, victim.image, "import six; print(hasattr(six, 'PLANTED'), six.__version__)")
    assert (ran.returncode, ran.stdout.strip()) == (0, "False 1.16.0"), ran.stderr
