"""An instance's environment and argv, built from the assignment (pure: no I/O).

``$VAR`` and ``${VAR}`` in each word of a command are replaced from the
instance environment, as a shell would without word splitting or globbing:

- an unset variable expands to the empty string;
- ``$$`` is a literal ``$``;
- a ``$`` followed by neither a name, ``{`` nor ``$`` stays as it is (``"cost $5"``);
- ``${`` without a valid name and a closing ``}`` is an error (:class:`CommandError`).
"""
import os
import re
import shutil

BASE_NAMES = ("PATH", "HOME", "LANG", "TZ")

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_REF = re.compile(r"\$(?:(\$)|(" + _NAME + r")|\{(" + _NAME + r")\}|(\{))")


class CommandError(ValueError):
    """A command that cannot be turned into argv; the message is one sentence."""


def base_env(parent):
    """The clean base every instance starts from: PATH, HOME, LANG, LC_*, TZ of ``parent`` when set."""
    return {k: v for k, v in parent.items() if k in BASE_NAMES or k.startswith("LC_")}


def instance_env(base, *, venv, spec_env, port, app, process, instance, node):
    """The whole environment of one instance.

    Order of precedence, lowest first: ``base``, the spec's ``env``, then what
    corral sets and the spec cannot override: ``PORT`` (when ``port`` is not
    None), ``CORRAL_APP``, ``CORRAL_PROCESS``, ``CORRAL_INSTANCE``,
    ``CORRAL_NODE`` and ``VIRTUAL_ENV``. ``<venv>/bin`` goes first on the
    PATH (the spec's PATH when it sets one, else the base's).
    """
    env = dict(base)
    env.update(spec_env)
    if port is not None:
        env["PORT"] = str(port)
    env.update({
        "CORRAL_APP": app,
        "CORRAL_PROCESS": process,
        "CORRAL_INSTANCE": instance,
        "CORRAL_NODE": node,
        "VIRTUAL_ENV": venv,
    })
    rest = env.get("PATH") or os.defpath
    env["PATH"] = os.path.join(venv, "bin") + os.pathsep + rest
    return env


def expand_word(word, env):
    """``word`` with its ``$VAR`` / ``${VAR}`` references replaced from ``env`` (rules in the module docstring)."""
    def replace(match):
        dollar, name, braced, bad = match.groups()
        if dollar:
            return "$"
        if bad:
            raise CommandError(f"command word {word!r} has a '${{' without a variable name and a closing '}}'")
        return env.get(name or braced, "")
    return _REF.sub(replace, word)


def expand_command(command, env):
    """The argv of ``command`` (a list of words), each word expanded from ``env``."""
    if not command:
        raise CommandError("the command is empty")
    return [expand_word(word, env) for word in command]


def find_program(program, env, cwd):
    """Where ``program`` is, as an instance finds it: under its code folder ``cwd`` when it names a
    path, else on the instance's ``PATH`` (in ``env``); None when no executable file is there."""
    return shutil.which(os.path.join(cwd, program) if os.sep in program else program, path=env.get("PATH"))
