"""A small datacentre on one machine: one Linux network namespace per host, joined by a bridge.

Each host is a namespace ``crl<tag>-<host>`` with loopback up and one veth
pair: ``<host side>`` inside the namespace with the host's address,
``<switch side>`` in the root namespace, enslaved to the bridge ``crl<tag>br``.
The bridge carries the operator's address (``.1``), so the test process can
reach every host without entering a namespace; nothing else is routed, and
every address is in one private /24 picked at random per run (``10.231.N.0``),
so two runs at once never meet.

Faults are made at the switch side of a host's link, as a switch port would:
``cut`` (link down), ``heal`` (link up and any qdisc removed), ``degrade``
(``tc netem`` loss and delay, when the kernel has ``sch_netem``) and
``throttle`` (a token bucket on both ends: slow, and lossy under bursts).

:func:`plan` is the pure part (names and addresses); :class:`Datacentre`
runs ``ip``/``tc`` and undoes everything in :meth:`Datacentre.destroy`.
"""
import dataclasses
import os
import random
import shutil
import subprocess

SUBNET_PREFIX = "10.231"


class Unavailable(RuntimeError):
    """This machine cannot build the datacentre (one sentence saying why)."""


@dataclasses.dataclass(frozen=True)
class Host:
    """One host of the datacentre: its namespace, address and link ends."""

    name: str
    netns: str
    address: str
    inside: str    # veth end in the host's namespace
    switch: str    # veth end on the bridge (root namespace)


def plan(tag: int, hosts: list) -> tuple:
    """``(bridge, operator address, {name: Host})`` for ``hosts`` on subnet ``10.231.<tag>.0/24``. Pure.

    Interface names stay within Linux's 15 characters: ``crl<tag:02x>`` plus
    the host's index.
    """
    if not 1 <= tag <= 254:
        raise ValueError(f"subnet tag {tag} is outside 1..254")
    if len(hosts) > 200 or len(set(hosts)) != len(hosts):
        raise ValueError("hosts must be at most 200 distinct names")
    base = f"{SUBNET_PREFIX}.{tag}"
    prefix = f"crl{tag:02x}"
    out = {}
    for i, name in enumerate(hosts):
        out[name] = Host(name=name, netns=f"{prefix}-{name}", address=f"{base}.{10 + i}",
                         inside=f"{prefix}h{i}", switch=f"{prefix}s{i}")
    return f"{prefix}br", f"{base}.1", out


