"""Problem data: synthetic matrices and per-rank loading of column blocks.

Every rank reads only its own columns Y[:, lo:hi] (h5py slicing or a
memory-mapped ``.npy``), never the whole matrix. The synthetic matrix is drawn
in column chunks whose random streams depend on the seed and the chunk index
only, so the matrix is the same whatever the number of ranks.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np

from .errors import InputError

#: Rows of V⋆ drawn per random stream; fixed, so V⋆ does not depend on J.
V_CHUNK_ROWS = 4096
#: Entries of noise drawn per random stream (whole columns); fixed for a given n.
NOISE_CHUNK_ENTRIES = 1 << 20

# Random-stream keys kept apart from the initial points' SeedSequence(seed).spawn(J).
_KEY_U, _KEY_V, _KEY_NOISE = 1 << 40, (1 << 40) + 1, (1 << 40) + 2


def column_partition(m: int, J: int, what: str = "columns") -> np.ndarray:
    """Offsets (length J+1) splitting m items as evenly as possible: the first m mod J ranks get one more."""
    if J > m:
        owner = "the matrix has columns" if what == "columns" else f"the problem has {what}"
        raise InputError(
            f"The job has more ranks than {owner} (J={J} > {m}); every rank needs at least one. "
            f"Use at most {m} ranks.",
            collective=True,
        )
    sizes = np.full(J, m // J, dtype=np.int64)
    sizes[: m % J] += 1
    return np.concatenate(([0], np.cumsum(sizes)))


def _stream(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


@dataclass(frozen=True)
class SyntheticSpec:
    """Y = U⋆ V⋆ᵀ + noise, with U⋆ = Q diag(σ), σ_i geometric from 1 down to 1/condition_number,
    Q (n×r) and V⋆ (m×r) orthonormal; noise N(0, s²) with s = noise · ‖U⋆V⋆ᵀ‖_F / √(n m).
    truth="gaussian": U⋆ and V⋆ with i.i.d. N(0, 1) entries instead (the papers' sensing set-up;
    condition_number is then ignored)."""

    n: int
    m: int
    r: int
    condition_number: float = 1.0
    noise: float = 0.0
    seed: int = 0
    truth: str = "orthonormal"

    def singular_values(self) -> np.ndarray:
        if self.truth == "gaussian":
            U, R = self.truth_U(), self._v_factor
            gram = R.T @ R
            return np.sqrt(np.sort(np.maximum(np.linalg.eigvals((U.T @ U) @ gram).real, 0.0))[::-1])
        if self.r == 1:
            return np.ones(1)
        return self.condition_number ** (-np.arange(self.r) / (self.r - 1))

    def truth_U(self) -> np.ndarray:
        G = _stream(self.seed, _KEY_U).standard_normal((self.n, self.r))
        if self.truth == "gaussian":
            return G
        Q, _ = np.linalg.qr(G)
        return Q * self.singular_values()

    def _v_chunk(self, c: int) -> np.ndarray:
        rows = min(V_CHUNK_ROWS, self.m - c * V_CHUNK_ROWS)
        return _stream(self.seed, _KEY_V, c).standard_normal((rows, self.r))

    def truth_V(self, lo: int, hi: int) -> np.ndarray:
        """Rows lo:hi of the orthonormal V⋆ = G R⁻¹, GᵀG = RᵀR, G drawn in fixed chunks (G itself if gaussian)."""
        first, last = lo // V_CHUNK_ROWS, max(lo, hi - 1) // V_CHUNK_ROWS
        G = np.concatenate([self._v_chunk(c) for c in range(first, last + 1)])
        G = G[lo - first * V_CHUNK_ROWS: hi - first * V_CHUNK_ROWS]
        if self.truth == "gaussian":
            return G
        return np.linalg.solve(self._v_factor.T, G.T).T

    @functools.cached_property
    def _v_factor(self) -> np.ndarray:
        """R with GᵀG = RᵀR over all m rows of the Gaussian draw behind V⋆ (computed once: O(m r²))."""
        gram = np.zeros((self.r, self.r))
        for c in range(-(-self.m // V_CHUNK_ROWS)):
            G = self._v_chunk(c)
            gram += G.T @ G
        return np.linalg.cholesky(gram).T

    def noise_block(self, lo: int, hi: int) -> np.ndarray:
        """Columns lo:hi of the noise matrix (n × (hi−lo))."""
        scale = self.noise * np.linalg.norm(self.singular_values()) / np.sqrt(self.n * self.m)
        width = max(1, NOISE_CHUNK_ENTRIES // self.n)
        out = np.empty((self.n, hi - lo))
        for c in range(lo // width, (hi - 1) // width + 1):
            c_lo = c * width
            chunk = _stream(self.seed, _KEY_NOISE, c).standard_normal((self.n, min(width, self.m - c_lo)))
            a, b = max(lo, c_lo), min(hi, c_lo + chunk.shape[1])
            out[:, a - lo: b - lo] = chunk[:, a - c_lo: b - c_lo]
        return scale * out


@dataclass
class Block:
    """What rank j holds: its columns Y_j = Y[:, lo:hi] and, if known, the ground truth X⋆_j = U⋆ V⋆_jᵀ."""

    j: int
    lo: int
    hi: int
    Y: np.ndarray
    truth_U: np.ndarray | None = None
    truth_V: np.ndarray | None = None


def synthetic_block(spec: SyntheticSpec, j: int, lo: int, hi: int, dtype=np.float64) -> Block:
    U_star, V_star = spec.truth_U(), spec.truth_V(lo, hi)
    Y = U_star @ V_star.T
    if spec.noise > 0:
        Y += spec.noise_block(lo, hi)
    return Block(j, lo, hi, np.ascontiguousarray(Y, dtype=dtype), U_star, V_star)


# ---------------------------------------------------------------------------
# Files


def split_data_argument(argument: str) -> tuple[str, str]:
    """'PATH[:DATASET]' → (path, dataset); dataset defaults to 'Y'."""
    if os.path.exists(argument) or ":" not in argument:
        return argument, "Y"
    path, dataset = argument.rsplit(":", 1)
    return path, dataset or "Y"


def _is_npy(path: str) -> bool:
    return path.lower().endswith(".npy")


def _open_matrix(path: str, dataset: str):
    """Return (context, array-like) for a 2-D floating-point matrix; raise InputError otherwise."""
    if not os.path.exists(path):
        raise InputError(f"The data file '{path}' does not exist.")
    if not os.access(path, os.R_OK):
        raise InputError(f"The data file '{path}' is not readable (permission denied).")
    if _is_npy(path):
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            if "pickle" in str(exc).lower() or "object" in str(exc).lower():
                raise InputError(f"The data file '{path}' holds Python objects; dgdlocal needs a floating-point matrix.") from None
            raise InputError(f"The data file '{path}' is not a readable .npy file ({exc}).") from None
        except OSError as exc:
            raise InputError(f"The data file '{path}' is not a readable .npy file ({exc}).") from None
        _check_matrix(array, f"'{path}'")
        return None, array
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError:
        raise InputError(f"The data file '{path}' is not an HDF5 file (or is damaged); "
                         "dgdlocal reads HDF5 (.h5) or NumPy (.npy) matrices.") from None
    if dataset not in handle or not isinstance(handle[dataset], h5py.Dataset):
        names = sorted(k for k in handle.keys() if isinstance(handle[k], h5py.Dataset))
        handle.close()
        raise InputError(f"The data file '{path}' has no dataset '{dataset}'"
                         + (f"; it has: {', '.join(names)}." if names else " (it holds no datasets at the top level)."))
    array = handle[dataset]
    try:
        _check_matrix(array, f"'{path}:{dataset}'")
    except InputError:
        handle.close()
        raise
    return handle, array


def _check_matrix(array, name: str) -> None:
    if array.ndim != 2:
        raise InputError(f"The data matrix {name} must be 2-D (n rows × m columns). Got {array.ndim}-D, shape {tuple(array.shape)}.")
    if array.dtype.kind != "f":
        raise InputError(f"The data matrix {name} must hold floating-point numbers. Got dtype {array.dtype}; "
                         "convert it, e.g. numpy.save(path, Y.astype('float64')).")
    if 0 in array.shape:
        raise InputError(f"The data matrix {name} is empty (shape {tuple(array.shape)}).")


def matrix_shape(path: str, dataset: str = "Y") -> tuple[int, int]:
    handle, array = _open_matrix(path, dataset)
    shape = tuple(int(s) for s in array.shape)
    if handle is not None:
        handle.close()
    return shape


def load_block(path: str, dataset: str, j: int, lo: int, hi: int, dtype=np.float64) -> Block:
    """Read columns lo:hi of the matrix, plus /truth/U and rows of /truth/V if an HDF5 file has them."""
    handle, array = _open_matrix(path, dataset)
    truth_U = truth_V = None
    try:
        Y = np.ascontiguousarray(array[:, lo:hi], dtype=dtype)
        if handle is not None and "truth" in handle and dataset == "Y":
            truth_U = np.asarray(handle["truth/U"][...], dtype=np.float64)
            truth_V = np.asarray(handle["truth/V"][lo:hi], dtype=np.float64)
    finally:
        if handle is not None:
            handle.close()
    bad = ~np.isfinite(Y)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise InputError(f"The data matrix '{path}' holds non-finite values (NaN or inf), "
                         f"first at row {row}, column {lo + col}; {int(bad.sum())} such entries in columns {lo}..{hi - 1}.")
    return Block(j, lo, hi, Y, truth_U, truth_V)


def _coordinate_group(handle, dataset):
    """The HDF5 group holding rows/cols/values (the dataset name, or the file root)."""
    group = handle[dataset] if dataset in handle and not hasattr(handle[dataset], "shape") else handle
    return group if all(k in group for k in ("rows", "cols", "values")) else None


def observed_shape(path: str, dataset: str = "Y") -> tuple[int, int]:
    """(n, m) of a completion input: coordinate HDF5 (attr `shape`) or a dense matrix with NaN for missing."""
    if not _is_npy(path) and os.path.exists(path):
        import h5py

        try:
            with h5py.File(path, "r") as handle:
                group = _coordinate_group(handle, dataset)
                if group is not None:
                    if "shape" not in group.attrs:
                        raise InputError(f"The completion file '{path}' has rows/cols/values but no 'shape' attribute (n, m).")
                    n, m = (int(v) for v in group.attrs["shape"])
                    return n, m
        except OSError:
            pass   # reported by matrix_shape below
    return matrix_shape(path, dataset)


def load_observed(path: str, dataset: str, lo: int, hi: int):
    """Observed entries of columns lo:hi: (rows, global cols, values, truth_U, truth_V).

    Coordinate HDF5: uses `col_ptr` (length m+1, entries sorted by column) when present,
    otherwise scans `cols` in chunks; never reads other ranks' entries into memory at once.
    Dense input: NaN marks a missing entry; only columns lo:hi are read.
    """
    truth_U = truth_V = None
    if not _is_npy(path):
        import h5py

        with h5py.File(path, "r") as handle:
            group = _coordinate_group(handle, dataset)
            if "truth" in handle:
                truth_U = np.asarray(handle["truth/U"][...], dtype=np.float64)
                truth_V = np.asarray(handle["truth/V"][lo:hi], dtype=np.float64)
            if group is not None:
                if "col_ptr" in group:
                    a, b = (int(v) for v in group["col_ptr"][[lo, hi]])
                    rows, cols, values = (np.asarray(group[k][a:b]) for k in ("rows", "cols", "values"))
                else:
                    pieces = []
                    total = group["cols"].shape[0]
                    for start in range(0, total, 1 << 20):
                        cols = np.asarray(group["cols"][start:start + (1 << 20)])
                        keep = np.flatnonzero((cols >= lo) & (cols < hi))
                        if keep.size:
                            pieces.append((np.asarray(group["rows"][start:start + (1 << 20)])[keep], cols[keep],
                                           np.asarray(group["values"][start:start + (1 << 20)])[keep]))
                    rows, cols, values = (np.concatenate([p[i] for p in pieces]) if pieces else np.zeros(0)
                                          for i in range(3))
                values = np.asarray(values, dtype=np.float64)
                if not np.all(np.isfinite(values)):
                    raise InputError(f"The completion file '{path}' holds non-finite observed values.")
                return rows.astype(np.int64), cols.astype(np.int64), values, truth_U, truth_V
    handle, array = _open_matrix(path, dataset)
    try:
        Y = np.asarray(array[:, lo:hi], dtype=np.float64)
    finally:
        if handle is not None:
            handle.close()
    if np.isinf(Y).any():
        raise InputError(f"The data matrix '{path}' holds inf values; mark missing entries with NaN.")
    rows, cols = np.nonzero(~np.isnan(Y))
    return rows, cols + lo, Y[rows, cols], truth_U, truth_V


def load_equations(path: str, lo: int, hi: int):
    """Rows lo:hi of A (m × d) and b (m) from an HDF5 file with datasets `A` and `b`."""
    import h5py

    if not os.path.exists(path):
        raise InputError(f"The data file '{path}' does not exist.")
    try:
        with h5py.File(path, "r") as handle:
            if "A" not in handle or "b" not in handle:
                raise InputError(f"The least-squares file '{path}' needs datasets 'A' (m × d) and 'b' (m).")
            A, b = handle["A"], handle["b"]
            if A.ndim != 2 or b.shape[0] != A.shape[0]:
                raise InputError(f"The least-squares file '{path}' has A of shape {A.shape} and b of shape {b.shape}; "
                                 "A must be m × d and b of length m.")
            A_j, b_j = np.asarray(A[lo:hi], dtype=np.float64), np.asarray(b[lo:hi], dtype=np.float64).reshape(-1, 1)
    except OSError:
        raise InputError(f"The data file '{path}' is not an HDF5 file.") from None
    if not (np.isfinite(A_j).all() and np.isfinite(b_j).all()):
        raise InputError(f"The least-squares file '{path}' holds non-finite values in rows {lo}..{hi - 1}.")
    return A_j, b_j


def equations_shape(path: str) -> tuple[int, int]:
    """(d, m) of a least-squares file: unknowns and equations."""
    n_rows, d = matrix_shape(path, "A")
    return d, n_rows


def load_small_matrix(path: str, what: str) -> np.ndarray:
    """Read a small matrix (weights) from .npy, .txt/.csv (whitespace or comma separated) or HDF5 (first dataset)."""
    if not os.path.exists(path):
        raise InputError(f"The {what} file '{path}' does not exist.")
    lower = path.lower()
    try:
        if lower.endswith(".npy"):
            return np.asarray(np.load(path, allow_pickle=False), dtype=np.float64)
        if lower.endswith((".txt", ".csv", ".dat")):
            with open(path) as handle:
                text = handle.read()
            delimiter = "," if "," in text else None
            return np.atleast_2d(np.loadtxt(path, delimiter=delimiter, dtype=np.float64))
        import h5py

        with h5py.File(path, "r") as handle:
            names = [k for k in handle.keys() if isinstance(handle[k], h5py.Dataset)]
            name = "weights" if "weights" in names else (names[0] if names else None)
            if name is None:
                raise InputError(f"The {what} file '{path}' holds no dataset.")
            return np.asarray(handle[name][...], dtype=np.float64)
    except InputError:
        raise
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(f"The {what} file '{path}' could not be read as a numeric matrix ({exc}).") from None


def load_initial(path: str, j: int, J: int, n: int, lo: int, hi: int, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Rank j's starting factors from an HDF5 file with U (J×n×r, one copy per rank) and V (m×r)."""
    import h5py

    if not os.path.exists(path):
        raise InputError(f"The initial-point file '{path}' does not exist.")
    try:
        with h5py.File(path, "r") as handle:
            for name in ("U", "V"):
                if name not in handle:
                    raise InputError(f"The initial-point file '{path}' has no dataset '{name}'.")
            U, V = handle["U"], handle["V"]
            if U.shape[1:] != (n, r) or U.shape[0] not in (1, J) or V.ndim != 2 or V.shape[1] != r or V.shape[0] < hi:
                raise InputError(f"The initial-point file '{path}' has U of shape {U.shape} and V of shape {V.shape}; "
                                 f"this run needs U of shape ({J}, {n}, {r}) (or (1, {n}, {r})) and V of shape (m, {r}).")
            U_j = np.asarray(U[j if U.shape[0] == J else 0], dtype=np.float64)
            V_j = np.asarray(V[lo:hi], dtype=np.float64)
    except OSError:
        raise InputError(f"The initial-point file '{path}' is not an HDF5 file.") from None
    if not (np.isfinite(U_j).all() and np.isfinite(V_j).all()):
        raise InputError(f"The initial-point file '{path}' holds non-finite values.")
    return U_j, V_j


