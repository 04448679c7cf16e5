"""Local objectives f_j: value and gradients, pure numpy (no MPI, no files).

Factorization, rank j's term:

    f_j(U, V_j) = ‖U V_jᵀ − Y_j‖_F²
    ∇_U f_j = 2 (U V_jᵀ − Y_j) V_j          (n × r)
    ∇_V f_j = 2 (U V_jᵀ − Y_j)ᵀ U           (m_j × r)

Two single-pass kernels over Y_j, both blocked by rows so a block stays in cache:

* ``factorization_gradients`` (every iteration): the Gram form
  ∇_U f_j = 2 (U (V_jᵀV_j) − Y_j V_j),  ∇_V f_j = 2 (V_j (UᵀU) − Y_jᵀ U),
  i.e. Y_j V_j and Uᵀ Y_j in one pass (4 n m_j r flops, no residual written);
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


def factorization_gradients(U, V_j, Y_j):
    """(∇_U f_j, ∇_V f_j) = (2 (U VᵀV − Y V), 2 (V UᵀU − Yᵀ U)): one blocked pass computing Y V and Uᵀ Y."""
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
    """f_j = ‖U V_jᵀ − Y_j‖_F², one blocked pass over Y_j (used for ‖Ū Vᵀ − Y‖)."""
    n = Y_j.shape[0]
    value = 0.0
    block = rows_per_block(Y_j.shape[1], Y_j.itemsize)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        residual = U[lo:hi] @ V_j.T
        residual -= Y_j[lo:hi]
        value += squared_norm(residual)
    return value
