"""The DGD+LOCAL loop, written once for the MPI run and the serial simulation.

One iteration, for every rank j (both gradients at iterate k):

    U_j ← Σ_i W̃_ji U_i − µ ∇_U f_j(U_j, V_j)        (sum in ascending rank order, self included)
    V_j ← V_j − µ ∇_V f_j(U_j, V_j)

and, every K iterations (--rebalance-every), two changes of gauge that keep every U_j V_jᵀ: a copy that a
rotation R_j brings much closer to rank 0's copy is rotated, U_j ← U_j R_j, V_j ← V_j R_j (Align), and a common
U_j ← U_j A, V_j ← V_j A⁻ᵀ when the factors have drifted out of balance (Rebalance). With --method extra the U step
carries EXTRA's correction (class Extra), with the same single exchange of U_j per iteration. With --method atc
(adapt, then combine) the ranks exchange the adapted copies instead, U_j ← Σ_i W̃_ji (U_i − µ ∇_U f_i(U_i, V_i)),
posted after the local pass (the papers' order posts U_j before it, so the exchange overlaps the pass). With
--method atc-overlap (class DelayedCombine) the neighbours' part of that step arrives one iteration late, so the
exchange is again posted before the pass.

The loop sees the network through two small objects, so it knows nothing of
MPI, files or argv:

* ``exchange``: ``start(U_list)`` posts the sends/receives of each local U_j to
  its graph neighbours, ``finish()`` waits and returns, per local rank, the list
  of (i, W̃_ji, U_i) in ascending i (self included);
* ``reducer``: ``sum(array)`` (sum over all ranks of the local partial sums),
  ``ordered_sum(array)`` (the same in rank order, bit-reproducible; small r×r arrays
  for --balance and --preconditioner), ``broadcast(array)`` (rank 0's array, everywhere),
  ``decide(obj)`` (the coordinator's value,
  everywhere), ``gather_rows(list)`` and ``gather_values(list)`` (to the coordinator),
  ``stop_vote()`` (the agreed signal flag), ``is_root``.

An MPI rank holds one block; the simulation holds all J of them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np


STATUS_CONVERGED, STATUS_MAX_ITERS, STATUS_DIVERGED = "converged", "max_iters", "diverged"
STATUS_INTERRUPTED, STATUS_RUNNING = "interrupted", "running"
#: The objective "explodes" once it exceeds this multiple of max(f(z_0), ‖Y‖²).
EXPLOSION_FACTOR = 1e8
#: Fraction of the local stability limit (1 + λ_min(W̃)) / L used by --step auto.
STEP_SAFETY = 0.5
#: --step auto with the adapt-then-combine orders (atc, atc-overlap): the step and the --u-step-scale margin
#: are multiplied by a = min(ATC_STEP_MAX_GAIN, max(1, spectral gap / ATC_STEP_GAP)).
ATC_STEP_GAP = 0.1
ATC_STEP_MAX_GAIN = 2.0
#: --rebalance-every default: iterations between two looks at the balance of the factors.
REBALANCE_EVERY = 100
#: --rebalance-threshold auto: rebalance when the factors' scales differ by more than max(this, 2√J).
REBALANCE_THRESHOLD = 16.0
#: --u-step-scale auto: the U step keeps s·µ·max_j ‖∇²_U f_j‖ ≤ this, the margin the V step has at a balanced
#: point under --step auto (µ · 2σ₁ = STEP_SAFETY / 2 for factorization).
SHARED_STEP_MARGIN = 0.25
#: --u-step-scale auto: s ≤ this · spectral gap · J.
SHARED_STEP_GAP_FACTOR = 2.0
#: --u-step-scale auto on networks that cap s below J: V_j's step t·µ keeps t·µ·‖∇²_V f_j‖ ≤ this, half the stability
#: limit 2 of gradient descent on V_j's block (as STEP_SAFETY is of the whole step) ...
LOCAL_STEP_MARGIN = 1.0
#: ... with 1 ≤ t ≤ min(s, this), and t = 1 while the margin would allow more (the factors still growing).
LOCAL_STEP_MAX_GAIN = 3.0
#: --align-gain default: rotate a copy when that makes its squared distance to rank 0's copy this many times smaller.
ALIGN_GAIN = 100.0
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


def _data_product(problems, reducer, split, u):
    """M Mᵀ u for the global data matrix: M = [M_1 … M_J] (split "columns") or Σ_j M_j (split "sum")."""
    if split == "columns":
        local = sum(p.apply(p.apply_transposed(u)) for p in problems)
        return reducer.sum(local)
    t = reducer.sum(sum(p.apply_transposed(u) for p in problems))
    return reducer.sum(sum(p.apply(t) for p in problems))


def estimate_sigma1(problems, reducer, seed: int, *, max_iterations: int = 100, rtol: float = 1e-4) -> float:
    """σ₁(M) of the problem's data matrix by power iteration on M Mᵀ (one or two all-reduces per step)."""
    n = problems[0].data_shape[0]
    u = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1 << 41,))).standard_normal(n)
    u /= np.linalg.norm(u)
    estimate = 0.0
    for _ in range(max_iterations):
        w = _data_product(problems, reducer, problems[0].split, u)
        norm = float(np.linalg.norm(w))
        if norm == 0.0:
            return 0.0
        previous, estimate = estimate, math.sqrt(norm)
        u = w / norm
        if abs(estimate - previous) <= rtol * estimate:
            break
    return estimate


def top_subspace(problems, reducer, r: int, seed: int, *, iterations: int = 200, rtol: float = 1e-12):
    """Top-r left singular vectors Q (n×r) and values s of M by subspace iteration on M Mᵀ.

    Global communication every step: the one non-decentralized part of the product (spectral init).
    """
    n = problems[0].data_shape[0]
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1 << 42,)))
    Q, _ = np.linalg.qr(rng.standard_normal((n, r)))
    previous = np.zeros(r)
    for _ in range(iterations):
        Z = _data_product(problems, reducer, problems[0].split, Q)
        Q, R = np.linalg.qr(Z)
        values = np.sqrt(np.abs(np.diag(R)))
        if np.all(np.abs(values - previous) <= rtol * max(values[0], 1e-300)):
            break
        previous = values
    # Rayleigh–Ritz on the converged subspace for accurate values and vectors.
    Z = _data_product(problems, reducer, problems[0].split, Q)
    eigenvalues, vectors = np.linalg.eigh(Q.T @ Z)
    order = np.argsort(eigenvalues)[::-1]
    return Q @ vectors[:, order], np.sqrt(np.maximum(eigenvalues[order], 0.0))


