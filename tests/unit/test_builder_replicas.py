"""What a builder copies of the layers other builders made, and what it drops (builder/replicas.py plan)."""
from builder.replicas import copy_of, held, plan

E, C, D = "e" * 64, "c" * 64, "d" * 64


def layer(kind, hexid):
    return {"kind": kind, "id": "sha256:" + hexid, "sha256": "1" * 64, "size": 10, "url": f"http://b1/layers/{kind}/{hexid}.tar"}


def test_a_wanted_layer_neither_finished_nor_copied_is_copied_once():
    wanted = [layer("env", E), layer("code", C), layer("env", E)]   # two images sharing an environment
    copy, drop = plan(wanted, finished=set(), copies=set())
    assert [(x["kind"], x["id"]) for x in copy] == [("code", "sha256:" + C), ("env", "sha256:" + E)] and drop == []


def test_finished_and_copied_layers_are_not_copied_again():
    copy, drop = plan([layer("env", E), layer("code", C)], finished={("env", "sha256:" + E)}, copies={("code", C)})
    assert copy == [] and drop == []


def test_copies_of_layers_no_longer_wanted_or_finished_here_are_dropped():
    copy, drop = plan([layer("env", E)], finished={("env", "sha256:" + E)}, copies={("env", E), ("code", D)})
    assert copy == [] and drop == [("code", D), ("env", E)]


def test_a_copy_is_one_only_with_its_facts(tmp_path):
    folder = tmp_path / "replicas"
    folder.mkdir()
    (folder / f"code-{C}.tar").write_bytes(b"x")
    assert copy_of(str(tmp_path), "code", C) is None and held(str(tmp_path)) == set()
    (folder / f"code-{C}.json").write_text('{"sha256": "' + "1" * 64 + '", "size": 1}')
    (folder / ".copy-1234.tar").write_bytes(b"half")
    assert copy_of(str(tmp_path), "code", C) == (str(folder / f"code-{C}.tar"), "1" * 64)
    assert held(str(tmp_path)) == {("code", C)}
