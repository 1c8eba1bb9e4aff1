"""PostgreSQL going away and coming back, and queries that take too long.

These tests crash and restart a private server (tests/pg.py ThrowawayPostgres).
"""
import threading

import psycopg2
import pytest

from corral.store.base import DesiredInstance, StoreError
from corral.store.postgres import PostgresStore
from tests.pg import PostgresUnavailable, ThrowawayPostgres
from tests.support import need

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def server():
    try:
        pg = ThrowawayPostgres().start()
    except PostgresUnavailable as exc:
        need("postgresql", str(exc))
    yield pg
    pg.destroy()


@pytest.fixture
def pg_store(server):
    store = PostgresStore(server.dsn, connect_timeout=2)
    store.migrate()
    yield store
    store.close()
    conn = psycopg2.connect(server.dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    conn.close()


def app(name):
    return {"name": name, "labels": {}, "spec": {"processes": {}}, "source_digest": "d"}


def test_crash_surfaces_as_store_unreachable_then_recovers(server, pg_store):
    pg_store.apply_apps([app("before")], actor="cli")
    server.stop("immediate")
    try:
        with pytest.raises(StoreError, match=r"^store unreachable: .*PostgreSQL at 127\.0\.0\.1"):
            pg_store.list_apps()
        with pytest.raises(StoreError, match="^store unreachable"):  # cannot even connect
            pg_store.apply_apps([app("lost")], actor="cli")
    finally:
        server.start()
    pg_store.apply_apps([app("after")], actor="cli")
    assert [a.name for a in pg_store.list_apps()] == ["after", "before"]


def test_first_call_after_a_restart_succeeds_on_pooled_connections(server, pg_store):
    # fill the pool with several idle connections, all of which the restart kills
    barrier = threading.Barrier(3)

    def read():
        barrier.wait()
        pg_store.list_apps()
    threads = [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    server.restart()
    assert pg_store.apply_apps([app("fresh")], actor="cli")[0].action == "created"
    assert pg_store.get_app("fresh") is not None


def test_statement_timeout_cancels_and_the_store_carries_on(server, pg_store):
    pg_store.acquire_lease("leader", "r1", ttl=60)
    slow = PostgresStore(server.dsn, statement_timeout=0.2, pool_size=1)
    blocker = psycopg2.connect(server.dsn)  # holds the lease row so the fenced write must wait
    try:
        with blocker.cursor() as cur:
            cur.execute("SELECT 1 FROM leases WHERE name = 'leader' FOR UPDATE")
        inst = DesiredInstance(id="a-web-1", app="a", process="web", node="n1", revision="1",
                               image="sha256:i", spec={}, created_at=1.0)
        with pytest.raises(StoreError, match="statement_timeout"):
            slow.write_desired(1, upsert=[inst], delete=[])
        blocker.rollback()
        slow.write_desired(1, upsert=[inst], delete=[])  # the same pooled connection, usable again
        assert [d.id for d in slow.list_desired()] == ["a-web-1"]
    finally:
        blocker.close()
        slow.close()


class Link:
    """A TCP relay in front of PostgreSQL that can be cut: while cut, it takes connections, sends
    nothing for ``HOLD`` seconds and then drops them (a link gone silent until the client would give
    up: libpq's connect_timeout does not bound a connect that eventlet's wait callback drives, as in
    this process once an eventlet test has patched it); counts the connections it took."""

    HOLD = 1.5

    def __init__(self, port):
        import socket
        self.port, self.cut, self.taken = port, True, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)   # the accept loop looks up for close() this often
        self.address = self.listener.getsockname()
        self.held, self.closing = [], False
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self):
        import socket
        while not self.closing:
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            client.settimeout(None)
            self.taken += 1
            if self.cut:
                self.held.append(client)
                threading.Timer(self.HOLD, client.close).start()
                continue
            server = socket.create_connection(("127.0.0.1", self.port))
            ends = []   # the directions done; the last one closes both sockets (never one another reads)
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b, ends), daemon=True).start()

    @staticmethod
    def _pipe(a, b, ends):
        import socket
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        try:
            b.shutdown(socket.SHUT_WR)   # the end passed on; the other direction ends in turn
        except OSError:
            pass
        ends.append(a)
        if len(ends) == 2:
            a.close()
            b.close()

    def close(self):
        self.closing = True
        self.acceptor.join()
        self.listener.close()
        for s in self.held:
            s.close()


def test_during_an_outage_one_call_tries_the_server_and_the_others_fail_at_once_until_it_is_back(server, pg_store):
    link = Link(int(psycopg2.extensions.parse_dsn(server.dsn)["port"]))
    params = psycopg2.extensions.parse_dsn(server.dsn)
    dsn = f"postgresql://{params.get('user', 'postgres')}@127.0.0.1:{link.address[1]}/{params['dbname']}"
    store = PostgresStore(dsn, connect_timeout=1, retry_after=0)
    patient = PostgresStore(dsn, connect_timeout=1, retry_after=3600)
    try:
        with pytest.raises(StoreError, match=r"^store unreachable: "):
            patient.list_apps()
        with pytest.raises(StoreError, match=r"not tried again yet \(one call at a time tries it, at most every "
                                             r"3600s\)$"):
            patient.get_app("x")                   # right after a failure: not tried, whoever asks
        assert link.taken == 1
        link.taken = 0
        with pytest.raises(StoreError, match=r"^store unreachable: "):
            store.list_apps()                      # the outage found, slowly (the link held it)
        assert link.taken == 1
        started, outcomes = threading.Event(), []

        def probe():
            started.set()
            try:
                store.list_apps()
            except StoreError as e:
                outcomes.append(str(e))
        prober = threading.Thread(target=probe)
        prober.start()
        started.wait()
        from tests.support import wait_for
        wait_for("the probe's connection", lambda: link.taken == 2, 10)
        for _ in range(5):                          # while it waits, the others do not
            with pytest.raises(StoreError, match=r"^store unreachable: .*; not tried again yet"):
                store.list_apps()
        assert link.taken == 2, "another call tried the server meanwhile"
        prober.join()
        assert outcomes and outcomes[0].startswith("store unreachable")
        link.cut = False                            # the server is back: the next call finds it
        assert store.list_apps() == []
        assert store.list_apps() == [] and link.taken >= 3
    finally:
        store.close()
        patient.close()
        link.close()
