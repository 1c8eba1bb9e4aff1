"""`corral get nodes` says how each node speaks: STATE shows a revoked node as such, `-o wide` its credential."""
from corral.cli.output import render


def node(name, state, credential):
    return {"name": name, "state": state, "credential": credential, "address": "10.0.0.1", "instances": 0,
            "allocated": {"cpu": 0, "memory": 0}, "capacity": {"cpu": 2, "memory": 1 << 30}, "labels": {},
            "isolation": None, "last_seen": None}


def test_a_revoked_node_says_so_in_its_state_and_wide_names_every_nodes_credential():
    nodes = [node("node-1", "lost", "revoked"), node("node-2", "ready", "own key"), node("node-3", "ready", "cluster key")]
    table = render("nodes", nodes, "table").splitlines()
    assert [line.split()[:2] for line in table[1:]] == [["node-1", "lost,revoked"], ["node-2", "ready"],
                                                        ["node-3", "ready"]]
    wide = render("nodes", nodes, "wide").splitlines()
    assert "CREDENTIAL" in wide[0]
    assert ["revoked" in wide[1], "own key" in wide[2], "cluster key" in wide[3]] == [True, True, True]