def _ip(*args, check=True):
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and done.returncode:
        raise Unavailable(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")
    return done


def why_unavailable():
    """One sentence saying why the datacentre cannot be built here, or None when it can."""
    if os.geteuid() != 0:
        return "the cluster suite needs root (network namespaces, veth, bridge)"
    for tool in ("ip", "tc", "runuser"):
        if not shutil.which(tool):
            return f"the cluster suite needs `{tool}` (iproute2 / util-linux), which is not installed"
    probe = f"crlprobe{os.getpid() % 10000}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if done.returncode:
        return f"`ip netns add` does not work here: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def has_qdisc(*qdisc):
    """Whether this kernel takes ``tc qdisc add ... root <qdisc>`` (tried on a throwaway veth)."""
    probe = f"crlq{os.getpid() % 100000}"
    _ip("link", "add", probe, "type", "veth", "peer", "name", probe + "p")
    try:
        done = subprocess.run(["tc", "qdisc", "add", "dev", probe, "root", *qdisc], capture_output=True, text=True)
        return done.returncode == 0
    finally:
        _ip("link", "del", probe, check=False)


def has_netem():
    """Whether this kernel has the netem qdisc (loss and delay)."""
    return has_qdisc("netem", "delay", "1ms")


def tbf_args(rate_kbit, queue_ms):
    """The tc arguments of a token bucket: ``rate_kbit`` kbit/s, a burst of two full frames, and a
    queue of at most ``queue_ms`` of sending (a packet that would wait longer is dropped). Pure."""
    return ["tbf", "rate", f"{rate_kbit}kbit", "burst", "3028", "latency", f"{queue_ms}ms"]


def qdisc_counts(text):
    """``(sent, dropped)`` packets from ``tc -s qdisc show`` output of one root qdisc. Pure."""
    words = text.split()
    for i, word in enumerate(words):
        if word == "Sent" and i + 6 < len(words) and words[i + 5] == "(dropped":   # Sent B bytes P pkt (dropped D,
            return int(words[i + 3]), int(words[i + 6].rstrip(","))
    raise ValueError(f"no packet counts in tc's output: {text!r}")


def _used_tags():
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
    return {int(part.split(".")[2]) for part in out.split() if part.startswith(SUBNET_PREFIX + ".")}


class Datacentre:
    """The namespaces, links and bridge of ``hosts``; :meth:`destroy` removes them all."""

    def __init__(self, hosts):
        used = _used_tags()
        free = [t for t in range(1, 255) if t not in used]
        if not free:
            raise Unavailable(f"every subnet {SUBNET_PREFIX}.1-254.0/24 is in use")
        self.tag = random.choice(free)
        self.bridge, self.operator, self.hosts = plan(self.tag, list(hosts))
        self._made = []   # what to undo, newest last
        try:
            self._build()
        except BaseException:
            self.destroy()
            raise

    def _build(self):
        _ip("link", "add", self.bridge, "type", "bridge")
        self._made.append(("link", self.bridge))
        _ip("addr", "add", f"{self.operator}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for h in self.hosts.values():
            _ip("netns", "add", h.netns)
            self._made.append(("netns", h.netns))
            _ip("netns", "exec", h.netns, "ip", "link", "set", "lo", "up")
            _ip("link", "add", h.switch, "type", "veth", "peer", "name", h.inside)
            self._made.append(("link", h.switch))
            _ip("link", "set", h.inside, "netns", h.netns)
            _ip("link", "set", h.switch, "master", self.bridge)
            _ip("link", "set", h.switch, "up")
            _ip("netns", "exec", h.netns, "ip", "addr", "add", f"{h.address}/24", "dev", h.inside)
            _ip("netns", "exec", h.netns, "ip", "link", "set", h.inside, "up")

    def destroy(self):
        """Remove every namespace and link this datacentre made (processes in them are the caller's)."""
        while self._made:
            kind, name = self._made.pop()
            if kind == "netns":
                _ip("netns", "del", name, check=False)
            else:
                _ip("link", "del", name, check=False)

    def argv(self, host, argv):
        """``argv`` run inside ``host``'s namespace (``ip netns exec`` execs it: same pid)."""
        return ["ip", "netns", "exec", self.hosts[host].netns, *argv]

    def cut(self, host):
        """Unplug ``host``: its switch port goes down; nothing reaches it or leaves it."""
        _ip("link", "set", self.hosts[host].switch, "down")

    def heal(self, host):
        """Plug ``host`` back in and remove any loss, delay or rate limit on its link (both ends)."""
        subprocess.run(["tc", "qdisc", "del", "dev", self.hosts[host].switch, "root"], capture_output=True)
        subprocess.run(self.argv(host, ["tc", "qdisc", "del", "dev", self.hosts[host].inside, "root"]),
                       capture_output=True)
        _ip("link", "set", self.hosts[host].switch, "up")

    def throttle(self, host, rate_kbit, queue_ms):
        """Make ``host``'s link slow both ways: ``rate_kbit`` kbit/s, and packets that would queue for
        more than ``queue_ms`` dropped (a token bucket, tbf: where the kernel has no netem, a slow
        and, under bursts, lossy link is the fault it can make)."""
        args = tbf_args(rate_kbit, queue_ms)
        for argv in (["tc", "qdisc", "replace", "dev", self.hosts[host].switch, "root", *args],
                     self.argv(host, ["tc", "qdisc", "replace", "dev", self.hosts[host].inside, "root", *args])):
            done = subprocess.run(argv, capture_output=True, text=True)
            if done.returncode:
                raise Unavailable(f"tc tbf on {host}'s link failed: {done.stderr.strip()}")

    def link_counts(self, host):
        """``(sent, dropped)`` packets of the qdiscs on both ends of ``host``'s link."""
        outs = [subprocess.run(argv, capture_output=True, text=True, check=True).stdout for argv in (
            ["tc", "-s", "qdisc", "show", "dev", self.hosts[host].switch, "root"],
            self.argv(host, ["tc", "-s", "qdisc", "show", "dev", self.hosts[host].inside, "root"]))]
        counts = [qdisc_counts(out) for out in outs]
        return sum(c[0] for c in counts), sum(c[1] for c in counts)

    def degrade(self, host, loss_percent, delay_ms):
        """Drop ``loss_percent`` of the packets sent to ``host`` and delay them by ``delay_ms``."""
        done = subprocess.run(["tc", "qdisc", "replace", "dev", self.hosts[host].switch, "root", "netem",
                               "loss", f"{loss_percent}%", "delay", f"{delay_ms}ms"],
                              capture_output=True, text=True)
        if done.returncode:
            raise Unavailable(f"tc netem on {host}'s link failed: {done.stderr.strip()}")
