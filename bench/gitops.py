"""Benchmark: a repository of N app manifests kept in sync by the leader's git sync.

Measures, with the real git command and a real store:

- first sync: fetch, export, validate N manifests, pack and upload the source,
  write all N apps in one transaction (commit to all specs stored);
- a change: a commit that scales every app (N updates in one transaction);
- a no-change sync: fetch finds the same commit, nothing to load, no app written.

The time the sync loop waits before it looks (``gitops_tick``, the source's
``interval``) is not included: a webhook or `corral sync` makes that ~0.

    .venv/bin/python bench/gitops.py [--apps 500] [--repeat 5] [--store sqlite|postgresql]

Goal (issue 7): commit to all 500 specs stored under 1 s; a no-change sync under 100 ms.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from corral.spec import validate_document  # noqa: E402
from corral.store import open_store  # noqa: E402
from reconciler.gitops.repo import GitRepos  # noqa: E402
from reconciler.gitops.routes import gitsource_document  # noqa: E402
from reconciler.gitops.sync import GitSync  # noqa: E402

ENV = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@example.org",
           GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@example.org")


def git(repo, *args):
    subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True, env=ENV)


def write_apps(repo, n, instances):
    for i in range(n):
        with open(os.path.join(repo, "apps", f"app-{i:04d}.yaml"), "w") as f:
            f.write(f"apiVersion: corral/v1\nkind: App\nmetadata:\n  name: app-{i:04d}\n  labels: {{team: t{i % 7}}}\n"
                    f"spec:\n  source: ./src\n  env: {{INDEX: \"{i}\"}}\n  processes:\n    web:\n"
                    f"      command: python -m http.server $PORT\n      instances: {instances}\n      port: true\n"
                    f"      health: {{http: /}}\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", f"{n} apps x {instances}")


def open_bench_store(kind, work):
    if kind == "sqlite":
        return open_store(f"sqlite://{work}/corral.db"), lambda: None
    from tests.pg import postgres_dsn, with_search_path
    import psycopg2
    base, schema = postgres_dsn(), "bench_" + uuid.uuid4().hex[:8]
    with psycopg2.connect(base) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")

    def drop():
        with psycopg2.connect(base) as conn, conn.cursor() as cur:
            cur.execute(f"DROP SCHEMA {schema} CASCADE")
    return open_store(with_search_path(base, schema)), drop


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--apps", type=int, default=500)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="corral-bench-gitops-")
    repo = os.path.join(work, "repo")
    os.makedirs(os.path.join(repo, "apps", "src"))
    with open(os.path.join(repo, "apps", "src", "app.py"), "w") as f:
        f.write("print('hi')\n")
    git(repo, "init", "-q", "-b", "main")
    store, drop = open_bench_store(args.store, work)
    try:
        write_apps(repo, args.apps, 1)
        doc = validate_document({"apiVersion": "corral/v1", "kind": "GitSource", "metadata": {"name": "bench"},
                                 "spec": {"url": repo, "path": "apps"}})
        store.apply_apps([], actor="bench", gitsources=[gitsource_document(doc)])
        epoch = store.acquire_lease("leader", "bench", ttl=600).epoch
        sync = GitSync(store, GitRepos(os.path.join(work, "git")), "bench", scratch_dir=work)
        first, status = timed(lambda: sync.sync(store.get_gitsource("bench"), epoch))
        assert status["lastError"] is None and len(store.list_apps()) == args.apps, status.get("lastError")

        changes = []
        for k in range(args.repeat):
            write_apps(repo, args.apps, k + 2)
            took, status = timed(lambda: sync.sync(store.get_gitsource("bench"), epoch))
            assert all(a.spec["processes"]["web"]["instances"] == k + 2 for a in store.list_apps())
            changes.append(took)

        version = store.apps_version()
        idle = [timed(lambda: sync.sync(store.get_gitsource("bench"), epoch))[0] for _ in range(args.repeat * 4)]
        assert store.apps_version() == version, "a no-change sync wrote an app"

        parts = {}
        parts["fetch"] = statistics.median(timed(lambda: sync.repos.fetch(repo, "main"))[0] for _ in range(10))
        parts["list_apps"] = statistics.median(timed(store.list_apps)[0] for _ in range(10))
        print(f"gitops bench: {args.apps} apps, {args.store} store, git {subprocess.run(['git', '--version'], capture_output=True, text=True).stdout.split()[-1]}")
        print(f"  first sync (commit -> all specs stored): {first * 1000:.0f} ms")
        print(f"  a commit changing every app:              median {statistics.median(changes) * 1000:.0f} ms, "
              f"max {max(changes) * 1000:.0f} ms ({len(changes)} runs)")
        print(f"  no-change sync:                           median {statistics.median(idle) * 1000:.1f} ms, "
              f"max {max(idle) * 1000:.1f} ms ({len(idle)} runs)")
        print("  of which: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in parts.items()))
    finally:
        store.close()
        drop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
