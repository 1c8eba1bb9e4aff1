"""The one stop mechanism of the daemons: signals kept in order, handlers put back, sleeps cut short."""
import os
import signal

import eventlet

from corral.stopping import Stop


def test_a_signal_caught_is_kept_in_order_and_the_previous_handler_comes_back():
    seen = []
    signal.signal(signal.SIGTERM, lambda s, f: seen.append(s))
    try:
        stop = Stop(early=[])
        with stop.catching():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)
            stop.wait(poll=0.01)
        assert stop.signals == [signal.SIGINT, signal.SIGTERM] and stop.first == signal.SIGINT
        os.kill(os.getpid(), signal.SIGTERM)
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def test_a_signal_caught_before_the_daemon_was_up_is_honoured():
    early = [signal.SIGTERM]
    stop = Stop(early=early)
    assert stop() and stop.first == signal.SIGTERM


def test_a_sleep_ends_when_a_stop_is_asked_and_says_so():
    stop = Stop()
    eventlet.spawn_after(0.05, stop.set)
    assert stop.sleep(30.0, poll=0.01) is True
    assert Stop().sleep(0.0) is False
