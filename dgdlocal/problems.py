"""Local objectives f_j: value, gradients and error measures, pure numpy (no MPI, no files).

Every problem is one class holding what rank j owns; the engine (solver.py) only
calls the methods below, so exchange, diagnostics and output stay shared:

* ``value_and_gradients(U, V, value=True)`` → (f_j, ∇_U f_j, ∇_V f_j or None); with value=False a
  problem may skip f_j (NaN) for a cheaper pass — the engine asks for it at diagnostic iterations only
* ``residual_norm2(U, V)``       → the squared residual behind ``relative_error`` at (Ū, V_j)
* ``data_norm2``                  → its denominator (‖Y_j‖², ‖y_j‖², …)
* ``truth_error2(U, V)``          → (‖X(Ū, V_j) − X⋆_j‖², ‖X⋆_j‖²), or None without a ground truth
* ``apply(x)``, ``apply_transposed(u)`` → M_j x and M_jᵀ u for the data matrix M_j behind ``--step auto``
  and spectral initialization (Y_j, P_Ω(Y_j), the back-projection mat(A_jᵀ y_j), …). With
  ``split == "columns"`` the global M is [M_1 … M_J]; with ``split == "sum"`` it is Σ_j M_j.
* ``data_shape``                  → the shape of M_j
* ``lipschitz(sigma1)``           → L, the curvature of f near a balanced minimizer, from σ₁(M)
* ``u_curvature(V)`` (factorization, completion) → a bound on the largest curvature of f_j in U at V_j,
  for ``--u-step-scale auto`` (solver.SharedStep); problems without it run that option at s = 1
* ``v_curvature(U)`` (factorization, completion) → the same in V_j at U, for V_j's step under that option

``U`` is the variable the ranks mix with their neighbours (n × r, or d × 1 for
least squares); ``V`` is rank j's local variable V_j (m_j × r) or None when the
problem has none (classical DGD).

Factorization has two single-pass kernels over Y_j, both blocked by rows so a block stays in cache:

* ``factorization_gradients`` (every iteration): the Gram form
  ∇_U f_j = 2 (U (V_jᵀV_j) − Y_j V_j),  ∇_V f_j = 2 (V_j (UᵀU) − Y_jᵀ U),
  i.e. Y_j V_j and Uᵀ Y_j in one pass (4 n m_j r flops, no residual written); with numba
  installed and Y_j ≥ 64 MB (≥ 128 columns) the two products come from one compiled pass, which
  reads each row of Y_j once for both (kernels.py, _numba_gram.py; DGDLOCAL_KERNEL=numpy
  forces this numpy pass);
* ``factorization_value_and_gradients`` (diagnostic iterations): the residual
  U V_jᵀ − Y_j formed one row block at a time (6 n m_j r flops); its value is
  the exact sum of squared residual entries, with no ‖Y‖² − 2⟨U, Y V⟩ + ⟨UᵀU, VᵀV⟩
  cancellation (that form cannot report f_j below ~1e-16 ‖Y_j‖², the residual
  form reaches ~1e-30), so the reported objective is meaningful to the floor.

Both gradients carry the same rounding floor (~eps ‖Y_j‖ ‖V_j‖ per entry), so the
iterates are the same to rounding whichever kernel computed a step. Objective
sums are accumulated in float64 also for float32 data.
"""

from __future__ import annotations

import math

import numpy as np

from dgdlocal import kernels

#: Bytes of one residual row block; small enough to stay in cache.
RESIDUAL_BLOCK_BYTES = 1 << 20


