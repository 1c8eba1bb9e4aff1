"""The cgroup filesystem writes behind memory and process-count limits: a thin shell over :mod:`nodeagent.cgroups`.

:meth:`MemoryCgroups.probe` reads the mounts and decides the layouts (memory,
and pids); :meth:`MemoryCgroups.create_all` makes an instance's cgroups
before the spawn: the memory one with its limit when it has a request, the
pids one with ``pids.max`` always (the same folder on cgroup v2), and the
app's process joins them before exec (see :mod:`nodeagent.logshim`);
:meth:`MemoryCgroups.oom_kills` reads whether the kernel killed in it;
:meth:`MemoryCgroups.remove` deletes them once the instance's processes are
gone. A write the kernel refuses leaves the instance without that limit and
the node reporting ``MemoryLimitsNotEnforced`` (memory) or the reason in the
agent's log (pids), never a failed instance.

The pids limit is :data:`nodeagent.cgroups.DEFAULT_PIDS_MAX`, or the agent
process's ``CORRAL_AGENT_PIDS_MAX`` environment variable when set.
"""
import errno
import logging
import os
import signal
import time

from nodeagent import cgroups

log = logging.getLogger(__name__)

PIDS_MAX_ENV = "CORRAL_AGENT_PIDS_MAX"

REMOVE_TRIES = 20      # rmdir attempts of a busy cgroup (its last processes being reaped)
REMOVE_PAUSE = 0.05    # seconds between them


def _write(path, value):
    with open(path, "w", encoding="ascii") as f:
        f.write(value)


def _read(path):
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _process_usage(pids):
    """``(cpu seconds, resident bytes)`` summed over ``pids`` (those gone meanwhile left out)."""
    ticks, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    cpu = rss = 0
    for pid in pids:
        got = cgroups.process_usage(_read(f"/proc/{pid}/stat"), _read(f"/proc/{pid}/statm"), ticks, page)
        if got is not None:
            cpu, rss = cpu + got[0], rss + got[1]
    return cpu, rss


