"""The one interface every kind of service implements, and the records it trades in.

A provisioner is the thin shell around one server (PostgreSQL, Redis): it runs
what :mod:`services.plan` decided and reports facts; it decides nothing. Every
call is idempotent where the word allows (``ensure`` twice is ``ensure`` once,
``drop`` of what is gone is nothing).
"""
import abc
import dataclasses


class ServiceError(Exception):
    """A service server refused or failed what was asked; the message is one sentence."""


@dataclasses.dataclass(frozen=True)
class Service:
    """An app's service: ``hello/db`` of type ``postgresql``."""

    app: str
    name: str
    type: str

    def __str__(self):
        return f"{self.app}/{self.name}"


@dataclasses.dataclass(frozen=True)
class Credential:
    """One login of a service: its user and password. ``generation`` grows with every rotation and is
    part of the user's name, so the old login works on while instances move to the new one."""

    generation: int
    password: str


@dataclasses.dataclass(frozen=True)
class Verification:
    """What restoring a backup into a scratch copy proved: ``ok``, and ``reason`` (one sentence)."""

    ok: bool
    reason: str
    facts: dict = dataclasses.field(default_factory=dict)


class Provisioner(abc.ABC):
    """ensure, credentials, backup, verify, restore, drop: for one server of one service type."""

    type = ""

    @abc.abstractmethod
    def ensure(self, service, credential):
        """Make the service's storage and ``credential``'s login exist, with that password and access to
        the service's data only."""

    @abc.abstractmethod
    def retire(self, service, generation):
        """Remove the login of ``generation`` (after a rotation) and close its connections."""

    @abc.abstractmethod
    def url(self, service, credential):
        """The URL the app's instances reach the service with (a secret: it holds the password)."""

    @abc.abstractmethod
    def exists(self, service, credential):
        """Whether the service's storage and ``credential``'s login are there (a server that lost them,
        by a restart without persistence or by hand, is ensured again)."""

    @abc.abstractmethod
    def backup(self, service, out):
        """Write a backup of the service's data into the binary file object ``out``; return the facts of what was
        dumped (what :meth:`verify` compares), with ``server_version`` and ``tool_version``."""

    @abc.abstractmethod
    def verify(self, service, path, facts):
        """Restore the backup at ``path`` of ``service`` into a scratch copy (with no more rights than the
        service's own), compare it with ``facts``, drop the copy; a :class:`Verification`."""

    @abc.abstractmethod
    def restore(self, path, service):
        """Replace the service's data with the backup at ``path``."""

    @abc.abstractmethod
    def drop(self, service):
        """Remove the service's data and every login of it."""

    @abc.abstractmethod
    def size(self, service):
        """Bytes the service's data takes on its server (an estimate), or None when it does not exist."""

    @abc.abstractmethod
    def version(self):
        """The server's version, as a string."""
