"""Communication graphs, mixing-weight rules and the checks on a mixing matrix W̃.

Pure numpy: no MPI, no h5py, so everything here tests serially.

A mixing matrix W̃ (J×J) is symmetric, non-negative, has rows summing to 1,
W̃_ji > 0 exactly when i = j or i, j are neighbours, and a connected graph.
DGD+LOCAL (Thm 2.5) also needs ω = max_j Σ_{i≠j} W̃_ji < 1/2; the lazy transform
(W + I)/2 halves ω, so it gives ω < 1/2 whenever every self-weight W_jj > 0.
Built-in weights get a self-weight shift (1 − t) W + t I (`self_weight_shift`):
the smallest t that makes W̃ positive semidefinite (default, "shift"), or the
papers' t = 1/2 when ω ≥ 1/2 ("lazy").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import InputError

TOPOLOGIES = ("ring", "path", "star", "complete", "grid", "torus", "hypercube", "erdos-renyi", "exponential")
WEIGHT_RULES = ("metropolis", "max-degree", "laplacian")
#: --weight-transform: what built-in weights get before use (self_weight_shift)
WEIGHT_TRANSFORMS = ("shift", "lazy")
PSD_TOLERANCE = 1e-12

ERDOS_RENYI_ATTEMPTS = 100
# The laplacian rule keeps its best constant only while every self-weight stays above this.
_MIN_SELF_WEIGHT = 1e-8


def _one_of(parameter: str, value, choices) -> None:
    if value not in choices:
        raise InputError(f"The '{parameter}' parameter must be one of {', '.join(choices)}. Got {value!r} instead.")


def _check_J(J) -> int:
    if isinstance(J, bool) or not isinstance(J, (int, np.integer)) or J < 1:
        raise InputError(f"The 'J' parameter (number of ranks) must be an integer >= 1. Got {J!r} instead.")
    return int(J)


# --------------------------------------------------------------------------- graphs


def _from_edges(J: int, edges) -> np.ndarray:
    """Boolean adjacency from (i, j) pairs; repeated edges and both orientations collapse."""
    A = np.zeros((J, J), dtype=bool)
    for i, j in edges:
        if i != j:
            A[i, j] = A[j, i] = True
    return A


def _is_prime(J: int) -> bool:
    return J >= 2 and all(J % d for d in range(2, math.isqrt(J) + 1))


def _nearby_composites(J: int) -> list[int]:
    """The closest rank counts below and above J that factor as rows×cols with both sides >= 2."""
    below = next((k for k in range(J - 1, 3, -1) if not _is_prime(k)), None)
    above = next(k for k in range(max(J + 1, 4), 2 * J + 5) if not _is_prime(k))
    return [k for k in (below, above) if k is not None]


def grid_shape(J: int) -> tuple[int, int]:
    """(rows, cols) of the grid/torus on J ranks: rows = the largest divisor of J <= √J, cols = J/rows."""
    J = _check_J(J)
    rows = max(d for d in range(1, math.isqrt(J) + 1) if J % d == 0)
    return rows, J // rows


def _no_2d_layout(name: str, J: int) -> InputError:
    counts = " or ".join(f"J={k}" for k in _nearby_composites(J))
    reason = f"{J} is prime" if _is_prime(J) else f"{J} has no factorization rows×cols with both sides >= 2"
    return InputError(f"A 2-D {name} cannot be formed from J={J} ranks ({reason}). "
                      f"Use a nearby rank count such as {counts}, or the ring or path topology.")


def _grid_edges(rows: int, cols: int, wrap: bool):
    """Rank id = row*cols + col; neighbours one step along a row or a column (modulo the side if wrap)."""
    for r in range(rows):
        for c in range(cols):
            here = r * cols + c
            if c + 1 < cols or wrap:
                yield here, r * cols + (c + 1) % cols
            if r + 1 < rows or wrap:
                yield here, ((r + 1) % rows) * cols + c


def _erdos_renyi(J: int, seed: int, edge_probability: float) -> np.ndarray:
    """Each of the J(J−1)/2 pairs is an edge with probability p; redraw until connected."""
    if isinstance(edge_probability, bool) or not isinstance(edge_probability, (int, float, np.integer, np.floating)) \
            or not 0.0 < edge_probability <= 1.0:
        raise InputError("The 'edge_probability' parameter must be a float in the range (0, 1]. "
                         f"Got {edge_probability!r} instead.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"The 'seed' parameter must be an integer >= 0. Got {seed!r} instead.")
    rng = np.random.default_rng(seed)
    upper = np.triu(np.ones((J, J), dtype=bool), k=1)
    for _ in range(ERDOS_RENYI_ATTEMPTS):
        A = (rng.random((J, J)) < edge_probability) & upper
        A = A | A.T
        if is_connected(A):
            return A
    threshold = math.log(J) / J
    raise InputError(f"No connected erdos-renyi graph on J={J} ranks with edge probability p={edge_probability:g} "
                     f"in {ERDOS_RENYI_ATTEMPTS} draws (seed {seed}). Use a larger --edge-probability: "
                     f"connectivity becomes likely once p is well above ln(J)/J = {threshold:.3g}.")


def build_adjacency(name: str, J: int, *, seed: int = 0, edge_probability: float = 0.5) -> np.ndarray:
    """Boolean J×J symmetric adjacency with False diagonal for a named topology.

    ring i~i±1 mod J; path i~i+1; star 0~i; complete; grid/torus rows×cols (see
    grid_shape; torus wraps around); hypercube i~i XOR 2^k; erdos-renyi each pair
    with probability edge_probability (seeded, redrawn until connected);
    exponential i~(i ± 2^k) mod J for 2^k < J.
    """
    _one_of("topology", name, TOPOLOGIES)
    J = _check_J(J)
    nodes = range(J)
    if name == "ring":
        return _from_edges(J, ((i, (i + 1) % J) for i in nodes))
    if name == "path":
        return _from_edges(J, ((i, i + 1) for i in range(J - 1)))
    if name == "star":
        return _from_edges(J, ((0, i) for i in range(1, J)))
    if name == "complete":
        return ~np.eye(J, dtype=bool)
    if name in ("grid", "torus"):
        rows, cols = grid_shape(J)
        if J > 1 and (rows == 1 and (name == "torus" or J > 3)):
            raise _no_2d_layout(name, J)
        return _from_edges(J, _grid_edges(rows, cols, wrap=name == "torus"))
    if name == "hypercube":
        if J & (J - 1):
            lower = 1 << (J.bit_length() - 1)
            raise InputError(f"The hypercube topology needs a power-of-two number of ranks. Got J={J}. "
                             f"Use J={lower} or J={2 * lower}, or another topology.")
        return _from_edges(J, ((i, i ^ (1 << k)) for i in nodes for k in range(J.bit_length() - 1)))
    if name == "erdos-renyi":
        return _erdos_renyi(J, seed, edge_probability)
    # exponential
    powers = [1 << k for k in range(J.bit_length()) if (1 << k) < J]
    return _from_edges(J, ((i, (i + s) % J) for i in nodes for s in powers))


def _components(adjacency: np.ndarray) -> list[list[int]]:
    """Connected components (each a sorted list of nodes), in order of their smallest node."""
    A = np.asarray(adjacency, dtype=bool)
    J = A.shape[0]
    seen = np.zeros(J, dtype=bool)
    components = []
    for start in range(J):
        if seen[start]:
            continue
        seen[start] = True
        component, frontier = [start], [start]
        while frontier:
            new = np.flatnonzero(A[frontier].any(axis=0) & ~seen)
            seen[new] = True
            frontier = new.tolist()
            component += frontier
        components.append(sorted(component))
    return components


def is_connected(adjacency) -> bool:
    """True when every node reaches every other along edges (a single node is connected)."""
    A = np.asarray(adjacency)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise InputError(f"An adjacency matrix must be square. Got shape {A.shape} instead.")
    return len(_components(A != 0)) == 1


# --------------------------------------------------------------------------- weights


def _check_adjacency(adjacency) -> np.ndarray:
    A = np.asarray(adjacency)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise InputError(f"An adjacency matrix must be square and non-empty. Got shape {A.shape} instead.")
    A = A != 0
    if np.any(np.diag(A)):
        raise InputError(f"An adjacency matrix must have a False diagonal; node {int(np.flatnonzero(np.diag(A))[0])} "
                         "is its own neighbour.")
    if not np.array_equal(A, A.T):
        i, j = np.argwhere(A != A.T)[0]
        raise InputError(f"An adjacency matrix must be symmetric; entry ({i}, {j}) differs from ({j}, {i}).")
    return A


def _with_diagonal(offdiagonal: np.ndarray) -> np.ndarray:
    """W = offdiagonal + diag(1 − row sums): rows sum to 1, symmetry kept exactly."""
    W = np.array(offdiagonal, dtype=np.float64)
    np.fill_diagonal(W, 0.0)
    np.fill_diagonal(W, 1.0 - W.sum(axis=1))
    return W


def _laplacian_step(A: np.ndarray) -> float:
    """α of the laplacian rule W = I − αL (see mixing_weights)."""
    degrees = A.sum(axis=1)
    d_max = int(degrees.max())
    if d_max == 0:
        return 0.0
    L = np.diag(degrees.astype(np.float64)) - A.astype(np.float64)
    eigenvalues = np.linalg.eigvalsh(L)
    best = 2.0 / (eigenvalues[-1] + eigenvalues[1])
    if 1.0 - best * d_max > _MIN_SELF_WEIGHT:
        return float(best)
    return 1.0 / (d_max + 1)


def mixing_weights(adjacency: np.ndarray, rule: str = "metropolis") -> np.ndarray:
    """Symmetric doubly stochastic W (float64) on the graph, W_ii = 1 − Σ_{j≠i} W_ij.

    - metropolis: W_ij = 1/(1 + max(d_i, d_j)) for each edge;
    - max-degree: W_ij = 1/(1 + d_max) for each edge;
    - laplacian:  W = I − αL, L = D − A, with the best constant α = 2/(λ_max(L) + λ_2(L))
      (Xiao & Boyd). That α can leave a self-weight 1 − α d_i zero (path) or negative
      (star, grid); whenever 1 − α d_max <= 1e-8 the rule falls back to α = 1/(d_max + 1),
      i.e. the max-degree weights. So every entry is non-negative and every W_ii > 0.

    For J = 1 every rule gives [[1.0]].
    """
    _one_of("rule", rule, WEIGHT_RULES)
    A = _check_adjacency(adjacency)
    degrees = A.sum(axis=1)
    if rule == "metropolis":
        offdiagonal = A / (1.0 + np.maximum.outer(degrees, degrees))
    elif rule == "max-degree":
        offdiagonal = A / (1.0 + degrees.max())
    else:
        offdiagonal = A * _laplacian_step(A)
    return _with_diagonal(offdiagonal)


def lazy(W) -> np.ndarray:
    """The lazy transform (W + I)/2: same graph, ω halved."""
    W = np.asarray(W, dtype=np.float64)
    return (W + np.eye(W.shape[0])) / 2.0


def self_weight_shift(W, transform: str) -> float:
    """t of the transform (1 − t) W + t I that built-in weights get (eigenvalues λ → (1 − t) λ + t):

    shift: t = max(0, −λ_min / (1 − λ_min)), the smallest t with λ_min ≥ 0 — the auto step's
           0.5·min(1, 1 + λ_min)/L is then 0.5/L, and the spectral gap shrinks by (1 − t) only;
    lazy:  t = 1/2, the papers' (W + I)/2, iff ω(W) ≥ 1/2 (Thm 2.5's ω < 1/2, Remark 2.5), else 0.
    """
    _one_of("weight transform", transform, WEIGHT_TRANSFORMS)
    if transform == "lazy":
        return 0.5 if omega(W) >= 0.5 else 0.0
    return psd_shift(float(np.linalg.eigvalsh(np.asarray(W, dtype=np.float64))[0]))


def psd_shift(lambda_min: float) -> float:
    """The smallest t ≥ 0 with (1 − t) λ_min + t ≥ 0: −λ_min / (1 − λ_min) for λ_min < 0, else 0
    (λ_min ≥ −1e-12 counts as semidefinite up to rounding, e.g. 11ᵀ/J, and is left alone)."""
    return -lambda_min / (1.0 - lambda_min) if lambda_min < -PSD_TOLERANCE else 0.0


def shifted(W, t: float) -> np.ndarray:
    """(1 − t) W + t I; t = 1/2 is computed as lazy(W), bit for bit the papers' (W + I)/2."""
    W = np.asarray(W, dtype=np.float64)
    if t == 0.5:
        return lazy(W)
    return (1.0 - t) * W + t * np.eye(W.shape[0])


