#!/usr/bin/env python3
"""Iteration counts in the serial simulation for the network part of issue 6 (items 4 and 5).

    python scripts/bench_network.py gap     --out gap.jsonl       # iterations to 1e-10 vs spectral gap, J = 16 … 256
    python scripts/bench_network.py gap     --out gap.jsonl --rows 256:ring:150000 --resume   # one row, own cap
    python scripts/bench_network.py weights --out weights.jsonl   # rows that complete the step × weight-rule table
    python scripts/bench_network.py seeds   --out seeds.jsonl --seeds 0:10   # defaults vs a step × rule grid, per seed
    python scripts/bench_network.py summary seeds.jsonl [more.jsonl …]      # default / best per problem over seeds

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
import tempfile
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


# The four problems of docs/performance.md §8 (paper demo; 16-rank ring, torus and exponential graph).
SEED_PROBLEMS = {
    "paper demo": dict(J=10, n=50, m=200, r=10, topology="erdos-renyi", edge_probability=0.3, cap=20000),
    "ring J=16 κ=2": dict(J=16, n=100, m=400, r=5, topology="ring", kappa=2.0, cap=10000),
    "torus J=16 κ=10": dict(J=16, n=60, m=240, r=4, topology="torus", kappa=10.0, cap=10000),
    "exponential J=16 κ=2": dict(J=16, n=100, m=400, r=5, topology="exponential", kappa=2.0, cap=10000),
}
SEED_RULES = ("metropolis", "max-degree", "laplacian")
SEED_STEPS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)   # µL, L = 4σ₁


def seeds(out, first, last, problems=None, defaults_only=False):
    """For each problem and seed (data, graph and start): the defaults (--step auto, metropolis), then every rule ×
    fixed µL of the grid, each capped at twice the default's iterations (a setting that needs more is not the
    best). The paper demo's matrix is drawn with the seed too (Y = A Bᵀ, Gaussian factors). defaults_only: the
    defaults alone, after a change that moves only them (summary takes the last default row of a seed)."""
    for seed in range(first, last):
        for name in problems or SEED_PROBLEMS:
            problem = dict(SEED_PROBLEMS[name])
            J, cap = problem.pop("J"), problem.pop("cap")
            if name == "paper demo":
                problem["data"] = os.path.join(tempfile.gettempdir(), f"dgdlocal-paper-demo-{seed}.npy")
                bench.paper_demo_matrix(problem["data"], seed=seed)
            default = bench.simulate(J, seed=seed, cap=cap, **problem)
            emit(out, dict(sweep="seeds", problem=name, seed=seed, rule="metropolis", step_rule="auto", cap=cap,
                           **default))
            grid_cap = min(cap, 2 * default["iterations"]) if default["iterations"] else cap
            for rule in () if defaults_only else SEED_RULES:
                for multiple in SEED_STEPS:
                    result = bench.simulate(J, seed=seed, rule=rule, step=multiple / (4 * default["sigma1"]),
                                            cap=grid_cap, **problem)
                    emit(out, dict(sweep="seeds", problem=name, seed=seed, rule=rule, step_rule=multiple,
                                   cap=grid_cap, **result))
            if name == "paper demo":
                os.remove(problem["data"])


def _geomean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values))


def summary(paths):
    """Per problem over the seeds: default / best of the grid (best = fewest iterations among the defaults and the
    grid; a grid setting that did not converge within its cap cannot be the best), and how often each setting was
    the best."""
    rows = [json.loads(line) for path in paths for line in open(path) if line.strip()]
    rows = [x for x in rows if x.get("sweep") == "seeds"]
    latest = {(x["problem"], x["seed"]): x for x in rows if x["step_rule"] == "auto"}   # a later default row wins
    rows = [x for x in rows if x["step_rule"] != "auto"] + list(latest.values())
    print("| problem | seeds | default (median, range) | best (median) | default / best: geometric mean | median "
          "| range | seeds with default ≤ 1.2 × best | fixed µL = 1.5, metropolis / default: geometric mean (range) "
          "| best settings (count) | best fixed setting over the seeds (geometric mean) | default / it: geometric mean (range) "
          "|\n|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in SEED_PROBLEMS:
        ratios, defaults, bests, fixed, winners, used = [], [], [], [], {}, []
        for seed in sorted({x["seed"] for x in rows if x["problem"] == name}):
            runs = [x for x in rows if x["problem"] == name and x["seed"] == seed]
            default = next((x for x in runs if x["step_rule"] == "auto"), None)
            if default is None or not default["iterations"] or len(runs) < 1 + len(SEED_RULES) * len(SEED_STEPS):
                continue   # unfinished seed, or a default that did not converge (listed by `table`)
            best = min((x for x in runs if x["iterations"]), key=lambda x: x["iterations"])
            used.append(seed)
            ratios.append(default["iterations"] / best["iterations"])
            defaults.append(default["iterations"])
            bests.append(best["iterations"])
            label = "default" if best is default else f"{best['rule']} µL={best['step_rule']}"
            winners[label] = winners.get(label, 0) + 1
            same = next(x for x in runs if x["rule"] == "metropolis" and x["step_rule"] == 1.5)
            fixed.append(same["iterations"] / default["iterations"] if same["iterations"] else math.inf)
        if not ratios:
            continue
        # the one setting with the fewest iterations over these seeds (geometric mean; a run stopped at its cap
        # counts as the cap, a lower bound), against the defaults seed by seed
        by_setting = {}
        for x in rows:
            if x["problem"] == name and x["seed"] in used:
                by_setting.setdefault((x["rule"], x["step_rule"]), {})[x["seed"]] = x["iterations"] or x["cap"]
        complete = {k: v for k, v in by_setting.items() if len(v) == len(used)}
        fixed_best = min(complete, key=lambda k: _geomean(complete[k].values()))
        versus = [complete[("metropolis", "auto")][seed] / complete[fixed_best][seed] for seed in used]
        finite = [v for v in fixed if math.isfinite(v)]
        stalls = len(fixed) - len(finite)
        fixed_text = (f"{_geomean(finite):.2f} ({min(finite):.2f}–{max(finite):.2f})" if finite else "—") + \
            (f"; {stalls} over 2 × default" if stalls else "")
        print(f"| {name} | {len(ratios)} | {sorted(defaults)[len(defaults) // 2]} ({min(defaults)}–{max(defaults)}) | "
              f"{sorted(bests)[len(bests) // 2]} | {_geomean(ratios):.2f} | {sorted(ratios)[len(ratios) // 2]:.2f} | "
              f"{min(ratios):.2f}–{max(ratios):.2f} | {sum(r <= 1.2 for r in ratios)} of {len(ratios)} | {fixed_text} | "
              + ", ".join(f"{k} ({v})" for k, v in sorted(winners.items(), key=lambda kv: -kv[1])) + " | "
              + ("default" if fixed_best[1] == "auto" else f"{fixed_best[0]} µL={fixed_best[1]}")
              + f" ({_geomean(complete[fixed_best].values()):.0f}) | {_geomean(versus):.2f} "
              f"({min(versus):.2f}–{max(versus):.2f}) |")


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
            print(f"| {x.get('shape', x.get('problem'))} | {x.get('topology', '')} | {x['rule']} | {x['step_rule']} | "
                  f"{x['step_times_L']:.3f} | {x['lambda_min']:.3f} | {x['spectral_gap']:.3f} | {its} | {x['final_error']:.1e} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", choices=("gap", "weights", "seeds", "table", "summary"))
    parser.add_argument("path", nargs="*")
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
    parser.add_argument("--seeds", default="0:10", help="seeds sweep: FIRST:LAST (LAST not included)")
    parser.add_argument("--problems", help="seeds sweep: comma-separated names of SEED_PROBLEMS (default: all four)")
    parser.add_argument("--defaults-only", action="store_true", help="seeds sweep: only the defaults (rows that "
                        "replace earlier default rows in summary, next to an earlier grid)")
    parser.add_argument("--resume", action="store_true", help="skip gap runs already in --out (converged or with "
                        "at least that cap)")
    arguments = parser.parse_args()
    if arguments.sweep in ("table", "summary") and not arguments.path:
        parser.error(f"{arguments.sweep} needs the JSON-lines file(s) to read")
    if arguments.sweep == "table":
        table(arguments.path[0])
    elif arguments.sweep == "summary":
        summary(arguments.path)
    elif arguments.sweep == "seeds":
        first, last = (int(x) for x in arguments.seeds.split(":"))
        seeds(arguments.out, first, last, arguments.problems.split(",") if arguments.problems else None,
              arguments.defaults_only)
    elif arguments.sweep == "gap":
        gap(arguments.out, arguments.quick, arguments.rows, arguments.resume, arguments.rebalance_every,
            arguments.u_step_scale, arguments.method)
    else:
        weights(arguments.out, arguments.method)


if __name__ == "__main__":
    main()
