"""The router's connections (router/connections.py) on real sockets, in one green process: what
arrives in pieces is read whole, a peer that leaves mid-answer reads as an end, each wait ends at
its own deadline, readiness nobody waits for costs nothing, and a closed connection leaves
nothing behind in the hub."""
import corral.green

corral.green.patch()

import socket  # noqa: E402
import time  # noqa: E402

import eventlet  # noqa: E402
import pytest  # noqa: E402
from eventlet import hubs  # noqa: E402

from router.bodies import BACKEND, Reader, SideError  # noqa: E402
from router.connections import Conn, Outbox, connect  # noqa: E402
from router.pool import Pool  # noqa: E402
from corral.routetable import Backend  # noqa: E402
from tests.support import wait_for  # noqa: E402


@pytest.fixture
def pair():
    """``(conn, peer)``: a Conn connected to a green socket the test plays the other end with."""
    listener = eventlet.listen(("127.0.0.1", 0))
    conn = connect(listener.getsockname(), 2.0)
    peer, _ = listener.accept()
    listener.close()
    yield conn, peer
    conn.close()
    peer.close()


def registered(conn):
    """True when the hub listens for ``conn``'s reads."""
    hub = hubs.get_hub()
    return conn.fileno in hub.listeners[hub.READ]


def pending_timers(conn):
    """How many of the hub's timers that have not fired or been cancelled call back ``conn``."""
    hub = hubs.get_hub()
    timers = [t for _, t in hub.timers] + [t for _, t in hub.next_timers]
    return sum(1 for t in timers if not t.called and getattr(t.tpl[0], "__self__", None) is conn)


def test_closing_a_connection_another_green_thread_waits_on_wakes_it(pair):
    conn, _ = pair
    waiting = eventlet.spawn(conn.recv, 10, 30.0)
    eventlet.sleep(0.05)
    started = time.monotonic()
    conn.close()
    with pytest.raises(OSError):
        waiting.wait()
    assert time.monotonic() - started < 1.0


def later(seconds, fn, *args):
    eventlet.spawn_after(seconds, fn, *args)


def test_an_answer_split_across_reads_is_read_whole(pair):
    conn, peer = pair
    pieces = [b"HTTP/1.1 200 OK\r\nCont", b"ent-Length: 5\r", b"\n\r", b"\nhel", b"lo"]
    for i, piece in enumerate(pieces):
        later(0.02 * (i + 1), peer.sendall, piece)
    reader = Reader(conn, BACKEND)
    assert reader.until_blank_line(65536, 2.0) == b"HTTP/1.1 200 OK\r\nContent-Length: 5"
    body = b""
    while len(body) < 5:
        body += reader.take(5 - len(body), 2.0)
    assert body == b"hello"


def test_a_peer_that_closes_mid_answer_reads_as_an_end_not_a_hang(pair):
    conn, peer = pair
    peer.sendall(b"HTTP/1.1 200 OK\r\nContent-Le")
    later(0.05, peer.close)
    reader = Reader(conn, BACKEND)
    started = time.monotonic()
    with pytest.raises(SideError) as e:
        reader.until_blank_line(65536, 5.0)
    assert e.value.kind == "closed" and e.value.any_bytes
    assert time.monotonic() - started < 2.0


def test_a_head_with_no_end_in_sight_is_refused_at_the_limit(pair):
    conn, peer = pair
    peer.sendall(b"HTTP/1.1 200 OK\r\n" + b"X: " + b"y" * 70000)
    with pytest.raises(SideError) as e:
        Reader(conn, BACKEND).until_blank_line(65536, 2.0)
    assert e.value.kind == "malformed"


def test_each_wait_ends_at_its_own_deadline_not_an_earlier_waits(pair):
    conn, peer = pair
    peer.sendall(b"a")
    assert conn.recv(10, 30.0) == b"a"       # the connection's timer now points 30 s ahead
    started = time.monotonic()
    with pytest.raises(socket.timeout):
        conn.recv(10, 0.2)                    # a shorter wait must not wait for that timer
    assert 0.15 < time.monotonic() - started < 1.5
    later(0.3, peer.sendall, b"b")            # and a longer one after it is not cut short by its timer
    assert conn.recv(10, 1.0) == b"b"


def test_a_wait_whose_bytes_come_in_time_is_not_timed_out_later(pair):
    conn, peer = pair
    for _ in range(3):                         # each wait re-arms or reuses the one timer
        later(0.05, peer.sendall, b"x")
        assert conn.recv(10, 0.2) == b"x"
    eventlet.sleep(0.3)                        # the timer fires with nobody waiting: nothing happens
    later(0.05, peer.sendall, b"y")
    assert conn.recv(10, 0.5) == b"y"


