"""The compiled single-pass Gram kernel (numba). Imported only through dgdlocal.kernels.

gram_products_1 / _2 / _3(Y, U, Vt, YV, UtY, panel) add Y V to YV (n × r) and Uᵀ Y to UtY
(r × m), reading every entry of Y from memory once. Vt = Vᵀ (r × m) is passed transposed so
that, like the rows of Y and of UtY, it is read along the contiguous column index. All five
arrays are C-contiguous and of one dtype (float32 or float64); YV and UtY start at zero.

Loop order, from the outside in:

* column panels of `panel` columns, so that the r rows of Vt and of UtY over one panel
  stay in the L2 cache while every row of Y passes over them;
* rows of Y in groups of 8: each loaded entry of Y is used for 2 r multiply–adds (r for Y V,
  r for Uᵀ Y), and Vt and UtY move between L2 and the core once per 8 rows, not once per row;
* the r columns of V in chunks (`_chunk1/2/3`), each chunk one sweep over the group's 8 row
  segments that keeps 8 × chunk partial sums of Y V in vector registers (8 × 3 fit in the 32
  registers of AVX-512; with AVX2's 16 some spill: not measured). A chunk after the first reads the segments
  from L1/L2, not from memory. Three drivers, each compiled only when first used:
  gram_products_1 (r = 1), gram_products_3 (r = 3, one chunk of 3) and gram_products_2
  (every other r: pairs of columns, and a single last one when r is odd);
* the innermost loop runs over the columns of the panel; the compiler vectorizes it with
  the partial sums of Y V as vector accumulators.

fastmath is limited to "reassoc" and "contract" (reordered sums and fused multiply–adds,
as a BLAS does); no flag that assumes away NaN or infinity, so a NaN in Y still reaches the
gradients. Float32 data is accumulated in float32, as numpy's float32 matmul does.
"""

from __future__ import annotations

import numba

FASTMATH = {"reassoc", "contract"}


def _jit(function):
    """njit with numba's on-disk cache (compiling a driver takes seconds, loading it from the cache ≈ 1 s);
    without the cache where numba finds no writable cache directory."""
    try:
        return numba.njit(fastmath=FASTMATH, cache=True)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available" (read-only install, no writable home)
        return numba.njit(fastmath=FASTMATH)(function)


def _inline(function):
    """A helper inlined into its callers before compilation (so it is compiled once, as part of each driver)."""
    return numba.njit(fastmath=FASTMATH, inline="always")(function)


@_inline
def _chunk1(Y, U, Vt, YV, UtY, i, k, j0, j1):
    """Rows i..i+7, column k of V, columns j0:j1 of Y:
    YV[i:i+8, k] += Y[i:i+8, j0:j1] Vt[k, j0:j1] and UtY[k, j0:j1] += U[i:i+8, k]ᵀ Y[i:i+8, j0:j1]."""
    y0, y1, y2, y3 = Y[i, j0:j1], Y[i + 1, j0:j1], Y[i + 2, j0:j1], Y[i + 3, j0:j1]
    y4, y5, y6, y7 = Y[i + 4, j0:j1], Y[i + 5, j0:j1], Y[i + 6, j0:j1], Y[i + 7, j0:j1]
    v, b = Vt[k, j0:j1], UtY[k, j0:j1]
    u0, u1, u2, u3, u4, u5, u6, u7 = U[i, k], U[i + 1, k], U[i + 2, k], U[i + 3, k], \
        U[i + 4, k], U[i + 5, k], U[i + 6, k], U[i + 7, k]
    s0, s1, s2, s3, s4, s5, s6, s7 = YV[i, k], YV[i + 1, k], YV[i + 2, k], YV[i + 3, k], \
        YV[i + 4, k], YV[i + 5, k], YV[i + 6, k], YV[i + 7, k]
    for j in range(j1 - j0):
        a0, a1, a2, a3, a4, a5, a6, a7 = y0[j], y1[j], y2[j], y3[j], y4[j], y5[j], y6[j], y7[j]
        w = v[j]
        s0, s1, s2, s3 = s0 + a0 * w, s1 + a1 * w, s2 + a2 * w, s3 + a3 * w
        s4, s5, s6, s7 = s4 + a4 * w, s5 + a5 * w, s6 + a6 * w, s7 + a7 * w
        b[j] += ((a0 * u0 + a1 * u1) + (a2 * u2 + a3 * u3)) + ((a4 * u4 + a5 * u5) + (a6 * u6 + a7 * u7))
    YV[i, k], YV[i + 1, k], YV[i + 2, k], YV[i + 3, k], \
        YV[i + 4, k], YV[i + 5, k], YV[i + 6, k], YV[i + 7, k] = s0, s1, s2, s3, s4, s5, s6, s7


