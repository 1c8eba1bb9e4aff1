"""The cgroup filesystem writes behind memory limits: a thin shell over :mod:`nodeagent.cgroups`.

:meth:`MemoryCgroups.probe` reads the mounts and decides the layout;
:meth:`MemoryCgroups.create` makes an instance's cgroup with its limit
before the spawn (the app's process joins it before exec, see
:mod:`nodeagent.logshim`); :meth:`MemoryCgroups.oom_kills` reads whether the
kernel killed in it; :meth:`MemoryCgroups.remove` deletes it once the
instance's processes are gone. A write the kernel refuses leaves the instance
without a limit and the node reporting ``MemoryLimitsNotEnforced``, never a
failed instance.
"""
import errno
import logging
import os
import signal
import time

from nodeagent import cgroups

log = logging.getLogger(__name__)

REMOVE_TRIES = 20      # rmdir attempts of a busy cgroup (its last processes being reaped)
REMOVE_PAUSE = 0.05    # seconds between them


def _write(path, value):
    with open(path, "w", encoding="ascii") as f:
        f.write(value)


def _read(path):
    try:
        with open(path, encoding="ascii") as f:
            return f.read()
    except OSError:
        return None


class MemoryCgroups:
    """Memory limits of this node's instances; ``reason`` says why they are not enforced (None when they are)."""

    def __init__(self, layout):
        self.layout = layout if isinstance(layout, cgroups.Layout) else None
        self.reason = layout.reason if isinstance(layout, cgroups.Unsupported) else None

    @classmethod
    def probe(cls, mounts_path="/proc/self/mounts", is_root=None):
        """Read the node's mounts and cgroup2 controllers, decide the layout and prepare the parent."""
        text = _read(mounts_path) or ""
        controllers = {point: _read(os.path.join(point, "cgroup.controllers"))
                       for point in cgroups.cgroup2_mounts(text)}
        found = cls(cgroups.memory_layout(text, controllers, os.geteuid() == 0 if is_root is None else is_root))
        found.setup()
        return found

    @property
    def enforced(self):
        """Whether instances with a memory request get a hard limit."""
        return self.layout is not None and self.reason is None

    def _refused(self, what, error):
        self.reason = f"the kernel refused {what} ({error.strerror or error})"
        log.error("memory limits are not enforced: %s", self.reason)

    def setup(self):
        """Create the parent cgroup and enable the memory controller for its children (v2)."""
        if self.layout is None:  # a warning where root was meant to enforce them; else the chosen setup
            (log.warning if os.geteuid() == 0 else log.info)("memory limits are not enforced: %s", self.reason)
            return
        try:
            os.makedirs(self.layout.parent, exist_ok=True)
            for path, value in cgroups.parent_writes(self.layout):
                _write(path, value)
        except OSError as e:
            self._refused(f"to prepare {self.layout.parent}", e)

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

    def oom_kills(self, instance_id):
        """How many processes the kernel killed in the instance's cgroup for want of memory (0 without one)."""
        if self.layout is None:
            return 0
        folder = cgroups.instance_dir(self.layout, instance_id)
        return cgroups.oom_kills(_read(os.path.join(folder, self.layout.events_file)))

    def remove(self, instance_id):
        """Delete the instance's cgroup: SIGKILL what is still in it (a process that left the group
        by setsid), then rmdir. Returns False when it is still there after the tries."""
        if self.layout is None:
            return True
        folder = cgroups.instance_dir(self.layout, instance_id)
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
