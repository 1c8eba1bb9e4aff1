"""Builder figures against the installers alone, in one run, like with like.

    .venv/bin/python bench/build.py [--repeat 3] [--requirements bench/webapp-requirements.txt] [--build-users]

Every case runs ``--repeat`` times into fresh folders (nothing is deleted
between timed runs: a disk discarding a 16k-file venv in the background slows
the next run) and reports the median wall time. Every tool gets the
operator's pip index settings (uv through builder.pipconfig's translation),
and uv compiles bytecode as the builder does (an image holds it).

    uv cold          uv venv + uv pip install --compile-bytecode -r, empty uv cache
    uv warm          the same, warm uv cache, new venv
    pip serial       python -m venv + pip install -r, empty pip cache (pip compiles bytecode by
                     default, as the builder and uv --compile-bytecode do: like with like)
    builder cold     build_image, empty builder caches (done once the layer folders are in place,
                     as the build is recorded; the archives are packed after it)
    pack after cold  packing the cold build's archives, off the build's path (pack_archives)
    builder code     a change of code alone (environment layer reused)
    builder warm     a new requirement set (one more package), warm caches
    node fetch       an agent fetching and unpacking an image it has not seen, over HTTP
    node again       the same image again (nothing to do)

Goals (builder issue): code < 0.3 s and < 0.5x uv warm; warm <= 1.1x uv warm;
cold <= 1.1x uv cold and >= 8x faster than pip serial; node fetch < 1.5 s.
"""
import argparse
import functools
import http.server
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from builder.buildusers import BuildUsers  # noqa: E402
from builder.engines import find_uv  # noqa: E402
from builder.pipconfig import read_pip_config, uv_environment, uv_index_args  # noqa: E402
from builder.pipeline import Workshop, build_image, log_path, pack_archives  # noqa: E402
from corral import image_layout  # noqa: E402
from corral.source import pack_source  # noqa: E402
from corral.store import open_store  # noqa: E402
from nodeagent.pull import ensure_image  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
EXTRA = "itsdangerous==2.2.0"   # the "new set": one package more, not a dependency of the others


def timed(argv, env):
    start = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(argv[:4])} failed: {done.stderr.strip()[-400:]}")
    return time.monotonic() - start


def uv_install(uv, index, work, name, cache, req):
    venv = os.path.join(work, name)
    env = dict(uv_environment(index, os.environ), UV_CACHE_DIR=cache)
    return (timed([uv, "venv", "-q", venv], env)
            + timed([uv, "pip", "install", "-q", "--compile-bytecode", "--python", os.path.join(venv, "bin", "python"),
                     *uv_index_args(index, resolving=True), "-r", req], env))


def pip_serial(work, name, req):
    venv = os.path.join(work, name)
    env = dict(os.environ, PIP_CACHE_DIR=os.path.join(work, name + "-pipcache"))
    return (timed([sys.executable, "-m", "venv", venv], env)
            + timed([os.path.join(venv, "bin", "python"), "-m", "pip", "install", "-q", "-r", req], env))


