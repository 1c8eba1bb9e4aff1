"""The cluster suite: real daemons on a datacentre of network namespaces.

It needs root and iproute2; where it cannot run, every test skips with one
line saying why (fails with it when CORRAL_REQUIRE names netns). One datacentre
(namespaces, bridge) serves the whole run; each test gets a fleet of its own
(store, reconcilers, builder, agents) and leaves every link healed.
"""
import os

import pytest

from tests.cluster import figures, netns
from tests.cluster.fleet import HOSTS, Fleet
from tests.support import need


@pytest.fixture(scope="session")
def datacentre():
    why = netns.why_unavailable()
    if why:
        need("netns", f"cluster suite skipped: {why}")
    dc = netns.Datacentre(HOSTS)
    yield dc
    dc.destroy()


@pytest.fixture
def fleet(datacentre, tmp_path):
    f = Fleet(datacentre, tmp_path)
    yield f
    f.down()


def pytest_terminal_summary(terminalreporter):
    if not figures.ROWS:
        return
    terminalreporter.section("cluster scenarios: figures")
    terminalreporter.write_line(figures.table())
    if os.environ.get("CORRAL_FIGURES"):
        figures.write(os.environ["CORRAL_FIGURES"])
