"""Becoming an app's identity, for the commands an agent runs beside an instance's own process.

An exec health check and a ``corral exec`` session are the app's code (a spec
author's argv, whatever the user types): they run as the instance's user with
no supplementary groups and ``PR_SET_NO_NEW_PRIVS`` set, so a root agent's
capabilities are all gone (``setuid`` away from uid 0 clears the permitted
and effective sets) and no setuid program gives one back. Where apps run as
the agent's own user (the agent is not root, or app users are off) they keep
that user and still get ``no_new_privs``.

:func:`become` is the step itself, made to be shared: the capture process
(:mod:`nodeagent.logshim`) may call it for the instance's own process.
:class:`RunAs` says who and where a command of an instance runs,
:func:`for_instance` decides it from what the agent knows of the instance
(never from ``/proc``, which a process that just exited no longer answers),
and :func:`start` starts a command that way in a session of its own.

It imports little at the top (``subprocess`` only in :func:`start`, which
only the agent calls), so the capture process can import it.
"""
import dataclasses
import errno
import os
import warnings

from corral.privileges import become, no_new_privs  # noqa: F401 (shared with the builder)
from nodeagent import sandbox
from nodeagent.procstat import start_ticks


class IdentityUnknown(Exception):
    """Who the instance runs as is not known (yet): nothing may run for it; the message is one sentence."""


@dataclasses.dataclass(frozen=True)
class RunAs:
    """Who a command of an instance runs as and where: ``uid``/``gid`` (None: the agent's own user,
    unchanged) and the ``cgroup.procs`` files it joins before it drops its privileges."""

    uid: int | None = None
    gid: int | None = None
    cgroups: tuple = ()
    namespace: tuple | None = None   # (pid, start ticks) of the capture process whose mount namespace it joins

    def enter(self, cwd=None):
        """In the child, before exec (a ``preexec_fn``): join the cgroups and the instance's mount
        namespace (then change to ``cwd`` again, as the app sees it), then become the user
        (:func:`become`), or keep the agent's user with :func:`no_new_privs`. Raises OSError."""
        for procs in self.cgroups:
            with open(procs, "w", encoding="ascii") as f:
                f.write(str(os.getpid()))
        if self.namespace is not None:
            sandbox.join(*self.namespace, start_ticks)
            if cwd is not None:
                os.chdir(cwd)
        if self.uid is None:
            no_new_privs()
        else:
            become(self.uid, self.gid)

    def describe(self):
        """Who, for messages: ``uid 998 gid 998`` or ``the agent's user``."""
        return "the agent's user" if self.uid is None else f"uid {self.uid} gid {self.gid}"


def for_instance(inst, users):
    """The :class:`RunAs` of instance ``inst`` (a :class:`nodeagent.instance.Instance`) on a node whose
    apps run as ``users`` (:class:`nodeagent.users.AppUsers` or ``OwnUser``; None is ``OwnUser``).

    With app users: the instance's known :attr:`identity`, never the agent's;
    IdentityUnknown when it is not known (a process adopted before its spec was
    read again) or would be root. Without: the agent's own user. The cgroups are
    the instance's that exist now (its memory limit's, its ``pids.max``'s). Where
    instances have mount namespaces of their own (the launcher has a sandbox), it
    joins the instance's, and IdentityUnknown when no process of it runs to join.
    """
    memory = getattr(inst, "memory", None)
    procs = tuple(memory.existing(inst.id, getattr(inst, "memory_limit", 0))) if memory is not None else ()
    if not getattr(users, "separate", False):
        return RunAs(cgroups=procs)
    ident = getattr(inst, "identity", None)
    if ident is None:
        raise IdentityUnknown(f"the user of instance {inst.id} is not known yet")
    if ident.uid == 0 or ident.gid == 0:
        raise IdentityUnknown(f"instance {inst.id} would run as uid {ident.uid} gid {ident.gid}: never as root")
    namespace = None
    if getattr(getattr(inst, "launcher", None), "sandbox", None) is not None:
        proc, ticks = getattr(inst, "proc", None), getattr(inst, "ticks", None)
        if proc is None or ticks is None:   # a process gone since: sandbox.join finds its ticks changed
            raise IdentityUnknown(f"instance {inst.id} has no running process whose namespace to join")
        namespace = (proc.pid, ticks)
    return RunAs(uid=ident.uid, gid=ident.gid, cgroups=procs, namespace=namespace)


def for_check(inst, users):
    """The :class:`RunAs` of an exec health check of ``inst`` (:func:`for_instance`), or None when
    it is refused: the check is then not run, and fails."""
    try:
        return for_instance(inst, users)
    except IdentityUnknown:
        return None


def start(argv, run_as, *, then=None, **popen_args):
    """Start ``argv`` as ``run_as`` in a new session (its own process group, whose id is its pid):
    the child joins the cgroups and drops its privileges (:meth:`RunAs.enter`), runs ``then`` (a
    pty's ``TIOCSCTTY``), then execs with ``popen_args``' env and cwd. Returns the ``Popen``.

    Raises OSError: the program's own error, or EPERM naming ``run_as`` when the
    child could not join the cgroup or become the user (it never ran the program).
    """
    import subprocess  # the agent's (green) module; never imported by the capture process

    def child():
        run_as.enter(popen_args.get("cwd"))
        if then is not None:
            then()

    try:
        with warnings.catch_warnings():  # eventlet warns of any fork; the child execs at once
            warnings.filterwarnings("ignore", message="Using fork", category=DeprecationWarning)
            return subprocess.Popen(argv, start_new_session=True, close_fds=True, preexec_fn=child, **popen_args)
    except Exception as e:
        # a preexec_fn that raised (RunAs.enter): the parent's SubprocessError, of whichever copy of the
        # subprocess module forked (eventlet's green Popen keeps an original copy of its own)
        if e.__class__.__name__ != "SubprocessError":
            raise
        raise OSError(errno.EPERM, f"could not join the instance's cgroup and become {run_as.describe()}") from None
