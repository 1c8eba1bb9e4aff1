"""`corral backup` and `corral restore`: the control-plane state to a file, and back into an empty store.

``backup`` asks the API (``GET /v1/backup``), or reads a store directly with
``--store DSN`` (when no reconciler runs). ``restore`` always writes a store
directly: it is how a cluster is rebuilt, before any daemon runs on it.
"""
import os
import sys


def cmd_backup(args):
    """Write a dated backup file into ``args.to`` (default: the current folder) and print its path."""
    from corral.store import backup
    if args.store:
        from corral.store import open_store
        store = open_store(args.store)
        try:
            doc = backup.dump(store)
        finally:
            store.close()
    else:
        from corral.cli.client import Client, load_config
        doc = Client(*load_config(), timeout=300).get("/v1/backup")
    path = backup.write(doc, args.to or os.getcwd())
    counts = ", ".join(f"{len(t['rows'])} {name}" for name, t in sorted(doc["tables"].items()))
    print(f"backup written to {path} ({counts}; taken {doc['taken_at']})")
    return 0


def cmd_restore(args):
    """Load a backup file into the store named by ``args.store`` (empty unless ``--force``)."""
    from corral.store import backup, open_store
    doc = backup.read(args.file)
    store = open_store(args.store)
    try:
        counts = backup.restore(store, doc, force=args.force)
    finally:
        store.close()
    what = ", ".join(f"{n} {t}" for t, n in sorted(counts.items()))
    print(f"restored {args.file} (taken {doc['taken_at']}) into {args.store}: {what}")
    return 0


def run(args):
    """Dispatch backup/restore; store failures are one sentence on stderr and exit 1."""
    from corral.store import StoreError
    try:
        return cmd_backup(args) if args.command == "backup" else cmd_restore(args)
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