def round_significant(x: float, digits: int = 3) -> float:
    """Round to `digits` significant digits, so the chosen step is the same whatever the reduction order."""
    return float(f"{x:.{digits - 1}e}")


def atc_step_gain(spectral_gap: float) -> float:
    """a = min(ATC_STEP_MAX_GAIN, max(1, gap / ATC_STEP_GAP)): 1 on slow networks (gap ≤ 0.1), 2 from gap 0.2 up;
    rounded like the step, so every rank takes the same --u-step-scale margin whatever its eigensolver's last bits."""
    return round_significant(min(ATC_STEP_MAX_GAIN, max(1.0, spectral_gap / ATC_STEP_GAP)))


def auto_step(lipschitz: float, lambda_min: float, gain: float = 1.0) -> float:
    """µ = STEP_SAFETY · a · min(1, 1 + λ_min(W̃)) / L, L the curvature of f near a balanced minimizer
    (problem.lipschitz); a = 1 for the papers' order and EXTRA, a = atc_step_gain(gap) for the
    adapt-then-combine orders.

    Gradient descent on g is locally stable for µ < (1 + λ_min)/L; lazy weights have λ_min ≥ 0, and
    measured on ring, star, path, grid, complete and Erdős–Rényi networks at condition numbers 1–100, a
    larger step than 0.5/L (e.g. 0.5(1 + λ_min)/L) trapped star networks in oscillation in the papers'
    order. Adapt-then-combine, U_j ← Σ_i W̃_ji (U_i − µ∇f_i), mixes after the step and is close to
    centralized gradient descent on a well-mixing network; a fixed 0.75/L or 1/L still stalls 16- and
    32-rank stars (gap ≈ 0.06), hence a grows with the gap (docs/performance.md §8b)."""
    return round_significant(STEP_SAFETY * gain * min(1.0, 1.0 + lambda_min) / lipschitz)


@dataclass
class Settings:
    step_size: float
    iterations: int
    tolerance: float
    log_every: int
    J: int
    weights: np.ndarray
    balance_weight: float = 0.0
    scaled: "ScaledStep | None" = None    # --preconditioner scaled
    rebalance: "Rebalance | None" = None  # --rebalance-every
    extra: "Extra | None" = None          # --method extra
    align: "Align | None" = None          # --rebalance-every with --align-gain
    shared_step: "SharedStep | None" = None  # --u-step-scale other than 1
    adapt_then_combine: bool = False      # --method atc: exchange U_j − sµ∇_U f_j after the local pass
    delayed: "DelayedCombine | None" = None  # --method atc-overlap


@dataclass
class Outcome:
    status: str
    iterations: int
    U: list
    V: list
    diagnostics: dict = field(default_factory=dict)   # filled on the coordinator
    mean_U: np.ndarray | None = None
    timing: dict = field(default_factory=dict)        # per process: compute, wait, diagnostics, startup
    rebalances: int = 0                               # gauge changes made by Rebalance in this run
    correction: list | None = None                    # --method extra / atc-overlap: D_j for the local blocks
    alignments: int = 0                               # copies rotated by Align in this run (all ranks)
    u_step_scale: tuple | None = None                 # --u-step-scale: (smallest, last) s used in this run
    v_step_scale: float | None = None                 # --u-step-scale: the largest t of V_j's step (all ranks)
    u_step_state: float | None = None                 # --u-step-scale auto: SharedStep.state at the last iterate


def _norm2(array) -> float:
    return 0.0 if array is None else float(np.vdot(array, array))


def gram_totals(U, V, reducer):
    """(Σ_j U_jᵀU_j, Σ_j V_jᵀV_j) over all ranks: the one r×r all-reduce of an iteration (rank order, the same bits
    as the simulation), shared by the balancing regularizer and the scaled step."""
    r = U[0].shape[1]
    local = np.zeros((2, r, r))
    for U_j, V_j in zip(U, V):
        local[0] += U_j.T @ U_j
        local[1] += V_j.T @ V_j
    return reducer.ordered_sum(local)


def balancing_gauge(mean_UtU, VtV):
    """(A, A⁻ᵀ) with Aᵀ mean_UtU A = A⁻¹ VtV A⁻ᵀ diagonal: the gauge U ← U A, V ← V A⁻ᵀ that balances the two
    (positive definite) Gram matrices. With R_U, R_V their Cholesky factors and R_U R_Vᵀ = P S Qᵀ,
    A = R_U⁻¹ P S^½ and A⁻ᵀ = R_Uᵀ P S^-½; both sides then equal S. Raises LinAlgError when a Gram matrix is
    not positive definite."""
    R_U = np.linalg.cholesky(mean_UtU).T
    R_V = np.linalg.cholesky(VtV).T
    P, S, _ = np.linalg.svd(R_U @ R_V.T)
    root = np.sqrt(S)
    return np.linalg.solve(R_U, P * root), R_U.T @ P / root


def apply_gauge(U, V, A, A_inv_T):
    """(U_j A, V_j A⁻ᵀ) for the local blocks: every product U_j V_jᵀ is unchanged, agreeing copies stay agreeing."""
    return [U_j @ A.astype(U_j.dtype) for U_j in U], [V_j @ A_inv_T.astype(V_j.dtype) for V_j in V]


def auto_threshold(J: int) -> float:
    """--rebalance-threshold auto: max(16, 2√J), twice the stretch² √J that DGD+LOCAL itself keeps (Rebalance)."""
    return max(REBALANCE_THRESHOLD, 2.0 * math.sqrt(J))


