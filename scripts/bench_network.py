#!/usr/bin/env python3
"""Iteration counts in the serial simulation for the network part of issue 6 (items 4 and 5).

    python scripts/bench_network.py gap     --out gap.jsonl       # iterations to 1e-10 vs spectral gap, J = 16 … 256
    python scripts/bench_network.py gap     --out gap.jsonl --rows 256:ring:150000 --resume   # one row, own cap
    python scripts/bench_network.py weights --out weights.jsonl   # rows that complete the step × weight-rule table

One JSON object per line, appended as each run finishes (the sweeps take minutes; a partial file is
still usable). Iteration counts are deterministic; caps are part of each row (`cap`). The problem of
the gap sweep is scripts/bench.py's: n = 20, m_j = 4, r = 2, κ = 2, metropolis weights, --step auto,
the default rebalancing and U step (recorded in each row). `--rows J:topology:cap,…` replaces the default
list of gap runs; `--resume` skips a gap run already in --out that converged or had at least that cap;
`--rebalance-every 0` repeats them without the rebalancing (the gap rows before the default rebalancing),
`--u-step-scale 1` with the papers' step on U (the rows before the default `--u-step-scale auto`).
Summarize a file with `python scripts/bench_network.py table FILE`.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (scripts/bench.py: simulate, paper_demo_matrix)

# (J, topology, cap) in order of cost; one iteration takes ≈ 0.04·J ms (ring, torus) to 0.06·J ms
# (exponential) of one core, so the two ring caps at the end are ≈ 7 and 15 min (docs/performance.md §7a)
GAP_RUNS = [(16, "ring", 40000), (16, "torus", 40000), (16, "exponential", 40000),
            (64, "exponential", 40000), (64, "torus", 40000), (64, "ring", 60000),
            (128, "exponential", 40000), (128, "torus", 40000),
            (256, "exponential", 40000), (256, "torus", 40000), (128, "ring", 100000), (256, "ring", 80000)]


def emit(out, row):
    print(json.dumps(row), flush=True)
    with open(out, "a") as handle:
        handle.write(json.dumps(row) + "\n")


def parse_rows(text):
    """"J:topology:cap,…" → [(J, topology, cap), …]"""
    rows = []
    for item in text.split(","):
        J, topology, cap = item.strip().split(":")
        rows.append((int(J), topology, int(cap)))
    return rows


def done_before(out, J, topology, cap, defaults):
    """A gap row of (J, topology, rebalancing, U step) in `out` that converged or ran at least `cap` iterations."""
    if not os.path.exists(out):
        return False
    rows = [json.loads(line) for line in open(out) if line.strip()]
    return any(x.get("sweep") == "gap" and x["J"] == J and x["topology"] == topology
               and x.get("rebalance_every") == defaults.rebalance_every
               and x.get("u_step_scale", 1.0) == defaults.u_step_scale
               and x.get("method", "dgd-local") == defaults.method
               and (x["iterations"] or x["cap"] >= cap) for x in rows)


def gap(out, quick=False, runs=None, resume=False, rebalance_every=None, u_step_scale=None, method=None):
    runs = runs or ([(4, "ring", 2000), (9, "torus", 2000)] if quick else GAP_RUNS)
    original = bench.runner.RunConfig
    overrides = {name: value for name, value in (("rebalance_every", rebalance_every), ("u_step_scale", u_step_scale),
                                                 ("method", method)) if value is not None}
    if overrides:  # bench.simulate builds its RunConfig with the defaults: change this one
        bench.runner.RunConfig = functools.partial(original, **overrides)
    defaults = bench.runner.RunConfig()
    try:
        for J, topology, cap in runs:
            if resume and done_before(out, J, topology, cap, defaults):
                print(f"gap J={J} {topology}: in {out} already, skipped", flush=True)
                continue
            start, cpu = time.time(), time.process_time()
            result = bench.simulate(J, n=20, m=4 * J, r=2, topology=topology, cap=cap)
            emit(out, dict(sweep="gap", J=J, topology=topology, cap=cap, seconds=round(time.time() - start, 1),
                           cpu_seconds=round(time.process_time() - cpu, 1), rebalance_every=defaults.rebalance_every,
                           rebalance_threshold=defaults.rebalance_threshold, u_step_scale=defaults.u_step_scale,
                           method=defaults.method, **result))
    finally:
        bench.runner.RunConfig = original


def weights(out, method=None):
    demo = "/tmp/dgdlocal-paper-demo.npy"
    bench.paper_demo_matrix(demo)
    sigma = {}
    chosen = {} if method is None else {"method": method}

    def run(label, J, n, m, r, topology, rule, multiple, cap, **extra):
        extra = {**chosen, **extra}
        key = (label, topology)
        if multiple not in ("auto",) and not str(multiple).startswith("µ=") and key not in sigma:
            sigma[key] = bench.simulate(J, n=n, m=m, r=r, topology=topology, cap=0, **extra)["sigma1"]
        if multiple == "auto":
            step = "auto"
        elif str(multiple).startswith("µ="):
            step = float(multiple[2:])
        else:
            step = multiple / (4 * sigma[key])
        start = time.time()
        result = bench.simulate(J, n=n, m=m, r=r, topology=topology, rule=rule, step=step, cap=cap, **extra)
        emit(out, dict(sweep="weights", shape=label, topology=topology, rule=rule, step_rule=str(multiple), cap=cap,
                       method=extra.get("method", bench.runner.RunConfig().method),
                       seconds=round(time.time() - start, 1), **result))

    demo_args = dict(J=10, n=50, m=200, r=10, data=demo, edge_probability=0.3)
    # 1. the current --step auto (0.5·min(1, 1+λ_min)/L) on the demo and the κ = 2 ring/exponential shape
    for rule in ("metropolis", "max-degree", "laplacian"):
        run("paper demo", topology="erdos-renyi", rule=rule, multiple="auto", cap=20000, **demo_args)
    # 2. the paper's fixed µ on its demo
    for rule in ("metropolis", "max-degree", "laplacian"):
        for mu in ("µ=0.001", "µ=0.003"):
            run("paper demo, fixed µ", topology="erdos-renyi", rule=rule, multiple=mu, cap=20000, **demo_args)
    # 3. the missing torus κ = 10 rows, and steps above 1/L where 1/L converged
    torus = dict(J=16, n=60, m=240, r=4, kappa=10.0)
    for multiple in (0.25, 0.5, 0.75, 1.0):
        run("J=16 n=60 m_j=15 r=4 κ=10", topology="torus", rule="laplacian", multiple=multiple, cap=10000, **torus)
    for multiple in (1.25, 1.5):
        run("J=16 n=60 m_j=15 r=4 κ=10", topology="torus", rule="metropolis", multiple=multiple, cap=10000, **torus)
    k2 = dict(J=16, n=100, m=400, r=5, kappa=2.0)
    for multiple in (1.25, 1.5):
        run("J=16 n=100 m_j=25 r=5 κ=2", topology="exponential", rule="metropolis", multiple=multiple, cap=10000, **k2)
    for multiple in (1.25, 1.5):
        run("paper demo", topology="erdos-renyi", rule="metropolis", multiple=multiple, cap=20000, **demo_args)
    for rule in ("metropolis", "laplacian"):
        run("J=16 n=100 m_j=25 r=5 κ=2", topology="ring", rule=rule, multiple="auto", cap=10000, **k2)
    os.remove(demo)


def table(path):
    rows = [json.loads(line) for line in open(path)]
    if any(x["sweep"] == "gap" for x in rows):
        print("| J | topology | spectral gap | 1/gap | step·L | --rebalance-every | --u-step-scale | iterations to 1e-10 "
              "| final rel. error | seconds |\n|---|---|---|---|---|---|---|---|---|---|")
    for x in rows:
        its = (x["iterations"] if x["iterations"] else "diverged" if x.get("status") == "diverged"
               else f"not within cap {x['cap']}")
        if x["sweep"] == "gap":
            print(f"| {x['J']} | {x['topology']} | {x['spectral_gap']:.3g} | {1 / x['spectral_gap']:.3g} | "
                  f"{x['step_times_L']:.3f} | {x.get('rebalance_every', 'n/a')} | {x.get('u_step_scale', 1.0)} | {its} | "
                  f"{x['final_error']:.1e} | "
                  f"{x['seconds']:.0f} |")
        else:
            print(f"| {x['shape']} | {x['topology']} | {x['rule']} | {x['step_rule']} | {x['step_times_L']:.3f} | "
                  f"{x['lambda_min']:.3f} | {x['spectral_gap']:.3f} | {its} | {x['final_error']:.1e} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", choices=("gap", "weights", "table"))
    parser.add_argument("path", nargs="?")
    parser.add_argument("--out", default="bench-network.jsonl")
    parser.add_argument("--quick", action="store_true", help="two tiny gap runs (smoke test)")
    parser.add_argument("--rows", type=parse_rows, help="gap runs J:topology:cap,… instead of the default list")
    parser.add_argument("--rebalance-every", type=int, help="gap runs with this --rebalance-every instead of the "
                        "default (0: plain DGD+LOCAL, as before the default rebalancing)")
    parser.add_argument("--u-step-scale", type=lambda text: text if text == "auto" else float(text),
                        help="gap runs with this --u-step-scale instead of the default (1: the papers' U step)")
    parser.add_argument("--method", choices=("auto", "dgd-local", "atc", "atc-overlap", "extra"),
                        help="gap and weights runs with this --method instead of the default (auto: atc-overlap; the "
                             "tables of docs/performance.md §7a and §8 were measured with dgd-local)")
    parser.add_argument("--resume", action="store_true", help="skip gap runs already in --out (converged or with "
                        "at least that cap)")
    arguments = parser.parse_args()
    if arguments.sweep == "table":
        table(arguments.path)
    elif arguments.sweep == "gap":
        gap(arguments.out, arguments.quick, arguments.rows, arguments.resume, arguments.rebalance_every,
            arguments.u_step_scale, arguments.method)
    else:
        weights(arguments.out, arguments.method)


if __name__ == "__main__":
    main()