def write_problem(path: str, spec: SyntheticSpec) -> None:
    """Write the synthetic problem (Y, truth/U, truth/V, attrs) to HDF5, column chunk by column chunk."""
    from .results import atomic_h5

    with atomic_h5(path) as handle:
        Y = handle.create_dataset("Y", shape=(spec.n, spec.m), dtype="f8")
        handle["truth/U"] = spec.truth_U()
        handle["truth/V"] = spec.truth_V(0, spec.m)
        handle["truth/singular_values"] = spec.singular_values()
        width = max(1, (1 << 24) // spec.n)
        for lo in range(0, spec.m, width):
            hi = min(spec.m, lo + width)
            Y[:, lo:hi] = synthetic_block(spec, 0, lo, hi).Y
        for key in ("n", "m", "r", "condition_number", "noise", "seed"):
            handle.attrs[key] = getattr(spec, key)


def write_completion(path: str, spec: SyntheticSpec, rate: float) -> None:
    """Write observed entries of the synthetic matrix: rows, cols, values sorted by column, col_ptr, shape, truth."""
    from .builders import sample_entries
    from .results import atomic_h5

    rows, cols, values = sample_entries(spec, rate, 0, spec.m)
    with atomic_h5(path) as handle:
        handle["rows"], handle["cols"], handle["values"] = rows, cols, values
        handle["col_ptr"] = np.searchsorted(cols, np.arange(spec.m + 1))
        handle.attrs["shape"] = (spec.n, spec.m)
        handle.attrs["sampling_rate"] = rate
        handle["truth/U"] = spec.truth_U()
        handle["truth/V"] = spec.truth_V(0, spec.m)
        for key in ("n", "m", "r", "condition_number", "noise", "seed"):
            handle.attrs[key] = getattr(spec, key)


def sensing_shape(path: str) -> tuple[int, int]:
    """(n, m) of a sensing file written by `generate --problem sensing`."""
    import h5py

    if not os.path.exists(path):
        raise InputError(f"The data file '{path}' does not exist.")
    try:
        with h5py.File(path, "r") as handle:
            if "ranks" not in handle.attrs or "shape" not in handle.attrs:
                raise InputError(f"The sensing file '{path}' lacks the attributes 'shape' and 'ranks' that "
                                 "`python -m dgdlocal generate --problem sensing` writes.")
            n, m = (int(v) for v in handle.attrs["shape"])
            return n, m
    except OSError:
        raise InputError(f"The data file '{path}' is not an HDF5 file.") from None


def load_sensing(path: str, j: int, J: int, lo: int, hi: int, n: int):
    """Rank j's operator A_j (p_j × n·m_j, row-major vec of the n × m_j block), y_j and the truth, if stored."""
    import h5py

    with h5py.File(path, "r") as handle:
        ranks = int(handle.attrs["ranks"])
        if ranks != J or list(handle["offsets"][...]) != list(column_partition(int(handle.attrs["shape"][1]), J)):
            raise InputError(f"The sensing file '{path}' holds per-rank operators for J={ranks} ranks; this job has "
                             f"J={J}. Regenerate it with --ranks {J}.")
        group = handle[f"rank{j}"]
        A, y = np.asarray(group["A"][...], dtype=np.float64), np.asarray(group["y"][...], dtype=np.float64)
        if A.shape[1] != n * (hi - lo) or A.shape[0] != y.shape[0]:
            raise InputError(f"The sensing file '{path}': rank{j}/A has shape {A.shape}, expected (p_j, {n * (hi - lo)}).")
        truth_U = truth_V = None
        if "truth" in handle:
            truth_U = np.asarray(handle["truth/U"][...])
            truth_V = np.asarray(handle["truth/V"][lo:hi])
    if not (np.isfinite(A).all() and np.isfinite(y).all()):
        raise InputError(f"The sensing file '{path}' holds non-finite values for rank {j}.")
    return A, y, truth_U, truth_V


def write_sensing(path: str, config, J: int) -> None:
    """Write the synthetic sensing problem for J ranks: rank{j}/A, rank{j}/y, offsets, truth, attrs."""
    from .builders import build
    from .results import atomic_h5

    offsets = column_partition(config.m, J)
    spec = SyntheticSpec(config.n, config.m, config.rank, config.condition_number, config.noise, config.seed)
    with atomic_h5(path) as handle:
        for j in range(J):
            local = build(config, j, offsets[j], offsets[j + 1], config.n, config.m, J, np.float64)
            handle[f"rank{j}/A"], handle[f"rank{j}/y"] = local.A, local.y
        handle["offsets"] = offsets
        handle["truth/U"] = spec.truth_U()
        handle["truth/V"] = spec.truth_V(0, config.m)
        handle.attrs["shape"] = (config.n, config.m)
        handle.attrs["ranks"] = J