class Rebalance:
    """Occasional gauge rebalancing for plain DGD+LOCAL (problems with a local factor V_j).

    g = Σ_j f_j + consensus penalty has a way down besides consensus: U_j → aU_j, V_j → V_j/a keeps every fit and
    shrinks the penalty, and on slow networks with small blocks the iterates drift that way and stall. Every
    `every` iterations the ranks sum the r×r Gram matrices (one ordered all-reduce, the same bits everywhere) and,
    when the balancing gauge A of (1/J) Σ_j U_jᵀU_j against VᵀV = Σ_j V_jᵀV_j stretches some direction by more
    than `threshold` in scale (max(‖A‖₂, ‖A⁻¹‖₂)² > threshold; for r = 1 the ratio of ‖V‖ to the root-mean-square
    ‖U_j‖), apply it to every block. Σ_j f_j and every U_j V_jᵀ are unchanged; only the path of g moves.

    `threshold` "auto" is max(16, 2√J) (auto_threshold). Ū moves J times slower than V (each copy sees only its
    own rank's gradient), so from a small start the method itself keeps J·ŪᵀŪ ≈ VᵀV, a stretch² of √J: at
    J = 256 that is 16, and rebalancing against it cost 2.3–3.5× more iterations (torus, exponential graph;
    docs/performance.md §7a). With 2√J the method's own balance is never flagged; for J ≤ 64 auto is 16.
    """

    def __init__(self, every: int, threshold, J: int):
        self.every, self.J, self.count = every, J, 0
        self.threshold = auto_threshold(J) if threshold == "auto" else float(threshold)

    def due(self, iteration: int) -> bool:
        return iteration % self.every == 0

    def imbalance(self, totals) -> tuple[float, tuple | None]:
        """(max(‖A‖₂, ‖A⁻¹‖₂)², (A, A⁻ᵀ)); (1, None) when a Gram matrix is singular or not finite."""
        if not np.all(np.isfinite(totals)):
            return 1.0, None
        try:
            gauge = balancing_gauge(totals[0] / self.J, totals[1])
        except np.linalg.LinAlgError:
            return 1.0, None
        stretch = np.linalg.svd(gauge[0], compute_uv=False)
        return float(max(stretch[0], 1.0 / stretch[-1]) ** 2), gauge

    def __call__(self, U, V, reducer, carried=None):
        """The rebalanced (U, V); with --method extra or atc-overlap, the stored D_j follow the gauge
        (carried.regauge)."""
        ratio, gauge = self.imbalance(gram_totals(U, V, reducer))
        if gauge is None or ratio <= self.threshold:
            return U, V
        self.count += 1
        if carried is not None:
            carried.regauge(gauge[1])
        return apply_gauge(U, V, *gauge)


class Extra:
    """--method extra: EXTRA (Shi, Ling, Wu, Yin 2015) on the shared factor; V_j keeps its plain local step.

    With W the mixing matrix in use (W̃ of the README, already lazy) and W' = (I + W)/2, EXTRA is
    U¹ = W U⁰ − µ g⁰ and U^{k+2} = W U^{k+1} + U^{k+1} − W' U^k − µ (g^{k+1} − g^k), g^k_j = ∇_U f_j(U_j^k, V_j^k).
    This class runs the paper's equivalent summed form (its eq. 2.13), per rank j:

        U_j^{k+1} = U_j^k + P_j^k − µ g_j^k + D_j^{k−1}
        D_j^k     = D_j^{k−1} + ½ P_j^k,          D^{−1} = 0  (the k = 0 form),

    with P_j = ((W − I) U)_j = Σ_{i≠j} W_ji (U_i − U_j) (pull), i.e. D^k = Σ_{t≤k} (W − W')U^t. It needs the one
    exchange of U_j that DGD+LOCAL makes, and one n×r array per rank instead of three (U^k, (W U^k)_j, g^k). P_j is
    formed from differences, not as (W U)_j − U_j: the weights of a row sum to 1 only to rounding, so at consensus
    (W U)_j − U_j = ε_j U_j, which D would add up every iteration; measured, the stationarity (relative fixed-point
    residual) then grew linearly, by 4e-13 per 1000 iterations in float64 and 2e-4 in float32 (the default 100×400
    problem, noise 0.1, J = 3), while P_j is exactly 0 when the copies agree (now flat at 2e-15 and 8e-7). At J = 1
    (no neighbours) P = D = 0 and the step is plain gradient descent, bit for bit. Σ_j D_j = 0 (W is symmetric), so
    at a fixed point the copies agree (D stops moving only when P = 0), D_j = µ g_j and Σ_j g_j = 0, ∇_{V_j} f_j = 0:
    a critical point of the centralized f, which plain DGD+LOCAL does not reach on data of rank > r.
    """

    def __init__(self, U, correction=None):
        self.D = [np.zeros_like(U_j) for U_j in U] if correction is None else [np.array(D_j) for D_j in correction]

    @staticmethod
    def pulls(neighbourhoods, U, own_ranks):
        """P_j = Σ_{i≠j} W_ji (U_i − U_j) over the entries (i, W_ji, U_i) in ascending i, for the local blocks."""
        out = []
        for entries, U_j, own in zip(neighbourhoods, U, own_ranks):
            pull = np.zeros_like(U_j)
            for i, weight, U_i in entries:
                if i != own:
                    pull += weight * (U_i - U_j)
            out.append(pull)
        return out

    def step(self, U, pulls, steps_U, step_size):
        """U^{k+1} for the local blocks from U^k, P^k and the U directions; advances D to D^k."""
        out = []
        for j, (U_j, pull, step_j) in enumerate(zip(U, pulls, steps_U)):
            out.append(U_j + pull - step_size * step_j + self.D[j])
            self.D[j] = self.D[j] + 0.5 * pull
        return out

    def residual(self, j, pull):
        """(D_j^{k−1} + P_j^k, ½ P_j^k): the parts of z_{k+1} − z_k beyond −µ g_j, and D^k − D^{k−1} — zero together
        with the gradients exactly at a fixed point of the iteration."""
        return self.D[j] + pull, 0.5 * pull

    def regauge(self, A_inv_T):
        """After the gauge U_j ← U_j A, V_j ← V_j A⁻ᵀ: D_j ← D_j A⁻ᵀ. At a fixed point D_j = µ g_j, and g_j maps
        to g_j A⁻ᵀ, so a fixed point is mapped to a fixed point; Σ_j D_j = 0 is kept. Chosen over restarting the
        recursion (D ← 0, the k = 0 form), which throws the correction away: measured on a converged 4-rank run on
        full-rank data put 1.3× off balance, a restart threw the copies off consensus to 2e-2 (still 6e-10 after
        3000 iterations), this kept them within 5e-13 (tests/test_extra.py)."""
        self.D = [D_j @ A_inv_T.astype(D_j.dtype) for D_j in self.D]

    def restart(self):
        """D ← 0: the next step is EXTRA's k = 0 form. Used after Align rotated some copies: D_j R_j with a different
        R_j on each rank would break Σ_j D_j = 0, and with it the fixed points (Σ_j g_j = Σ_j D_j / µ)."""
        self.D = [np.zeros_like(D_j) for D_j in self.D]


