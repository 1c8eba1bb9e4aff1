"""What `corral doctor` concludes from the facts of a host: one finding per check, with the fix of a problem.

Pure: :class:`Facts` is everything :mod:`corral.cli.doctor` gathered (in one
place, with all the I/O); each ``check_*`` function reads it and returns
findings, and :func:`diagnose` runs those of the host's role. A test builds
Facts by hand to play a machine that lacks something.

Roles: ``node`` (a server that runs ``corral agent``) and ``control-plane``
(one that runs a reconciler or a builder).
"""
import dataclasses

from corral import versions
from nodeagent import cgroups, disk

OK, PROBLEM, NOTE = "ok", "FAIL", "note"
CLOCK_SHARE = 3      # a peer's clock may be off by a third of the replay window: the rest is transit and margin


@dataclasses.dataclass(frozen=True)
class Finding:
    """One line of the report: ``status`` (ok, FAIL, note), what was checked, what was found, and the fix."""

    status: str
    check: str
    text: str
    fix: str = ""

    def line(self):
        """The finding as one line of the report."""
        return f"{self.status:<5} {self.check}: {self.text}" + (f"; fix: {self.fix}" if self.fix else "")


@dataclasses.dataclass(frozen=True)
class Peer:
    """A daemon (or the store) that this host must reach, and what it answered."""

    role: str                        # reconciler, bus, builder, store
    target: str                      # its URL, endpoint or (redacted) DSN
    error: str | None = None         # why it did not answer; None when it did
    version: str | None = None       # its release, when it says it
    clock_offset: float | None = None  # its clock minus ours, in seconds, when it says its time
    schema: int | None = None        # the store's schema version


@dataclasses.dataclass(frozen=True)
class Facts:
    """Everything the checks read, gathered by :func:`corral.cli.doctor.gather`."""

    role: str
    is_root: bool
    python: tuple
    kernel: str
    pidfd_error: str | None = None            # None: pidfd_open works
    mounts: str = ""                          # /proc/self/mounts
    controllers: dict = dataclasses.field(default_factory=dict)   # cgroup2 mount -> its cgroup.controllers
    mount_ns_error: str | None = None         # None: unshare(CLONE_NEWNS) works
    useradd: bool = True
    kernel_clock_synced: bool | None = None   # the kernel's NTP status (adjtimex), None when unknown
    disks: tuple = ()                         # (folder, free bytes, total bytes)
    ports: tuple = ()                         # (port, what it is for, who holds it or None)
    peers: tuple = ()                         # Peer
    replay_window: float = 30.0
    code_schema: int = 0                      # the store schema this corral migrates to
    version: str = ""                         # this corral's release


def _verdict(ok, check, good, bad, fix):
    """One finding of ``check``: ``good`` when ``ok``, else the problem ``bad`` with its ``fix``."""
    return [Finding(OK, check, good)] if ok else [Finding(PROBLEM, check, bad, fix)]


def check_python(f):
    """corral needs Python 3.11 or newer."""
    text = ".".join(map(str, f.python[:3]))
    return _verdict(tuple(f.python[:2]) >= (3, 11), "python", text, f"{text} is older than 3.11",
                    "install python3.11 or newer (Debian 12's python3 is 3.11) and make the venv with it")


def check_root(f):
    """A node's agent runs as root: app users, cgroups and private mounts need it."""
    return _verdict(f.is_root, "root", "the agent can make app users, cgroups and private mounts",
                    "not root: the agent here could not run apps as their own users nor limit them",
                    "run the agent as root (corral install-units --role agent does), and this check with sudo")


def check_pidfd(f):
    """The agent waits on each instance through a pidfd (Linux 5.3)."""
    return _verdict(f.pidfd_error is None, "pidfd", f"pidfd_open works (kernel {f.kernel})",
                    f"pidfd_open fails on kernel {f.kernel}: {f.pidfd_error}",
                    "run a Linux kernel of 5.3 or newer (Debian 11 and later have one)")


def check_cgroups(f):
    """Memory and pids limits need a memory and a pids controller, v2 or v1 (nodeagent/cgroups.py decides)."""
    if not f.is_root:   # the root check says what is wrong
        return [Finding(NOTE, "cgroups", "only root creates cgroups: checked when run as root")]
    found = []
    for controller in ("memory", "pids"):
        layout = cgroups.controller_layout(controller, f.mounts, f.controllers, f.is_root)
        if isinstance(layout, cgroups.Layout):
            found.append(Finding(OK, f"cgroup {controller}", f"cgroup {layout.kind} at {layout.mount}"))
        else:
            found.append(Finding(PROBLEM, f"cgroup {controller}", f"{controller} limits cannot be enforced: "
                                 f"{layout.reason}",
                                 f"boot with cgroup v2 and the {controller} controller (Debian 12's default; on "
                                 f"older systems systemd.unified_cgroup_hierarchy=1), or mount the v1 {controller} "
                                 f"hierarchy"))
    return found


def check_namespaces(f):
    """Each instance lives in a mount namespace of its own (nodeagent/sandbox.py: a private /tmp, the
    agent's folders and the key hidden); without one, apps share /tmp and file modes alone guard the rest."""
    return _verdict(f.mount_ns_error is None, "mount namespace",
                    "mount namespaces work: each app gets a private /tmp and sees none of the agent's folders",
                    f"a mount namespace is refused ({f.mount_ns_error}): apps would share /tmp, and file modes "
                    "alone would keep the agent's folders and the key from them",
                    "allow unshare for root: a kernel with CONFIG_NAMESPACES, and no seccomp profile or "
                    "container runtime forbidding it")


