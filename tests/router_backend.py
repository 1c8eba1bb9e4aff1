"""A real HTTP/1.1 backend for the router's tests: `python -m tests.router_backend PORT NAME`.

Threaded, keep-alive, and written against the socket so that it can misbehave on
purpose. Paths:

- ``/hello``: ``hello from NAME`` (Content-Length)
- ``/headers``: the request's headers as JSON
- ``/echo`` (POST/PUT): reads the body as it comes (Content-Length or chunked) and
  answers its length and sha256, never holding it whole
- ``/chunked?n=N&size=S``: N chunks of S bytes
- ``/big?mb=N``: N MiB with Content-Length, written a piece at a time
- ``/until-close``: a body that ends when the connection closes (no length, no chunks)
- ``/slow?s=S``: answers after S seconds
- ``/reset``: closes the connection with RST, answering nothing (every path, when
  NAME starts with ``resetting``)
- ``/count``: how many requests this backend has seen
- any request with ``Upgrade: echo``: 101, then every byte is echoed back
"""
import hashlib
import json
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.parse

COUNT = {"n": 0}


def read_head(rfile):
    line = rfile.readline(65537)
    if not line:
        return None
    headers = {}
    while True:
        h = rfile.readline(65537)
        if h in (b"\r\n", b"\n", b""):
            break
        name, _, value = h.decode("latin-1").partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    method, target, _ = line.decode("latin-1").split(" ", 2)
    return method, target, headers


def body_pieces(rfile, headers):
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int(rfile.readline().split(b";")[0], 16)
            if size == 0:
                while rfile.readline() not in (b"\r\n", b""):
                    pass
                return
            left = size
            while left:
                piece = rfile.read(min(left, 65536))
                left -= len(piece)
                yield piece
            rfile.readline()
    else:
        left = int(headers.get("content-length", "0"))
        while left:
            piece = rfile.read(min(left, 65536))
            if not piece:
                return
            left -= len(piece)
            yield piece


class Handler(socketserver.StreamRequestHandler):
    name = "backend"

    def send(self, status, body, extra=""):
        if isinstance(body, str):
            body = body.encode()
        self.wfile.write(f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body)

    def handle(self):
        while True:
            head = read_head(self.rfile)
            if head is None:
                return
            COUNT["n"] += 1
            method, target, headers = head
            url = urllib.parse.urlsplit(target)
            q = dict(urllib.parse.parse_qsl(url.query))
            if headers.get("upgrade", "").lower() == "echo":
                self.wfile.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
                while True:
                    data = self.connection.recv(65536)
                    if not data:
                        return
                    self.connection.sendall(data)
            if url.path == "/reset" or self.name.startswith("resetting"):
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                return
            if url.path == "/echo":
                digest, n = hashlib.sha256(), 0
                for piece in body_pieces(self.rfile, headers):
                    digest.update(piece)
                    n += len(piece)
                self.send("200 OK", json.dumps({"length": n, "sha256": digest.hexdigest(), "from": self.name}))
            elif url.path == "/headers":
                self.send("200 OK", json.dumps(headers), "Content-Type: application/json\r\n")
            elif url.path == "/chunked":
                self.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                size = int(q.get("size", 10))
                for i in range(int(q.get("n", 3))):
                    self.wfile.write(b"%x\r\n%s\r\n" % (size, bytes([97 + i % 26]) * size))
                self.wfile.write(b"0\r\n\r\n")
            elif url.path == "/big":
                total = int(q.get("mb", 1)) * 1024 * 1024
                self.wfile.write(f"HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n".encode())
                piece = b"x" * 65536
                for _ in range(total // len(piece)):
                    self.wfile.write(piece)
            elif url.path == "/until-close":
                self.wfile.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close from " + self.name.encode())
                return
            elif url.path == "/slow":
                time.sleep(float(q.get("s", 1)))
                self.send("200 OK", "slow")
            elif url.path == "/count":
                self.send("200 OK", str(COUNT["n"]))
            else:
                self.send("200 OK", f"hello from {self.name}")
            self.wfile.flush()


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def main():
    port, Handler.name = int(sys.argv[1]), sys.argv[2]
    server = Server(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
