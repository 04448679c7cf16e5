"""Iterations to relative error 1e-10: plain DGD+LOCAL (--step auto) against --preconditioner scaled.

Serial simulation (deterministic iteration counts, no timing), the default synthetic problem shape
(100 × 400, rank 5) at condition numbers 1, 10, 100 on ring and Erdős–Rényi networks at J = 4 and 8.
Writes OUT/precond.json and OUT/precond.md (a markdown table).

    python scripts/bench_precond.py --out bench-precond            # ≈ 5 min on one core
    python scripts/bench_precond.py --quick --out /tmp/q            # J = 4, κ = 1 and 100 only
    python scripts/bench_precond.py --defaults --out bench-precond-now   # both with today's defaults

Without --defaults both runs pin the papers' weights and order (lazy, dgd-local, s = 1: the setting of
docs/performance.md §9's table); with it each takes today's defaults (plain: atc-overlap with the gap gain
of --step auto and --u-step-scale auto, shifted weights; scaled: dgd-local, shifted weights).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from dgdlocal import runner


#: the papers' setting, which §9's table pins for both runs: their step on U (auto is 1 with scaled anyway),
#: weights and order
PAPERS = dict(u_step_scale=1.0, weight_transform="lazy", method="dgd-local")


def iterations_to_tolerance(J, topology, kappa, preconditioner, *, n, m, r, seed, cap, tolerance=1e-10,
                            settings=PAPERS):
    """Iterations until relative error and relative consensus are ≤ tolerance (checked every 10 iterations)."""
    config = runner.RunConfig(n=n, m=m, rank=r, condition_number=kappa, topology=topology, seed=seed,
                              preconditioner=preconditioner, iterations=cap, tolerance=tolerance, log_every=10,
                              **settings, quiet=True, simulate=J, force=True,
                              output=os.path.join(tempfile.gettempdir(), "dgdlocal-bench-precond-unused.h5"))
    context = runner.simulated_context(J)
    prepared = runner.prepare(config, context)
    started = time.perf_counter()
    outcome = runner.solve(prepared, config, context)
    history = outcome.diagnostics
    return dict(status=outcome.status, iterations=outcome.iterations, seconds=time.perf_counter() - started,
                relative_error=float(history["relative_error"][-1]),
                relative_consensus=float(history["relative_consensus"][-1]), step=prepared.step_size,
                spectral_gap=float(prepared.network.summary["spectral_gap"]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--m", type=int, default=400)
    parser.add_argument("--rank", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cap", type=int, default=200000, help="iteration cap of each run")
    parser.add_argument("--defaults", action="store_true",
                        help="run both with today's defaults instead of the papers' weights, order and U step")
    arguments = parser.parse_args(argv)
    os.makedirs(arguments.out, exist_ok=True)
    Js = [4] if arguments.quick else [4, 8]
    kappas = [1.0, 100.0] if arguments.quick else [1.0, 10.0, 100.0]
    rows = []
    for J in Js:
        for topology in ("ring", "erdos-renyi"):
            for kappa in kappas:
                row = dict(J=J, topology=topology, kappa=kappa)
                for name in ("none", "scaled"):
                    row[name] = iterations_to_tolerance(J, topology, kappa, name, n=arguments.n, m=arguments.m,
                                                        r=arguments.rank, seed=arguments.seed, cap=arguments.cap,
                                                        settings={} if arguments.defaults else PAPERS)
                plain, scaled = row["none"], row["scaled"]
                both = plain["status"] == scaled["status"] == "converged"
                row["ratio"] = plain["iterations"] / scaled["iterations"] if both else None
                rows.append(row)
                print(json.dumps(row), flush=True)
    with open(os.path.join(arguments.out, "precond.json"), "w") as handle:
        json.dump(dict(n=arguments.n, m=arguments.m, rank=arguments.rank, seed=arguments.seed,
                       settings="defaults" if arguments.defaults else PAPERS, rows=rows), handle, indent=1)
    lines = [f"Iterations to relative error and relative consensus ≤ 1e-10 (serial simulation, {arguments.n} × "
             f"{arguments.m}, rank {arguments.rank}, seed {arguments.seed}, metropolis weights, "
             + ("today's defaults otherwise" if arguments.defaults else "the papers' lazy weights, order and U step")
             + ", checked every 10 iterations; `max_iters` = not reached within the cap)", "",
             "| J | network | spectral gap | κ | plain DGD+LOCAL (`--step auto`) | `--preconditioner scaled` | ratio | "
             "scaled: rel. error / rel. consensus |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        plain, scaled = row["none"], row["scaled"]

        def cell(result):
            return str(result["iterations"]) if result["status"] == "converged" else f"{result['status']} " \
                f"({result['iterations']}, error {result['relative_error']:.1e})"

        ratio = "—" if row["ratio"] is None else f"**{row['ratio']:.{0 if row['ratio'] >= 10 else 1}f}×**"
        lines.append(f"| {row['J']} | {row['topology']} | {plain['spectral_gap']:.3f} | {row['kappa']:g} | "
                     f"{cell(plain)} | {cell(scaled)} | {ratio} | "
                     f"{scaled['relative_error']:.1e} / {scaled['relative_consensus']:.1e} |")
    with open(os.path.join(arguments.out, "precond.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
