"""Deleting the log folders of forgotten instances.

An instance's log folder (``<data_dir>/logs/<id>``) outlives the instance, so
that ``corral logs`` can show why it ended. Once the agent no longer holds
the instance and nothing was written in the folder for ``log_retention``
seconds (setting, default 7 days), the folder is deleted. A folder of an
instance the agent holds (running, stopping, assigned, or in its table) is
never deleted, however old.
"""
import os
import shutil


def forgotten(folders, held, now, retention):
    """The folder names to delete (pure): not in ``held`` and last written more than ``retention``
    seconds before ``now``. ``folders`` maps a folder name to its last write time.

    retention 3600, now 10000: a folder last written at 6000 (4000 s ago) goes; one at 7000 stays.
    """
    return sorted(name for name, last in folders.items() if name not in held and now - last > retention)


def last_write(folder):
    """The latest mtime of ``folder`` and of the files in it; None when it is gone."""
    try:
        times = [os.stat(folder).st_mtime]
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    times.append(entry.stat(follow_symlinks=False).st_mtime)
                except FileNotFoundError:
                    pass
    except (FileNotFoundError, NotADirectoryError):
        return None
    return max(times)


def sweep(logs_dir, held, now, retention):
    """Delete the log folders of ``logs_dir`` that :func:`forgotten` picks; returns their names."""
    try:
        names = [e.name for e in os.scandir(logs_dir) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []
    folders = {}
    for name in names:
        last = last_write(os.path.join(logs_dir, name))
        if last is not None:
            folders[name] = last
    gone = forgotten(folders, set(held), now, retention)
    for name in gone:
        shutil.rmtree(os.path.join(logs_dir, name), ignore_errors=True)
    return gone