def rows_per_block(m_j: int, itemsize: int) -> int:
    """Rows of Y_j per block so that a block of the residual is ~RESIDUAL_BLOCK_BYTES."""
    return max(1, RESIDUAL_BLOCK_BYTES // max(1, m_j * itemsize))


def squared_norm(block) -> float:
    """‖block‖_F² accumulated in float64 (float32 dot products lose ~1e-4 over 10⁷ entries)."""
    if block.dtype == np.float64:
        return float(np.vdot(block, block))
    flat = block.reshape(-1)
    total = 0.0
    for lo in range(0, flat.size, 1 << 16):
        piece = flat[lo:lo + (1 << 16)].astype(np.float64)
        total += float(np.dot(piece, piece))
    return total


def gram_products(U, V_j, Y_j):
    """(Y V, Uᵀ Y) in one blocked numpy pass: each row block is read from memory once, then from cache."""
    n = Y_j.shape[0]
    YV = np.empty_like(U)
    UtY = np.zeros((U.shape[1], Y_j.shape[1]), dtype=np.result_type(U, Y_j))
    partial = np.empty_like(UtY)
    block = rows_per_block(Y_j.shape[1], Y_j.itemsize)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        np.matmul(Y_j[lo:hi], V_j, out=YV[lo:hi])
        np.matmul(U[lo:hi].T, Y_j[lo:hi], out=partial)
        UtY += partial
    return YV, UtY


def factorization_gradients(U, V_j, Y_j):
    """(∇_U f_j, ∇_V f_j) = (2 (U VᵀV − Y V), 2 (V UᵀU − Yᵀ U)): one blocked pass computing Y V and Uᵀ Y."""
    if kernels.use_compiled(U, V_j, Y_j):
        YV, UtY = kernels.gram_products(U, V_j, Y_j)
    else:
        YV, UtY = gram_products(U, V_j, Y_j)
    grad_U = U @ (V_j.T @ V_j)
    grad_U -= YV
    grad_U *= 2.0
    grad_V = V_j @ (U.T @ U)
    grad_V -= UtY.T
    grad_V *= 2.0
    return grad_U, grad_V


def factorization_value_and_gradients(U, V_j, Y_j, *, value=True):
    """Return (f_j, ∇_U f_j, ∇_V f_j) for f_j = ‖U V_jᵀ − Y_j‖_F², one pass over Y_j.

    value=False skips the exact objective and takes the cheaper Gram-form pass
    (factorization_gradients); f_j is then returned as NaN.
    """
    if not value:
        return (math.nan, *factorization_gradients(U, V_j, Y_j))
    n = Y_j.shape[0]
    grad_U = np.empty_like(U)
    grad_V = np.zeros_like(V_j)
    total = 0.0
    block = rows_per_block(Y_j.shape[1], Y_j.itemsize)
    buffer = np.empty((min(block, n), Y_j.shape[1]), dtype=np.result_type(U, V_j, Y_j))
    partial = np.empty_like(V_j)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        residual = buffer[:hi - lo]
        np.matmul(U[lo:hi], V_j.T, out=residual)
        residual -= Y_j[lo:hi]
        total += squared_norm(residual)
        np.matmul(residual, V_j, out=grad_U[lo:hi])
        np.matmul(residual.T, U[lo:hi], out=partial)
        grad_V += partial
    grad_U *= 2.0
    grad_V *= 2.0
    return total, grad_U, grad_V


def factorization_value(U, V_j, Y_j) -> float:
    """‖U V_jᵀ − Y_j‖_F², one blocked pass over Y_j."""
    n = Y_j.shape[0]
    value = 0.0
    block = rows_per_block(Y_j.shape[1], Y_j.itemsize)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        residual = U[lo:hi] @ V_j.T
        residual -= Y_j[lo:hi]
        value += squared_norm(residual)
    return value


def low_rank_distance2(A, B, C, D) -> float:
    """‖A Bᵀ − C Dᵀ‖_F², formed explicitly in row blocks (no cancellation)."""
    total = 0.0
    step = max(1, (1 << 17) // max(1, B.shape[0]))
    for lo in range(0, A.shape[0], step):
        difference = A[lo:lo + step] @ B.T - C[lo:lo + step] @ D.T
        total += float(np.vdot(difference, difference))
    return total


def _low_rank_norm2(C, D) -> float:
    """‖C Dᵀ‖_F² = ⟨CᵀC, DᵀD⟩ (no subtraction, so no cancellation)."""
    return float(np.sum((C.T @ C) * (D.T @ D)))


def gram_top_eigenvalue(V, factor=1.0) -> float:
    """factor · λ_max(VᵀV) in float64 (r×r, m_j r² flops); 0 for an empty block, inf when not finite."""
    if V.size == 0:
        return 0.0
    V = V.astype(np.float64, copy=False)
    gram = V.T @ V
    if not np.all(np.isfinite(gram)):
        return math.inf
    return factor * float(np.linalg.eigvalsh(gram)[-1])


class _LowRankTruth:
    """truth_error2 for the problems whose ground truth is X⋆_j = U⋆ V⋆_jᵀ (truth_U, truth_V or None)."""

    def truth_error2(self, U, V):
        """(‖U Vᵀ − U⋆V⋆_jᵀ‖_F², ‖U⋆V⋆_jᵀ‖_F²), or None without a ground truth."""
        if self.truth_U is None:
            return None
        return (low_rank_distance2(U, V, self.truth_U, self.truth_V), _low_rank_norm2(self.truth_U, self.truth_V))


class Factorization(_LowRankTruth):
    """f_j = ‖U V_jᵀ − Y_j‖_F²; ground truth X⋆_j = U⋆ V⋆_jᵀ when known."""

    has_local = True
    split = "columns"

    def __init__(self, Y, truth_U=None, truth_V=None):
        self.Y, self.truth_U, self.truth_V = Y, truth_U, truth_V
        self.data_norm2 = squared_norm(Y)
        self.data_shape = Y.shape

    def value_and_gradients(self, U, V, value=True):
        return factorization_value_and_gradients(U, V, self.Y, value=value)

    def warm_up(self, U, V):
        """Load the compiled Gram kernel before the first iteration (kernels.warm_up)."""
        return kernels.warm_up(U, V, self.Y)

    def residual_norm2(self, U, V):
        return factorization_value(U, V, self.Y)

    def apply(self, x):
        return self.Y @ x

    def apply_transposed(self, u):
        return self.Y.T @ u

    def lipschitz(self, sigma1):
        """∇²f at a balanced minimizer U = PΣ^½, V = QΣ^½ has norm 4σ₁(Y)."""
        return 4.0 * sigma1

    def u_curvature(self, V):
        """‖∇²_U f_j‖ = 2 λ_max(V_jᵀV_j)."""
        return gram_top_eigenvalue(V, 2.0)

    def v_curvature(self, U):
        """‖∇²_{V_j} f_j‖ = 2 λ_max(UᵀU)."""
        return gram_top_eigenvalue(U, 2.0)


class Completion(_LowRankTruth):
    """f_j = ‖P_Ωj(U V_jᵀ − Y_j)‖_F² over the observed entries (rows[k], cols[k]) of rank j's columns.

    Memory: the observed entries plus (n + m_j) r, never a dense n × m_j mask.
    ∇_U f_j = 2 S V_j, ∇_V f_j = 2 Sᵀ U with S the sparse residual on Ω_j.
    """

    has_local = True
    split = "columns"

    def __init__(self, n, m_j, rows, cols, values, truth_U=None, truth_V=None):
        self.n, self.m_j = n, m_j
        self.rows, self.cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        self.values = np.asarray(values, dtype=np.float64)
        self.truth_U, self.truth_V = truth_U, truth_V
        self.data_shape = (n, m_j)
        self.data_norm2 = float(np.vdot(self.values, self.values))

    def _residual(self, U, V):
        return np.einsum("kr,kr->k", U[self.rows], V[self.cols]) - self.values

    def _scatter(self, weights, factor, index, length):
        """Σ_k weights[k] e_{index[k]} factor[k]ᵀ, as a length × r array."""
        out = np.empty((length, factor.shape[1]))
        for c in range(factor.shape[1]):
            out[:, c] = np.bincount(index, weights=weights * factor[:, c], minlength=length)
        return out

    def value_and_gradients(self, U, V, value=True):
        residual = self._residual(U, V)
        grad_U = 2.0 * self._scatter(residual, V[self.cols], self.rows, self.n)
        grad_V = 2.0 * self._scatter(residual, U[self.rows], self.cols, self.m_j)
        return float(np.vdot(residual, residual)), grad_U, grad_V

    def residual_norm2(self, U, V):
        residual = self._residual(U, V)
        return float(np.vdot(residual, residual))

    def apply(self, x):
        """P_Ω(Y_j) x, for x of shape (m_j,) or (m_j, k)."""
        x = np.asarray(x)
        columns = x.reshape(self.m_j, -1)
        out = np.stack([np.bincount(self.rows, weights=self.values * columns[self.cols, c], minlength=self.n)
                        for c in range(columns.shape[1])], axis=1)
        return out.reshape((self.n,) + x.shape[1:])

    def apply_transposed(self, u):
        """P_Ω(Y_j)ᵀ u, for u of shape (n,) or (n, k)."""
        u = np.asarray(u)
        columns = u.reshape(self.n, -1)
        out = np.stack([np.bincount(self.cols, weights=self.values * columns[self.rows, c], minlength=self.m_j)
                        for c in range(columns.shape[1])], axis=1)
        return out.reshape((self.m_j,) + u.shape[1:])

    def lipschitz(self, sigma1):
        """σ₁(P_Ω Y) ≈ rate · σ₁(Y) and the curvature on the observed entries ≈ rate · 4σ₁(Y)."""
        return 4.0 * sigma1

    def u_curvature(self, V):
        """‖∇²_U f_j‖ ≤ 2 λ_max(V_jᵀV_j): row i of U sees 2 Σ_{k ∈ Ω_i} v_k v_kᵀ ⪯ 2 V_jᵀV_j."""
        return gram_top_eigenvalue(V, 2.0)

    def v_curvature(self, U):
        """‖∇²_{V_j} f_j‖ ≤ 2 λ_max(UᵀU): row k of V_j sees 2 Σ_{i ∈ Ω_k} u_i u_iᵀ ⪯ 2 UᵀU."""
        return gram_top_eigenvalue(U, 2.0)


class Sensing(_LowRankTruth):
    """f_j = ½‖A_j vec(U V_jᵀ) − y_j‖² with a dense p_j × (n m_j) operator A_j (row-major vec).

    ∇_U f_j = G V_j, ∇_V f_j = Gᵀ U with G = mat(A_jᵀ (A_j vec(U V_jᵀ) − y_j)).
    """

    has_local = True
    split = "columns"

    def __init__(self, A, y, n, m_j, truth_U=None, truth_V=None):
        self.A, self.y, self.n, self.m_j = A, y, n, m_j
        self.truth_U, self.truth_V = truth_U, truth_V
        self.data_shape = (n, m_j)
        self.data_norm2 = float(np.vdot(y, y))
        self._backprojection = (A.T @ y).reshape(n, m_j)

    def _residual(self, U, V):
        return self.A @ (U @ V.T).ravel() - self.y

    def value_and_gradients(self, U, V, value=True):
        residual = self._residual(U, V)
        G = (self.A.T @ residual).reshape(self.n, self.m_j)
        return 0.5 * float(np.vdot(residual, residual)), G @ V, G.T @ U

    def residual_norm2(self, U, V):
        residual = self._residual(U, V)
        return float(np.vdot(residual, residual))

    def apply(self, x):
        return self._backprojection @ x

    def apply_transposed(self, u):
        return self._backprojection.T @ u

    def lipschitz(self, sigma1):
        """½‖A(UVᵀ) − y‖² with a near-isometric A: L ≈ 2σ₁(X⋆), and σ₁(mat(Aᵀy)) ≈ σ₁(X⋆)."""
        return 2.0 * sigma1


class SymmetricSensing:
    """f_j = ‖A_j vec(U Uᵀ) − y_j‖² (PSD X⋆ = U⋆U⋆ᵀ; no local variable: classical DGD on U).

    ∇_U f_j = 2 (G + Gᵀ) U with G = mat(A_jᵀ (A_j vec(U Uᵀ) − y_j)).
    The truth error is global, so only the block with `owns_truth` reports it.
    """

    has_local = False
    split = "sum"

    def __init__(self, A, y, n, truth_U=None, owns_truth=False):
        self.A, self.y, self.n = A, y, n
        self.truth_U, self.owns_truth = truth_U, owns_truth
        self.data_norm2 = float(np.vdot(y, y))
        self.data_shape = (n, n)
        backprojection = (A.T @ y).reshape(n, n)
        # Rank j's part of Σ_k y_k A_k (A_k entries N(0, 1/p)): the sum over ranks estimates X⋆.
        self._backprojection = 0.5 * (backprojection + backprojection.T)

    def _residual(self, U):
        return self.A @ (U @ U.T).ravel() - self.y

    def value_and_gradients(self, U, V=None, value=True):
        residual = self._residual(U)
        G = (self.A.T @ residual).reshape(self.n, self.n)
        return float(np.vdot(residual, residual)), 2.0 * (G + G.T) @ U, None

    def residual_norm2(self, U, V=None):
        residual = self._residual(U)
        return float(np.vdot(residual, residual))

    def truth_error2(self, U, V=None):
        if self.truth_U is None:
            return None
        if not self.owns_truth:
            return (0.0, 0.0)
        return (low_rank_distance2(U, U, self.truth_U, self.truth_U), _low_rank_norm2(self.truth_U, self.truth_U))

    def apply(self, x):
        return self._backprojection @ x

    def apply_transposed(self, u):
        return self._backprojection.T @ u

    def lipschitz(self, sigma1):
        """∇² of ‖A(UUᵀ) − y‖² at U⋆ has norm ≈ 8σ₁(X⋆) for a near-isometric A."""
        return 8.0 * sigma1


class LeastSquares:
    """f_j(x) = ‖A_j x − b_j‖² (classical DGD: x is shared and mixed, no local variable; x is d × 1).

    ∇f_j = 2 A_jᵀ (A_j x − b_j). The optimum x⋆ of Σ_j f_j (when given) is the ground truth.
    """

    has_local = False
    split = "columns"

    def __init__(self, A, b, x_star=None, owns_truth=False):
        self.A, self.b = A, b
        self.x_star, self.owns_truth = x_star, owns_truth
        self.data_norm2 = float(np.vdot(b, b))
        self.data_shape = (A.shape[1], A.shape[0])

    def value_and_gradients(self, x, V=None, value=True):
        residual = self.A @ x - self.b
        return float(np.vdot(residual, residual)), 2.0 * (self.A.T @ residual), None

    def residual_norm2(self, x, V=None):
        residual = self.A @ x - self.b
        return float(np.vdot(residual, residual))

    def truth_error2(self, x, V=None):
        if self.x_star is None:
            return None
        if not self.owns_truth:
            return (0.0, 0.0)
        return float(np.sum((x - self.x_star) ** 2)), float(np.sum(self.x_star ** 2))

    def apply(self, x):
        """M_j = A_jᵀ, so that M Mᵀ = Σ_j A_jᵀ A_j."""
        return self.A.T @ x

    def apply_transposed(self, u):
        return self.A @ u

    def lipschitz(self, sigma1):
        """L_j = 2‖A_j‖₂² ≤ 2‖A‖₂² = 2σ₁(M)² (the global bound, so the same on every rank)."""
        return 2.0 * sigma1 ** 2
