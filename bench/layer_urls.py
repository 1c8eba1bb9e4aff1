"""Benchmark: what signing every node's layer URLs costs the leader (reconciler/layer_urls.py).

A leader taking over, a key rotation, or the half-life renewal sends every node its assignment with its
layer URLs signed for it: per node, per image it runs, per layer (2), per live builder offered. This
times :class:`reconciler.layer_urls.Signer` doing that for ``--nodes`` nodes of ``--images`` images each
on ``--builders`` builders (the best of ``--runs``), and prints the time and the time per URL.

    .venv/bin/python bench/layer_urls.py [--nodes 1000] [--images 10] [--builders 2] [--runs 5]
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reconciler.layer_urls import Signer  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--images", type=int, default=10)
    p.add_argument("--builders", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    artifact = {"layers": [{"kind": kind, "id": "sha256:" + c * 64, "sha256": c * 64, "size": 10,
                            "url": f"http://b1:7072/layers/{kind}/{c * 64}.tar"} for kind, c in (("env", "e"), ("code", "c"))]}
    builders = [(f"b{i}", f"http://b{i}:7072", 1.0) for i in range(1, args.builders + 1)]
    best = None
    for _ in range(args.runs):
        signer = Signer(key=b"k" * 32, exp=2_000_000_000, builders=builders)
        began = time.perf_counter()
        for node in range(args.nodes):
            for image in range(args.images):
                signer.artifact(f"node-{node}", f"image-{image}", artifact, True)
        took = time.perf_counter() - began
        best = took if best is None else min(best, took)
    urls = args.nodes * args.images * 2 * args.builders
    print(f"{args.nodes} nodes x {args.images} images x 2 layers x {args.builders} builders = {urls} signed URLs: "
          f"{best * 1000:.0f} ms (best of {args.runs}), {best / urls * 1e6:.1f} us a URL")


if __name__ == "__main__":
    main()