class DelayedCombine:
    """--method atc-overlap: adapt-then-combine with the neighbours' adaptation one iteration late, per rank j:

        U_j^{k+1} = Σ_i W̃_ji U_i^k − (W̃_jj D_j^k + Σ_{i≠j} W̃_ji D_i^{k−1}),   D_j^k = sµ ∇_U f_j(U_j^k, V_j^k),
        D^{−1} = 0,

    so the message [U_j^k; D_j^{k−1}] (2 × n × r) is known before the local pass and its exchange overlaps the
    pass, as in the papers' order, while the step is --method atc's Σ_i W̃_ji (U_i − D_i) up to the one-iteration
    lag of the neighbours' D_i. A fixed point (D^k = D^{k−1}) is one of atc: U = W̃ (U − D). Measured in the serial
    simulation: the iterations of atc (J = 2: those of centralized gradient descent), not those of the papers'
    order (docs/performance.md §5). At J = 1 it is plain gradient descent, bit for bit.

    Each local block's message lives in one (2, n, r) array, packed[j] = [U_j; D_j]: D_j is stored in it, so
    posting the message copies only U_j in, and both halves arrive contiguous.
    """

    def __init__(self, U, correction=None):
        self.packed = [np.zeros((2, *U_j.shape), dtype=U_j.dtype) for U_j in U]
        if correction is not None:
            for packed, D_j in zip(self.packed, correction):
                packed[1] = D_j

    @property
    def D(self):
        """D_j^{k−1} of the local blocks (views into the messages)."""
        return [packed[1] for packed in self.packed]

    def messages(self, U):
        """[U_j; D_j^{k−1}] (2 × n × r), one per local block: what each rank sends its neighbours."""
        for packed, U_j in zip(self.packed, U):
            packed[0] = U_j
        return self.packed

    @staticmethod
    def split(neighbourhoods):
        """The received entries (i, W̃_ji, [U_i; D_i]) as two lists of (i, W̃_ji, U_i) and (i, W̃_ji, D_i)."""
        copies = [[(i, weight, both[0]) for i, weight, both in entries] for entries in neighbourhoods]
        lagged = [[(i, weight, both[1]) for i, weight, both in entries] for entries in neighbourhoods]
        return copies, lagged

    @staticmethod
    def step(mixed, lagged, own_steps, own_ranks):
        """U^{k+1} for the local blocks, in place of `mixed` (Σ_i W̃_ji U_i^k), from the received D_i^{k−1} and the
        own D_j^k, subtracted in ascending i (the same order on every path)."""
        for j, (mixed_j, entries, own_step) in enumerate(zip(mixed, lagged, own_steps)):
            scratch = np.empty_like(mixed_j)
            for i, weight, D_i in entries:
                np.multiply(own_step if i == own_ranks[j] else D_i, weight, out=scratch)
                mixed_j -= scratch
        return mixed

    def advance(self, own_steps):
        """D ← D^k, once the iterate moves to k + 1 (a run that stops at k keeps D^{k−1}, the state of iterate k).
        Called after every local block's step, which read the neighbours' D^{k−1} (in the simulation: these very
        arrays)."""
        for packed, own_step in zip(self.packed, own_steps):
            packed[1] = own_step

    def regauge(self, A_inv_T):
        """After the gauge U_j ← U_j A, V_j ← V_j A⁻ᵀ: D_j ← D_j A⁻ᵀ (∇_U f_j maps to ∇_U f_j A⁻ᵀ)."""
        for packed in self.packed:
            packed[1] = packed[1] @ A_inv_T.astype(packed.dtype)

    def restart(self):
        """D ← 0 (the k = 0 form), after Align rotated some copies by rank-dependent rotations."""
        for packed in self.packed:
            packed[1] = 0.0


class Align:
    """Occasional alignment of every copy U_j to rank 0's copy (plain DGD+LOCAL with a local factor V_j).

    On slow networks (long paths) the copies can lock into different orientations of a component, e.g. the two
    ends of a path into opposite signs: each rank still fits its columns, but Ū loses the component and the
    consensus penalty alone does not undo it in any practical number of iterations. Every `every` iterations
    rank 0's U_0 is broadcast (n×r); each rank takes the rotation R_j = P Qᵀ from the SVD U_jᵀU_0 = P S Qᵀ (the
    orthogonal R minimizing ‖U_j R − U_0‖_F, Procrustes) and, if ‖U_j R_j − U_0‖² · gain < ‖U_j − U_0‖², sets
    U_j ← U_j R_j, V_j ← V_j R_j. R_j R_jᵀ = I, so every U_j V_jᵀ and f_j is unchanged; only the consensus
    penalty drops. Copies that already agree are left alone (R_j ≈ I gains nothing).
    """

    def __init__(self, every: int, gain: float):
        self.every, self.gain, self.count = every, gain, 0

    def due(self, iteration: int) -> bool:
        return iteration % self.every == 0

    def rotation(self, U_j, reference):
        """R_j if it brings U_j `gain` times closer to `reference` (squared distance), else None (also when either
        is not finite: a diverging run is left for the next diagnostics to report)."""
        cross = U_j.T.astype(np.float64) @ reference
        if not np.all(np.isfinite(cross)):
            return None
        P, _, Qt = np.linalg.svd(cross)
        R = P @ Qt
        before = float(np.sum((U_j - reference) ** 2))
        after = float(np.sum((U_j @ R - reference) ** 2))
        return R if after * self.gain < before else None

    def __call__(self, U, V, reducer, own_ranks):
        reference = reducer.broadcast(U[own_ranks.index(0)] if 0 in own_ranks else np.empty(U[0].shape))
        rotations = [self.rotation(U_j, reference) for U_j in U]
        self.count += int(reducer.sum(np.array([sum(R is not None for R in rotations)], dtype=np.float64))[0])
        return ([U_j if R is None else U_j @ R.astype(U_j.dtype) for U_j, R in zip(U, rotations)],
                [V_j if R is None else V_j @ R.astype(V_j.dtype) for V_j, R in zip(V, rotations)])


