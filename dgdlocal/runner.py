"""Set up one run (data, network, initial point, step), run the solver, write the result.

The same code serves the MPI run (one block per rank) and the serial simulation
(all J blocks in one process); a `Context` carries the difference: which blocks
are local, how failures are agreed on, how sums and the exchange are done.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass

import numpy as np

from . import data as data_module
from . import builders, solver, topology
from .errors import InputError

EXIT_OK, EXIT_CRASH, EXIT_INPUT, EXIT_DIVERGED = 0, 1, 2, 3

#: The embedded problem solved by `python -m dgdlocal` with no options.
DEFAULT_N, DEFAULT_M, DEFAULT_R = 100, 400, 5
DEFAULT_CONDITION_NUMBER = 2.0
#: --init-scale auto: ε = INIT_SCALE_FACTOR · √(σ₁(Y) / max(n, m)), so ‖U_j(0)‖₂ ≈ 2·10⁻³ √σ₁ at any data scale.
INIT_SCALE_FACTOR = 1e-3


@dataclass
class RunConfig:
    """Every resolved setting of a run; stored in /config of the result file."""

    problem: str = "factorization"
    algorithm: str = "auto"
    data: str | None = None
    n: int = DEFAULT_N
    m: int = DEFAULT_M
    rank: int = DEFAULT_R
    condition_number: float = DEFAULT_CONDITION_NUMBER
    noise: float = 0.0
    sampling_rate: float = 0.5
    measurements: int | None = None
    balance: float = 0.0
    preconditioner: str = "none"
    precond_damping: float = 1e-3
    topology: str = "ring"
    weights: str | None = None
    weight_rule: str = "metropolis"
    edge_probability: float = 0.5
    lazy: bool = False
    init: str = "random"
    init_scale: str | float = "auto"
    initial: str | None = None
    step: str | float = "auto"
    iterations: int = 20000
    tolerance: float = 1e-10
    log_every: int = 100
    seed: int = 0
    output: str = "dgdlocal-result.h5"
    force: bool = False
    dtype: str = "float64"
    simulate: int | None = None
    quiet: bool = False
    topology_file: str | None = None
    config: str | None = None


class Context:
    """What differs between an MPI run and the serial simulation."""

    def __init__(self, J, local_ranks, reducer, make_exchange, agree=None, check_identical=None):
        self.J, self.local_ranks, self.reducer = J, local_ranks, reducer
        self.make_exchange = make_exchange
        self.agree = agree or (lambda action, *a, **k: action(*a, **k))
        self.check_identical = check_identical or (lambda what, payload: None)

    @property
    def is_root(self):
        return self.reducer.is_root


def mpi_context(comm) -> Context:
    from . import collectives
    from .exchange import NeighbourExchange

    return Context(comm.Get_size(), [comm.Get_rank()], collectives.Reducer(comm),
                   lambda weights, shape, dtype: NeighbourExchange(comm, weights, shape, dtype),
                   agree=lambda action, *a, **k: collectives.agreed(comm, action, *a, **k),
                   check_identical=lambda what, payload: collectives.check_identical(comm, what, payload))


def simulated_context(J: int) -> Context:
    from .simulate import SimulatedExchange, SimulatedReducer

    return Context(J, list(range(J)), SimulatedReducer(), lambda weights, shape, dtype: SimulatedExchange(weights))


def say(context: Context, config: RunConfig, text: str, *, always=False) -> None:
    if context.is_root and (always or not config.quiet):
        print(text, flush=True)


def build_network(config: RunConfig, J: int):
    """The mixing matrix W̃ (built-in topology and rule, or a user file) and any warnings."""
    if config.weights is not None and config.topology_file is not None:
        raise InputError("Give either --weights or --topology-file, not both.")
    if config.topology_file is not None:
        from .graph_files import network_from_file

        return network_from_file(config.topology_file, J, rule=config.weight_rule)
    if config.weights is not None:
        W = data_module.load_small_matrix(config.weights, "weights")
        return topology.network_from_weights(W, J, lazy_transform=config.lazy)
    network = topology.make_network(config.topology, J, rule=config.weight_rule, seed=config.seed,
                                    edge_probability=config.edge_probability)
    return network, []


def problem_shape(config: RunConfig) -> tuple[int, int]:
    """(n, m): rows × columns of the matrix (unknowns d × equations m for least squares)."""
    if config.data is None:
        return (config.n, config.n) if config.problem == "symmetric-sensing" else (config.n, config.m)
    path, dataset = data_module.split_data_argument(config.data)
    if config.problem == "completion":
        return data_module.observed_shape(path, dataset)
    if config.problem == "least-squares":
        return data_module.equations_shape(path)
    if config.problem == "sensing":
        return data_module.sensing_shape(path)
    return data_module.matrix_shape(path, dataset)


def check_settings(config: RunConfig) -> None:
    """Combinations of options that cannot work, refused before any data is read."""
    local = config.problem in builders.MATRIX_PROBLEMS
    algorithm = "dgd-local" if local else "dgd"
    if config.algorithm not in ("auto", algorithm):
        raise InputError(f"--algorithm {config.algorithm} does not fit --problem {config.problem}: "
                         + ("its factor V_j is local to each rank, so it runs DGD+LOCAL (dgd-local)." if local else
                            "it has no local variables; every rank keeps a full copy, which is classical DGD (dgd)."),
                         collective=True)
    if config.balance > 0 and not local:
        raise InputError(f"--balance needs a problem with a factor V (factorization, completion, sensing); "
                         f"got --problem {config.problem}.", collective=True)
    if config.preconditioner == "scaled" and not local:
        raise InputError(f"--preconditioner scaled needs a problem with a factor V (factorization, completion, "
                         f"sensing); got --problem {config.problem}.", collective=True)
    if config.init == "spectral" and config.problem == "least-squares":
        raise InputError("--init spectral is for the low-rank problems; least squares starts from --init random.",
                         collective=True)
    if config.problem == "completion" and not 0 < config.sampling_rate <= 1:
        raise InputError(f"The 'sampling-rate' parameter must be in (0, 1]. Got {config.sampling_rate} instead.",
                         collective=True)


def check_sizes(config: RunConfig, n: int, m: int, r: int) -> None:
    limit = n if config.problem == "symmetric-sensing" else min(n, m)
    if config.problem != "least-squares" and r > limit:
        raise InputError(f"The 'rank' parameter must be at most {'n' if config.problem == 'symmetric-sensing' else 'min(n, m)'}"
                         f" = {limit} for a {n}×{m} problem. Got {r} instead.", collective=True)


@dataclass
class Prepared:
    """A run ready to start: sizes, network, local blocks and starting factors, step."""

    n: int
    m: int
    r: int
    offsets: np.ndarray
    network: topology.Network
    warnings: list
    problems: list
    U: list
    V: list
    sigma1: float
    step_size: float
    step_bound: float
    init_scale: float
    lipschitz: float

    def step_attributes(self, config: RunConfig) -> dict:
        return {"step_size": self.step_size, "step_rule": "auto" if config.step == "auto" else "given",
                "step_bound_thm25": self.step_bound, "lipschitz_estimate": self.lipschitz,
                "sigma1_estimate": self.sigma1, "init_scale_used": self.init_scale}


def prepare(config: RunConfig, context: Context) -> Prepared:
    """Check the input, load this rank's part, build W̃, choose the step and the initial point.

    Every check that can fail on one rank only runs inside `context.agree`, so all ranks
    stop together with one message.
    """
    J = context.J
    dtype = np.dtype(config.dtype)
    check_settings(config)

    def check_output():
        if context.is_root:
            from .results import check_output_path, remove_stale_temporaries

            check_output_path(config.output, config.force)
            remove_stale_temporaries(config.output)

    context.agree(check_output)
    n, m = context.agree(problem_shape, config)
    r = 1 if config.problem == "least-squares" else config.rank
    check_sizes(config, n, m, r)
    what = {"symmetric-sensing": "measurements", "least-squares": "equations"}.get(config.problem, "columns")
    offsets = data_module.column_partition(builders.split_count(config, n, m), J, what)
    network, warnings = context.agree(build_network, config, J)
    context.check_identical("configuration and mixing matrix",
                            json.dumps(asdict(config), sort_keys=True).encode() + network.weights.tobytes())
    local_problems = context.agree(lambda: [builders.build(config, j, offsets[j], offsets[j + 1], n, m, J, dtype)
                                            for j in context.local_ranks])
    if config.problem == "least-squares":
        _attach_least_squares_optimum(local_problems, context)

    sigma1 = solver.estimate_sigma1(local_problems, context.reducer, config.seed)
    if sigma1 == 0.0:
        raise InputError("The data are identically zero; there is nothing to fit.", collective=True)
    summary = network.summary
    if summary["lambda_min"] <= -1.0 + 1e-12:
        raise InputError(f"The mixing matrix has smallest eigenvalue {summary['lambda_min']:.3g} (a bipartite graph "
                         "without self-weights): the copies of U would oscillate forever instead of reaching "
                         "consensus. Pass --lazy to use (W+I)/2.", collective=True)
    # The balance term adds curvature ≈ 4·balance·σ₁ near a balanced point.
    lipschitz = local_problems[0].lipschitz(sigma1) + 4.0 * config.balance * sigma1
    if config.preconditioner == "scaled":
        lipschitz /= sigma1   # the curvature seen through the Gram preconditioner: scale-free (4 for factorization)
    step_bound = (1.0 - 2.0 * summary["omega"]) / lipschitz
    step_size = solver.auto_step(lipschitz, summary["lambda_min"]) if config.step == "auto" else float(config.step)
    U, V, init_scale = _initial_point(config, context, local_problems, offsets, n, r, sigma1)
    U = [np.ascontiguousarray(x, dtype=dtype) for x in U]
    V = [None if x is None else np.ascontiguousarray(x, dtype=dtype) for x in V]
    return Prepared(n, m, r, offsets, network, warnings, local_problems, U, V, sigma1, step_size, step_bound,
                    init_scale, lipschitz)


def _attach_least_squares_optimum(local_problems, context) -> None:
    """x⋆ = (Σ_j A_jᵀA_j)⁻¹ Σ_j A_jᵀ b_j, from two small all-reduces; the reference of optimality_error."""
    gram = context.reducer.sum(sum(p.A.T @ p.A for p in local_problems))
    rhs = context.reducer.sum(sum(p.A.T @ p.b for p in local_problems))
    try:
        x_star = np.linalg.solve(gram, rhs)
    except np.linalg.LinAlgError:
        return   # rank-deficient A: no unique optimum to report
    for problem in local_problems:
        problem.x_star, problem.owns_truth = x_star, problem is local_problems[0] and context.is_root


def _initial_point(config, context, local_problems, offsets, n, r, sigma1):
    """(U list, V list, init scale): from --initial, spectral (top-r subspace of M), or small Gaussian."""
    J = context.J
    if config.initial is not None:
        starts = context.agree(lambda: [data_module.load_initial(config.initial, j, J, n, offsets[j], offsets[j + 1], r)
                                        for j in context.local_ranks])
        return [s[0] for s in starts], [s[1] for s in starts], math.nan
    if config.init == "spectral":
        Q, values = solver.top_subspace(local_problems, context.reducer, r, config.seed)
        U0 = Q * np.sqrt(values)
        V = [(p.apply_transposed(Q) / np.sqrt(np.maximum(values, 1e-300))) if p.has_local else None
             for p in local_problems]
        return [U0.copy() for _ in local_problems], V, math.nan
    init_scale = (INIT_SCALE_FACTOR * math.sqrt(sigma1 / max(n, offsets[-1])) if config.init_scale == "auto"
                  else float(config.init_scale))
    U, V = [], []
    for j, problem in zip(context.local_ranks, local_problems):
        U_j, V_j = solver.initial_factors(config.seed, J, j, n, int(offsets[j + 1] - offsets[j]), r, init_scale)
        U.append(U_j)
        V.append(V_j if problem.has_local else None)
    return U, V, init_scale


def solve(prepared: Prepared, config: RunConfig, context: Context, on_record=None) -> solver.Outcome:
    """Run DGD+LOCAL on a prepared problem (no files written)."""
    settings = solver.Settings(step_size=prepared.step_size, iterations=config.iterations, tolerance=config.tolerance,
                               log_every=config.log_every, J=context.J, weights=prepared.network.weights,
                               balance_weight=config.balance,
                               scaled=solver.ScaledStep(config.precond_damping * prepared.sigma1, context.J)
                               if config.preconditioner == "scaled" else None)
    exchange = context.make_exchange(prepared.network.weights, prepared.U[0].shape, np.dtype(config.dtype))
    try:
        return solver.run(prepared.problems, context.local_ranks, prepared.U, prepared.V, settings, exchange,
                          context.reducer, on_record=on_record)
    finally:
        if hasattr(exchange, "free"):
            exchange.free()


def execute(config: RunConfig, context: Context, command: str) -> int:
    """Run the configured problem on `context`, write the result file; return the exit code."""
    prepared = prepare(config, context)
    n, m, r, J, network = prepared.n, prepared.m, prepared.r, context.J, prepared.network
    summary = network.summary
    for warning in prepared.warnings:
        say(context, config, f"warning: {warning}", always=True)
    if context.is_root and not config.quiet:
        from .config import format_compact

        source = f" (file {config.config}, then the command line)" if config.config else ""
        shown = {**asdict(config), "n": n, "m": m}  # the data's size when --data is given
        say(context, config, f"dgdlocal: configuration{source}:\n{format_compact(shown)}")
    say(context, config,
        f"dgdlocal: {'DGD+LOCAL' if prepared.problems[0].has_local else 'classical DGD'} {config.problem}, "
        f"{n}×{m}, rank {r}, on J={J} "
        f"{'simulated ' if config.simulate else ''}ranks; {network.source} network"
        f"{' (lazy (W+I)/2 applied)' if network.lazy_applied else ''}: ω={summary['omega']:.3g}, "
        f"λ_min={summary['lambda_min']:.3g}, spectral gap={summary['spectral_gap']:.3g}\n"
        f"dgdlocal: step {prepared.step_size:.3g} ({'auto' if config.step == 'auto' else 'given'}; "
        f"Thm 2.5 bound (1-2ω)/L = {prepared.step_bound:.3g} with L ≈ {prepared.lipschitz:.3g}), "
        f"up to {config.iterations} iterations, tolerance {config.tolerance:g}")
    progress = _progress_printer(context, config)
    try:
        outcome = solve(prepared, config, context, on_record=progress)
    finally:
        if progress is not None:
            progress.finish()

    has_local = prepared.problems[0].has_local
    V_full = context.reducer.gather_rows(outcome.V) if has_local else np.zeros((0, r))
    # The simulation cannot tell its virtual ranks' time apart: each gets an equal share.
    count = len(prepared.problems)
    timing = {name: context.reducer.gather_values([seconds / count] * count)
              for name, seconds in outcome.timing.items()}
    if context.is_root:
        from .results import write_result

        resolved = asdict(config)
        resolved.update(n=n, m=m, r=r, J=J)
        topology_attrs = {"source": network.source, "lazy_applied": network.lazy_applied, **summary}
        write_result(config.output, status=outcome.status, command=command, mpi_size=J, config=resolved,
                     weights=network.weights, topology=topology_attrs, offsets=prepared.offsets,
                     diagnostics=outcome.diagnostics, U=outcome.mean_U, V=V_full, timing=timing,
                     step=prepared.step_attributes(config))
        _print_summary(config, outcome, timing)
    return EXIT_DIVERGED if outcome.status == solver.STATUS_DIVERGED else EXIT_OK


def _progress_printer(context: Context, config: RunConfig):
    """Progress lines on the coordinator (in place on a terminal, plain lines in a log); None if quiet."""
    if not context.is_root or config.quiet:
        return None
    from .progress import Progress

    return Progress(config.iterations)


def _print_summary(config: RunConfig, outcome, timing) -> None:
    history = outcome.diagnostics
    last = {name: values[-1] for name, values in history.items()}
    lines = [f"dgdlocal: status {outcome.status} after {outcome.iterations} iterations in {last['elapsed']:.2f} s",
             f"  objective {last['objective']:.3e}   relative error {last['relative_error']:.3e}   "
             f"optimality error {last['optimality_error']:.3e}",
             f"  consensus error {last['consensus_error']:.3e} (relative {last['relative_consensus']:.3e})   "
             f"gradient norm {last['gradient_norm']:.3e}",
             "  time per rank [s]: " + "  ".join(
                 f"{name} {min(values):.2f}-{max(values):.2f}" for name, values in timing.items()),
             f"  result written to {config.output}"]
    if outcome.status == solver.STATUS_CONVERGED and last["relative_consensus"] > config.tolerance:
        lines.append(f"warning: the run reached a stationary point of g whose copies still disagree (relative "
                     f"consensus {last['relative_consensus']:.2e} > {config.tolerance:g}): classical DGD with a "
                     "fixed step stops at a consensus floor that shrinks with the step.")
    if outcome.status == solver.STATUS_MAX_ITERS:
        lines.append(f"warning: the iteration cap {config.iterations} was reached before the tolerance "
                     f"{config.tolerance:g}; raise --iterations or resume from the result.")
    if outcome.status == solver.STATUS_DIVERGED:
        lines.append("error: the objective became non-finite or exploded; the run diverged. "
                     "Use a smaller --step (or --step auto).")
    print("\n".join(lines), file=sys.stdout, flush=True)
