"""Choice of the kernel behind the Gram-form pass: numpy, or the compiled single pass of _numba_gram.

The compiled kernel needs numba (`pip install 'dgdlocal[fast]'`); without it everything runs on
the numpy path. The environment variable DGDLOCAL_KERNEL chooses:

* ``auto`` (default): the compiled kernel when numba imports and Y_j has at least
  ``MIN_BYTES`` (64 MB) and at least ``MIN_COLUMNS`` (128) columns. Below 64 MB the time
  saved per iteration is small against the fixed cost of the compiled path in each process
  (importing numba and loading the compiled code from numba's cache, ≈ 1–2 s; compiling it
  the first time, or on every run where numba has no writable cache directory, takes
  several seconds more: point NUMBA_CACHE_DIR at a writable directory on clusters). Below
  128 columns the per-row overhead of the compiled loops makes it no faster than numpy's
  row blocks (2× slower at 16 columns);
* ``numba``: the compiled kernel at every size (an error if numba is missing);
* ``numpy``: never the compiled kernel.

Either way the inputs must suit it (float32 or float64, one dtype, C-contiguous Y_j);
otherwise the numpy path runs. Both paths give the same products to rounding.
"""

from __future__ import annotations

import os

import numpy as np

ENVIRONMENT = "DGDLOCAL_KERNEL"
MODES = ("auto", "numba", "numpy")
#: Smallest Y_j (bytes) for which ``auto`` takes the compiled kernel.
MIN_BYTES = 64 << 20
#: Fewest columns of Y_j for which ``auto`` takes the compiled kernel.
MIN_COLUMNS = 128
#: Bytes of Vᵀ and of the Uᵀ Y accumulator (together) over one column panel: half the L2 of one core.
PANEL_BYTES = 512 << 10

_compiled = None
_import_error = None


def mode() -> str:
    value = os.environ.get(ENVIRONMENT, "auto").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"{ENVIRONMENT}={value!r}: choose one of {', '.join(MODES)}")
    return value


def _load():
    """The compiled module, or None when numba does not import (the error is kept for `numba` mode)."""
    global _compiled, _import_error
    if _compiled is None and _import_error is None:
        try:
            from dgdlocal import _numba_gram
        except ImportError as error:
            _import_error = error
        else:
            _compiled = _numba_gram
    return _compiled


def available() -> bool:
    """True when numba imports (the compiled kernel can run)."""
    return _load() is not None


def suitable(U, V, Y) -> bool:
    """Inputs the compiled kernel takes: 2-D, one float dtype, C-contiguous Y (U and V are copied if needed)."""
    return (Y.ndim == 2 and U.ndim == 2 and V.ndim == 2 and Y.dtype in (np.float32, np.float64)
            and U.dtype == Y.dtype and V.dtype == Y.dtype and Y.flags.c_contiguous
            and U.shape[0] == Y.shape[0] and V.shape[0] == Y.shape[1] and U.shape[1] == V.shape[1])


def use_compiled(U, V, Y) -> bool:
    """Whether factorization_gradients should take the compiled kernel for these arrays."""
    chosen = mode()
    if chosen == "numpy" or not suitable(U, V, Y):
        return False
    if chosen == "numba":
        if _load() is None:
            raise ImportError(f"{ENVIRONMENT}=numba but numba does not import ({_import_error}); "
                              "install it with pip install 'dgdlocal[fast]' or unset the variable")
        return True
    return Y.nbytes >= MIN_BYTES and Y.shape[1] >= MIN_COLUMNS and _load() is not None


def panel_columns(m: int, r: int, itemsize: int) -> int:
    """Columns per panel so that Vᵀ and the Uᵀ Y accumulator over a panel fit in PANEL_BYTES."""
    return max(256, min(m, PANEL_BYTES // (2 * max(1, r) * itemsize)))


def driver(r: int):
    """The compiled function for rank r: driver(Y, U, Vt, YV, UtY, panel) adds Y V to YV and Uᵀ Y to UtY."""
    compiled = _load()
    return {1: compiled.gram_products_1, 3: compiled.gram_products_3}.get(r, compiled.gram_products_2)


def warm_up(U, V, Y) -> bool:
    """Load (or compile) the compiled driver these arrays will use, on an 8 × 1 slice of Y, so that the
    first iteration does not pay for it; True when the compiled kernel will run for (U, V, Y)."""
    if not use_compiled(U, V, Y):
        return False
    rows = min(8, Y.shape[0])
    gram_products(U[:rows], V[:1], np.ascontiguousarray(Y[:rows, :1]))   # same dtypes and layouts: same driver
    return True


def gram_products(U, V, Y):
    """(Y V, Uᵀ Y) with one read of Y, by the compiled kernel; Uᵀ Y is returned r × m."""
    n, m = Y.shape
    r = U.shape[1]
    YV = np.zeros((n, r), dtype=Y.dtype)
    UtY = np.zeros((r, m), dtype=Y.dtype)
    if n and m and r:
        driver(r)(Y, np.ascontiguousarray(U), np.ascontiguousarray(V.T), YV, UtY, panel_columns(m, r, Y.itemsize))
    return YV, UtY
