"""Local objectives f_j: value and gradients, pure numpy (no MPI, no files).

Factorization, rank j's term:

    f_j(U, V_j) = ‖U V_jᵀ − Y_j‖_F²
    ∇_U f_j = 2 (U V_jᵀ − Y_j) V_j          (n × r)
    ∇_V f_j = 2 (U V_jᵀ − Y_j)ᵀ U           (m_j × r)

The residual is formed one row block at a time, so a call reads Y_j exactly
once and never holds the full n × m_j residual; the value is the exact sum of
squared residual entries (no ‖Y‖² − 2⟨·⟩ + ⟨·⟩ cancellation), which keeps the
objective meaningful down to ~1e-30 relative.
"""

from __future__ import annotations

import numpy as np

#: Bytes of one residual row block; small enough to stay in cache.
RESIDUAL_BLOCK_BYTES = 1 << 20


def rows_per_block(m_j: int, itemsize: int) -> int:
    """Rows of Y_j per block so that a block of the residual is ~RESIDUAL_BLOCK_BYTES."""
    return max(1, RESIDUAL_BLOCK_BYTES // max(1, m_j * itemsize))


def factorization_value_and_gradients(U, V_j, Y_j):
    """Return (f_j, ∇_U f_j, ∇_V f_j) for f_j = ‖U V_jᵀ − Y_j‖_F², one pass over Y_j."""
    n = Y_j.shape[0]
    grad_U = np.empty_like(U)
    grad_V = np.zeros_like(V_j)
    value = 0.0
    block = rows_per_block(Y_j.shape[1], Y_j.itemsize)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        residual = U[lo:hi] @ V_j.T
        residual -= Y_j[lo:hi]
        value += float(np.vdot(residual, residual))
        np.matmul(residual, V_j, out=grad_U[lo:hi])
        grad_V += residual.T @ U[lo:hi]
    grad_U *= 2.0
    grad_V *= 2.0
    return value, grad_U, grad_V


def factorization_value(U, V_j, Y_j) -> float:
    """f_j = ‖U V_jᵀ − Y_j‖_F², one blocked pass over Y_j (used for ‖Ū Vᵀ − Y‖)."""
    n = Y_j.shape[0]
    value = 0.0
    block = rows_per_block(Y_j.shape[1], Y_j.itemsize)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        residual = U[lo:hi] @ V_j.T
        residual -= Y_j[lo:hi]
        value += float(np.vdot(residual, residual))
    return value
