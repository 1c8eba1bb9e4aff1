"""Start eventlet the one way that works everywhere in corral.

Every daemon entry point calls :func:`patch` before it imports anything that
touches sockets, threads or logging. A bare ``monkey_patch()`` is what makes
psycopg2 cooperative (docs/STACK.md); a partial one silently is not.
"""
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402  (the filter must come first)


def patch():
    """Monkey-patch the standard library once; safe to call twice."""
    if not eventlet.patcher.is_monkey_patched("socket"):
        eventlet.monkey_patch()