class Builder:
    """build_image in this process, on a SQLite store, as the daemon's worker calls it."""

    def __init__(self, work, name, index, build_users=False):
        root = os.path.join(work, name)
        self.store = open_store(f"sqlite:///{root}-corral.db")
        cache = os.path.join(root, "cache")
        os.makedirs(cache, mode=0o711)
        self.workshop = Workshop(name="bench", images_dir=os.path.join(root, "images"), cache_dir=cache, index=index,
                                 users=BuildUsers(cache) if build_users else None)
        self.src = os.path.join(root, "src")
        os.makedirs(self.src)
        self.n = 0

    def build(self, code, requirements):
        with open(os.path.join(self.src, "app.py"), "w") as f:
            f.write(code)
        digest, data = pack_source(self.src)
        self.store.put_source(digest, data)
        self.n += 1
        start = time.monotonic()
        outcome = build_image(self.n, {"source_digest": digest, "requirements": requirements},
                              store=self.store, workshop=self.workshop, app="bench")
        return time.monotonic() - start, outcome

    def commands(self):
        """``{command: seconds}`` of the last build, from its log (where a build's time went)."""
        out, name = {}, None
        with open(log_path(self.workshop, self.n), encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("$ "):
                    argv = line[2:].split()
                    name = " ".join(os.path.basename(a) for a in argv[:3] if not a.startswith("-"))
                elif line.startswith("# exit status") and name:
                    out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1].rstrip("s\n"))
        return out


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(folder):
    handler = functools.partial(_Quiet, directory=folder)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--requirements", default=os.path.join(HERE, "webapp-requirements.txt"))
    parser.add_argument("--skip-pip", action="store_true", help="leave out the (slow) serial pip baseline")
    parser.add_argument("--build-users", action="store_true",
                        help="builds as a build user of their own, as a root builder's (root only)")
    args = parser.parse_args()
    uv = find_uv()
    if uv is None:
        sys.exit("no uv binary: install corral's dependencies first")
    index = read_pip_config()
    with open(args.requirements) as f:
        reqs = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    work = tempfile.mkdtemp(prefix="corral-bench-build-")
    os.chmod(work, 0o755)   # a build user passes it
    req_file = os.path.join(work, "requirements.txt")
    new_file = os.path.join(work, "requirements-new.txt")
    with open(req_file, "w") as f:
        f.write("\n".join(reqs) + "\n")
    with open(new_file, "w") as f:
        f.write("\n".join(reqs + [EXTRA]) + "\n")
    rows = {k: [] for k in ("uv cold", "uv warm", "pip serial", "builder cold", "pack after cold", "builder code",
                            "builder warm", "node fetch", "node again")}
    caches = {}
    env_sizes = []
    cold_commands = []
    try:
        for i in range(args.repeat):
            cache = os.path.join(work, f"uvcache{i}")
            rows["uv cold"].append(uv_install(uv, index, work, f"uv-cold{i}", cache, req_file))
            rows["uv warm"].append(uv_install(uv, index, work, f"uv-warm{i}", cache, req_file))
            caches[i] = cache
            if not args.skip_pip:
                rows["pip serial"].append(pip_serial(work, f"pip{i}", req_file))
            b = Builder(work, f"builder{i}", index, args.build_users)
            seconds, cold = b.build("VERSION = 1\n", reqs)
            assert cold.cache == "miss", cold
            rows["builder cold"].append(seconds)
            cold_commands.append(b.commands())
            start = time.monotonic()
            cold_layers = pack_archives(b.workshop, cold.layers)
            rows["pack after cold"].append(time.monotonic() - start)
            seconds, code = b.build("VERSION = 2\n", reqs)
            assert code.cache == "env-hit", code
            rows["builder code"].append(seconds)
            seconds, warm = b.build("VERSION = 2\n", reqs + [EXTRA])
            assert warm.cache == "miss", warm
            rows["builder warm"].append(seconds)
            pack_archives(b.workshop, code.layers + warm.layers)
            env_sizes.append(cold_layers[0]["size"])
            server, base = serve(os.path.join(b.workshop.cache_dir, "artifacts"))
            artifact = {"layers": [dict(layer, url=f"{base}/{layer['kind']}-{layer['id'][7:]}.tar")
                                   for layer in cold_layers]}
            node = os.path.join(work, f"node{i}")
            start = time.monotonic()
            ensure_image(node, cold.image, artifact)
            rows["node fetch"].append(time.monotonic() - start)
            start = time.monotonic()
            ensure_image(node, cold.image, artifact)
            rows["node again"].append(time.monotonic() - start)
            server.shutdown()
            server.server_close()
            assert os.path.isdir(image_layout.layer_dir(node, "env", cold.layers[0]["id"]))
            print(f"run {i + 1}/{args.repeat}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in rows.items() if v),
                  file=sys.stderr)
        report(rows, args.repeat, env_sizes)
        report_cold(rows["builder cold"], cold_commands)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(rows, repeat, env_sizes):
    """Print the table of medians and ratios, the peak RSS and the environment layer's size."""
    med = {k: statistics.median(v) for k, v in rows.items() if v}
    print(f"| case | median wall (s), {repeat} runs | ratio | goal |")
    print("| --- | --- | --- | --- |")
    goals = {
        "builder cold": (med["builder cold"] / med["uv cold"], "uv cold", "<= 1.1"),
        "builder code": (med["builder code"] / med["uv warm"], "uv warm", "< 0.5 and < 0.3 s"),
        "builder warm": (med["builder warm"] / med["uv warm"], "uv warm", "<= 1.1"),
    }
    for name, value in med.items():
        ratio, goal = "", ""
        if name in goals:
            r, against, goal = goals[name]
            ratio = f"{r:.2f}x {against}"
        if name == "pip serial":
            ratio, goal = (f"{value / med['builder cold']:.1f}x builder cold, {value / med['uv cold']:.1f}x uv cold",
                           ">= 8x builder cold")
        if name == "node fetch":
            goal = "< 1.5 s"
        print(f"| {name} | {value:.3f} | {ratio} | {goal} |")
    if "pip serial" in med:
        print("\n" + ceiling(med["pip serial"], med["uv cold"], med["builder cold"]))
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"\nbuilder peak RSS: {self_rss:.0f} MiB (the builder's Python process; largest child, uv or tar:"
          f" {child_rss:.0f} MiB); environment layer archive: {statistics.median(env_sizes) / (1 << 20):.0f} MiB")


def ceiling(pip_serial, uv_cold, builder_cold, goal=8.0):
    """One sentence on what ">= ``goal``x faster than serial pip" asks of the builder, given uv's own lead.

    pip 12.0 s, uv 2.4 s: uv alone is 5.0x, so 8x needs a cold build of 1.5 s,
    i.e. the builder beating uv by 8 / 5.0 = 1.6x; a builder that only adds to
    uv's own work can never get there. Purely computational.
    """
    uv_lead = pip_serial / uv_cold
    need = pip_serial / goal
    return (f"ceiling: uv cold alone is {uv_lead:.1f}x faster than serial pip (both compile bytecode);"
            f" {goal:g}x needs a cold build of {need:.2f} s, i.e. the builder beating uv cold by"
            f" {goal / uv_lead:.2f}x (it is at {uv_cold / builder_cold:.2f}x of uv's speed"
            f" now, {pip_serial / builder_cold:.1f}x serial pip)" + ("" if uv_lead >= goal else
            "; a builder that runs uv and adds its own steps cannot reach it"))


def report_cold(walls, commands):
    """Print where the cold builds' time went: each installer command, and the builder's own rest."""
    names = sorted({n for c in commands for n in c})
    parts = [f"{n} {statistics.median(c.get(n, 0.0) for c in commands):.2f}" for n in names]
    own = statistics.median(w - sum(c.values()) for w, c in zip(walls, commands))
    print(f"builder cold, median seconds per command: {', '.join(parts)}; the builder's own work (source, "
          f"the lock, code layer, image; packing comes after): {own:.2f}")


if __name__ == "__main__":
    main()
