"""The DGD+LOCAL loop, written once for the MPI run and the serial simulation.

One iteration, for every rank j (both gradients at iterate k):

    U_j ← Σ_i W̃_ji U_i − µ ∇_U f_j(U_j, V_j)        (sum in ascending rank order, self included)
    V_j ← V_j − µ ∇_V f_j(U_j, V_j)

The loop sees the network through two small objects, so it knows nothing of
MPI, files or argv:

* ``exchange``: ``start(U_list)`` posts the sends/receives of each local U_j to
  its graph neighbours, ``finish()`` waits and returns, per local rank, the list
  of (i, W̃_ji, U_i) in ascending i (self included);
* ``reducer``: ``sum(array)`` (sum over all ranks of the local partial sums),
  ``decide(obj)`` (the coordinator's value, everywhere), ``gather_rows(list)``
  and ``gather_values(list)`` (to the coordinator), ``is_root``.

An MPI rank holds one block; the simulation holds all J of them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .problems import factorization_value, factorization_value_and_gradients

STATUS_CONVERGED, STATUS_MAX_ITERS, STATUS_DIVERGED = "converged", "max_iters", "diverged"
STATUS_INTERRUPTED, STATUS_RUNNING = "interrupted", "running"
#: The objective "explodes" once it exceeds this multiple of max(f(z_0), ‖Y‖²).
EXPLOSION_FACTOR = 1e8
#: Fraction of the local stability limit (1 + λ_min(W̃)) / L used by --step auto.
STEP_SAFETY = 0.5
DIAGNOSTIC_NAMES = ("iteration", "elapsed", "objective", "penalized_objective", "consensus_error",
                    "relative_consensus", "gradient_norm", "relative_error", "optimality_error",
                    "stationarity", "balance")


def mix(entries):
    """Σ_i W̃_ji U_i over entries (i, W̃_ji, U_i) given in ascending i: the same order on every path."""
    (_, weight, U), *rest = entries
    out = weight * U
    for _, weight, U in rest:
        out += weight * U
    return out


def initial_factors(seed: int, J: int, j: int, n: int, m_j: int, r: int, scale: float):
    """U_j(0), V_j(0) with entries N(0, scale²) from SeedSequence(seed).spawn(J)[j]."""
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(J)[j])
    return scale * rng.standard_normal((n, r)), scale * rng.standard_normal((m_j, r))


def estimate_sigma1(blocks, reducer, seed: int, *, max_iterations: int = 100, rtol: float = 1e-4) -> float:
    """σ₁(Y) by power iteration on Y Yᵀ = Σ_j Y_j Y_jᵀ: one n-vector all-reduce per step."""
    n = blocks[0].Y.shape[0]
    u = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1 << 41,))).standard_normal(n)
    u /= np.linalg.norm(u)
    estimate = 0.0
    for _ in range(max_iterations):
        local = np.zeros(n)
        for block in blocks:
            local += block.Y @ (block.Y.T @ u)
        w = reducer.sum(local)
        norm = float(np.linalg.norm(w))
        if norm == 0.0:
            return 0.0
        previous, estimate = estimate, math.sqrt(norm)
        u = w / norm
        if abs(estimate - previous) <= rtol * estimate:
            break
    return estimate


def round_significant(x: float, digits: int = 3) -> float:
    """Round to `digits` significant digits, so the chosen step is the same whatever the reduction order."""
    return float(f"{x:.{digits - 1}e}")


def auto_step(sigma1: float, lambda_min: float) -> float:
    """µ = STEP_SAFETY · (1 + λ_min(W̃)) / L with L = 4σ₁(Y), the gradient Lipschitz constant of f at a
    balanced global minimizer; gradient descent on g is stable near it for µ < (1 + λ_min) / L."""
    return round_significant(STEP_SAFETY * (1.0 + lambda_min) / (4.0 * sigma1))


@dataclass
class Settings:
    step_size: float
    iterations: int
    tolerance: float
    log_every: int
    J: int
    weights: np.ndarray


@dataclass
class Outcome:
    status: str
    iterations: int
    U: list
    V: list
    diagnostics: dict = field(default_factory=dict)   # filled on the coordinator
    mean_U: np.ndarray | None = None
    timing: dict = field(default_factory=dict)        # per local rank: compute, wait, diagnostics


def _local_diagnostics(blocks, U, V, values, grads_U, grads_V, neighbourhoods, mixed, step_size):
    """Per-rank sums that need no Ū: f_j, penalty, ‖∇g‖², ‖U_j‖², ‖V_j‖², ‖Y_j‖², non-finite flag."""
    out = np.zeros(7)
    for j, block in enumerate(blocks):
        penalty = 0.0
        for i, weight, U_i in neighbourhoods[j]:
            if i != block.j:
                penalty += weight / (4.0 * step_size) * float(np.sum((U[j] - U_i) ** 2))
        grad_g_U = grads_U[j] + (U[j] - mixed[j]) / step_size
        out += (values[j], penalty, float(np.vdot(grad_g_U, grad_g_U)) + float(np.vdot(grads_V[j], grads_V[j])),
                float(np.vdot(U[j], U[j])), float(np.vdot(V[j], V[j])), block.norm2, 0.0)
    out[6] = float(not np.all(np.isfinite(out[:6])))
    return out


def _mean_diagnostics(blocks, U, V, mean_U):
    """Per-rank sums that need Ū: ‖U_j − Ū‖², ‖Ū V_jᵀ − Y_j‖², ‖Ū V_jᵀ − X⋆_j‖², V_jᵀV_j, truth known."""
    r = mean_U.shape[1]
    out = np.zeros(4 + r * r)
    for j, block in enumerate(blocks):
        out[0] += float(np.sum((U[j] - mean_U) ** 2))
        out[1] += factorization_value(mean_U, V[j], block.Y)
        if block.truth_U is not None:
            out[2] += _low_rank_distance2(mean_U, V[j], block.truth_U, block.truth_V)
            out[3] += 1.0
        out[4:] += (V[j].T @ V[j]).ravel()
    return out


def _low_rank_distance2(A, B, C, D) -> float:
    """‖A Bᵀ − C Dᵀ‖_F² formed explicitly in row blocks (no cancellation)."""
    total = 0.0
    step = max(1, (1 << 17) // max(1, B.shape[0]))
    for lo in range(0, A.shape[0], step):
        difference = A[lo:lo + step] @ B.T - C[lo:lo + step] @ D.T
        total += float(np.vdot(difference, difference))
    return total


class _Recorder:
    """Diagnostics history on the coordinator and the convergence / divergence test."""

    def __init__(self, settings: Settings, y_norm2: float, on_record, history=None):
        self.settings, self.y_norm2, self.on_record = settings, y_norm2, on_record
        self.history = history if history is not None else {name: [] for name in DIAGNOSTIC_NAMES}
        self.reference = None

    def add(self, iteration, elapsed, first, second, J):
        objective, penalty, grad2, u2, v2, y2, nonfinite = first
        consensus, residual2, truth_residual2, truth_ranks = second[:4]
        r = int(round(math.sqrt(len(second) - 4)))
        VtV = second[4:].reshape(r, r)
        mean_U = self.mean_U
        record = {
            "iteration": iteration, "elapsed": elapsed, "objective": objective,
            "penalized_objective": objective + penalty, "consensus_error": consensus,
            "relative_consensus": math.sqrt(consensus / u2) if u2 > 0 else 0.0,
            "gradient_norm": math.sqrt(grad2),
            "relative_error": math.sqrt(residual2 / y2) if y2 > 0 else math.sqrt(residual2),
            "optimality_error": (math.sqrt(truth_residual2) / self.truth_norm) if truth_ranks == J and self.truth_norm else math.nan,
            "stationarity": math.sqrt(grad2) / (2.0 * math.sqrt(y2) * math.sqrt(u2 + v2)) if y2 > 0 and u2 + v2 > 0 else 0.0,
            "balance": float(np.linalg.norm(mean_U.T @ mean_U - VtV)),
        }
        for name in DIAGNOSTIC_NAMES:
            self.history[name].append(record[name])
        if self.reference is None:   # f(z_0), also when resumed with the history so far
            self.reference = max(self.history["objective"][0], y2)
        if self.on_record is not None:
            self.on_record(record)
        return record, bool(nonfinite)

    def decide(self, record, nonfinite, iteration) -> str | None:
        """Status if the run must stop now, else None (coordinator only; broadcast by the caller)."""
        values = (record["objective"], record["gradient_norm"], record["consensus_error"], record["relative_error"])
        if nonfinite or not all(math.isfinite(v) for v in values) or record["objective"] > EXPLOSION_FACTOR * self.reference:
            return STATUS_DIVERGED
        tolerance = self.settings.tolerance
        if tolerance > 0 and record["relative_consensus"] <= tolerance and (
                record["relative_error"] <= tolerance or record["stationarity"] <= tolerance):
            return STATUS_CONVERGED
        if iteration >= self.settings.iterations:
            return STATUS_MAX_ITERS
        return None


def run(blocks, U, V, settings: Settings, exchange, reducer, *, on_record=None, clock=time.perf_counter,
        start_iteration=0, history=None, interrupt=None, checkpoint=None, checkpoint_every=0) -> Outcome:
    """Run DGD+LOCAL from (U, V) (lists over the local blocks) and return the outcome.

    Diagnostics are taken at iterations 0, log_every, 2·log_every, … and at the last iterate;
    the stop decision is made there, by the coordinator, and shared with every rank.

    Restart: (U, V) may be iterate `start_iteration`, with the coordinator's `history` of the
    diagnostics before it. At every later iterate k, before anything else, `interrupt(k)`
    (the same answer on every rank) may stop the run there with status interrupted, and
    `checkpoint(k, U, V, history)` is called when k is a multiple of `checkpoint_every`.
    """
    step = settings.step_size
    for block in blocks:
        block.norm2 = float(np.vdot(block.Y, block.Y))
    timing = {"compute": 0.0, "wait": 0.0, "diagnostics": 0.0}
    recorder = _Recorder(settings, 0.0, on_record, history) if reducer.is_root else None
    truth_norm2 = reducer.sum(np.array([sum(_truth_norm2(b) for b in blocks)]))[0]
    if recorder is not None:
        recorder.truth_norm = math.sqrt(truth_norm2)
    start = clock()
    status, iteration = None, start_iteration
    while True:
        if iteration > start_iteration:
            if interrupt is not None and interrupt(iteration):
                status, mean_U = STATUS_INTERRUPTED, reducer.sum(_local_sum(U)) / settings.J
                break
            if checkpoint_every and iteration % checkpoint_every == 0:
                checkpoint(iteration, U, V, recorder.history if recorder is not None else None)
        t0 = clock()
        exchange.start(U)
        computed = [factorization_value_and_gradients(U[j], V[j], block.Y) for j, block in enumerate(blocks)]
        t1 = clock()
        neighbourhoods = exchange.finish()
        t2 = clock()
        mixed = [mix(entries) for entries in neighbourhoods]
        timing["compute"] += t1 - t0
        timing["wait"] += t2 - t1
        is_last = iteration >= settings.iterations
        if iteration % settings.log_every == 0 or is_last:
            values = [c[0] for c in computed]
            first = reducer.sum(_local_diagnostics(blocks, U, V, values, [c[1] for c in computed],
                                                   [c[2] for c in computed], neighbourhoods, mixed, step))
            mean_U = reducer.sum(_local_sum(U)) / settings.J
            second = reducer.sum(_mean_diagnostics(blocks, U, V, mean_U))
            decision = None
            if recorder is not None:
                recorder.mean_U = mean_U
                record, nonfinite = recorder.add(iteration, clock() - start, first, second, settings.J)
                decision = recorder.decide(record, nonfinite, iteration)
            status = reducer.decide(decision)
            timing["diagnostics"] += clock() - t2
            if status is not None:
                break
        for j, (value, grad_U, grad_V) in enumerate(computed):
            U[j] = mixed[j] - step * grad_U
            V[j] = V[j] - step * grad_V
        iteration += 1
    return Outcome(status=status, iterations=iteration, U=U, V=V,
                   diagnostics=recorder.history if recorder is not None else {},
                   mean_U=mean_U, timing=timing)


def _truth_norm2(block) -> float:
    """‖X⋆_j‖_F² = ⟨U⋆ᵀU⋆, V⋆_jᵀV⋆_j⟩ (0 when no ground truth is known)."""
    if block.truth_U is None:
        return 0.0
    return float(np.sum((block.truth_U.T @ block.truth_U) * (block.truth_V.T @ block.truth_V)))


def _local_sum(arrays):
    """Σ over the local blocks, in ascending rank order."""
    total = arrays[0].copy()
    for array in arrays[1:]:
        total += array
    return total
