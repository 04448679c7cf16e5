#!/usr/bin/env python3
"""Benchmarks of dgdlocal on this machine; writes a JSON file and a markdown table.

    python scripts/bench.py [--quick] [--sections a,overlap,b,c,d,e,pingpong,gap,weights] [--out DIR]
                            [--sizes 256,512 --ranks 1,2,3,5 --dtypes float64]   # sections a, overlap (--ranks also c)

Sections (issue 6): a roofline (stream Y_j once vs one iteration), overlap the compiled pass
against the memory roof and its own speed on a block in cache, b the three local-gradient
formulations, c scaling at 1 and 2 ranks (from /timing of the result files), d iterations and
time to relative error 1e-6 / 1e-10 vs centralized gradient descent and truncated SVDs, e peak
resident memory per rank vs bytes of Y_j, pingpong the α–β model of the MPI transport, gap
iterations vs spectral gap in the serial simulation, weights iterations by weight rule × step ×
topology. Every timing is the median of repeats; ratios are taken in the same run.
`--quick` shrinks every size so the whole script runs in seconds (a smoke test, not a measurement).
Never run from the unit tests except as that smoke test.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from dgdlocal import kernels, problems, runner  # noqa: E402

SECTIONS = ("a", "overlap", "b", "c", "d", "e", "pingpong", "gap", "weights")
MB = 1 << 20


#: The clock of median_time (sections a, overlap and b): wall time, or with --clock cpu the CPU time of this
#: thread, which leaves out the time the process waits for a core on a shared machine (all timed
#: work runs in this one thread: one BLAS thread, the compiled kernel is serial).
CLOCK = time.perf_counter


def median_time(action, repeats):
    times = []
    for _ in range(repeats):
        start = CLOCK()
        action()
        times.append(CLOCK() - start)
    return float(np.median(times))


def mpirun(J, args, timeout):
    command = ["timeout", "-k", "5", str(timeout), "mpirun", "-n", str(J), sys.executable, *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def read_result(path):
    import h5py

    with h5py.File(path, "r") as handle:
        out = {name: handle[f"timing/{name}"][...].tolist() for name in handle["timing"]}
        out["diagnostics"] = {name: handle[f"diagnostics/{name}"][...] for name in handle["diagnostics"]}
        out["step_size"] = float(handle["config"].attrs["step_size"])
        out["status"] = str(handle.attrs["status"])
    return out


# --------------------------------------------------------------------------- a: roofline


def one_iteration(U, V, Y, mixed, step):
    """The per-iteration work of one rank: the gradient pass and the two updates."""
    _, grad_U, grad_V = problems.factorization_value_and_gradients(U, V, Y, value=False)
    return mixed - step * grad_U, V - step * grad_V


def with_kernel(mode, action):
    """Run action() with DGDLOCAL_KERNEL=mode (numpy: the blocked numpy pass; numba: the compiled pass)."""
    previous = os.environ.get(kernels.ENVIRONMENT)
    os.environ[kernels.ENVIRONMENT] = mode
    try:
        return action()
    finally:
        if previous is None:
            del os.environ[kernels.ENVIRONMENT]
        else:
            os.environ[kernels.ENVIRONMENT] = previous


def section_a(quick, repeats, sizes=None, ranks=None, dtypes=None):
    sizes = sizes or ([8, 32] if quick else [8, 64, 256, 512, 1024])
    ranks = ranks or ([5] if quick else [1, 2, 3, 5, 10])
    dtypes = dtypes or ["float64", "float32"]
    m_j = 1024 if quick else 8192
    compiled = kernels.available()
    rng = np.random.default_rng(0)
    rows, first_calls = [], []
    for dtype in (np.dtype(d) for d in dtypes):
        for size in sizes:
            n = size * MB // (dtype.itemsize * m_j)
            Y = rng.random((n, m_j), dtype=dtype)
            x = np.ones(m_j, dtype=dtype)
            for r in ranks:
                U = rng.random((n, r), dtype=dtype)
                V = rng.random((m_j, r), dtype=dtype)
                paths = {"numpy": lambda: with_kernel("numpy", lambda: one_iteration(U, V, Y, U, 1e-3))}
                if compiled:
                    paths["numba"] = lambda: with_kernel("numba", lambda: one_iteration(U, V, Y, U, 1e-3))
                    start = time.perf_counter()
                    paths["numba"]()   # compilation (or loading it from numba's cache) is not timed below
                    first_calls.append(time.perf_counter() - start)
                # interleave the reference and the iterations so all see the same machine load
                stream, summed, iteration = [], [], {path: [] for path in paths}
                for _ in range(repeats):
                    stream.append(median_time(lambda: Y @ x, 1))
                    summed.append(median_time(lambda: np.sum(Y), 1))
                    for path, action in paths.items():
                        iteration[path].append(median_time(action, 1))
                t_stream, t_sum = float(np.median(stream)), float(np.median(summed))
                t_ref = min(t_stream, t_sum)
                times = {path: float(np.median(v)) for path, v in iteration.items()}
                default = "numba" if compiled and with_kernel("auto", lambda: kernels.use_compiled(U, V, Y)) else "numpy"
                rows.append(dict(dtype=dtype.name, MB=size, n=n, m_j=m_j, r=r, stream_s=t_ref,
                                 gemv_s=t_stream, sum_s=t_sum, bandwidth_GBs=Y.nbytes / t_ref / 1e9,
                                 numpy_s=times["numpy"], numpy_ratio=times["numpy"] / t_ref,
                                 numba_s=times.get("numba"), numba_ratio=times["numba"] / t_ref if compiled else None,
                                 default=default, iteration_s=times[default], ratio=times[default] / t_ref,
                                 gflops=4 * n * m_j * r / times[default] / 1e9))
                print(f"a {rows[-1]}", flush=True)
            del Y
    if compiled:
        import numba

        table = [f"numpy path: blocked numpy pass (`DGDLOCAL_KERNEL=numpy`); numba path: the compiled single pass "
                 f"(numba {numba.__version__}, `dgdlocal/_numba_gram.py`); its first call per (dtype, r) "
                 f"(compilation or numba cache load, not in the timings) took {min(first_calls):.2f}–"
                 f"{max(first_calls):.2f} s. Ratio = iteration / stream Y_j once; the solver's default is "
                 f"the compiled pass for Y_j ≥ {kernels.MIN_BYTES // MB} MB.", "",
                 "| dtype | Y_j MB | n × m_j | r | stream Y_j once [ms] | GB/s | numpy iteration [ms] | ratio | "
                 "numba iteration [ms] | ratio | speed-up | GFlop/s (4nm r, numba) |",
                 "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        table += [f"| {x['dtype']} | {x['MB']} | {x['n']}×{x['m_j']} | {x['r']} | {1e3 * x['stream_s']:.2f} | "
                  f"{x['bandwidth_GBs']:.1f} | {1e3 * x['numpy_s']:.2f} | {x['numpy_ratio']:.2f} | "
                  f"{1e3 * x['numba_s']:.2f} | **{x['numba_ratio']:.2f}** | {x['numpy_s'] / x['numba_s']:.2f} | "
                  f"{4 * x['n'] * x['m_j'] * x['r'] / x['numba_s'] / 1e9:.1f} |" for x in rows]
    else:
        table = ["numba is not installed: numpy path only (`pip install 'dgdlocal[fast]'` adds the compiled pass).", "",
                 "| dtype | Y_j MB | n × m_j | r | stream Y_j once [ms] | GB/s | iteration [ms] | ratio | GFlop/s (4nm r) |",
                 "|---|---|---|---|---|---|---|---|---|"]
        table += [f"| {x['dtype']} | {x['MB']} | {x['n']}×{x['m_j']} | {x['r']} | {1e3 * x['stream_s']:.2f} | "
                  f"{x['bandwidth_GBs']:.1f} | {1e3 * x['iteration_s']:.2f} | **{x['ratio']:.2f}** | {x['gflops']:.1f} |"
                  for x in rows]
    return rows, table


# --------------------------------------------------------------------------- overlap: where the pass's time goes


def section_overlap(quick, repeats, sizes=None, ranks=None, dtypes=None):
    """The compiled pass on Y_j against two roofs measured in the same run: the stream time of Y_j
    (memory) and the same pass on a 1 MB block that stays in cache (arithmetic, scaled to the entries of Y_j).
    Perfect overlap of the two would take max(stream, compute); no overlap takes their sum.
    The arithmetic peak of the core is bounded by a large matrix product (the BLAS in use)."""
    if not kernels.available():
        return dict(rows=[]), ["numba is not installed: this section times the compiled pass only."]
    sizes = sizes or ([16] if quick else [256])
    ranks = ranks or ([2] if quick else [1, 2, 3, 5])
    dtypes = dtypes or ["float64", "float32"]
    m_j = 1024 if quick else 8192
    rng = np.random.default_rng(0)
    rows, peaks = [], {}
    for dtype in (np.dtype(d) for d in dtypes):
        side = 300 if quick else 2000
        A = rng.random((side, side), dtype=dtype)
        peaks[dtype.name] = 2 * side ** 3 / min(median_time(lambda: A @ A, 1) for _ in range(3)) / 1e9
        for size in sizes:
            n = size * MB // (dtype.itemsize * m_j)
            Y = rng.random((n, m_j), dtype=dtype)
            x = np.ones(m_j, dtype=dtype)
            block_rows = max(8, MB // (dtype.itemsize * m_j))   # 1 MB: the L2 of one core here (with L3 behind)
            for r in ranks:
                U = rng.random((n, r), dtype=dtype)
                V = rng.random((m_j, r), dtype=dtype)
                # the block's products go into preallocated outputs, so no allocation is timed with them
                U_block, Y_block, Vt = U[:block_rows].copy(), Y[:block_rows].copy(), np.ascontiguousarray(V.T)
                YV_block, UtY_block = np.zeros((block_rows, r), dtype=dtype), np.zeros((r, m_j), dtype=dtype)
                block_pass = functools.partial(kernels.driver(r), Y_block, U_block, Vt, YV_block, UtY_block,
                                               kernels.panel_columns(m_j, r, dtype.itemsize))
                calls = max(1, Y.size // Y_block.size)
                block_pass()   # compile or load from numba's cache, untimed
                kernels.gram_products(U, V, Y)
                Ut = np.ascontiguousarray(U.T)
                stream, compute, measured, blas_YV, blas_UtY = [], [], [], [], []
                for _ in range(repeats):   # interleaved, so all see the same machine load
                    stream.append(min(median_time(lambda: Y @ x, 1), median_time(lambda: np.sum(Y), 1)))
                    compute.append(median_time(lambda: [block_pass() for _ in range(calls)], 1)
                                   * Y.size / (calls * Y_block.size))
                    measured.append(median_time(lambda: kernels.gram_products(U, V, Y), 1))
                    # the BLAS's own kernels from memory, each doing one of the pass's two products (half its work)
                    blas_YV.append(median_time(lambda: Y @ V, 1))
                    blas_UtY.append(median_time(lambda: Ut @ Y, 1))
                t_stream, t_compute, t_pass, t_YV, t_UtY = (float(np.median(v)) for v in
                                                            (stream, compute, measured, blas_YV, blas_UtY))
                rows.append(dict(dtype=dtype.name, MB=size, n=n, m_j=m_j, r=r, stream_s=t_stream, compute_s=t_compute,
                                 pass_s=t_pass, ratio=t_pass / t_stream, blas_YV_ratio=t_YV / t_stream,
                                 blas_UtY_ratio=t_UtY / t_stream,
                                 overlap=(t_stream + t_compute - t_pass) / min(t_stream, t_compute),
                                 gfma_in_cache=2 * r * Y.size / t_compute / 1e9,
                                 gfma_peak=peaks[dtype.name] / 2))
                print(f"overlap {rows[-1]}", flush=True)
            del Y
    blas = os.environ.get("OPENBLAS_CORETYPE")
    table = ["Compiled pass alone (Y V and Uᵀ Y), one process. Compute = the pass on a 1 MB block of Y_j, "
             "which stays in cache (L2, with Vᵀ and Uᵀ Y partly in L3), repeated to the entries of Y_j. "
             "Overlap = (stream + compute − pass) / min(stream, compute): 1 is perfect overlap (pass = max), "
             "0 none (pass = sum). Peak = a large matrix product "
             f"in the BLAS in use{f' (OPENBLAS_CORETYPE={blas})' if blas else ''}: "
             + ", ".join(f"{name} {gflops / 2:.0f} G FMA/s" for name, gflops in peaks.items()) + ". "
             "BLAS Y V, BLAS Uᵀ Y: numpy's matmul (the BLAS) on the whole Y_j, each one of the pass's two products, "
             "over the same stream time.", "",
             "| dtype | Y_j MB | r | stream [ms] | compute in cache [ms] | G FMA/s in cache (peak) | max model | "
             "sum model | pass [ms] | pass / stream | overlap | BLAS Y V / stream | BLAS Uᵀ Y / stream |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    table += [f"| {x['dtype']} | {x['MB']} | {x['r']} | {1e3 * x['stream_s']:.2f} | {1e3 * x['compute_s']:.2f} | "
              f"{x['gfma_in_cache']:.0f} ({x['gfma_peak']:.0f}) | {1e3 * max(x['stream_s'], x['compute_s']):.2f} | "
              f"{1e3 * (x['stream_s'] + x['compute_s']):.2f} | {1e3 * x['pass_s']:.2f} | **{x['ratio']:.2f}** | "
              f"{x['overlap']:.2f} | {x['blas_YV_ratio']:.2f} | {x['blas_UtY_ratio']:.2f} |" for x in rows]
    return dict(rows=rows, peak_gflops=peaks, openblas_coretype=blas), table


# --------------------------------------------------------------------------- b: formulations


def naive(U, V, Y):
    R = U @ V.T - Y
    return float(np.vdot(R, R)), 2 * R @ V, 2 * R.T @ U


def gram_two_pass(U, V, Y, y2):
    YV = Y @ V
    YtU = Y.T @ U
    VtV, UtU = V.T @ V, U.T @ U
    value = y2 - 2 * float(np.vdot(U, YV)) + float(np.vdot(UtU, VtV))
    return value, 2 * (U @ VtV - YV), 2 * (V @ UtU - YtU)


def section_b(quick, repeats):
    size = 16 if quick else 256
    r, m_j = 5, (1024 if quick else 8192)
    n = size * MB // (8 * m_j)
    rng = np.random.default_rng(1)
    Y = rng.random((n, m_j))
    U, V = rng.random((n, r)), rng.random((m_j, r))
    y2 = float(np.vdot(Y, Y))
    formulations = {
        "naive full residual": lambda: naive(U, V, Y),
        "two-pass Gram form (Y V, Yᵀ U)": lambda: gram_two_pass(U, V, Y, y2),
        "single blocked pass, residual (diagnostic iterations)":
            lambda: problems.factorization_value_and_gradients(U, V, Y, value=True),
        "single blocked pass, Gram form (every other iteration)":
            lambda: with_kernel("numpy", lambda: problems.factorization_value_and_gradients(U, V, Y, value=False)),
    }
    if kernels.available():
        formulations["single compiled pass, Gram form (numba)"] = \
            lambda: with_kernel("numba", lambda: problems.factorization_value_and_gradients(U, V, Y, value=False))
        formulations["single compiled pass, Gram form (numba)"]()   # compile outside the timings
    rows = []
    times = {name: [] for name in formulations}
    for _ in range(repeats):
        for name, kernel in formulations.items():
            times[name].append(median_time(kernel, 1))
    for name, kernel in formulations.items():
        tracemalloc.start()
        kernel()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        rows.append(dict(kernel=name, seconds=float(np.median(times[name])), peak_extra_MB=peak / MB,
                         Y_MB=Y.nbytes / MB, n=n, m_j=m_j, r=r))
        print(f"b {rows[-1]}", flush=True)
    table = [f"Y_j {n}×{m_j} float64 ({Y.nbytes / MB:.0f} MB), r = {r}; peak = extra numpy memory (tracemalloc) "
             "beyond Y_j, U, V.", "",
             "| formulation | time [ms] | vs single blocked Gram pass | peak extra memory [MB] |", "|---|---|---|---|"]
    base = rows[3]["seconds"]
    table += [f"| {x['kernel']} | {1e3 * x['seconds']:.1f} | {x['seconds'] / base:.2f} | {x['peak_extra_MB']:.2f} |"
              for x in rows]
    return rows, table


# --------------------------------------------------------------------------- c: scaling


def run_timed(J, n, m, r, iterations, workdir, tag, extra=()):
    output = os.path.join(workdir, f"{tag}-J{J}.h5")
    args = ["-m", "dgdlocal", "run", "--n", str(n), "--m", str(m), "--rank", str(r), "--iterations", str(iterations),
            "--tolerance", "0", "--log-every", str(iterations), "--step", "1e-4", "--quiet", "--force",
            "--output", output, *extra]
    mpirun(J, args, timeout=600)
    result = read_result(output)
    os.remove(output)
    per_rank = [(c + w) / iterations for c, w in zip(result["compute"], result["wait"])]
    return dict(J=J, n=n, m=m, iteration_s=max(per_rank),
                wait_share=max(w / (c + w) for c, w in zip(result["compute"], result["wait"])),
                compute=result["compute"], wait=result["wait"], diagnostics=result["diagnostics"])


def section_c(quick, repeats, workdir, ranks=None):
    """Strong (one matrix on 1 and 2 ranks) and weak (one Y_j per rank) scaling, per r in `ranks`:
    r = 5 is close to memory-bound with the compiled pass (both ranks share the memory bus), r = 20 compute-bound.

    Three runs: J = 1 with m_per_rank columns, J = 1 and J = 2 with 2·m_per_rank. The J = 2 run is the
    second run of both ratios (strong: same matrix; weak: same Y_j per rank), so both use its one median."""
    n, m_per_rank = (400, 2000) if quick else (2000, 8192)
    ranks = ranks or ([5] if quick else [5, 20])
    iterations = 20 if quick else 200
    runs = {"J=1, one block": (1, m_per_rank), "J=1, two blocks": (1, 2 * m_per_rank),
            "J=2, two blocks": (2, 2 * m_per_rank)}
    results, table = [], [f"n = {n}, {iterations} iterations, per-iteration time = max over ranks of "
                          f"(compute + wait) from /timing (the compiled kernel's load is in /timing/startup, not "
                          f"here); median of {repeats}, runs interleaved. Strong scaling: J=1 / J=2 on the two-block "
                          f"matrix; weak: J=1 on one block / J=2 on two blocks (one block per rank).", ""]
    for r in ranks:
        samples = {name: [] for name in runs}
        for _ in range(repeats):
            for name, (J, m) in runs.items():
                samples[name].append(run_timed(J, n, m, r, iterations, workdir, f"J{J}-m{m}"))
        med = {name: float(np.median([s["iteration_s"] for s in runs_])) for name, runs_ in samples.items()}
        wait = {name: float(np.median([s["wait_share"] for s in runs_])) for name, runs_ in samples.items()}
        result = dict(n=n, m_per_rank=m_per_rank, r=r, iterations=iterations, iteration_s=med, wait_share=wait,
                      strong_speedup=med["J=1, two blocks"] / med["J=2, two blocks"],
                      weak_efficiency=med["J=1, one block"] / med["J=2, two blocks"],
                      samples={k: [s["iteration_s"] for s in v] for k, v in samples.items()})
        results.append(result)
        print(f"c {result}", flush=True)
        table += [f"r = {r}:", "", "| run | m | Y_j per rank [MB] | iteration [ms] | wait share (max rank) |",
                  "|---|---|---|---|---|"]
        for name, (J, m) in runs.items():
            table.append(f"| {name} | {m} | {n * m // J * 8 / MB:.0f} | {1e3 * med[name]:.2f} | "
                         f"{100 * wait[name]:.1f} % |")
        table += ["", f"strong-scaling speed-up 1→2 ranks: **{result['strong_speedup']:.2f}** (goal ≥ 1.8); "
                  f"weak-scaling efficiency: **{result['weak_efficiency']:.2f}** (goal ≥ 0.9); "
                  f"largest wait share: **{100 * max(wait.values()):.1f} %** (goal ≤ 10 %)", ""]
    return results, table


# --------------------------------------------------------------------------- d: time to solution


def first_crossing(iterations, elapsed, errors, level):
    hit = np.flatnonzero(np.asarray(errors) <= level)
    return (int(iterations[hit[0]]), float(elapsed[hit[0]])) if hit.size else (None, None)


def centralized_gd(Y, U, V, step, cap, every, levels):
    """Plain gradient descent on ‖U Vᵀ − Y‖² (numpy, one process) from the same start and step."""
    y_norm = np.linalg.norm(Y)
    found, start = {}, time.perf_counter()
    for k in range(cap + 1):
        if k % every == 0:
            error = np.linalg.norm(U @ V.T - Y) / y_norm
            for level in levels:
                if level not in found and error <= level:
                    found[level] = (k, time.perf_counter() - start)
            if len(found) == len(levels):
                break
        R = U @ V.T - Y
        U, V = U - step * 2 * R @ V, V - step * 2 * R.T @ U
    return {level: found.get(level, (None, None)) for level in levels}


#: section d's DGD+LOCAL runs: the papers' algorithm (lazy weights, step µ on U, their order), the default weights
#: and U step (self-weight shift, --u-step-scale auto) in the papers' order, in adapt-then-combine order (--method
#: atc), and the defaults (--method auto: atc-overlap, README)
D_VARIANTS = (("DGD+LOCAL, 2 MPI ranks, ring, --weight-transform lazy --u-step-scale 1 --method dgd-local (the papers')",
               ["--weight-transform", "lazy", "--u-step-scale", "1", "--method", "dgd-local"]),
              ("DGD+LOCAL, 2 MPI ranks, ring, --method dgd-local", ["--method", "dgd-local"]),
              ("DGD+LOCAL, 2 MPI ranks, ring, --method atc", ["--method", "atc"]),
              ("DGD+LOCAL, 2 MPI ranks, ring, defaults (--method atc-overlap)", []))


def section_d(quick, workdir):
    from scipy.sparse.linalg import svds
    from sklearn.utils.extmath import randomized_svd

    from dgdlocal import data, solver

    shapes = [(100, 400, 5, 2.0)] if quick else [(100, 400, 5, 2.0), (500, 4000, 10, 10.0)]
    levels = (1e-6, 1e-10)
    rows = []
    for n, m, r, kappa in shapes:
        cap = 5000 if quick else 200000
        output = os.path.join(workdir, "d.h5")
        dgd, steps = {}, {}
        for label, options in D_VARIANTS:
            args = ["-m", "dgdlocal", "run", "--n", str(n), "--m", str(m), "--rank", str(r), "--condition-number",
                    str(kappa), "--iterations", str(cap), "--tolerance", "1e-11", "--log-every", "10", "--quiet",
                    "--force", "--output", output, *options]
            mpirun(2, args, timeout=1200)
            result = read_result(output)
            diag = result["diagnostics"]
            dgd[label] = {level: first_crossing(diag["iteration"], diag["elapsed"], diag["relative_error"], level)
                          for level in levels}
            steps[label] = result["step_size"]   # --step auto: 2× for the atc orders on this 2-rank network
            os.remove(output)
        # the same matrix and start, centralized: Ū(0) = mean of the copies, V(0) stacked
        spec = data.SyntheticSpec(n, m, r, kappa, 0.0, 0)
        offsets = data.column_partition(m, 2)
        Y = np.concatenate([data.synthetic_block(spec, j, offsets[j], offsets[j + 1]).Y for j in range(2)], axis=1)
        sigma1 = float(np.linalg.norm(Y, 2))
        scale = runner.INIT_SCALE_FACTOR * math.sqrt(sigma1 / max(n, m))
        starts = [solver.initial_factors(0, 2, j, n, offsets[j + 1] - offsets[j], r, scale) for j in range(2)]
        U0 = (starts[0][0] + starts[1][0]) / 2
        V0 = np.concatenate([s[1] for s in starts])
        # centralized GD with each step a variant took (keys: the step as text, so the row stays JSON)
        central = {f"{step:g}": centralized_gd(Y, U0, V0, step, cap, 10, levels) for step in sorted(set(steps.values()))}
        row = dict(n=n, m=m, r=r, condition_number=kappa, steps=steps, dgd=dgd, central=central)
        y_norm = np.linalg.norm(Y)
        svd_times = {}
        for name, action in {
            "numpy.linalg.svd": lambda: np.linalg.svd(Y, full_matrices=False),
            "scipy svds": lambda: svds(Y, k=r, random_state=0),
            "sklearn randomized_svd": lambda: randomized_svd(Y, r, random_state=0),
        }.items():
            seconds = median_time(action, 3)
            P, s, Q = action()
            if name == "numpy.linalg.svd":
                P, s, Q = P[:, :r], s[:r], Q[:r]
            svd_times[name] = (seconds, float(np.linalg.norm((P * s) @ Q - Y) / y_norm))
        row["svd"] = svd_times
        rows.append(row)
        print(f"d {row}", flush=True)
    table = ["| matrix | method | iterations to 1e-6 | time [s] | iterations to 1e-10 | time [s] |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        label = f"{row['n']}×{row['m']}, r={row['r']}, κ={row['condition_number']:g}"
        methods = [*row["dgd"].items(), *((f"centralized GD, µ = {step}", found) for step, found in row["central"].items())]
        for method, found in methods:
            cells = []
            for level in levels:
                k, t = found[level]
                cells += [str(k) if k is not None else "not reached", f"{t:.3f}" if t is not None else "—"]
            table.append(f"| {label} | {method} | " + " | ".join(cells) + " |")
        for method, found in row["dgd"].items():
            step = f"{row['steps'][method]:g}"
            central = row["central"][step]
            ratio = [(found[lv][0] / central[lv][0]) if found[lv][0] and central[lv][0] else math.nan for lv in levels]
            table.append(f"| {label} | iterations / centralized with its µ = {step}, {method.split(', ')[-1]} | "
                         f"{ratio[0]:.2f} | | {ratio[1]:.2f} | |")
        for name, (seconds, error) in row["svd"].items():
            table.append(f"| {label} | {name} (rel. error {error:.1e}) | — | {seconds:.3f} | — | {seconds:.3f} |")
    return rows, table


# --------------------------------------------------------------------------- e: peak memory

RSS_CHILD = r"""
import os, resource, runpy, sys
sys.argv = ["dgdlocal"] + sys.argv[1:]
try:
    runpy.run_module("dgdlocal", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
finally:
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"RSS {os.environ.get('PMI_RANK', '0')} {peak_kb}", file=sys.stderr, flush=True)
"""


def section_e(quick, workdir):
    shapes = [(400, 4000)] if quick else [(4000, 32768), (8000, 32768)]
    rows = []
    for n, m in shapes:
        path = os.path.join(workdir, "e.h5")
        subprocess.run([sys.executable, "-m", "dgdlocal", "generate", "--n", str(n), "--m", str(m), "--rank", "5",
                        "--output", path, "--force"], check=True, capture_output=True, timeout=900)
        # baseline: the interpreter with dgdlocal, mpi4py, h5py imported and nothing loaded
        base = mpirun(2, ["-c", RSS_CHILD, "run", "--n", "20", "--m", "40", "--rank", "2", "--iterations", "2", "--quiet",
                          "--force", "--output", os.path.join(workdir, "e0.h5")], timeout=300)
        done = mpirun(2, ["-c", RSS_CHILD, "run", "--data", path, "--rank", "5", "--iterations", "5", "--log-every", "5",
                          "--quiet", "--force", "--output", os.path.join(workdir, "e1.h5")], timeout=900)
        parse = lambda text: {int(w[1]): int(w[2]) * 1024 for w in (line.split() for line in text.splitlines())
                              if len(w) == 3 and w[0] == "RSS"}
        baseline, peak = parse(base.stderr), parse(done.stderr)
        y_bytes = n * (m // 2) * 8
        for rank_id in sorted(peak):
            rows.append(dict(n=n, m=m, rank=rank_id, Y_j_MB=y_bytes / MB, peak_MB=peak[rank_id] / MB,
                             baseline_MB=baseline.get(rank_id, 0) / MB,
                             goal_MB=(1.1 * y_bytes + 150 * MB) / MB))
            print(f"e {rows[-1]}", flush=True)
        os.remove(path)
    table = ["| Y (file) | rank | Y_j [MB] | peak RSS [MB] | peak / Y_j | interpreter baseline [MB] | goal 1.1·Y_j + 150 [MB] |",
             "|---|---|---|---|---|---|---|"]
    table += [f"| {x['n']}×{x['m']} HDF5 | {x['rank']} | {x['Y_j_MB']:.0f} | {x['peak_MB']:.0f} | "
              f"{x['peak_MB'] / x['Y_j_MB']:.3f} | {x['baseline_MB']:.0f} | {x['goal_MB']:.0f} "
              f"({'met' if x['peak_MB'] <= x['goal_MB'] else 'NOT met'}) |" for x in rows]
    return rows, table


# --------------------------------------------------------------------------- α–β ping-pong

PINGPONG_CHILD = r"""
import json, sys, time
import numpy as np
from mpi4py import MPI
comm = MPI.COMM_WORLD
rank = comm.Get_rank()
out = []
for size in [int(s) for s in sys.argv[1].split(",")]:
    buf = np.zeros(max(1, size // 8))
    reps = max(5, min(1000, (1 << 27) // max(size, 1)))
    for attempt in range(2):
        comm.Barrier()
        start = time.perf_counter()
        for _ in range(reps):
            if rank == 0:
                comm.Send(buf, dest=1); comm.Recv(buf, source=1)
            else:
                comm.Recv(buf, source=0); comm.Send(buf, dest=0)
        one_way = (time.perf_counter() - start) / (2 * reps)
    out.append((buf.nbytes, one_way))
if rank == 0:
    print(json.dumps(out))
"""


def section_pingpong(quick):
    sizes = [8, 1 << 10, 1 << 16, 1 << 20] if quick else [8, 64, 1 << 10, 1 << 13, 1 << 16, 1 << 18, 1 << 20,
                                                          1 << 22, 1 << 24, 1 << 26]
    result = {}
    for label, env in (("shared memory", {}), ("TCP loopback (MPIR_CVAR_NOLOCAL=1)", {"MPIR_CVAR_NOLOCAL": "1"})):
        command = ["timeout", "-k", "5", "300", "mpirun", "-n", "2", sys.executable, "-c", PINGPONG_CHILD,
                   ",".join(map(str, sizes))]
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env}, check=True)
        points = json.loads(done.stdout.strip().splitlines()[-1])
        nbytes = np.array([p[0] for p in points], dtype=float)
        seconds = np.array([p[1] for p in points])
        alpha = float(seconds[0])
        large = nbytes >= (1 << 20)
        beta = float(np.median((seconds[large] - alpha) / nbytes[large]))
        result[label] = dict(points=points, alpha_s=alpha, beta_s_per_byte=beta, bandwidth_GBs=1e-9 / beta)
        print(f"pingpong {label}: α = {alpha * 1e6:.2f} µs, 1/β = {1e-9 / beta:.2f} GB/s", flush=True)
    table = ["| transport | α (8-byte one-way) [µs] | 1/β (≥ 1 MB) [GB/s] |", "|---|---|---|"]
    table += [f"| {k} | {v['alpha_s'] * 1e6:.2f} | {v['bandwidth_GBs']:.2f} |" for k, v in result.items()]
    table += ["", "| message [bytes] | " + " | ".join(result) + " |", "|---|" + "---|" * len(result)]
    for i, size in enumerate(sizes):
        table.append(f"| {result[next(iter(result))]['points'][i][0]} | "
                     + " | ".join(f"{v['points'][i][1] * 1e6:.1f} µs" for v in result.values()) + " |")
    return result, table


# --------------------------------------------------------------------------- serial simulation sweeps


def simulate(J, *, n, m, r, topology, rule="metropolis", step="auto", cap=20000, data=None, kappa=2.0,
             edge_probability=0.5, tolerance=1e-10, **settings):
    """Iterations to relative error ≤ tolerance (and relative consensus ≤ tolerance) in the serial simulation;
    `settings`: any other RunConfig fields (seed, weight_transform, method, …)."""
    config = runner.RunConfig(n=n, m=m, rank=r, topology=topology, weight_rule=rule, step=step, iterations=cap,
                              tolerance=tolerance, log_every=10, condition_number=kappa, data=data, quiet=True,
                              edge_probability=edge_probability, simulate=J, force=True,
                              output=os.path.join(tempfile.gettempdir(), "dgdlocal-bench-unused.h5"), **settings)
    context = runner.simulated_context(J)
    prepared = runner.prepare(config, context)
    outcome = runner.solve(prepared, config, context)
    history = outcome.diagnostics
    return dict(status=outcome.status, iterations=outcome.iterations if outcome.status == "converged" else None,
                final_error=float(history["relative_error"][-1]), step=prepared.step_size,
                step_times_L=prepared.step_size * 4 * prepared.sigma1, sigma1=prepared.sigma1,
                **{k: float(v) for k, v in prepared.network.summary.items()}, lazy=prepared.network.lazy_applied)


def section_gap(quick):
    Js = [4, 16] if quick else [4, 16, 64, 256]
    rows = []
    for J in Js:
        for name in ("ring", "torus", "exponential"):
            if name == "torus" and J < 9:
                continue
            cap = 2000 if quick else (20000 if J <= 64 else 5000)
            row = dict(J=J, topology=name, **simulate(J, n=20, m=4 * J, r=2, topology=name, cap=cap))
            rows.append(row)
            print(f"gap {row}", flush=True)
    table = ["n = 20, m_j = 4, r = 2, κ = 2, metropolis weights, --step auto, stop at relative error and relative "
             "consensus ≤ 1e-10.", "",
             "| J | topology | spectral gap | λ_min | step·L | iterations to 1e-10 | final rel. error |", "|---|---|---|---|---|---|---|"]
    table += [f"| {x['J']} | {x['topology']} | {x['spectral_gap']:.2e} | {x['lambda_min']:.3f} | {x['step_times_L']:.3f} | "
              f"{x['iterations'] if x['iterations'] else 'not reached (cap)'} | {x['final_error']:.1e} |" for x in rows]
    return rows, table


def paper_demo_matrix(path, seed=0):
    """The paper's demo data: J=10 ranks, n=50, m_j=20, r=10, Y = A Bᵀ with Gaussian factors."""
    rng = np.random.default_rng(seed)
    np.save(path, rng.standard_normal((50, 10)) @ rng.standard_normal((200, 10)).T)


def section_weights(quick, workdir):
    demo = os.path.join(workdir, "paper-demo.npy")
    paper_demo_matrix(demo)
    rows = []
    rules = ("metropolis", "max-degree", "laplacian")
    # step as a multiple of 1/L, L = 4σ₁(Y); "auto" is the current rule
    multiples = ["auto", 0.25] if quick else ["auto", 0.25, 0.5, 0.75, 1.0]
    shapes = [dict(label="paper demo J=10 n=50 m_j=20 r=10 ER p=0.3", J=10, n=50, m=200, r=10, data=demo,
                   topologies=["erdos-renyi"], edge_probability=0.3)]
    if not quick:
        shapes += [dict(label="J=16 n=100 m_j=25 r=5 κ=2", J=16, n=100, m=400, r=5, kappa=2.0,
                        topologies=["ring", "exponential"]),
                   dict(label="J=16 n=60 m_j=15 r=4 κ=10", J=16, n=60, m=240, r=4, kappa=10.0,
                        topologies=["torus"])]
    for shape in shapes:
        cap = 3000 if quick else (20000 if shape.get("data") else 10000)
        sigma1 = None
        for topology_name in shape["topologies"]:
            for rule in rules:
                for multiple in multiples:
                    if multiple == "auto":
                        step = "auto"
                    else:
                        if sigma1 is None:
                            sigma1 = simulate(shape["J"], n=shape["n"], m=shape["m"], r=shape["r"], topology=topology_name,
                                              data=shape.get("data"), kappa=shape.get("kappa", 2.0), cap=0,
                                              edge_probability=shape.get("edge_probability", 0.5))["sigma1"]
                        step = multiple / (4 * sigma1)
                    result = simulate(shape["J"], n=shape["n"], m=shape["m"], r=shape["r"], topology=topology_name,
                                      rule=rule, step=step, cap=cap, data=shape.get("data"),
                                      kappa=shape.get("kappa", 2.0), edge_probability=shape.get("edge_probability", 0.5))
                    row = dict(shape=shape["label"], topology=topology_name, rule=rule, step_rule=str(multiple), **result)
                    rows.append(row)
                    print(f"weights {row}", flush=True)
    # the paper's fixed step µ = 1e-3 and 3e-3 on its demo
    for rule in rules:
        for step in (1e-3, 3e-3):
            result = simulate(10, n=50, m=200, r=10, topology="erdos-renyi", rule=rule, step=step, cap=3000 if quick else 20000,
                              data=demo, edge_probability=0.3)
            row = dict(shape="paper demo, fixed µ", topology="erdos-renyi", rule=rule, step_rule=f"µ={step:g}", **result)
            rows.append(row)
            print(f"weights {row}", flush=True)
    os.remove(demo)
    table = ["| problem | topology | weight rule | step (× 1/L) | step·L | ω | λ_min | gap | lazy | iterations to 1e-10 | final rel. error |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    table += [f"| {x['shape']} | {x['topology']} | {x['rule']} | {x['step_rule']} | {x['step_times_L']:.3f} | {x['omega']:.3f} | "
              f"{x['lambda_min']:.3f} | {x['spectral_gap']:.3f} | {'yes' if x['lazy'] else 'no'} | "
              f"{x['iterations'] if x['iterations'] else x['status']} | {x['final_error']:.1e} |" for x in rows]
    return rows, table


# --------------------------------------------------------------------------- main


def _int_list(text):
    return [int(x) for x in text.split(",") if x]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the script, not a measurement")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset of " + ",".join(SECTIONS))
    parser.add_argument("--repeats", type=int, default=None, help="repeats per timing (default 5, quick 1)")
    parser.add_argument("--out", default="bench-results", help="directory for bench.json and bench.md")
    parser.add_argument("--sizes", type=_int_list,
                        help="sections a, overlap: sizes of Y_j in MB (default 8,64,256,512,1024; overlap 256)")
    parser.add_argument("--ranks", type=_int_list,
                        help="sections a, overlap, c: ranks r (default 1,2,3,5,10; overlap 1,2,3,5; c 5,20)")
    parser.add_argument("--dtypes", type=lambda text: text.split(","),
                        help="sections a, overlap: float64,float32 (default both)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="sections a, overlap and b: wall time, or CPU time of the (single) timing thread, "
                             "which leaves out waiting for a core on a loaded machine (memory traffic of other jobs still counts)")
    arguments = parser.parse_args(argv)
    sections = [s for s in arguments.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {','.join(SECTIONS)}")
    repeats = arguments.repeats or (1 if arguments.quick else 5)
    if arguments.clock == "cpu":
        if any(os.environ.get(name, "1") != "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")):
            parser.error("--clock cpu times one thread: run with OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1")
        global CLOCK
        CLOCK = time.thread_time
    os.makedirs(arguments.out, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="dgdlocal-bench-")
    meta = dict(date=time.strftime("%Y-%m-%d %H:%M:%S"), quick=arguments.quick, repeats=repeats,
                python=platform.python_version(), numpy=np.__version__, machine=platform.machine(),
                cpus=os.cpu_count(), load_average=os.getloadavg(),
                openblas_coretype=os.environ.get("OPENBLAS_CORETYPE"), clock=arguments.clock,
                command=" ".join([sys.argv[0], *(argv or sys.argv[1:])]))
    results, markdown = {"meta": meta}, [f"# dgdlocal benchmark ({meta['date']}{', QUICK' if arguments.quick else ''})", "",
                                         f"`{meta['command']}` — {meta['cpus']} CPUs, load average at start "
                                         f"{meta['load_average'][0]:.1f}, numpy {meta['numpy']}, median of {repeats}"
                                         f"{', CPU time of the timing thread' if arguments.clock == 'cpu' else ''}", ""]
    titles = {"a": "a. Roofline: stream Y_j once vs one DGD+LOCAL iteration (one process)",
              "overlap": "a, continued: the compiled pass against the memory and the arithmetic roofs",
              "b": "b. Three formulations of the local gradient",
              "c": "c. Scaling at 1 and 2 MPI ranks", "d": "d. Iterations and time to relative error 1e-6 / 1e-10",
              "e": "e. Peak resident memory per rank", "pingpong": "α–β ping-pong at 2 ranks",
              "gap": "Serial simulation: iterations to 1e-10 vs spectral gap",
              "weights": "Weight rule × step × topology: iterations to 1e-10"}
    try:
        for section in sections:
            start = time.perf_counter()
            if section == "a":
                data, table = section_a(arguments.quick, repeats, arguments.sizes, arguments.ranks,
                                        arguments.dtypes)
            elif section == "overlap":
                data, table = section_overlap(arguments.quick, repeats, arguments.sizes, arguments.ranks,
                                              arguments.dtypes)
            elif section == "b":
                data, table = section_b(arguments.quick, repeats)
            elif section == "c":
                data, table = section_c(arguments.quick, repeats, workdir, arguments.ranks)
            elif section == "d":
                data, table = section_d(arguments.quick, workdir)
            elif section == "e":
                data, table = section_e(arguments.quick, workdir)
            elif section == "pingpong":
                data, table = section_pingpong(arguments.quick)
            elif section == "gap":
                data, table = section_gap(arguments.quick)
            else:
                data, table = section_weights(arguments.quick, workdir)
            results[section] = data
            markdown += [f"## {titles[section]}", "", *table, "", f"({time.perf_counter() - start:.0f} s)", ""]
            with open(os.path.join(arguments.out, "bench.json"), "w") as handle:
                json.dump(results, handle, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
            with open(os.path.join(arguments.out, "bench.md"), "w") as handle:
                handle.write("\n".join(markdown))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"wrote {arguments.out}/bench.json and {arguments.out}/bench.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
