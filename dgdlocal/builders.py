"""Build rank j's local problem (problems.py) from the configuration: synthetic data or a file.

Sizes: the unknown is n × r (d × 1 for least squares); what is split over the ranks
is counted by `split_count`: the columns of Y (factorization, completion, sensing)
or the measurements / equations (symmetric sensing, least squares). Random streams
depend on the seed and fixed chunk indices, so the synthetic data do not depend on J,
except the per-rank sensing operators A_j, which by definition act on rank j's block.
"""

from __future__ import annotations

import numpy as np

from . import data, problems
from .errors import InputError

MATRIX_PROBLEMS = ("factorization", "completion", "sensing")
SHARED_ONLY_PROBLEMS = ("least-squares", "symmetric-sensing")
PROBLEMS = MATRIX_PROBLEMS + SHARED_ONLY_PROBLEMS

_KEY_MASK, _KEY_SENSING, _KEY_SENSING_NOISE = (1 << 40) + 10, (1 << 40) + 11, (1 << 40) + 12
_KEY_LSQ_A, _KEY_LSQ_X, _KEY_LSQ_NOISE = (1 << 40) + 20, (1 << 40) + 21, (1 << 40) + 22
_KEY_SYM_A = (1 << 40) + 30


def _stream(seed, *key):
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def default_measurements(config, n: int, m: int) -> int:
    """p = 3·max(n, m)·r (sensing, the papers' choice) or 3·n·r (symmetric sensing), unless given."""
    if config.measurements:
        return config.measurements
    if config.problem == "symmetric-sensing":
        return 3 * n * config.rank
    return 3 * max(n, m) * config.rank


def split_count(config, n: int, m: int) -> int:
    """How many items (columns, measurements, equations) are divided over the ranks."""
    if config.problem in ("factorization", "completion", "sensing"):
        return m
    if config.problem == "symmetric-sensing":
        return default_measurements(config, n, m)
    return m   # least squares: m equations


def _spec(config, n, m):
    return data.SyntheticSpec(n, m, config.rank, config.condition_number, config.noise, config.seed, config.truth)


def build(config, j: int, lo: int, hi: int, n: int, m: int, J: int, dtype):
    """Rank j's local problem for items lo:hi."""
    if config.problem == "factorization":
        block = _factorization_block(config, j, lo, hi, dtype)
        return problems.Factorization(block.Y, block.truth_U, block.truth_V)
    if config.problem == "completion":
        return _completion(config, lo, hi, n, m)
    if config.problem == "sensing":
        return _sensing(config, j, lo, hi, n, m, J)
    if config.problem == "symmetric-sensing":
        return _symmetric_sensing(config, j, lo, hi, n, m)
    return _least_squares(config, j, lo, hi, n, m)


def _factorization_block(config, j, lo, hi, dtype):
    if config.data is None:
        return data.synthetic_block(_spec(config, config.n, config.m), j, lo, hi, dtype)
    path, dataset = data.split_data_argument(config.data)
    return data.load_block(path, dataset, j, lo, hi, dtype)


# --------------------------------------------------------------------------- completion

def _completion(config, lo, hi, n, m):
    if config.data is not None:
        path, dataset = data.split_data_argument(config.data)
        rows, cols, values, truth_U, truth_V = data.load_observed(path, dataset, lo, hi)
        return problems.Completion(n, hi - lo, rows, cols - lo, values, truth_U, truth_V)
    spec = _spec(config, n, m)
    rows, cols, values = sample_entries(spec, config.sampling_rate, lo, hi)
    return problems.Completion(n, hi - lo, rows, cols - lo, values, spec.truth_U(), spec.truth_V(lo, hi))


