"""The git command, run hardened: the one runner of the client's git sources and the GitOps mirrors.

By argv, never through a shell; never prompting (no terminal, no askpass);
the system's git config is not read; hooks never run; the ``ext::`` transport
(which runs commands) is refused; every run has a timeout. A callers puts URLs
after ``--`` so that none is read as an option. A failure is one sentence:
what was being done, then git's own cause, with credentials in URLs redacted.
"""
import os
import subprocess

from corral.secrets import redact_urls

ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "SSH_ASKPASS": "true", "LC_ALL": "C",
       "GIT_CONFIG_NOSYSTEM": "1"}
SAFE = ["-c", "protocol.ext.allow=never", "-c", "core.hooksPath=/dev/null"]


class GitError(Exception):
    """A git command failed or timed out; the message is one sentence, credentials in URLs redacted."""

    def __init__(self, message):
        super().__init__(redact_urls(message))


def run_git(args, what, timeout, cwd=None, git="git"):
    """git's stdout (bytes) for ``args``; GitError ``"<what>: <cause>"`` when it fails or times out."""
    try:
        done = subprocess.run([git, *SAFE, *args], capture_output=True, timeout=timeout, cwd=cwd,
                              env=dict(os.environ, **ENV), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise GitError(f"{what}: git did not finish within {timeout:g}s") from None
    except OSError as e:
        raise GitError(f"{what}: cannot run git ({e.strerror or e})") from None
    if done.returncode:
        raise GitError(f"{what}: {reason(done.stderr, done.returncode)}")
    return done.stdout


def reason(stderr, code):
    """The first ``fatal:``/``error:`` line of git's stderr (its cause), else its last line."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    for line in lines:
        for prefix in ("fatal: ", "error: "):
            if line.startswith(prefix):
                return line[len(prefix):]
    return lines[-1] if lines else f"git exited with status {code}"
