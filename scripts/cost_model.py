#!/usr/bin/env python3
"""Cost model of one DGD+LOCAL iteration at J ranks (docs/performance.md, "Cost model").

    python scripts/cost_model.py BENCH.json [--n 100000] [--m 10000000] [--r 10] [--gap-runs GAP.jsonl]

    T_iter(J) = max(T_compute, T_comm) + T_mix
    T_compute = bytes(Y_j) / R          R: bytes of Y_j per second of one iteration, measured (bench section a)
    T_comm    = d · (α + β · 8 n r)      d neighbours, one U_j (n × r float64) to each, serialized on one link
    T_mix     = (d + 2) · 8 n r / B      B: measured streaming bandwidth (reading d + 1 copies, writing one)

Compute and communication overlap (the sends are posted before the local pass), hence the max.
Interconnects: this machine's ping-pong (bench section pingpong) and HDR InfiniBand, α = 1.2 µs
(1-byte RDMA latency on Azure HBv3, docs.azure.cn/en-us/virtual-machines/hbv3-performance),
1/β = 25 GB/s (4 × 50 Gb/s HDR lanes, the link speed Open MPI's verbs code assigns to HDR,
github.com/open-mpi/ompi pull 4946).

Iterations (item 4 check): with --gap-runs (the JSONL of `scripts/bench_network.py gap`), the
iterations to 1e-10 measured in the serial simulation are fitted as  iterations = a + b / gap  and as
iterations = c · gap^(−p), gap = 1 − max(|λ₂|, |λ_J|) of the metropolis W (computed here exactly,
by FFT of the circulant W, up to J = 4096), and time to solution = iterations × T_iter is printed
for ring, torus and exponential graphs at J = 16 … 4096.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np

HDR = dict(alpha_s=1.2e-6, beta_s_per_byte=1 / 25e9)


def degree(topology: str, J: int) -> int:
    if topology == "ring":
        return min(2, J - 1)
    if topology == "torus":
        return 4
    # exponential: i ~ i ± 2^k for 2^k < J (i + J/2 and i − J/2 coincide for J a power of two)
    return len({(s * sign) % J for k in range(J.bit_length()) if (s := 1 << k) < J for sign in (1, -1)})


def predict(J, topology, n, m, r, rate, bandwidth, link):
    y_bytes = 8 * n * m / J
    d = degree(topology, J)
    compute = y_bytes / rate
    comm = d * (link["alpha_s"] + link["beta_s_per_byte"] * 8 * n * r)
    mix = (d + 2) * 8 * n * r / bandwidth
    total = max(compute, comm) + mix
    return dict(J=J, topology=topology, degree=d, Y_j_GB=y_bytes / 1e9, compute_s=compute, comm_s=comm, mix_s=mix,
                iteration_s=total, efficiency=compute / total)


def spectral_gap(topology: str, J: int, transform: str = "shift") -> float:
    """1 − max(|λ₂|, |λ_J|) of dgdlocal's metropolis W̃ under --weight-transform, from the FFT of the rule's W.

    ring and exponential (J a power of two) give circulant W; the torus (rows × cols grid, wrapped,
    rank = row · cols + col) a block-circulant one, diagonalized by the 2-D FFT. The transform
    (1 − t) W + t I maps each eigenvalue λ to (1 − t) λ + t, with t as in topology.self_weight_shift
    (shift: topology.psd_shift of the FFT's λ_min; lazy: ½ iff ω ≥ ½)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
    from dgdlocal import topology as top
    W = top.mixing_weights(top.build_adjacency(topology, J), "metropolis")
    if topology == "torus":
        rows, cols = top.grid_shape(J)
        first = W[0].reshape(rows, cols)
        for k in (1, cols, J - 1):  # spot-check the block-circulant structure
            i, j = divmod(k, cols)
            assert np.allclose(W[k].reshape(rows, cols), np.roll(np.roll(first, i, 0), j, 1))
        eigenvalues = np.sort(np.fft.fft2(first).real.ravel())
    else:
        for k in (1, J // 2, J - 1):
            assert np.allclose(W[k], np.roll(W[0], k))
        eigenvalues = np.sort(np.fft.fft(W[0]).real)
    if transform == "lazy":
        t = 0.5 if top.omega(W) >= 0.5 else 0.0
    else:
        t = top.psd_shift(eigenvalues[0])
    eigenvalues = (1.0 - t) * eigenvalues + t
    return float(1.0 - max(abs(eigenvalues[-2]), abs(eigenvalues[0])))


def fit_iterations(path):
    """Least-squares fits of the converged rows: (a, b) of a + b/gap and (c, p) of c·gap^(−p), with the rows."""
    rows = [json.loads(line) for line in open(path)]
    rows = [x for x in rows if x.get("sweep") == "gap"]
    if len({x.get("rebalance_every") for x in rows}) > 1:
        sys.exit(f"{path}: gap rows with different --rebalance-every; fit one setting per file")
    done = [x for x in rows if x["iterations"]]
    gaps = np.array([x["spectral_gap"] for x in done])
    its = np.array([x["iterations"] for x in done], dtype=float)
    a, b = np.linalg.lstsq(np.column_stack([np.ones_like(gaps), 1 / gaps]), its, rcond=None)[0]
    slope, intercept = np.polyfit(np.log(1 / gaps), np.log(its), 1)
    Js = np.array([x["J"] for x in done], dtype=float)
    two = np.linalg.lstsq(np.column_stack([np.ones_like(gaps), np.log(1 / gaps), np.log(Js)]), np.log(its), rcond=None)[0]
    return (a, b), (math.exp(intercept), slope), rows, (math.exp(two[0]), two[1], two[2])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bench_json", nargs="?", help="bench.py JSON (sections a, pingpong); without it R and B "
                        "are --rate-GBs and --bandwidth-GBs and only the HDR link is modelled")
    parser.add_argument("--rate-GBs", type=float, default=2.98, help="R without a bench JSON (bench-1 value, r = 5)")
    parser.add_argument("--bandwidth-GBs", type=float, default=11.9, help="B without a bench JSON (bench-1 value)")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--m", type=int, default=10_000_000)
    parser.add_argument("--r", type=int, default=10)
    parser.add_argument("--gap-runs", help="JSONL of scripts/bench_network.py gap: adds the iteration model")
    parser.add_argument("--weight-transform", choices=("shift", "lazy"), default="shift",
                        help="the weights whose spectral gap the iteration model uses (that of the gap runs; "
                             "docs/performance.md §7a's fits are lazy)")
    arguments = parser.parse_args()
    if arguments.bench_json:
        with open(arguments.bench_json) as handle:
            bench = json.load(handle)
        rows_a = [x for x in bench["a"] if x["dtype"] == "float64" and x["MB"] >= 256]
        same_r = [x for x in rows_a if x["r"] == arguments.r] or rows_a
        rate = sorted(x["n"] * x["m_j"] * 8 / x["iteration_s"] for x in same_r)[len(same_r) // 2]
        bandwidth = sorted(x["bandwidth_GBs"] * 1e9 for x in rows_a)[len(rows_a) // 2]
    else:
        bench, rate, bandwidth = {}, arguments.rate_GBs * 1e9, arguments.bandwidth_GBs * 1e9
    links = {"HDR InfiniBand (cited)": HDR}
    for label, fit in bench.get("pingpong", {}).items():
        links[f"this machine, {label}"] = fit
    print(f"n = {arguments.n}, m = {arguments.m}, r = {arguments.r}; measured iteration rate R = {rate / 1e9:.2f} GB/s "
          f"of Y_j, streaming bandwidth B = {bandwidth / 1e9:.1f} GB/s; U_j message {8 * arguments.n * arguments.r / 1e6:.1f} MB\n")
    print("| link | topology | J | degree | Y_j [GB] | compute [s] | comm [ms] | mix [ms] | iteration [s] | efficiency |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, link in links.items():
        for topology in ("ring", "torus", "exponential"):
            for J in (16, 64, 256, 1024, 4096):
                p = predict(J, topology, arguments.n, arguments.m, arguments.r, rate, bandwidth, link)
                print(f"| {label} | {topology} | {J} | {p['degree']} | {p['Y_j_GB']:.2f} | {p['compute_s']:.3g} | "
                      f"{1e3 * p['comm_s']:.3g} | {1e3 * p['mix_s']:.3g} | {p['iteration_s']:.3g} | {p['efficiency']:.3f} |")
    # where communication would stop hiding behind compute
    for label, link in links.items():
        for topology in ("ring", "exponential"):
            J = 16
            while J < 1 << 30:
                p = predict(J, topology, arguments.n, arguments.m, arguments.r, rate, bandwidth, link)
                if p["comm_s"] >= p["compute_s"]:
                    break
                J *= 2
            print(f"\n{label}, {topology}: communication exceeds compute from J ≈ {J} "
                  f"(Y_j = {8 * arguments.n * arguments.m / J / 1e6:.1f} MB per rank)" if J < 1 << 30 else "")
    if arguments.gap_runs:
        iteration_model(arguments.gap_runs, arguments.n, arguments.m, arguments.r, rate, bandwidth,
                        arguments.weight_transform)




def iteration_model(path, n, m, r, rate, bandwidth, transform="shift"):
    (a, b), (c, p), rows, (k, p2, q) = fit_iterations(path)
    print(f"\n### Iterations vs spectral gap (serial simulation, {path})\n")
    print(f"fit over the {sum(1 for x in rows if x['iterations'])} converged runs: iterations ≈ {a:.0f} + {b:.0f}/gap; "
          f"power law iterations ≈ {c:.0f} · gap^(−{p:.2f}); with J: iterations ≈ {k:.0f} · gap^(−{p2:.2f}) · J^{q:.2f}\n")
    print("| J | topology | gap (simulation) | gap (FFT) | iterations to 1e-10 (cap) | a + b/gap | c·gap^(−p) | k·gap^(−p')·J^q |")
    print("|---|---|---|---|---|---|---|---|")
    errors = [[], [], []]
    for x in rows:
        g = spectral_gap(x["topology"], x["J"], transform)
        measured = (x["iterations"] if x["iterations"] else "diverged" if x.get("status") == "diverged"
                    else f"> {x['cap']} (rel. error {x['final_error']:.1e})")
        fits = [a + b / g, c * g ** -p, k * g ** -p2 * x["J"] ** q]
        if x["iterations"]:
            for e, f in zip(errors, fits):
                e.append(f / x["iterations"] - 1)
        print(f"| {x['J']} | {x['topology']} | {x['spectral_gap']:.4g} | {g:.4g} | {measured} | {fits[0]:.0f} | "
              f"{fits[1]:.0f} | {fits[2]:.0f} |")
    print("\nfit / measured − 1 over the converged rows (min … max): "
          + "; ".join(f"{name} {100 * min(e):+.0f} % … {100 * max(e):+.0f} %"
                      for name, e in zip(("a + b/gap", "c·gap^(−p)", "k·gap^(−p')·J^q"), errors)))
    print(f"\n### Time to solution, HDR InfiniBand, n = {n}, m = {m}, r = {r} (iterations from the three fits)\n")
    print("| topology | J | gap | iterations: a + b/gap | c·gap^(−p) | k·gap^(−p')·J^q | iteration [s] | "
          "time to 1e-10 [h], range of the fits |")
    print("|---|---|---|---|---|---|---|---|")
    for topology in ("ring", "torus", "exponential"):
        for J in (16, 64, 256, 1024, 4096):
            g = spectral_gap(topology, J, transform)
            fits = [a + b / g, c * g ** -p, k * g ** -p2 * J ** q]
            t = predict(J, topology, n, m, r, rate, bandwidth, HDR)["iteration_s"]
            print(f"| {topology} | {J} | {g:.3g} | {fits[0]:.3g} | {fits[1]:.3g} | {fits[2]:.3g} | {t:.3g} | "
                  f"{min(fits) * t / 3600:.3g} – {max(fits) * t / 3600:.3g} |")


if __name__ == "__main__":
    main()