def test_readiness_nobody_waits_for_stops_the_listening_and_costs_no_cpu(pair):
    conn, peer = pair
    later(0.01, peer.sendall, b"a")
    assert conn.recv(10, 1.0) == b"a"
    assert registered(conn)                    # kept between waits: the next wait costs no epoll_ctl
    peer.close()                               # an end nobody reads (an idle pooled connection)
    cpu = time.process_time()
    eventlet.sleep(0.3)
    assert time.process_time() - cpu < 0.1     # a level-triggered poll that kept calling would spin
    assert not registered(conn)
    assert conn.recv(10, 1.0) == b""           # and the end is still there for the next read


def test_a_read_that_waits_first_finds_bytes_already_there_and_bytes_to_come(pair):
    conn, peer = pair
    peer.sendall(b"a")
    eventlet.sleep(0.05)                       # there before the read, and nobody listening yet
    assert not registered(conn)
    assert conn.recv(10, 1.0, wait_first=True) == b"a"
    peer.sendall(b"b")
    eventlet.sleep(0.05)                       # there before the read, the connection listened to
    assert conn.recv(10, 1.0, wait_first=True) == b"b"
    later(0.05, peer.sendall, b"c")
    assert conn.recv(10, 1.0, wait_first=True) == b"c"
    with pytest.raises(socket.timeout):
        conn.recv(10, 0.1, wait_first=True)
    peer.close()
    assert conn.recv(10, 1.0, wait_first=True) == b""


def test_a_closed_connection_leaves_no_listener_and_no_timer(pair):
    conn, peer = pair
    later(0.01, peer.sendall, b"a")
    assert conn.recv(10, 60.0) == b"a"
    assert pending_timers(conn) == 1           # one timer for the connection, 60 s ahead
    conn.close()
    assert not registered(conn)
    assert pending_timers(conn) == 0
    conn.close()                               # twice is harmless
    with pytest.raises(OSError):
        conn.recv(10, 0.1)


def test_a_reader_and_a_writer_share_one_connection(pair):
    """Both directions at once, as an upgraded connection's two pumps do, with more bytes than
    the socket buffers hold (the writer has to wait for room)."""
    conn, peer = pair
    data = b"z" * (8 << 20)
    got = []

    def drain():
        total = 0
        while total < len(data):
            chunk = peer.recv(1 << 16)
            assert chunk
            total += len(chunk)
        peer.sendall(b"done")
        got.append(total)
    reading = eventlet.spawn(conn.recv, 10, 10.0)   # waits on the same connection meanwhile
    drainer = eventlet.spawn(drain)
    conn.send_all(data, 10.0)
    drainer.wait()
    assert got == [len(data)]
    assert reading.wait() == b"done"


def test_a_send_to_a_peer_that_reads_nothing_times_out(pair):
    conn, _ = pair
    started = time.monotonic()
    with pytest.raises(socket.timeout):
        conn.send_all(b"z" * (32 << 20), 0.3)
    assert time.monotonic() - started < 5.0


def test_a_pooled_connection_its_backend_closed_is_not_handed_out(pair):
    conn, peer = pair
    backend = Backend("b1", "127.0.0.1", 1)
    pool = Pool(4)
    pool.put(backend, conn)
    peer.close()
    eventlet.sleep(0.05)
    assert pool.get(backend, peek=True) is None
    assert conn.closed and not registered(conn)


