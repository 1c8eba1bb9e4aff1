"""Unpacking a tar of files that someone else made: an app's source archive, a git export.

Only plain files, folders and links that stay inside the destination come
out; an absolute name, a ``..`` that leaves the folder, a link pointing out
of it, a device or a FIFO refuse the whole archive with one sentence
(:class:`UnsafeArchive`). Files come out owned by whoever unpacks, without
set-id bits or group and other write permission.

Those are the rules of tarfile's "data" filter, which arrived in Python
3.11.4, but for absolute names, which it would write inside the folder and
which are refused here. :func:`checked` decides them on every Python (Debian
12 ships 3.11.2), for each member just before it is written, so that a link
written earlier is seen by the members after it; where the filter exists it
runs as well, a second line behind the first.
"""
import copy
import io
import os
import stat
import tarfile

HAS_DATA_FILTER = hasattr(tarfile, "data_filter")


class UnsafeArchive(ValueError):
    """An archive member that would write outside the folder or make a special file; one sentence."""


def unpack(data, dest, *, use_filter=HAS_DATA_FILTER):
    """Extract the uncompressed tar ``data`` (bytes) into ``dest`` (made when missing).

    Raises :class:`UnsafeArchive` at the first member that breaks the rules,
    and ``tarfile.TarError`` for an archive that is not a tar.
    """
    os.makedirs(dest, exist_ok=True)
    dest = os.path.realpath(dest)
    # without the data filter (tests of the fallback where it exists), "fully_trusted": checked() decided
    extra = {"filter": "data" if use_filter else "fully_trusted"} if HAS_DATA_FILTER else {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar:
            safe = checked(member, dest)
            try:
                tar.extract(safe, dest, **extra)
            except tarfile.FilterError as e:   # a second line, where the filter exists
                raise UnsafeArchive(f"archive member {e.tarinfo.name!r}: {_why(e)}") from None


def checked(member, dest):
    """A copy of ``member`` fit to extract under the real folder ``dest``, owned by the caller
    with safe permissions; :class:`UnsafeArchive` when it must not be extracted at all.

    Decides against the file system as it is now, so call it just before extracting ``member``.
    """
    name = member.name
    if os.path.isabs(name):
        raise UnsafeArchive(f"archive member {name!r}: an absolute path")
    if not _inside(os.path.join(dest, name), dest):
        raise UnsafeArchive(f"archive member {name!r}: a path out of the folder")
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise UnsafeArchive(f"archive member {name!r}: a device, FIFO or other special file")
    if member.issym() or member.islnk():
        link = member.linkname
        if os.path.isabs(link):
            raise UnsafeArchive(f"archive member {name!r}: a link to an absolute path")
        base = os.path.dirname(os.path.join(dest, name)) if member.issym() else dest
        if not _inside(os.path.join(base, link), dest):
            raise UnsafeArchive(f"archive member {name!r}: a link out of the folder")
    safe = copy.copy(member)
    safe.uid, safe.gid, safe.uname, safe.gname = os.geteuid(), os.getegid(), "", ""
    mode = member.mode & 0o755
    if member.isdir():
        mode |= stat.S_IRWXU     # the members after it must be able to go in
    elif member.isreg() or member.islnk():
        mode |= stat.S_IRUSR | stat.S_IWUSR
        if not mode & stat.S_IXUSR:
            mode &= ~(stat.S_IXGRP | stat.S_IXOTH)
    safe.mode = mode
    return safe


def _inside(path, dest):
    real = os.path.realpath(path)
    return real == dest or real.startswith(dest.rstrip(os.sep) + os.sep)


def _why(error):
    """The data filter's reason in the words :func:`checked` uses."""
    kinds = [(tarfile.AbsolutePathError, "an absolute path"), (tarfile.OutsideDestinationError, "a path out of the folder"),
             (tarfile.SpecialFileError, "a device, FIFO or other special file"),
             (tarfile.AbsoluteLinkError, "a link to an absolute path"),
             (tarfile.LinkOutsideDestinationError, "a link out of the folder")]
    return next((why for kind, why in kinds if isinstance(error, kind)), str(error))
