"""A yardstick for bench/router.py, not product code: the least an eventlet proxy can do.

Issue 16 set the router's goal against "a minimal single-process eventlet
relay (no routing, no headers)": what one eventlet process costs a request
before it does any HTTP at all. This is that relay, so that bench/router.py
can measure it in the same run as nginx and the router:

- accept a client on eventlet's green sockets, one green thread per client;
- open one connection to the one backend per client and keep it for the
  client's life (a kept-alive backend connection);
- per request: one read from the client, sent whole to the backend, one read
  of the answer, sent whole to the client.

It reads no head and so knows no message boundaries: it holds only while each
request and each answer arrives in one read, which is what the benchmark's
small GETs and 2-byte answers on loopback do. It is wrong for anything else
and is never to be used for anything but this measurement.

    python bench/relay_yardstick.py LISTEN_PORT BACKEND_PORT
"""
import socket
import sys
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402  (the filter must come first)


def relay(client, backend_address):
    """Relay ``client``'s requests to a connection of its own to the backend, a read at a time."""
    backend = eventlet.connect(backend_address)
    try:
        for sock in (client, backend):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            request = client.recv(65536)
            if not request:
                return
            backend.sendall(request)
            answer = backend.recv(65536)
            if not answer:
                return
            client.sendall(answer)
    except OSError:
        pass
    finally:
        backend.close()
        client.close()


def main():
    listen_port, backend_port = int(sys.argv[1]), int(sys.argv[2])
    listener = eventlet.listen(("127.0.0.1", listen_port), backlog=4096)
    pool = eventlet.GreenPool(10000)
    while True:
        client, _ = listener.accept()
        pool.spawn_n(relay, client, ("127.0.0.1", backend_port))


if __name__ == "__main__":
    main()