def describe_shift(t: float) -> str:
    """How the weights were transformed, for summaries: 'lazy (W+I)/2 applied', 'self-weight shift 0.75·W + 0.25·I'
    or '' (t = 0)."""
    if t == 0.5:
        return "lazy (W+I)/2 applied"
    return f"self-weight shift {1 - t:.3g}·W + {t:.3g}·I" if t > 0 else ""


def describe_step_bound(bound: float, spec: str = ".3g") -> str:
    """Thm 2.5's sufficient step bound (1 − 2ω)/L for summaries; stored as 0 when ω ≥ 1/2 (no step covered)."""
    return format(bound, spec) if bound > 0 else "none (ω ≥ 1/2)"


def omega(W) -> float:
    """ω = max_j Σ_{i≠j} W_ji, the largest total weight a rank gives its neighbours."""
    off = np.array(W, dtype=np.float64)
    np.fill_diagonal(off, 0.0)
    return float(off.sum(axis=1).max())


def spectral_summary(W) -> dict:
    """ω, λ_min, λ_2 (second-largest eigenvalue) and spectral gap 1 − max(|λ_2|, |λ_min|) of W.

    For J = 1 there is no second eigenvalue: λ_2 = 0.0 and the gap is 1.0.
    """
    W = np.asarray(W, dtype=np.float64)
    eigenvalues = np.linalg.eigvalsh(W)
    if W.shape[0] == 1:
        lambda_2, gap = 0.0, 1.0
    else:
        lambda_2 = float(eigenvalues[-2])
        gap = 1.0 - max(abs(lambda_2), abs(float(eigenvalues[0])))
    return {"omega": omega(W), "lambda_min": float(eigenvalues[0]), "lambda_2": lambda_2, "spectral_gap": float(gap)}