def test_a_conn_wraps_an_accepted_green_socket():
    listener = eventlet.listen(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    green, _ = listener.accept()
    conn = Conn(green)
    try:
        client.sendall(b"ping")
        assert conn.recv(10, 1.0) == b"ping"
        conn.send_all(b"pong", 1.0)
        assert client.recv(10) == b"pong"
    finally:
        conn.close()
        client.close()
        listener.close()


# -- writes held for the round (send_soon and the hub's outbox) ----------------------------------------


def waiting_bytes(peer):
    """What ``peer`` (a green socket) can read right now without waiting, b"" when nothing."""
    try:
        return peer.fd.recv(1 << 20, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return b""


@pytest.fixture
def two_pairs():
    listener = eventlet.listen(("127.0.0.1", 0))
    pairs = []
    for _ in range(2):
        conn = connect(listener.getsockname(), 2.0)
        peer, _ = listener.accept()
        pairs.append((conn, peer))
    listener.close()
    yield pairs
    for conn, peer in pairs:
        conn.close()
        peer.close()


def test_writes_held_in_a_round_go_out_together_once_the_writer_waits(two_pairs):
    """Nothing is written while the green thread that held the writes runs; both are written
    before its wait for an answer returns."""
    (a, peer_a), (b, peer_b) = two_pairs
    a.send_soon(b"to a", 1.0)
    b.send_soon(b"to b", 1.0)
    # (a write on loopback is in the peer's buffer when send returns: none was made yet)
    assert waiting_bytes(peer_a) == b"" and waiting_bytes(peer_b) == b""

    def answer(peer, what):
        assert peer.recv(10) == what
        peer.sendall(b"ok")
    answering = [eventlet.spawn(answer, peer_a, b"to a"), eventlet.spawn(answer, peer_b, b"to b")]
    assert a.recv(10, 2.0) == b"ok"
    assert b.recv(10, 2.0) == b"ok"
    for g in answering:
        g.wait()


def test_a_held_write_too_big_for_the_kernel_is_finished_by_the_wait_for_its_answer(pair):
    conn, peer = pair
    conn.raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    data = bytes(range(256)) * (1 << 12)   # 1 MiB, far more than the buffers hold, in an order the peer checks

    def read_all_then_answer():
        got = bytearray()
        while len(got) < len(data):
            chunk = peer.recv(1 << 16)
            assert chunk
            got += chunk
        peer.sendall(b"all here")
        return bytes(got)
    reading = eventlet.spawn(read_all_then_answer)
    conn.send_soon(data, 10.0)
    assert conn.recv(100, 10.0) == b"all here"
    assert reading.wait() == data


def test_a_write_after_a_held_one_comes_after_it(pair):
    conn, peer = pair
    conn.send_soon(b"first ", 1.0)
    conn.send_soon(b"second ", 1.0)
    conn.send_all(b"third", 1.0)
    eventlet.sleep(0)   # the outbox's turn: nothing is left for it
    got = b""
    while len(got) < len(b"first second third"):
        got += peer.recv(100)
    assert got == b"first second third"
    assert waiting_bytes(peer) == b""


def test_closing_a_connection_sends_what_it_still_holds(pair):
    conn, peer = pair
    conn.send_soon(b"last answer", 1.0)
    conn.close()
    got = b""
    while True:
        chunk = peer.recv(100)
        if not chunk:
            break
        got += chunk
    assert got == b"last answer"


def test_a_held_write_nobody_waits_to_finish_shuts_the_connection(pair):
    """A write the kernel cannot take whole, held for a connection nobody reads (a backend
    that answered before it was asked, say): the connection is shut, not left half-written
    with a green thread spinning on it."""
    conn, peer = pair
    conn.raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    conn.send_soon(b"z" * (16 << 20), 1.0)
    eventlet.sleep(0)   # the outbox's turn
    eventlet.sleep(0)
    total = 0
    while True:
        chunk = peer.recv(1 << 16)
        if not chunk:
            break
        total += len(chunk)
    assert 0 < total < 16 << 20
    with pytest.raises(OSError):
        conn.send_all(b"more", 1.0)


def test_idle_connections_belong_to_an_instance_not_to_its_address(pair):
    """A new instance at the address and port of one that is gone does not get the old one's
    idle connections: they are closed when the table no longer has the old one."""
    conn, _ = pair
    old, new = Backend("i1", "127.0.0.1", 8000), Backend("i2", "127.0.0.1", 8000)
    pool = Pool(4)
    pool.put(old, conn)
    assert pool.get(new) is None
    pool.keep_only({new.id})
    assert pool.idle_count() == 0
    wait_for("the old instance's connection closed", lambda: conn.closed, timeout=2)


def test_the_idle_connections_of_a_replaced_table_close_a_batch_at_a_time_between_requests():
    """3,000 backends replaced at once: their idle connections leave the pool at once, and are
    closed a batch at a time with the hub's other work in between, not in one 80 ms stretch."""
    closed = []

    class Idle:
        def __init__(self, i):
            self.i = i

        def close(self):
            closed.append(self.i)
    pool = Pool(4)
    for i in range(250):
        pool.put(Backend(f"i{i}", "127.0.0.1", 8000 + i), Idle(i))
    pool.keep_only(set())
    assert pool.idle_count() == 0 and closed == []
    eventlet.sleep(0)   # one turn of the hub: one batch
    assert 0 < len(closed) < 250
    wait_for("every one closed", lambda: sorted(closed) == list(range(250)), timeout=2)


def test_an_error_out_of_one_held_write_leaves_the_others_for_the_next_turn():
    made = []

    class Held:
        def __init__(self, name, fails=False):
            self.name, self.fails = name, fails

        def _send_held(self):
            made.append(self.name)
            if self.fails:
                raise RuntimeError("a green thread ended with an error")
    box = Outbox(hubs.get_hub())
    for held in (Held("a"), Held("b", fails=True), Held("c"), Held("d")):
        box.hold(held)
    with pytest.raises(RuntimeError):
        box.send()
    assert made == ["a", "b"] and [h.name for h in box.conns] == ["c", "d"]
    box.send()
    assert made == ["a", "b", "c", "d"]
