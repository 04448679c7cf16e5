#!/usr/bin/env python3
"""Cost model of one DGD+LOCAL iteration at J ranks (docs/performance.md, "Cost model").

    python scripts/cost_model.py BENCH.json [--n 100000] [--m 10000000] [--r 10]

    T_iter(J) = max(T_compute, T_comm) + T_mix
    T_compute = bytes(Y_j) / R          R: bytes of Y_j per second of one iteration, measured (bench section a)
    T_comm    = d · (α + β · 8 n r)      d neighbours, one U_j (n × r float64) to each, serialized on one link
    T_mix     = (d + 2) · 8 n r / B      B: measured streaming bandwidth (reading d + 1 copies, writing one)

Compute and communication overlap (the sends are posted before the local pass), hence the max.
Interconnects: this machine's ping-pong (bench section pingpong) and HDR InfiniBand, α = 1.2 µs
(1-byte RDMA latency on Azure HBv3, docs.azure.cn/en-us/virtual-machines/hbv3-performance),
1/β = 25 GB/s (4 × 50 Gb/s HDR lanes, the link speed Open MPI's verbs code assigns to HDR,
github.com/open-mpi/ompi pull 4946).
"""

from __future__ import annotations

import argparse
import json
import math

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bench_json")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--m", type=int, default=10_000_000)
    parser.add_argument("--r", type=int, default=10)
    arguments = parser.parse_args()
    with open(arguments.bench_json) as handle:
        bench = json.load(handle)
    rows_a = [x for x in bench["a"] if x["dtype"] == "float64" and x["MB"] >= 256]
    same_r = [x for x in rows_a if x["r"] == arguments.r] or rows_a
    rate = sorted(x["n"] * x["m_j"] * 8 / x["iteration_s"] for x in same_r)[len(same_r) // 2]
    bandwidth = sorted(x["bandwidth_GBs"] * 1e9 for x in rows_a)[len(rows_a) // 2]
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


if __name__ == "__main__":
    main()