class MemoryCgroups:
    """Memory limits of this node's instances; ``reason`` says why they are not enforced (None when they are)."""

    def __init__(self, layout, pids=None, pids_max=cgroups.DEFAULT_PIDS_MAX):
        self.layout = layout if isinstance(layout, cgroups.Layout) else None
        self.reason = layout.reason if isinstance(layout, cgroups.Unsupported) else None
        self.pids_layout = pids if isinstance(pids, cgroups.Layout) else None
        self.pids_reason = pids.reason if isinstance(pids, cgroups.Unsupported) else None
        self.pids_max = pids_max

    @classmethod
    def probe(cls, mounts_path="/proc/self/mounts", is_root=None, environ=os.environ):
        """Read the node's mounts and cgroup2 controllers, decide the layouts and prepare the parents."""
        text = _read(mounts_path) or ""
        controllers = {point: _read(os.path.join(point, "cgroup.controllers"))
                       for point in cgroups.cgroup2_mounts(text)}
        root = os.geteuid() == 0 if is_root is None else is_root
        try:
            limit = cgroups.pids_max(environ.get(PIDS_MAX_ENV))
        except ValueError as e:
            log.error("%s=%r is not a pids limit (%s): %d it is", PIDS_MAX_ENV, environ.get(PIDS_MAX_ENV), e,
                      cgroups.DEFAULT_PIDS_MAX)
            limit = cgroups.DEFAULT_PIDS_MAX
        found = cls(cgroups.memory_layout(text, controllers, root), cgroups.pids_layout(text, controllers, root), limit)
        found.setup()
        return found

    @property
    def enforced(self):
        """Whether instances with a memory request get a hard limit."""
        return self.layout is not None and self.reason is None

    def _refused(self, what, error):
        self.reason = f"the kernel refused {what} ({error.strerror or error})"
        log.error("memory limits are not enforced: %s", self.reason)

    @property
    def pids_enforced(self):
        """Whether every instance gets a ``pids.max``."""
        return self.pids_layout is not None and self.pids_reason is None

    def _pids_refused(self, what, error):
        self.pids_reason = f"the kernel refused {what} ({error.strerror or error})"
        log.error("pids limits are not enforced: %s", self.pids_reason)

    def setup(self):
        """Create the parent cgroups and enable the memory and pids controllers for their children (v2;
        one write of ``+memory +pids`` where both are on the same mount)."""
        if self.layout is None:  # a warning where root was meant to enforce them; else the chosen setup
            (log.warning if os.geteuid() == 0 else log.info)("memory limits are not enforced: %s", self.reason)
        if self.pids_layout is None:
            (log.warning if os.geteuid() == 0 else log.info)("pids limits are not enforced: %s", self.pids_reason)
        wanted = {}   # subtree_control path -> [(controller, its "+name")], in order
        for layout, controller in ((self.layout, "memory"), (self.pids_layout, "pids")):
            if layout is None:
                continue
            try:
                os.makedirs(layout.parent, exist_ok=True)
            except OSError as e:
                (self._refused if controller == "memory" else self._pids_refused)(f"to prepare {layout.parent}", e)
                continue
            for path, value in cgroups.parent_writes(layout, controller):
                wanted.setdefault(path, []).append((controller, value))
        for path, asks in wanted.items():
            try:
                _write(path, " ".join(value for _, value in asks))
                continue
            except OSError:
                pass
            for controller, value in asks:   # which one the kernel refuses
                try:
                    _write(path, value)
                except OSError as e:
                    if controller == "memory" and self.reason is None:
                        self._refused(f"to prepare {self.layout.parent}", e)
                    elif controller == "pids" and self.pids_reason is None:
                        self._pids_refused(f"to prepare {self.pids_layout.parent}", e)

    def create(self, instance_id, limit):
        """Make the cgroup of ``instance_id`` with a hard limit of ``limit`` bytes; its ``cgroup.procs``
        path for the app to join, or None when limits are not enforced (or a write was refused)."""
        if not self.enforced or not limit:
            return None
        folder = cgroups.instance_dir(self.layout, instance_id)
        try:
            os.makedirs(folder, exist_ok=True)
            for name, value in cgroups.limit_writes(self.layout, limit, set(os.listdir(folder))):
                _write(os.path.join(folder, name), value)
        except OSError as e:
            self._refused(f"the memory limit of instance {instance_id} in {folder}", e)
            self.remove(instance_id)
            return None
        return os.path.join(folder, "cgroup.procs")

    def create_pids(self, instance_id):
        """Make the cgroup of ``instance_id`` that caps its processes at :attr:`pids_max` (the memory
        cgroup's folder on v2); its ``cgroup.procs`` path, or None when pids limits are not enforced."""
        if not self.pids_enforced:
            return None
        folder = cgroups.instance_dir(self.pids_layout, instance_id)
        try:
            os.makedirs(folder, exist_ok=True)
            for name, value in cgroups.pids_writes(self.pids_max):
                _write(os.path.join(folder, name), value)
        except OSError as e:
            self._pids_refused(f"the pids limit of instance {instance_id} in {folder}", e)
            if self.layout is None or folder != cgroups.instance_dir(self.layout, instance_id):
                self._remove_folder(folder)
            return None
        return os.path.join(folder, "cgroup.procs")

    def create_all(self, instance_id, limit):
        """Every cgroup of a run of ``instance_id``: the memory one when ``limit`` (bytes) asks for one
        (:meth:`create`), the pids one always (:meth:`create_pids`); their ``cgroup.procs`` paths,
        each once, for the app to join before exec."""
        out = []
        for procs in (self.create(instance_id, limit), self.create_pids(instance_id)):
            if procs is not None and procs not in out:
                out.append(procs)
        return out

    def existing(self, instance_id, limit):
        """The ``cgroup.procs`` paths of the cgroups a run of ``instance_id`` is in now (the memory
        one when ``limit`` asked for one, the pids one), each once and only where its folder
        exists: what an exec check or session of the instance joins."""
        out = []
        for layout in ((self.layout if limit else None), self.pids_layout):
            if layout is None:
                continue
            try:
                folder = cgroups.instance_dir(layout, instance_id)
            except ValueError:   # an id that cannot name a cgroup never had one
                continue
            procs = os.path.join(folder, "cgroup.procs")
            if procs not in out and os.path.isdir(folder):
                out.append(procs)
        return out

    def oom_kills(self, instance_id):
        """How many processes the kernel killed in the instance's cgroup for want of memory (0 without one)."""
        if self.layout is None:
            return 0
        folder = cgroups.instance_dir(self.layout, instance_id)
        return cgroups.oom_kills(_read(os.path.join(folder, self.layout.events_file)))

    def usage(self, instance_id):
        """``(memory bytes, cpu seconds)`` the kernel counts for the instance now, each None when it
        cannot say: memory from its memory cgroup (else the resident sum of the processes in its
        pids cgroup), CPU from the v2 ``cpu.stat`` (else the sum of its processes' times, which
        leaves out children that exited unwaited)."""
        memory = cpu = None
        folders = [cgroups.instance_dir(layout, instance_id) for layout in (self.layout, self.pids_layout)
                   if layout is not None]
        if self.layout is not None:
            text = _read(os.path.join(folders[0], cgroups.memory_usage_file(self.layout)))
            memory = int(text) if text and text.strip().isdigit() else None
        for folder in folders:
            cpu = cpu if cpu is not None else cgroups.cpu_seconds(_read(os.path.join(folder, "cpu.stat")))
        if memory is None or cpu is None:
            procs = set()
            for folder in folders:
                procs.update((_read(os.path.join(folder, "cgroup.procs")) or "").split())
            summed = _process_usage(procs) if procs else None
            if summed is not None:
                cpu = summed[0] if cpu is None else cpu
                memory = summed[1] if memory is None else memory
        return memory, cpu

    def remove(self, instance_id):
        """Delete the instance's cgroups (memory, pids): SIGKILL what is still in them (a process that
        left the group by setsid), then rmdir. Returns False when one is still there after the tries."""
        folders = []
        for layout in (self.layout, self.pids_layout):
            if layout is not None and cgroups.instance_dir(layout, instance_id) not in folders:
                folders.append(cgroups.instance_dir(layout, instance_id))
        return all([self._remove_folder(folder) for folder in folders])

    def _remove_folder(self, folder):
        """rmdir one cgroup folder, SIGKILLing what is left in it between tries; False when it stays."""
        for _ in range(REMOVE_TRIES):
            try:
                os.rmdir(folder)
                return True
            except FileNotFoundError:
                return True
            except OSError as e:
                if e.errno != errno.EBUSY:
                    log.error("cgroup %s could not be removed (%s)", folder, e.strerror)
                    return False
            for pid in (_read(os.path.join(folder, "cgroup.procs")) or "").split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(REMOVE_PAUSE)
        log.error("cgroup %s is still busy; it stays until its processes are gone", folder)
        return False