@_inline
def _chunk2(Y, U, Vt, YV, UtY, i, k, j0, j1):
    """As _chunk1 for columns k, k+1 of V in one sweep."""
    y0, y1, y2, y3 = Y[i, j0:j1], Y[i + 1, j0:j1], Y[i + 2, j0:j1], Y[i + 3, j0:j1]
    y4, y5, y6, y7 = Y[i + 4, j0:j1], Y[i + 5, j0:j1], Y[i + 6, j0:j1], Y[i + 7, j0:j1]
    v, b = Vt[k, j0:j1], UtY[k, j0:j1]
    vv, bb = Vt[k + 1, j0:j1], UtY[k + 1, j0:j1]
    u0, u1, u2, u3, u4, u5, u6, u7 = U[i, k], U[i + 1, k], U[i + 2, k], U[i + 3, k], \
        U[i + 4, k], U[i + 5, k], U[i + 6, k], U[i + 7, k]
    uu0, uu1, uu2, uu3, uu4, uu5, uu6, uu7 = U[i, k + 1], U[i + 1, k + 1], U[i + 2, k + 1], U[i + 3, k + 1], \
        U[i + 4, k + 1], U[i + 5, k + 1], U[i + 6, k + 1], U[i + 7, k + 1]
    s0, s1, s2, s3, s4, s5, s6, s7 = YV[i, k], YV[i + 1, k], YV[i + 2, k], YV[i + 3, k], \
        YV[i + 4, k], YV[i + 5, k], YV[i + 6, k], YV[i + 7, k]
    t0, t1, t2, t3, t4, t5, t6, t7 = YV[i, k + 1], YV[i + 1, k + 1], YV[i + 2, k + 1], YV[i + 3, k + 1], \
        YV[i + 4, k + 1], YV[i + 5, k + 1], YV[i + 6, k + 1], YV[i + 7, k + 1]
    for j in range(j1 - j0):
        a0, a1, a2, a3, a4, a5, a6, a7 = y0[j], y1[j], y2[j], y3[j], y4[j], y5[j], y6[j], y7[j]
        w = v[j]
        s0, s1, s2, s3 = s0 + a0 * w, s1 + a1 * w, s2 + a2 * w, s3 + a3 * w
        s4, s5, s6, s7 = s4 + a4 * w, s5 + a5 * w, s6 + a6 * w, s7 + a7 * w
        b[j] += ((a0 * u0 + a1 * u1) + (a2 * u2 + a3 * u3)) + ((a4 * u4 + a5 * u5) + (a6 * u6 + a7 * u7))
        w = vv[j]
        t0, t1, t2, t3 = t0 + a0 * w, t1 + a1 * w, t2 + a2 * w, t3 + a3 * w
        t4, t5, t6, t7 = t4 + a4 * w, t5 + a5 * w, t6 + a6 * w, t7 + a7 * w
        bb[j] += ((a0 * uu0 + a1 * uu1) + (a2 * uu2 + a3 * uu3)) + ((a4 * uu4 + a5 * uu5) + (a6 * uu6 + a7 * uu7))
    YV[i, k], YV[i + 1, k], YV[i + 2, k], YV[i + 3, k], \
        YV[i + 4, k], YV[i + 5, k], YV[i + 6, k], YV[i + 7, k] = s0, s1, s2, s3, s4, s5, s6, s7
    YV[i, k + 1], YV[i + 1, k + 1], YV[i + 2, k + 1], YV[i + 3, k + 1], \
        YV[i + 4, k + 1], YV[i + 5, k + 1], YV[i + 6, k + 1], YV[i + 7, k + 1] = t0, t1, t2, t3, t4, t5, t6, t7