def _first_bad_entry(mask: np.ndarray) -> tuple[int, int]:
    i, j = np.argwhere(mask)[0]
    return int(i), int(j)


def validate_weights(W, J: int, *, tolerance: float = 1e-10) -> np.ndarray:
    """Check a user-given mixing matrix and return it as a C-contiguous float64 array.

    Checks, in order: 2-D square, size J×J, finite, symmetric (max |W − Wᵀ| <= tolerance),
    non-negative (entries in [−tolerance, 0) are set to 0), every row sum within tolerance
    of 1, connected graph (neighbours = nonzero off-diagonal entries). The result is
    symmetrised exactly, (W + Wᵀ)/2. Raises InputError naming the offending entry.
    """
    J = _check_J(J)
    if not (tolerance >= 0.0):
        raise InputError(f"The 'tolerance' parameter must be a float >= 0. Got {tolerance!r} instead.")
    if np.iscomplexobj(W):
        raise InputError("The weight matrix must be real; it has complex entries.")
    try:
        W = np.array(W, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InputError(f"The weight matrix must be a numeric J×J array ({error}).") from None
    if W.ndim != 2:
        raise InputError(f"The weight matrix must be 2-D (J×J). Got an array of shape {W.shape}.")
    rows, cols = W.shape
    if rows != cols:
        raise InputError(f"The weight matrix must be square (J×J). Got {rows}×{cols}.")
    if rows != J:
        raise InputError(f"The weight matrix is {rows}×{cols} but the job has J={J} ranks.")
    bad = ~np.isfinite(W)
    if bad.any():
        i, j = _first_bad_entry(bad)
        raise InputError(f"The weight matrix has {int(bad.sum())} non-finite entries; W[{i}, {j}] = {float(W[i, j])}.")
    asymmetry = np.abs(W - W.T)
    if asymmetry.max() > tolerance:
        i, j = np.unravel_index(int(np.argmax(asymmetry)), W.shape)
        raise InputError(f"The weight matrix must be symmetric: W[{i}, {j}] = {float(W[i, j])!r} but "
                         f"W[{j}, {i}] = {float(W[j, i])!r} (difference {asymmetry[i, j]:.3g} > tolerance {tolerance:g}).")
    negative = W < -tolerance
    if negative.any():
        i, j = _first_bad_entry(negative)
        raise InputError(f"The weight matrix must be non-negative: W[{i}, {j}] = {float(W[i, j])!r} "
                         f"({int(negative.sum())} negative entries).")
    W[W < 0.0] = 0.0
    row_error = np.abs(W.sum(axis=1) - 1.0)
    if row_error.max() > tolerance:
        row = int(np.argmax(row_error))
        count = int((row_error > tolerance).sum())
        raise InputError(f"Every row of the weight matrix must sum to 1: row {row} sums to {float(W[row].sum())!r} "
                         f"({count} of {J} rows are off by more than {tolerance:g}).")
    off = W != 0.0
    np.fill_diagonal(off, False)
    components = _components(off | off.T)
    if len(components) > 1:
        shown = "; ".join(_describe_ranks(c) for c in components[:3]) + ("; ..." if len(components) > 3 else "")
        raise InputError(f"The graph of the weight matrix (neighbours = nonzero off-diagonal entries) must be "
                         f"connected; it has {len(components)} components: {shown}.")
    return np.ascontiguousarray((W + W.T) / 2.0)


def _describe_ranks(ranks: list[int]) -> str:
    if len(ranks) <= 6:
        return "ranks " + ", ".join(map(str, ranks))
    return f"{len(ranks)} ranks " + ", ".join(map(str, ranks[:4])) + ", ..."


def neighbours(W, j) -> list[int]:
    """Sorted i != j with W[j, i] != 0."""
    row = np.asarray(W)[j]
    return [int(i) for i in np.flatnonzero(row) if i != j]


# --------------------------------------------------------------------------- networks


@dataclass(frozen=True, eq=False)
class Network:
    """The mixing matrix the solver uses, and where it came from.

    weights: J×J float64 (read-only); source: the topology name or "file"; summary: spectral_summary(weights);
    self_weight_shift: t of (1 − t) W + t I applied to the given or rule's weights (1/2 = lazy, 0 = none).
    """

    weights: np.ndarray
    source: str
    summary: dict
    self_weight_shift: float = 0.0

    @property
    def lazy_applied(self) -> bool:
        """Whether (W + I)/2 was applied."""
        return self.self_weight_shift == 0.5


def _network(W: np.ndarray, source: str, shift: float) -> Network:
    W = np.ascontiguousarray(W, dtype=np.float64).copy()
    W.setflags(write=False)
    return Network(weights=W, source=source, summary=spectral_summary(W), self_weight_shift=shift)


def rule_network(W, source: str, transform: str) -> Network:
    """The Network of a rule's weights W after the --weight-transform (self_weight_shift)."""
    t = self_weight_shift(W, transform)
    return _network(shifted(W, t), source, t)


def make_network(topology: str, J: int, *, rule: str = "metropolis", seed: int = 0,
                 edge_probability: float = 0.5, transform: str = "shift") -> Network:
    """Built-in network: adjacency of the topology, weights of the rule, then (1 − t) W + t I (rule_network)."""
    _one_of("topology", topology, TOPOLOGIES)
    _one_of("rule", rule, WEIGHT_RULES)
    W = mixing_weights(build_adjacency(topology, J, seed=seed, edge_probability=edge_probability), rule)
    return rule_network(W, topology, transform)


def network_from_weights(W, J: int, *, lazy_transform: bool = False) -> tuple[Network, list[str]]:
    """User-given W̃: validated, (W + I)/2 applied iff lazy_transform; returns (network, warnings).

    A final ω >= 1/2 is a warning, not an error: the run goes ahead without the guarantee.
    """
    W = validate_weights(W, J)
    t = 0.5 if lazy_transform else 0.0
    network = _network(shifted(W, t), "file", t)
    warnings = []
    value = network.summary["omega"]
    if value >= 0.5:
        if lazy_transform:
            advice = ("even after the lazy transform (W+I)/2, because some rank has self-weight W_jj = 0; "
                      "give every rank a positive self-weight")
        else:
            advice = "pass --lazy to use (W+I)/2 instead, which halves omega"
        warnings.append(f"The mixing matrix has omega = max_j sum_(i!=j) W_ji = {value:.4g} >= 1/2. The convergence "
                        f"guarantee of DGD+LOCAL (Thm 2.5, step < (1 - 2 omega)/L) needs omega < 1/2; {advice}. "
                        "Running anyway.")
    return network, warnings