class SharedStep:
    """--u-step-scale s: the shared factor takes the step s·µ, the local factor keeps µ:

        U_j ← Σ_i W̃_ji U_i − s µ ∇_U f_j(U_j, V_j),      V_j ← V_j − µ ∇_{V_j} f_j(U_j, V_j).

    This is gradient descent on g_{sµ} (the DGD+LOCAL objective whose consensus penalty has step sµ) in the fixed
    block metric diag(s, 1), so its fixed points are those of DGD+LOCAL with step sµ: the same global minimizers
    on exact-rank data. Why: the mean Ū moves by (sµ/J) Σ_j ∇_U f_j, and at s = 1 that is J times less than
    centralized gradient descent moves U, so the slow directions of U converge √J times slower than there
    (docs/performance.md §5). A larger s also weakens the penalty that pulls the copies together, which on slow
    networks (ring, star, path at J = 16) made s = J 2–30× slower, and an uneven split of the data's energy makes
    one rank's curvature in U close to the whole problem's.

    auto: s_k = max(1, min(SHARED_STEP_GAP_FACTOR · gap · J, margin / (µ · c))), gap = 1 − λ₂(W̃),
    c = max_j problem.u_curvature(V_j) at iterate k − 1 (at iterate k for the first iteration of a fresh run).
    The max over ranks is a nonblocking all-reduce posted with iteration k − 1's exchange and completed after
    iteration k's local pass, one iteration late like the stop vote, so no rank waits on it for the slowest one
    (completed within its own iteration it cost 60 µs per iteration on the 2-rank default job, measured). On
    evenly split data at a balanced point c ≈ 2σ₁/J and the curvature term is ≈ J; with one rank holding the
    energy, ≈ 1. A checkpoint at iterate k keeps c(k − 1) (`state`), so a resumed run takes the same steps. A
    number s ≥ 1 is used as given. margin = SHARED_STEP_MARGIN · a, with a the gain of --step auto (auto_step), so
    the U step keeps the margin the V step has at a balanced point.

    auto also gives V_j the step t_{j,k}·µ (local_scale) where the network caps s below J (ŝ = min(J, 2·gap·J) < J):

        q = LOCAL_STEP_MARGIN / (µ · problem.v_curvature(U_j)),   t = min(q, s_k, LOCAL_STEP_MAX_GAIN) if 1 ≤ q ≤
        LOCAL_STEP_MAX_GAIN, else 1.

    V_j enters no consensus penalty, so this is one more block of the metric and moves no fixed point. There Ū moves
    with s·µ/J < µ and the larger V step recovers part of centralized gradient descent's pace (16-rank torus, κ = 10:
    1460 → 880 iterations); where s may reach J the pair (sµ/J, µ) is already centralized GD's. t ≤ s keeps the
    balance the local steps settle at (V_jᵀV_j ≈ (t/s) U_jᵀU_j) no more V-heavy than the papers' s = t = 1, and
    t = 1 while q > LOCAL_STEP_MAX_GAIN, i.e. while U_j is still small from the start, because a larger V step then
    sets a V-heavy balance for the rest of the run (docs/performance.md §8d). t is rank j's own (no communication)
    and a function of the iterate, so a resumed run takes the same steps. `local_gain` = 1 turns it off (a
    checkpoint written before it).
    """

    def __init__(self, scale, J: int, spectral_gap: float, step_size: float, *, start_iteration: int = 0,
                 curvature=None, margin: float = SHARED_STEP_MARGIN, local_gain: float = LOCAL_STEP_MAX_GAIN):
        self.fixed = None if scale == "auto" else float(scale)
        self.margin = margin
        self.ceiling = min(float(J), SHARED_STEP_GAP_FACTOR * spectral_gap * J)
        self.local_gain = local_gain if self.fixed is None and self.ceiling < J else 1.0
        self.step_size = step_size
        self.known = {} if curvature is None else {start_iteration - 1: float(curvature)}  # iterate → c
        self.pending = []                                                                 # (iterate, request)
        self.smallest, self.last = math.inf, math.nan
        self.largest_local = 1.0

    def start(self, problems, V, reducer, iteration: int):
        """Post the max over ranks of the curvature bounds at iterate `iteration` (auto only)."""
        if self.fixed is not None:
            return
        request = reducer.start_max(max(problem.u_curvature(V_j) for problem, V_j in zip(problems, V)))
        if iteration - 1 not in self.known and not any(k == iteration - 1 for k, _ in self.pending):
            self.known[iteration - 1] = request.wait()   # first iteration of a fresh run: from its own iterate, once
        self.pending.append((iteration, request))

    def curvature_before(self, iteration: int) -> float:
        """c(iteration − 1), completing the requests posted up to that iterate."""
        while self.pending and self.pending[0][0] <= iteration - 1:
            k, request = self.pending.pop(0)
            self.known[k] = request.wait()
        for k in [k for k in self.known if k < iteration - 2]:
            del self.known[k]
        return self.known[iteration - 1]

    def finish(self, iteration: int) -> float:
        """s for this iteration."""
        if self.fixed is not None:
            scale = self.fixed
        else:
            curvature = self.curvature_before(iteration)
            limit = self.margin / (self.step_size * curvature) if curvature > 0 else math.inf
            scale = max(1.0, min(self.ceiling, limit)) if math.isfinite(curvature) else 1.0
        self.smallest, self.last = min(self.smallest, scale), scale
        return scale

    def local_scale(self, problem, U_j) -> float:
        """t for V_j's step at this iteration, from rank j's own U_j (after finish())."""
        if self.local_gain <= 1.0 or self.last <= 1.0 or not hasattr(problem, "v_curvature"):   # t ≤ s
            return 1.0
        curvature = problem.v_curvature(U_j)
        room = LOCAL_STEP_MARGIN / (self.step_size * curvature) if curvature > 0 else math.inf
        scale = min(room, self.last, self.local_gain) if 1.0 <= room <= self.local_gain else 1.0
        self.largest_local = max(self.largest_local, scale)
        return scale

    def state(self, iteration: int):
        """What a checkpoint at iterate `iteration` keeps: c(iteration − 1); None for a fixed s."""
        return None if self.fixed is not None else self.curvature_before(iteration)

    def close(self, reducer):
        """Complete every posted request (every rank posted the same ones); the largest t over all ranks."""
        while self.pending:
            k, request = self.pending.pop(0)
            self.known[k] = request.wait()
        if self.local_gain > 1.0:
            self.largest_local = reducer.start_max(self.largest_local).wait()


