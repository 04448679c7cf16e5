#!/usr/bin/env python3
"""Fig. 1 of matrix-sensing-no-spurious-local-minima.txt (Bhojanapalli et al.): success probability
of gradient descent on f(U) = ‖A(UUᵀ) − y‖² from random vs. spectral (SVD) initialization, over
measurement counts p and ranks r. Success: ‖UUᵀ − X⋆‖_F/‖X⋆‖_F ≤ 1e-2. Claims: a phase transition
near p ≈ 2·n·r, and no significant difference between the two initializations.

X⋆ = QQᵀ with Q an orthonormal random n×r basis (a rank-r PSD matrix with a random subspace);
measurements ⟨A_k, X⋆⟩ with i.i.d. Gaussian A_k. Both initializations of a cell see the same
X⋆ and A (same seed). Centralized gradient descent (J=1; classical DGD when --ranks J > 1).

    python scripts/paper_sensing_phase_transition.py --out results/sensing         # n=40
    python scripts/paper_sensing_phase_transition.py --full --out results/sensing  # n=100
"""

from __future__ import annotations

import sys
import time

import numpy as np

import paper_figures as pf
from dgdlocal import runner

SUCCESS = 1e-2
INITS = ("random", "spectral")


def grid(arguments):
    """(n, ranks, measurement counts, trials, iteration cap)."""
    if arguments.quick:
        return 16, (1, 2), (8, 16, 32, 48, 64, 96), 2, 1500
    if arguments.full:
        return 100, (1, 2, 3, 4, 5), tuple(range(100, 1201, 100)), 3, 1500
    return 40, (1, 2, 3, 4), tuple(range(20, 401, 40)), 3, 1500


def first_crossing(ps, probability, level=0.5):
    """The first p at which the success probability reaches `level` (NaN if never)."""
    above = np.nonzero(np.asarray(probability) >= level)[0]
    return float(ps[above[0]]) if len(above) else float("nan")