def check_useradd(f):
    """The agent makes one system user per app with useradd."""
    return _verdict(f.useradd, "useradd", "found: each app gets its own system user",
                    "not found: apps could not run as their own users", "apt-get install passwd")


def check_disks(f):
    """Each data folder needs room: the agent refuses images below 10 % or 2 GiB free (nodeagent/disk.py)."""
    found = []
    for folder, free, total in f.disks:
        text = f"{_gib(free)} free of {_gib(total)} at {folder}"
        if disk.under_pressure(free, total):
            found.append(Finding(PROBLEM, "disk", f"{text}, under the {_gib(disk.threshold(total))} corral keeps free",
                                 f"free space on {folder}'s file system or grow it"))
        else:
            found.append(Finding(OK, "disk", text))
    return found


def _gib(n):
    return f"{n / 1024 ** 3:.1f} GiB"


def check_ports(f):
    """The ports the daemons listen on are free, or held by corral itself."""
    found = []
    for port, what, holder in f.ports:
        if holder is None:
            found.append(Finding(OK, f"port {port}", f"free for {what}"))
        elif holder.startswith("corral "):
            found.append(Finding(OK, f"port {port}", f"held by {holder} ({what})"))
        else:
            found.append(Finding(PROBLEM, f"port {port}", f"taken by {holder}, where {what} must listen",
                                 "stop that program, or give corral another port (--api, --bus, --listen)"))
    return found


def check_peers(f):
    """Each daemon this host must reach answers, within the supported version skew."""
    found = []
    for p in f.peers:
        name = f"reach {p.role}"
        if p.error is not None:
            found.append(Finding(PROBLEM, name, f"{p.target} does not answer: {p.error}",
                                 f"start it (systemctl status corral-{_unit(p.role)}), check the address and that "
                                 f"the firewall lets this host in (docs/PRODUCTION.md, Layout)"))
        elif p.version and not versions.skew(f.version, p.version):
            found.append(Finding(PROBLEM, name, f"{p.target} runs corral {p.version}, more than one minor release "
                                 f"from this host's {f.version}", "upgrade one release at a time "
                                 "(docs/PRODUCTION.md, Upgrades)"))
        else:
            found.append(Finding(OK, name, p.target + (f" (corral {p.version})" if p.version else "")))
        if p.role == "store" and p.error is None and p.schema is not None:
            found += _schema(f, p)
    return found


def _unit(role):
    return {"bus": "reconciler", "store": "reconciler"}.get(role, role)


def _schema(f, p):
    if p.schema > f.code_schema:
        return [Finding(PROBLEM, "store schema", f"version {p.schema}, newer than this corral's {f.code_schema}: "
                        "a reconciler of this version serves but never leads", "upgrade corral on this host")]
    if p.schema == 0:
        return [Finding(NOTE, "store schema", "none yet: the first reconciler to start creates it")]
    if p.schema < f.code_schema:
        return [Finding(NOTE, "store schema", f"version {p.schema}; the first reconciler of this version to start "
                        f"migrates it to {f.code_schema} (back it up first: corral backup)")]
    return [Finding(OK, "store schema", f"version {p.schema}, this corral's")]


def check_clock(f):
    """Signed messages older than the replay window are refused: every clock must agree well within it."""
    limit = f.replay_window / CLOCK_SHARE
    offsets = [(p.target, p.clock_offset) for p in f.peers if p.clock_offset is not None]
    bad = [(t, o) for t, o in offsets if abs(o) > limit]
    if bad:
        return [Finding(PROBLEM, "clock", f"{t} is {o:+.1f} s from this host; messages are refused past "
                        f"{f.replay_window:g} s", "run NTP on every server (apt-get install chrony)") for t, o in bad]
    if offsets:
        worst = max(abs(o) for _, o in offsets)
        return [Finding(OK, "clock", f"within {worst:.1f} s of {len(offsets)} peer(s); {limit:g} s allowed")]
    if f.kernel_clock_synced is False:
        return [Finding(NOTE, "clock", "the kernel says no NTP keeps this clock and no peer was asked its time; "
                        "signed messages are refused past the replay window (30 s)",
                        "run NTP (apt-get install chrony), or pass --api so the clock is compared with a reconciler")]
    return [Finding(OK, "clock", "synchronized (the kernel's NTP status)")]


CHECKS = {
    "node": (check_python, check_root, check_pidfd, check_cgroups, check_namespaces, check_useradd, check_disks,
             check_peers, check_clock),
    "control-plane": (check_python, check_disks, check_ports, check_peers, check_clock),
}


def diagnose(facts):
    """Every finding of the checks of ``facts.role``, in order."""
    found = []
    for check in CHECKS[facts.role]:
        found += check(facts)
    return found


def report(findings):
    """``(text, exit code)``: one line per finding, then a summary; exit 1 when any is a problem."""
    problems = [x for x in findings if x.status == PROBLEM]
    lines = [x.line() for x in findings]
    lines.append(f"{len(problems)} problem(s) found" if problems else f"no problems found ({len(findings)} checks)")
    return "\n".join(lines), 1 if problems else 0