class ScaledStep:
    """--preconditioner scaled: a ScaledGD-style step, with r×r Gram matrices as a variable metric (damped by λ):

        V_j ← V_j − µ ∇_V f_j (U_jᵀU_j + λI)⁻¹                              (local)
        U_j ← Σ_i W̃_ji U_i − µ ∇_U f_j (VᵀV + λI)⁻¹,   VᵀV = Σ_j V_jᵀV_j       (gram_totals)

    then the common change of gauge U_j ← U_j A, V_j ← V_j A⁻ᵀ that balances (1/J) Σ_j U_jᵀU_j against VᵀV: it
    leaves every product U_j V_jᵀ unchanged, maps agreeing copies to agreeing copies, and keeps the damping λ small
    against both Gram matrices (without it the factors drift apart in scale and λ slows the weak directions).
    The metric moves with the iterate: this is not gradient descent on one fixed function. A fixed point of the
    step is a stationary point of g with the consensus penalty measured in M = VᵀV + λI (tr(D M Dᵀ) instead of
    ‖D‖²); M is the same on every rank, so at consensus Σ_j ∇_U f_j = 0, as for plain DGD+LOCAL. No theorem
    here excludes non-consensus limit points; exact consensus is checked numerically (tests, docs/performance.md).
    """

    def __init__(self, damping: float, J: int):
        self.damping, self.J, self.metric = damping, J, None

    def _damped(self, gram):
        return gram + self.damping * np.eye(gram.shape[0])

    def steps(self, U, V, grads_U, grads_V, VtV):
        """Preconditioned directions for the local blocks (the plain gradients once the iterate is no longer
        finite: a diverging run goes on to the next diagnostics, which report it)."""
        self.metric = self._damped(VtV)
        local_grams = [self._damped(U_j.T.astype(np.float64) @ U_j) for U_j in U]
        if not all(np.all(np.isfinite(gram)) for gram in [self.metric] + local_grams):
            return grads_U, grads_V
        try:
            P_U = np.linalg.inv(self.metric).astype(U[0].dtype, copy=False)
            P_V = [np.linalg.inv(gram).astype(g.dtype, copy=False) for gram, g in zip(local_grams, grads_V)]
        except np.linalg.LinAlgError:   # only for Gram matrices near overflow: λ keeps them positive definite
            return grads_U, grads_V
        return [g @ P_U for g in grads_U], [g @ P for g, P in zip(grads_V, P_V)]

    def balance(self, U, V, UtU, VtV):
        """(U_j A, V_j A⁻ᵀ) with Aᵀ (UtU/J) A = A⁻¹ VtV A⁻ᵀ diagonal (both damped by λ).

        UtU and VtV are the Gram totals of the iterate before the step (this iteration's all-reduce), so the
        gauge lags one step behind and needs no second all-reduce; any common A keeps every U_j V_jᵀ. Skipped
        when a Gram matrix is not finite (a diverging run, left for the next diagnostics to report)."""
        if not (np.all(np.isfinite(UtU)) and np.all(np.isfinite(VtV))):
            return U, V
        try:
            gauge = balancing_gauge(self._damped(UtU / self.J), self._damped(VtV))
        except np.linalg.LinAlgError:
            return U, V
        return apply_gauge(U, V, *gauge)


class Balance:
    """Balancing regularizer Σ_j (µ_b / 4J) ‖U_jᵀU_j − VᵀV‖_F², VᵀV = Σ_j V_jᵀV_j (each rank uses its own copy U_j;
    at consensus this is (µ_b/4)‖UᵀU − VᵀV‖_F²). Needs one all-reduce of two r×r matrices per iteration.

        ∇_{U_j} = (µ_b/J) U_j (U_jᵀU_j − VᵀV),    ∇_{V_j} = −µ_b V_j ((1/J) Σ_i U_iᵀU_i − VᵀV)
    """

    def __init__(self, weight: float, J: int):
        self.weight, self.J = weight, J

    def terms(self, U, V, totals):
        """(value, [∇_U], [∇_V]) for the local blocks, from gram_totals; the value is the local blocks' share
        of the regularizer (the diagnostics sum it over ranks)."""
        mean_UtU, VtV = totals[0] / self.J, totals[1]
        gaps = [U_j.T @ U_j - VtV for U_j in U]
        local_value = sum(self.weight / (4.0 * self.J) * float(np.sum(gap ** 2)) for gap in gaps)
        grads_U = [self.weight / self.J * U_j @ gap for U_j, gap in zip(U, gaps)]
        grads_V = [-self.weight * V_j @ (mean_UtU - VtV) for V_j in V]
        return local_value, grads_U, grads_V


def _local_diagnostics(problems, U, V, values, grads_U, grads_V, neighbourhoods, mixed, step_size, own_ranks,
                       regularizer, metric=None, extra=None, pulls=None, atc=False):
    """Per-rank sums that need no Ū: f_j, consensus penalty + regularizer, ‖∇g‖², ‖U_j‖², ‖V_j‖², data norm²,
    non-finite flag. With the scaled step the penalty is measured in its metric M (‖D‖² → tr(D M Dᵀ)), so that
    its fixed points are the stationary points of g. With EXTRA, ‖∇g‖ is replaced by the fixed-point residual
    ‖(z_k − z_{k+1}, D^{k−1} − D^k)‖/µ (for DGD+LOCAL ‖z_k − z_{k+1}‖/µ = ‖∇g‖); with adapt-then-combine by
    ‖z_k − z_{k+1}‖/µ (mixed = U^{k+1}), and there is no penalty (the neighbours' U_i^k are not received)."""
    out = np.zeros(7)
    out[1] = regularizer
    for j, problem in enumerate(problems):
        penalty = 0.0
        for i, weight, U_i in neighbourhoods[j]:
            if i != own_ranks[j] and not atc:
                D = U[j] - U_i
                penalty += weight / (4.0 * step_size) * float(np.sum(D ** 2 if metric is None else D * (D @ metric)))
        if atc:
            grad_g_U = (U[j] - mixed[j]) / step_size
        else:
            grad_g_U = grads_U[j] + (U[j] - mixed[j] if metric is None else (U[j] - mixed[j]) @ metric) / step_size
        dual2 = 0.0
        if extra is not None:
            moved, dual = extra.residual(j, pulls[j])
            grad_g_U = grads_U[j] - moved / step_size
            dual2 = _norm2(dual) / step_size ** 2
        out += (values[j], penalty, _norm2(grad_g_U) + _norm2(grads_V[j]) + dual2, _norm2(U[j]), _norm2(V[j]),
                problem.data_norm2, 0.0)
    out[6] = float(not np.all(np.isfinite(out[:6])))
    return out