def sample_entries(spec: data.SyntheticSpec, rate: float, lo: int, hi: int):
    """Observed entries (rows, global cols, values) of columns lo:hi, each entry kept with probability `rate`.

    The mask is drawn per fixed column chunk (never an n × m_j mask at once); values are
    X⋆ entries U⋆[row]·V⋆[col] plus the spec's noise.
    """
    U_star = spec.truth_U()
    width = max(1, data.NOISE_CHUNK_ENTRIES // spec.n)
    noise_scale = spec.noise * np.linalg.norm(spec.singular_values()) / np.sqrt(spec.n * spec.m)
    all_rows, all_cols, all_values = [], [], []
    for c in range(lo // width, (hi - 1) // width + 1):
        c_lo, c_hi = c * width, min(spec.m, (c + 1) * width)
        rng = _stream(spec.seed, _KEY_MASK, c)
        observed = rng.random((spec.n, c_hi - c_lo)) < rate
        noise = rng.standard_normal((spec.n, c_hi - c_lo)) if spec.noise > 0 else None
        rows, cols = np.nonzero(observed[:, max(lo, c_lo) - c_lo: min(hi, c_hi) - c_lo])
        cols = cols + max(lo, c_lo)
        V_star = spec.truth_V(max(lo, c_lo), min(hi, c_hi))
        values = np.einsum("kr,kr->k", U_star[rows], V_star[cols - max(lo, c_lo)])
        if noise is not None:
            values = values + noise_scale * noise[rows, cols - c_lo]
        order = np.lexsort((rows, cols))
        all_rows.append(rows[order]), all_cols.append(cols[order]), all_values.append(values[order])
    return np.concatenate(all_rows), np.concatenate(all_cols), np.concatenate(all_values)


# --------------------------------------------------------------------------- sensing

def _sensing(config, j, lo, hi, n, m, J):
    """A_j: p_j × (n m_j) with N(0, 1/p_j) entries, so E‖A_j vec X‖² = ‖X‖²; y_j = A_j vec(X⋆_j) + noise."""
    if config.data is not None:
        path, _ = data.split_data_argument(config.data)
        A, y, truth_U, truth_V = data.load_sensing(path, j, J, lo, hi, n)
        return problems.Sensing(A, y, n, hi - lo, truth_U, truth_V)
    spec = _spec(config, n, m)
    p_offsets = data.column_partition(default_measurements(config, n, m), J)
    p_j = int(p_offsets[j + 1] - p_offsets[j])
    U_star, V_star = spec.truth_U(), spec.truth_V(lo, hi)
    A = _stream(config.seed, _KEY_SENSING, j).standard_normal((p_j, n * (hi - lo))) / np.sqrt(p_j)
    y = A @ (U_star @ V_star.T).ravel()
    if config.noise > 0:
        y = y + config.noise * np.linalg.norm(y) / np.sqrt(p_j) * _stream(config.seed, _KEY_SENSING_NOISE, j).standard_normal(p_j)
    return problems.Sensing(A, y, n, hi - lo, U_star, V_star)


def _symmetric_sensing(config, j, lo, hi, n, m):
    """p Gaussian measurements ⟨A_k, X⋆⟩ of X⋆ = U⋆U⋆ᵀ (A_k entries N(0, 1/p)); rank j holds k in lo:hi."""
    if config.data is not None:
        raise InputError("--problem symmetric-sensing reads no --data file; it is drawn from --seed.", collective=True)
    p = default_measurements(config, n, m)
    U_star = data.SyntheticSpec(n, n, config.rank, config.condition_number, 0.0, config.seed).truth_U()
    chunk = 256   # measurements per random stream, so A does not depend on J
    rows = []
    for c in range(lo // chunk, (hi - 1) // chunk + 1):
        block = _stream(config.seed, _KEY_SYM_A, c).standard_normal((min(chunk, p - c * chunk), n * n))
        rows.append(block[max(lo, c * chunk) - c * chunk: min(hi, (c + 1) * chunk) - c * chunk])
    A = np.concatenate(rows) / np.sqrt(p)
    y = A @ (U_star @ U_star.T).ravel()
    if config.noise > 0:
        y = y + config.noise * _stream(config.seed, _KEY_SENSING_NOISE, j).standard_normal(len(y)) / np.sqrt(p)
    return problems.SymmetricSensing(A, y, n, U_star, owns_truth=(j == 0))


# --------------------------------------------------------------------------- least squares

def _least_squares(config, j, lo, hi, n, m):
    """Equations lo:hi of A x = b (A: m × n, N(0, 1/m) entries; b = A x_true + noise, default noise 0.1)."""
    if config.data is not None:
        path, _ = data.split_data_argument(config.data)
        A, b = data.load_equations(path, lo, hi)
        return problems.LeastSquares(A, b)
    chunk = 256
    rows = []
    for c in range(lo // chunk, (hi - 1) // chunk + 1):
        block = _stream(config.seed, _KEY_LSQ_A, c).standard_normal((min(chunk, m - c * chunk), n))
        rows.append(block[max(lo, c * chunk) - c * chunk: min(hi, (c + 1) * chunk) - c * chunk])
    A = np.concatenate(rows) / np.sqrt(m)
    x_true = _stream(config.seed, _KEY_LSQ_X).standard_normal(n)
    noise = config.noise if config.noise > 0 else 0.1
    e = np.concatenate([_stream(config.seed, _KEY_LSQ_NOISE, c).standard_normal(min(chunk, m - c * chunk))
                        [max(lo, c * chunk) - c * chunk: min(hi, (c + 1) * chunk) - c * chunk]
                        for c in range(lo // chunk, (hi - 1) // chunk + 1)])
    b = A @ x_true + noise / np.sqrt(m) * e * np.linalg.norm(x_true)
    return problems.LeastSquares(A, b.reshape(-1, 1))