@_inline
def _chunk3(Y, U, Vt, YV, UtY, i, k, j0, j1):
    """As _chunk1 for columns k, k+1, k+2 of V in one sweep."""
    y0, y1, y2, y3 = Y[i, j0:j1], Y[i + 1, j0:j1], Y[i + 2, j0:j1], Y[i + 3, j0:j1]
    y4, y5, y6, y7 = Y[i + 4, j0:j1], Y[i + 5, j0:j1], Y[i + 6, j0:j1], Y[i + 7, j0:j1]
    v, b = Vt[k, j0:j1], UtY[k, j0:j1]
    vv, bb = Vt[k + 1, j0:j1], UtY[k + 1, j0:j1]
    vvv, bbb = Vt[k + 2, j0:j1], UtY[k + 2, j0:j1]
    u0, u1, u2, u3, u4, u5, u6, u7 = U[i, k], U[i + 1, k], U[i + 2, k], U[i + 3, k], \
        U[i + 4, k], U[i + 5, k], U[i + 6, k], U[i + 7, k]
    uu0, uu1, uu2, uu3, uu4, uu5, uu6, uu7 = U[i, k + 1], U[i + 1, k + 1], U[i + 2, k + 1], U[i + 3, k + 1], \
        U[i + 4, k + 1], U[i + 5, k + 1], U[i + 6, k + 1], U[i + 7, k + 1]
    uuu0, uuu1, uuu2, uuu3, uuu4, uuu5, uuu6, uuu7 = U[i, k + 2], U[i + 1, k + 2], U[i + 2, k + 2], U[i + 3, k + 2], \
        U[i + 4, k + 2], U[i + 5, k + 2], U[i + 6, k + 2], U[i + 7, k + 2]
    s0, s1, s2, s3, s4, s5, s6, s7 = YV[i, k], YV[i + 1, k], YV[i + 2, k], YV[i + 3, k], \
        YV[i + 4, k], YV[i + 5, k], YV[i + 6, k], YV[i + 7, k]
    t0, t1, t2, t3, t4, t5, t6, t7 = YV[i, k + 1], YV[i + 1, k + 1], YV[i + 2, k + 1], YV[i + 3, k + 1], \
        YV[i + 4, k + 1], YV[i + 5, k + 1], YV[i + 6, k + 1], YV[i + 7, k + 1]
    q0, q1, q2, q3, q4, q5, q6, q7 = YV[i, k + 2], YV[i + 1, k + 2], YV[i + 2, k + 2], YV[i + 3, k + 2], \
        YV[i + 4, k + 2], YV[i + 5, k + 2], YV[i + 6, k + 2], YV[i + 7, k + 2]
    for j in range(j1 - j0):
        a0, a1, a2, a3, a4, a5, a6, a7 = y0[j], y1[j], y2[j], y3[j], y4[j], y5[j], y6[j], y7[j]
        w = v[j]
        s0, s1, s2, s3 = s0 + a0 * w, s1 + a1 * w, s2 + a2 * w, s3 + a3 * w
        s4, s5, s6, s7 = s4 + a4 * w, s5 + a5 * w, s6 + a6 * w, s7 + a7 * w
        b[j] += ((a0 * u0 + a1 * u1) + (a2 * u2 + a3 * u3)) + ((a4 * u4 + a5 * u5) + (a6 * u6 + a7 * u7))
        w = vv[j]
        t0, t1, t2, t3 = t0 + a0 * w, t1 + a1 * w, t2 + a2 * w, t3 + a3 * w
        t4, t5, t6, t7 = t4 + a4 * w, t5 + a5 * w, t6 + a6 * w, t7 + a7 * w
        bb[j] += ((a0 * uu0 + a1 * uu1) + (a2 * uu2 + a3 * uu3)) + ((a4 * uu4 + a5 * uu5) + (a6 * uu6 + a7 * uu7))
        w = vvv[j]
        q0, q1, q2, q3 = q0 + a0 * w, q1 + a1 * w, q2 + a2 * w, q3 + a3 * w
        q4, q5, q6, q7 = q4 + a4 * w, q5 + a5 * w, q6 + a6 * w, q7 + a7 * w
        bbb[j] += (((a0 * uuu0 + a1 * uuu1) + (a2 * uuu2 + a3 * uuu3))
                   + ((a4 * uuu4 + a5 * uuu5) + (a6 * uuu6 + a7 * uuu7)))
    YV[i, k], YV[i + 1, k], YV[i + 2, k], YV[i + 3, k], \
        YV[i + 4, k], YV[i + 5, k], YV[i + 6, k], YV[i + 7, k] = s0, s1, s2, s3, s4, s5, s6, s7
    YV[i, k + 1], YV[i + 1, k + 1], YV[i + 2, k + 1], YV[i + 3, k + 1], \
        YV[i + 4, k + 1], YV[i + 5, k + 1], YV[i + 6, k + 1], YV[i + 7, k + 1] = t0, t1, t2, t3, t4, t5, t6, t7
    YV[i, k + 2], YV[i + 1, k + 2], YV[i + 2, k + 2], YV[i + 3, k + 2], \
        YV[i + 4, k + 2], YV[i + 5, k + 2], YV[i + 6, k + 2], YV[i + 7, k + 2] = q0, q1, q2, q3, q4, q5, q6, q7