def main(argv=None) -> dict:
    parser = pf.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, default=1, help="J: split the measurements over J ranks (default 1)")
    arguments = parser.parse_args(argv)
    launcher = pf.Launcher(arguments.out)
    n, ranks, ps, trials, cap = grid(arguments)
    J = arguments.ranks
    errors = np.full((len(INITS), len(ranks), len(ps), trials), np.nan)
    iterations = np.zeros_like(errors)
    start = time.perf_counter()
    for a, r in enumerate(ranks):
        for b, p in enumerate(ps):
            for t in range(trials):
                for k, init in enumerate(INITS):
                    config = runner.RunConfig(problem="symmetric-sensing", n=n, rank=r, measurements=p,
                                              condition_number=1.0, init=init, iterations=cap, tolerance=1e-4,
                                              log_every=20, seed=1_000_000 * r + 100 * p + t,
                                              weight_transform="lazy", method="dgd-local")   # the weights and order of docs/results.md
                    with np.errstate(over="ignore", invalid="ignore"):   # a diverging run is a failure
                        _, diagnostics = launcher.solve(config, J)
                    if diagnostics is not None:
                        errors[k, a, b, t] = diagnostics["optimality_error"][-1]
                        iterations[k, a, b, t] = diagnostics["iteration"][-1]
    if not launcher.is_root:
        return {}
    elapsed = time.perf_counter() - start
    success = (errors <= SUCCESS).mean(axis=3)   # init × rank × p
    pf.write_summary(launcher.path("phase_transition.h5"),
                     {"relative_error": errors, "iterations": iterations, "success": success,
                      "ranks": np.array(ranks), "measurements": np.array(ps)},
                     {"n": n, "J": J, "trials": trials, "inits": ",".join(INITS), "success_threshold": SUCCESS,
                      "command": launcher.command})

    table = pf.ClaimTable(f"Fig. 1 (no spurious local minima): {launcher.mode}, J={J}, n={n}, ranks {list(ranks)}, "
                          f"p in {ps[0]}..{ps[-1]}, {trials} trials per cell, {elapsed:.0f} s")
    ratios = {}
    for a, r in enumerate(ranks):
        for k, init in enumerate(INITS):
            crossing = first_crossing(ps, success[k, a])
            ratios[(init, r)] = crossing / (n * r)
    finite = [v for v in ratios.values() if np.isfinite(v)]
    table.add("transition p50/(n r) (first p with success >= 0.5), per rank and init",
              "; ".join(f"r={r} {init[:4]} {ratios[(init, r)]:.2f}" for r in ranks for init in INITS),
              len(finite) == len(ratios), **{f"p50_ratio_{init}_r{r}": v for (init, r), v in ratios.items()})
    spread = (min(finite), max(finite)) if finite else (np.nan, np.nan)
    table.add("transition near p = 2 n r: every p50/(n r) within [1, 3]", f"{spread[0]:.2f}..{spread[1]:.2f}",
              bool(finite) and 1.0 <= spread[0] and spread[1] <= 3.0, p50_ratio_min=spread[0], p50_ratio_max=spread[1])
    p_over = np.array(ps)[None, :] / (n * np.array(ranks))[:, None]
    below = success[:, p_over <= 0.6]
    above = success[:, p_over >= 3.0]
    table.add("p <= 0.6 n r (below the information limit): success 0", f"{below.mean():.2f}",
              below.size > 0 and below.max() == 0.0, success_below=float(below.mean()) if below.size else np.nan)
    table.add("p >= 3 n r: success 1", f"{above.mean():.2f}", above.size > 0 and above.min() == 1.0,
              success_above=float(above.mean()) if above.size else np.nan)
    difference = np.abs(success[0] - success[1])
    table.add("random vs spectral: mean |difference| of success probability <= 0.15",
              f"{difference.mean():.3f} (max {difference.max():.2f})", difference.mean() <= 0.15,
              init_difference=float(difference.mean()))
    diverged = ~np.isfinite(errors)
    where = sorted({f"{ps[b] / (n * ranks[a]):.2g}" for _, a, b, _ in zip(*np.nonzero(diverged))})
    table.add("runs that diverged (counted as failures) lie below p = n r", f"{int(diverged.sum())} at p/(n r) in "
              f"{{{', '.join(where)}}}", all(float(x) < 1.0 for x in where), diverged=int(diverged.sum()))
    print(table.render())

    fig, axes = pf.figure(ncols=3, width=4.6, height=3.4)
    for k, init in enumerate(INITS):
        ax = axes[0, k]
        ax.imshow(success[k], origin="lower", aspect="auto", cmap="gray", vmin=0, vmax=1,
                  extent=(ps[0] - (ps[1] - ps[0]) / 2, ps[-1] + (ps[1] - ps[0]) / 2, ranks[0] - 0.5, ranks[-1] + 0.5))
        ax.plot([2 * n * r for r in ranks], ranks, "r--", label="p = 2nr")
        ax.set_title(f"{init} initialization"), ax.set_xlabel("measurements p"), ax.set_ylabel("rank r")
        ax.set_yticks(ranks), ax.legend(fontsize=7, loc="lower right")
    ax = axes[0, 2]
    for k, init in enumerate(INITS):
        ax.plot([ratios[(init, r)] * n * r for r in ranks], ranks, "o-" if k == 0 else "s--", label=init)
    ax.plot([2 * n * r for r in ranks], ranks, "r:", label="p = 2nr")
    ax.set_title("first p with success ≥ 0.5"), ax.set_xlabel("measurements p"), ax.set_ylabel("rank r")
    ax.set_yticks(ranks), ax.legend(fontsize=7), ax.grid(True, alpha=0.3)
    print("figure:", pf.save(fig, launcher.path("phase_transition.png")))
    return {**table.values, "all_hold": table.all_hold}


if __name__ == "__main__":
    outcome = main()
    sys.exit(0 if outcome.get("all_hold", True) else 1)
