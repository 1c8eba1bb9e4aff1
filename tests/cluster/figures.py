"""The figures each cluster scenario measures, and the table the test run prints.

A scenario calls :func:`record` once; ``conftest.py`` prints every row at the
end of the run (``pytest_terminal_summary``) and writes them to
``$CORRAL_FIGURES`` as JSON when that is set.
"""
import json
import random
import threading
import time

import requests

ROWS = []
COLUMNS = [("scenario", 34), ("detect s", 9), ("recover s", 10), ("lost", 5), ("failed/requests", 16),
           ("died", 5), ("note", 0)]


def record(scenario, *, detect=None, recover=None, lost=0, failed=None, requests_sent=None, died=0, note=""):
    """Keep one row of figures for the table."""
    ROWS.append({"scenario": scenario, "detect_s": detect, "recover_s": recover, "lost": lost,
                 "failed": failed, "requests": requests_sent, "died": died, "note": note})


def _cell(value):
    if value is None:
        return "-"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def table(rows=None):
    """The rows as a fixed-width text table. Pure."""
    rows = ROWS if rows is None else rows
    lines = ["  ".join(name.ljust(width) for name, width in COLUMNS).rstrip()]
    for r in rows:
        load = "-" if r["requests"] is None else f"{r['failed']}/{r['requests']}"
        cells = [r["scenario"], _cell(r["detect_s"]), _cell(r["recover_s"]), _cell(r["lost"]), load,
                 _cell(r["died"]), r["note"]]
        lines.append("  ".join(str(c).ljust(w) for c, (_, w) in zip(cells, COLUMNS)).rstrip())
    return "\n".join(lines)


def write(path):
    with open(path, "w") as f:
        json.dump(ROWS, f, indent=1)


class Load:
    """A bounded load loop against one app, in a thread: at most ``max_requests`` requests, ``max_seconds`` long.

    Each request tries the app's ready instances (as the API last listed
    them) in random order until one answers: it fails only when none does,
    i.e. when the app was down for a client that follows the instance list.
    ``failures`` holds the monotonic times of failed requests. An error of the
    loop itself (the API answering 401 or 500 to the instance list) ends it and
    is raised again by :meth:`stop`, so that a load that stopped early cannot
    pass for one that found nothing wrong.
    """

    def __init__(self, fleet, app, interval=0.1, max_requests=3000, max_seconds=240.0, per_try=0.5):
        self.fleet, self.app = fleet, app
        self.interval, self.max_requests, self.max_seconds, self.per_try = interval, max_requests, max_seconds, per_try
        self.sent = 0
        self.failures = []
        self.answered_by = {}
        self.error = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"load-{app}", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, exc_type, *exc):
        self.stop(check=exc_type is None)

    def stop(self, check=True):
        self._stop.set()
        self._thread.join(self.max_seconds)
        if check and self.error is not None:
            raise AssertionError(f"the load loop on {self.app} ended after {self.sent} requests: {self.error}") \
                from self.error

    def _run(self):
        try:
            self._loop()
        except Exception as e:  # noqa: BLE001 - raised again by stop()
            self.error = e

    def _targets(self):
        found = self.fleet.serving(self.app)
        return [(i["address"], i["port"]) for i in found if i.get("port")]

    def _loop(self):
        started = time.monotonic()
        targets, refreshed = [], 0.0
        session = requests.Session()
        while not self._stop.is_set() and self.sent < self.max_requests \
                and time.monotonic() - started < self.max_seconds:
            now = time.monotonic()
            if now - refreshed > 1.0:
                fresh = self._targets()
                targets = fresh or targets
                refreshed = now
            self.sent += 1
            ok = False
            for address, port in random.sample(targets, len(targets)):
                try:
                    r = session.get(f"http://{address}:{port}/", timeout=self.per_try)
                    if r.ok:
                        inst = r.json()["instance"]
                        self.answered_by[inst] = self.answered_by.get(inst, 0) + 1
                        ok = True
                        break
                except (requests.RequestException, ValueError, KeyError):
                    continue
            if not ok:
                self.failures.append(time.monotonic())
            self._stop.wait(self.interval)