@_inline
def _single_row(Y, U, Vt, YV, UtY, i, j0, j1):
    """The last n mod 8 rows, one at a time (at most 7 rows: no need to be fast)."""
    y = Y[i, j0:j1]
    for k in range(U.shape[1]):
        v, b, u = Vt[k, j0:j1], UtY[k, j0:j1], U[i, k]
        s = YV[i, k]
        for j in range(j1 - j0):
            s += y[j] * v[j]
            b[j] += y[j] * u
        YV[i, k] = s


@_jit
def gram_products_1(Y, U, Vt, YV, UtY, panel):
    """r = 1: YV += Y Vtᵀ and UtY += Uᵀ Y in one read of Y."""
    n, m = Y.shape
    for j0 in range(0, m, panel):
        j1 = min(m, j0 + panel)
        i = 0
        while i + 8 <= n:
            _chunk1(Y, U, Vt, YV, UtY, i, 0, j0, j1)
            i += 8
        while i < n:
            _single_row(Y, U, Vt, YV, UtY, i, j0, j1)
            i += 1


@_jit
def gram_products_3(Y, U, Vt, YV, UtY, panel):
    """r = 3, the three columns of V in one sweep."""
    n, m = Y.shape
    for j0 in range(0, m, panel):
        j1 = min(m, j0 + panel)
        i = 0
        while i + 8 <= n:
            _chunk3(Y, U, Vt, YV, UtY, i, 0, j0, j1)
            i += 8
        while i < n:
            _single_row(Y, U, Vt, YV, UtY, i, j0, j1)
            i += 1


@_jit
def gram_products_2(Y, U, Vt, YV, UtY, panel):
    """Any r ≥ 2: the columns of V in pairs (the last one alone when r is odd); the 8 rows of a
    group are read from memory by the first pair and from cache by the others."""
    n, m = Y.shape
    r = U.shape[1]
    for j0 in range(0, m, panel):
        j1 = min(m, j0 + panel)
        i = 0
        while i + 8 <= n:
            for k in range(0, r - 1, 2):
                _chunk2(Y, U, Vt, YV, UtY, i, k, j0, j1)
            if r % 2:
                _chunk1(Y, U, Vt, YV, UtY, i, r - 1, j0, j1)
            i += 8
        while i < n:
            _single_row(Y, U, Vt, YV, UtY, i, j0, j1)
            i += 1
