"""Process limits a daemon raises for itself at start."""
import logging
import resource

log = logging.getLogger(__name__)


def raise_open_files_limit():
    """Raise this process's soft limit of open files to its hard limit: a reconciler holds a bus
    connection per node, and 5,000 nodes need more than the 1,024 a shell or a unit usually grants;
    a router holds two sockets per request in flight."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as e:
            log.warning("could not raise the open files limit from %d: %s", soft, e)
