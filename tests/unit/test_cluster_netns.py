"""The pure parts of the cluster suite's datacentre: names and addresses, tc arguments, tc's counters."""
import pytest

from tests.cluster.netns import plan, qdisc_counts, tbf_args

TC_SHOW = """qdisc tbf 8004: root refcnt 3 rate 256Kbit burst 3027b lat 200ms
 Sent 48230 bytes 391 pkt (dropped 17, overlimits 40 requeues 0)
 backlog 0b 0p requeues 0
"""


def test_plan_names_fit_linux_and_addresses_share_one_subnet():
    bridge, operator, hosts = plan(7, ["store", "r1", "n1"])
    assert (bridge, operator) == ("crl07br", "10.231.7.1")
    assert [h.address for h in hosts.values()] == ["10.231.7.10", "10.231.7.11", "10.231.7.12"]
    assert hosts["n1"].netns == "crl07-n1"
    assert all(len(name) <= 15 for h in hosts.values() for name in (h.inside, h.switch))
    assert len({h.switch for h in hosts.values()}) == 3


@pytest.mark.parametrize("tag, hosts", [(0, ["a"]), (255, ["a"]), (1, ["a", "a"])])
def test_plan_refuses_a_tag_off_the_range_and_twice_the_same_host(tag, hosts):
    with pytest.raises(ValueError):
        plan(tag, hosts)


def test_tbf_arguments_say_rate_burst_and_queue():
    assert tbf_args(256, 200) == ["tbf", "rate", "256kbit", "burst", "3028", "latency", "200ms"]


def test_qdisc_counts_reads_sent_and_dropped_packets():
    assert qdisc_counts(TC_SHOW) == (391, 17)
    with pytest.raises(ValueError, match="no packet counts"):
        qdisc_counts("qdisc noqueue 0: root refcnt 2")
