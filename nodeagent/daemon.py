"""The agent daemon: connect to every reconciler, run the agent until SIGINT/SIGTERM."""
import logging
import os
import signal

import eventlet

from corral.settings import Timings
from corral.wire.bus import BusClient
from corral.wire.keys import read_key
from nodeagent.agent import Agent
from nodeagent.process import Launcher

log = logging.getLogger(__name__)

SIGNAL_POLL = 0.1   # seconds between looks at the stop flag set by a signal handler


def run(*, name, reconcilers, data_dir, secret_file, images_dir, labels, address="127.0.0.1", timings=Timings()):
    """Run the agent of node ``name`` until SIGINT or SIGTERM, then stop its instances and return.

    The caller has called ``corral.green.patch()`` before importing this module.
    """
    os.makedirs(data_dir, exist_ok=True)
    os.makedirs(images_dir, exist_ok=True)
    launcher = Launcher()
    if not launcher.become_subreaper():
        log.warning("could not become the reaper of orphaned processes; an instance's orphans may linger as zombies")
    key = read_key(secret_file)
    bus = None
    agent = Agent(name=name, data_dir=data_dir, images_dir=images_dir, labels=labels, address=address,
                  heartbeat=timings.heartbeat, send=lambda t, body, epoch: bus.send_all(t, body, epoch),
                  launcher=launcher)
    bus = BusClient(list(reconcilers), key, name, agent.on_message, window=timings.replay_window)
    stop = []

    def on_signal(signum, frame):
        stop.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        bus.start()
        agent.start()
        log.info("agent %s up, reporting to %s", name, ", ".join(reconcilers))
        while not stop:
            eventlet.sleep(SIGNAL_POLL)
        log.info("agent %s stopping on %s", name, signal.Signals(stop[0]).name)
        agent.shutdown()
    finally:
        bus.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
