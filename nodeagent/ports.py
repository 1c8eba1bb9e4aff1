"""Free TCP ports for instances, never the same one to two instances of this agent."""
import socket


class PortAllocator:
    """Hands out ports free on ``address`` (the kernel's pick for port 0) and remembers them."""

    def __init__(self, address):
        self.address = address
        self.taken = set()

    def allocate(self):
        """A port free now on the address and not held by another instance."""
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((self.address, 0))
                port = s.getsockname()[1]
            if port not in self.taken:
                self.taken.add(port)
                return port
        raise OSError(f"no free TCP port found on {self.address} after 100 tries")

    def reserve(self, port):
        """Hold ``port`` for an adopted instance that already listens on it."""
        self.taken.add(port)

    def release(self, port):
        """Give ``port`` back (no-op for None or a port not held)."""
        self.taken.discard(port)