def _mean_diagnostics(problems, U, V, mean_U):
    """Per-rank sums that need Ū: ‖U_j − Ū‖², residual² at (Ū, V_j), truth error² and norm², truth known,
    and V_jᵀV_j (r×r)."""
    r = mean_U.shape[1]
    out = np.zeros(5 + r * r)
    for j, problem in enumerate(problems):
        out[0] += _norm2(U[j] - mean_U)
        out[1] += problem.residual_norm2(mean_U, V[j])
        truth = problem.truth_error2(mean_U, V[j])
        if truth is not None:
            out[2:5] += (truth[0], truth[1], 1.0)
        if V[j] is not None:
            out[5:] += (V[j].T @ V[j]).ravel()
    return out


def _stationarity(gradient_norm2: float, objective: float, z_norm2: float) -> float:
    """‖∇g(z)‖ / (2 ‖R‖ ‖z‖), ‖R‖² = f(z): how much of the residual the gradient still sees.

    Near an exact fit (rank(Y) ≤ r) it stays of order √(σ_r/σ₁)/√r while both go to zero; on noisy data the
    residual stays at the noise level and this goes to zero. From a small initialization it is of order one.
    """
    if objective <= 0.0 or z_norm2 <= 0.0:
        return 0.0 if gradient_norm2 == 0.0 else math.inf
    return math.sqrt(gradient_norm2) / (2.0 * math.sqrt(objective) * math.sqrt(z_norm2))


class _Recorder:
    """Diagnostics history on the coordinator and the convergence / divergence test."""

    def __init__(self, settings: Settings, on_record, history=None):
        self.settings, self.on_record = settings, on_record
        self.history = history if history is not None else {name: [] for name in DIAGNOSTIC_NAMES}
        self.reference = None

    def add(self, iteration, elapsed, first, second, mean_U):
        objective, penalty, grad2, u2, v2, data2, nonfinite = first
        consensus, residual2, truth_error2, truth_norm2, truth_blocks = second[:5]
        r = mean_U.shape[1]
        VtV = second[5:].reshape(r, r)
        record = {
            "iteration": iteration, "elapsed": elapsed, "objective": objective,
            "penalized_objective": objective + penalty, "consensus_error": consensus,
            "relative_consensus": math.sqrt(consensus / u2) if u2 > 0 else 0.0,
            "gradient_norm": math.sqrt(grad2),
            "relative_error": math.sqrt(residual2 / data2) if data2 > 0 else math.sqrt(residual2),
            "optimality_error": (math.sqrt(truth_error2 / truth_norm2)
                                 if truth_blocks == self.settings.J and truth_norm2 > 0 else math.nan),
            "stationarity": _stationarity(grad2, objective, u2 + v2),
            "balance": float(np.linalg.norm(mean_U.T @ mean_U - VtV)) if v2 > 0 else math.nan,
        }
        for name in DIAGNOSTIC_NAMES:
            self.history[name].append(record[name])
        if self.reference is None:   # f(z_0), also when resumed with the history so far
            self.reference = max(self.history["objective"][0], data2)
        if self.on_record is not None:
            self.on_record(record)
        return record, bool(nonfinite)

    def decide(self, record, nonfinite, iteration) -> str | None:
        """Status if the run must stop now, else None (coordinator only; broadcast by the caller)."""
        values = (record["objective"], record["gradient_norm"], record["consensus_error"], record["relative_error"])
        if nonfinite or not all(math.isfinite(v) for v in values) or record["objective"] > EXPLOSION_FACTOR * self.reference:
            return STATUS_DIVERGED
        tolerance = self.settings.tolerance
        if tolerance > 0 and (record["stationarity"] <= tolerance or (
                record["relative_consensus"] <= tolerance and record["relative_error"] <= tolerance)):
            return STATUS_CONVERGED
        if iteration >= self.settings.iterations:
            return STATUS_MAX_ITERS
        return None


def _local_sum(arrays):
    """Σ over the local blocks, in ascending rank order."""
    total = arrays[0].copy()
    for array in arrays[1:]:
        total += array
    return total


def run(*args, **kwargs) -> Outcome:
    """_run with numpy's overflow and invalid-value warnings off: a diverging run is reported once, by its
    status and the CLI's message, instead of by a screen of RuntimeWarnings from every rank."""
    with np.errstate(over="ignore", invalid="ignore"):
        return _run(*args, **kwargs)


