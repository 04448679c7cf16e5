#!/usr/bin/env python3
"""Iterations to 1e-10 on random exact-rank factorization problems, two or more settings side by side.

    python scripts/bench_random.py run --problems 40 --out random.jsonl \
        --variant lazy:weight_transform=lazy --variant shift:weight_transform=shift
    python scripts/bench_random.py table random.jsonl
    python scripts/bench_random.py run --step-safety 1.0 --out s100.jsonl --variant s100:   # --step auto × 2
    python scripts/bench_random.py run --atc-step-max-gain 1 --out nogain.jsonl --variant nogain:   # without the gap gain

Problem k (k = 0, 1, …) is drawn from numpy's default_rng(seed + k): J from 2–32, a topology (ring, path,
star, complete, torus where J allows one, erdos-renyi, exponential), n = 10–100, 2–50 columns per rank, r = 1–5 (≤ n and
≤ the columns), condition number 1, 2, 10 or 100, and the data seed k. Every variant runs the serial
simulation with the defaults plus its NAME=VALUE settings (RunConfig fields), tolerance 1e-10 on relative
error and relative consensus, checked every 10 iterations, up to --cap iterations. One JSON object per
line, appended as each problem finishes; `--resume` skips problems already in --out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

from dgdlocal import solver
from dgdlocal import topology as topology_module
from dgdlocal.errors import InputError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (scripts/bench.py: simulate)

TOPOLOGIES = ("ring", "path", "star", "complete", "torus", "erdos-renyi", "exponential")
SIZES = (2, 3, 4, 6, 8, 12, 16, 24, 32)
CONDITION_NUMBERS = (1.0, 2.0, 10.0, 100.0)


def has_torus(J: int) -> bool:
    """Whether J ranks form a 2-D torus (not for J < 4 or prime J)."""
    try:
        topology_module.build_adjacency("torus", J)
    except InputError:
        return False
    return True


def draw_problem(seed: int) -> dict:
    """The k-th random problem (seed = base seed + k)."""
    rng = np.random.default_rng(seed)
    J = int(rng.choice(SIZES))
    topology = str(rng.choice(TOPOLOGIES if has_torus(J) else tuple(t for t in TOPOLOGIES if t != "torus")))
    n = int(rng.integers(10, 101))
    columns = int(rng.integers(2, 51))
    r = int(min(rng.integers(1, 6), n, columns * J))
    return dict(J=J, topology=topology, n=n, m=columns * J, rank=r,
                condition_number=float(rng.choice(CONDITION_NUMBERS)), seed=seed)


def parse_value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_variant(text: str) -> tuple[str, dict]:
    """"label:name=value,name=value" → (label, {name: value})"""
    label, _, settings = text.partition(":")
    pairs = [item.split("=", 1) for item in settings.split(",") if item]
    return label, {name: parse_value(value) for name, value in pairs}


def iterations(problem: dict, settings: dict, cap: int) -> dict:
    """Run one problem with the defaults plus `settings` in the serial simulation (scripts/bench.py simulate)."""
    start = time.time()
    result = bench.simulate(problem["J"], n=problem["n"], m=problem["m"], r=problem["rank"],
                            topology=problem["topology"], kappa=problem["condition_number"], seed=problem["seed"],
                            cap=cap, **settings)
    return dict(status=result["status"], iterations=result["iterations"], final_error=result["final_error"],
                seconds=round(time.time() - start, 1), spectral_gap=result["spectral_gap"])


def run(args) -> None:
    variants = [parse_variant(text) for text in args.variant]
    if args.step_safety is not None:   # the fraction of the stability limit taken by --step auto (0.5)
        solver.STEP_SAFETY = args.step_safety
    if args.atc_step_max_gain is not None:   # the cap of the atc orders' gap gain (2; 1 = the rule before it)
        solver.ATC_STEP_MAX_GAIN = args.atc_step_max_gain
    done = set()
    if args.resume and os.path.exists(args.out):
        done = {json.loads(line)["problem"]["seed"] for line in open(args.out) if line.strip()}
    for k in range(args.problems):
        problem = draw_problem(args.seed + k)
        if problem["seed"] in done:
            continue
        row = dict(problem=problem, cap=args.cap,
                   results={label: iterations(problem, settings, args.cap) for label, settings in variants},
                   variants={label: settings for label, settings in variants})
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as handle:
            handle.write(json.dumps(row) + "\n")


def table(path: str) -> None:
    rows = [json.loads(line) for line in open(path) if line.strip()]
    labels = list(rows[0]["results"])
    print(f"{len(rows)} problems; iterations to 1e-10 (— = not within the cap)\n")
    print("| J | topology | n | m_j | r | κ | " + " | ".join(labels) + " |")
    print("|---" * (6 + len(labels)) + "|")
    for row in rows:
        p = row["problem"]
        cells = [str(row["results"][label]["iterations"] or "—") for label in labels]
        print(f"| {p['J']} | {p['topology']} | {p['n']} | {p['m'] // p['J']} | {p['rank']} | "
              f"{p['condition_number']:g} | " + " | ".join(cells) + " |")
    first = labels[0]
    for label in labels:
        converged = sum(row["results"][label]["status"] == "converged" for row in rows)
        line = f"\n{label}: {converged} of {len(rows)} converged"
        if label != first:
            both = [(row["results"][first]["iterations"], row["results"][label]["iterations"]) for row in rows]
            ratios = [a / b for a, b in both if a and b]
            if ratios:
                line += (f"; iterations {first}/{label} where both converged: geometric mean "
                         f"{math.exp(sum(map(math.log, ratios)) / len(ratios)):.2f}, min {min(ratios):.2f}, "
                         f"max {max(ratios):.2f}, fewer in {sum(r > 1 for r in ratios)}, more in "
                         f"{sum(r < 1 for r in ratios)}")
        print(line)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    go = sub.add_parser("run")
    go.add_argument("--problems", type=int, default=40)
    go.add_argument("--seed", type=int, default=0)
    go.add_argument("--cap", type=int, default=200000)
    go.add_argument("--out", required=True)
    go.add_argument("--variant", action="append", required=True, help="LABEL:name=value,… (RunConfig fields)")
    go.add_argument("--resume", action="store_true")
    go.add_argument("--step-safety", type=float, help="replace solver.STEP_SAFETY (0.5) for every variant of this run")
    go.add_argument("--atc-step-max-gain", type=float,
                    help="replace solver.ATC_STEP_MAX_GAIN (2) for every variant of this run; 1: --step auto as "
                         "before the gap gain")
    show = sub.add_parser("table")
    show.add_argument("path")
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args)
    else:
        table(args.path)


if __name__ == "__main__":
    sys.exit(main())
