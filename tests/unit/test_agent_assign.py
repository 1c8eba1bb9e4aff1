"""The agent shell's decisions on an assign: node name, epoch fence, latest wins."""
import pytest

from corral.wire.envelope import Message
from nodeagent.agent import Agent
from nodeagent.state import load_state


def make_agent(tmp_path):
    return Agent(name="node-1", data_dir=str(tmp_path), images_dir=str(tmp_path / "images"), labels={},
                 address="127.0.0.1", heartbeat=1.0, send=lambda *a: None, parent_env={"PATH": "/bin"})


def assign(epoch, instances=(), node="node-1"):
    return Message(type="assign", sender="reconciler-1", epoch=epoch, timestamp=0.0, nonce="n",
                   body={"node": node, "instances": [{"id": i} for i in instances]})


def test_a_lower_epoch_is_refused_and_counted(tmp_path):
    agent = make_agent(tmp_path)
    assert agent.accept(assign(3, ["a"]))
    assert not agent.accept(assign(2, []))
    assert [e["id"] for e in agent.assigned] == ["a"]
    assert agent.counters["assign_stale"] == 1


def test_the_highest_epoch_is_on_disk_before_the_assign_acts(tmp_path):
    agent = make_agent(tmp_path)
    agent.accept(assign(9, ["a"]))
    assert load_state(str(tmp_path))["epoch"] == 9
    assert not make_agent(tmp_path).accept(assign(8, []))


def test_an_assign_for_another_node_changes_nothing(tmp_path):
    agent = make_agent(tmp_path)
    agent.accept(assign(1, ["a"]))
    assert not agent.accept(assign(5, [], node="node-2"))
    assert ([e["id"] for e in agent.assigned], agent.fence.highest) == (["a"], 1)
    assert agent.counters["assign_other_node"] == 1


@pytest.mark.parametrize("epochs, expected", [
    pytest.param([1, 1], ["second"], id="same-epoch-latest-wins"),
    pytest.param([1, 2], ["second"], id="newer-epoch-wins"),
    pytest.param([2, 1], ["first"], id="older-epoch-refused"),
])
def test_assigns_in_arrival_order(tmp_path, epochs, expected):
    agent = make_agent(tmp_path)
    agent.accept(assign(epochs[0], ["first"]))
    agent.accept(assign(epochs[1], ["second"]))
    assert [e["id"] for e in agent.assigned] == expected


def test_the_bus_handler_only_enqueues(tmp_path):
    agent = make_agent(tmp_path)
    agent.on_message("tcp://x", assign(4, ["a"]))
    assert agent.assigned == [] and agent.fence.highest == 0 and agent.inbox.qsize() == 1