def _run(problems, own_ranks, U, V, settings: Settings, exchange, reducer, *, on_record=None,
         clock=time.perf_counter, start_iteration=0, history=None, interrupt=None, checkpoint=None,
         checkpoint_every=0) -> Outcome:
    """Run DGD+LOCAL from (U, V) (lists over the local blocks; V entries None without local variables).

    Diagnostics are taken at iterations 0, log_every, 2·log_every, … and at the last iterate;
    the stop decision is made there, by the coordinator, and shared with every rank.

    Restart: (U, V) may be iterate `start_iteration`, with the coordinator's `history` of the
    diagnostics before it (and, with EXTRA, settings.extra holding D^{k−1}). At every later iterate k,
    before anything else, `interrupt(k)` (the same answer on every rank) may stop the run there with
    status interrupted, and `checkpoint(k, U, V, history, correction, u_step_state)` is called when k is a
    multiple of `checkpoint_every` (correction: EXTRA's D_j list, else None; u_step_state: SharedStep.state).
    """
    step = settings.step_size
    balance = Balance(settings.balance_weight, settings.J) if settings.balance_weight > 0 else None
    gauge_fixes = settings.scaled is None and V[0] is not None   # plain steps with a local factor V_j
    rebalance = settings.rebalance if gauge_fixes else None
    align = settings.align if gauge_fixes else None
    extra = settings.extra
    atc = settings.adapt_then_combine
    delayed = settings.delayed
    carried = extra if extra is not None else delayed   # the per-rank D_j a checkpoint must keep
    shared_step = settings.shared_step if V[0] is not None else None
    started = clock()
    for problem, U_j, V_j in zip(problems, U, V):   # load a compiled kernel now, not inside iteration 1's compute
        if hasattr(problem, "warm_up"):
            problem.warm_up(U_j, V_j)
    timing = {"compute": 0.0, "wait": 0.0, "diagnostics": 0.0, "startup": clock() - started}
    recorder = _Recorder(settings, on_record, history) if reducer.is_root else None
    start = clock()
    status, iteration = None, start_iteration
    while True:
        if iteration > start_iteration:
            if interrupt is not None and interrupt(iteration):
                status, mean_U = STATUS_INTERRUPTED, reducer.sum(_local_sum(U)) / settings.J
                break
            if checkpoint_every and iteration % checkpoint_every == 0:
                checkpoint(iteration, U, V, recorder.history if recorder is not None else None,
                           None if carried is None else carried.D,
                           None if shared_step is None else shared_step.state(iteration))
        t0 = clock()
        if delayed is not None:
            exchange.start(delayed.messages(U))
        elif not atc:
            exchange.start(U)
        if shared_step is not None:
            shared_step.start(problems, V, reducer, iteration)
        diagnostic = iteration % settings.log_every == 0 or iteration >= settings.iterations
        computed = [problem.value_and_gradients(U[j], V[j], value=diagnostic) for j, problem in enumerate(problems)]
        values = [c[0] for c in computed]
        grads_U = [c[1] for c in computed]
        grads_V = [c[2] for c in computed]
        regularizer = 0.0
        scaled = settings.scaled
        totals = gram_totals(U, V, reducer) if balance is not None or scaled is not None else None
        if balance is not None:
            regularizer, extra_U, extra_V = balance.terms(U, V, totals)
            grads_U = [g + e for g, e in zip(grads_U, extra_U)]
            grads_V = [g + e for g, e in zip(grads_V, extra_V)]
        steps_U, steps_V = grads_U, grads_V
        if scaled is not None:
            steps_U, steps_V = scaled.steps(U, V, grads_U, grads_V, totals[1])
        t1 = clock()
        u_step = step if shared_step is None else step * shared_step.finish(iteration)
        if atc:   # adapt, then combine: the exchange carries U_j − sµ∇_U f_j and cannot overlap the pass
            exchange.start([U_j - u_step * step_j for U_j, step_j in zip(U, steps_U)])
        neighbourhoods = exchange.finish()
        t2 = clock()
        if delayed is not None:
            neighbourhoods, lagged = delayed.split(neighbourhoods)
        # EXTRA steps from the pulls; it needs Σ_i W̃_ji U_i only for the diagnostics
        mixed = [mix(entries) for entries in neighbourhoods] if extra is None or diagnostic else None
        if delayed is not None:   # from here on `mixed` is U^{k+1}, as with atc
            own_steps = [u_step * step_j for step_j in steps_U]
            mixed = delayed.step(mixed, lagged, own_steps, own_ranks)
        pulls = None if extra is None else extra.pulls(neighbourhoods, U, own_ranks)
        timing["compute"] += t1 - t0
        timing["wait"] += t2 - t1
        if diagnostic:
            first = reducer.sum(_local_diagnostics(problems, U, V, values, grads_U, grads_V, neighbourhoods, mixed,
                                                   u_step, own_ranks, regularizer,
                                                   None if scaled is None else scaled.metric, extra, pulls,
                                                   atc or delayed is not None))
            mean_U = reducer.sum(_local_sum(U)) / settings.J
            second = reducer.sum(_mean_diagnostics(problems, U, V, mean_U))
            decision = None
            if recorder is not None:
                record, nonfinite = recorder.add(iteration, clock() - start, first, second, mean_U)
                decision = recorder.decide(record, nonfinite, iteration)
            status = reducer.decide(decision)
            timing["diagnostics"] += clock() - t2
            if status is not None:
                break
        if extra is not None:
            U = extra.step(U, pulls, steps_U, step)
        if delayed is not None:
            delayed.advance(own_steps)
        for j in range(len(problems)):
            if V[j] is not None:   # first, from iterate k's U_j
                v_step = step if shared_step is None else step * shared_step.local_scale(problems[j], U[j])
                V[j] = V[j] - v_step * steps_V[j]
            if atc or delayed is not None:
                U[j] = mixed[j]
            elif extra is None:
                U[j] = mixed[j] - u_step * steps_U[j]
        if scaled is not None:
            U, V = scaled.balance(U, V, totals[0], totals[1])
        iteration += 1
        if align is not None and align.due(iteration):
            t3 = clock()
            rotated = align.count
            U, V = align(U, V, reducer, own_ranks)
            if carried is not None and align.count > rotated:   # the same count on every rank
                carried.restart()
            timing["compute"] += clock() - t3
        if rebalance is not None and rebalance.due(iteration):
            t3 = clock()
            U, V = rebalance(U, V, reducer, carried)
            timing["compute"] += clock() - t3
    shared_state = None
    if shared_step is not None:
        shared_step.close(reducer)
        shared_state = shared_step.state(iteration)
    return Outcome(status=status, iterations=iteration, U=U, V=V,
                   diagnostics=recorder.history if recorder is not None else {},
                   mean_U=mean_U, timing=timing, rebalances=0 if rebalance is None else rebalance.count,
                   correction=None if carried is None else carried.D,
                   alignments=0 if align is None else align.count,
                   u_step_scale=None if shared_step is None else (shared_step.smallest, shared_step.last),
                   v_step_scale=None if shared_step is None else shared_step.largest_local,
                   u_step_state=shared_state)
