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
from . import solver, topology
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
    data: str | None = None
    n: int = DEFAULT_N
    m: int = DEFAULT_M
    rank: int = DEFAULT_R
    condition_number: float = DEFAULT_CONDITION_NUMBER
    noise: float = 0.0
    topology: str = "ring"
    weights: str | None = None
    weight_rule: str = "metropolis"
    edge_probability: float = 0.5
    lazy: bool = False
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
    if config.data is None:
        return config.n, config.m
    path, dataset = data_module.split_data_argument(config.data)
    return data_module.matrix_shape(path, dataset)


def check_sizes(n: int, m: int, r: int, J: int) -> None:
    if r > min(n, m):
        raise InputError(f"The 'rank' parameter must be at most min(n, m) = {min(n, m)} for a {n}×{m} matrix. Got {r} instead.",
                         collective=True)
    data_module.column_partition(m, J)


def load_block(config: RunConfig, j: int, lo: int, hi: int, dtype):
    if config.data is None:
        spec = data_module.SyntheticSpec(config.n, config.m, config.rank, config.condition_number, config.noise, config.seed)
        return data_module.synthetic_block(spec, j, lo, hi, dtype)
    path, dataset = data_module.split_data_argument(config.data)
    return data_module.load_block(path, dataset, j, lo, hi, dtype)


@dataclass
class Prepared:
    """A run ready to start: sizes, network, local blocks and starting factors, step."""

    n: int
    m: int
    r: int
    offsets: np.ndarray
    network: topology.Network
    warnings: list
    blocks: list
    U: list
    V: list
    sigma1: float
    step_size: float
    step_bound: float
    init_scale: float

    def step_attributes(self, config: RunConfig) -> dict:
        return {"step_size": self.step_size, "step_rule": "auto" if config.step == "auto" else "given",
                "step_bound_thm25": self.step_bound, "lipschitz_estimate": 4.0 * self.sigma1,
                "sigma1_estimate": self.sigma1, "init_scale_used": self.init_scale}


def prepare(config: RunConfig, context: Context) -> Prepared:
    """Check the input, load this rank's columns, build W̃, choose the step and the initial point.

    Every check that can fail on one rank only runs inside `context.agree`, so all ranks
    stop together with one message.
    """
    J = context.J
    dtype = np.dtype(config.dtype)

    def check_output():
        if context.is_root:
            from .results import check_output_path, remove_stale_temporaries

            check_output_path(config.output, config.force)
            remove_stale_temporaries(config.output)

    context.agree(check_output)
    n, m = context.agree(problem_shape, config)
    r = config.rank
    check_sizes(n, m, r, J)
    offsets = data_module.column_partition(m, J)
    network, warnings = context.agree(build_network, config, J)
    context.check_identical("configuration and mixing matrix",
                            json.dumps(asdict(config), sort_keys=True).encode() + network.weights.tobytes())
    blocks = context.agree(lambda: [load_block(config, j, offsets[j], offsets[j + 1], dtype) for j in context.local_ranks])

    sigma1 = solver.estimate_sigma1(blocks, context.reducer, config.seed)
    if sigma1 == 0.0:
        raise InputError("The data matrix is identically zero; there is nothing to factorize.", collective=True)
    summary = network.summary
    step_bound = (1.0 - 2.0 * summary["omega"]) / (4.0 * sigma1)
    if summary["lambda_min"] <= -1.0 + 1e-12:
        raise InputError(f"The mixing matrix has smallest eigenvalue {summary['lambda_min']:.3g} (a bipartite graph "
                         "without self-weights): the copies of U would oscillate forever instead of reaching "
                         "consensus. Pass --lazy to use (W+I)/2.", collective=True)
    step_size = solver.auto_step(sigma1, summary["lambda_min"]) if config.step == "auto" else float(config.step)
    if config.initial is not None:
        starts = context.agree(lambda: [data_module.load_initial(config.initial, b.j, J, n, b.lo, b.hi, r) for b in blocks])
        init_scale = math.nan
    else:
        init_scale = (INIT_SCALE_FACTOR * math.sqrt(sigma1 / max(n, m)) if config.init_scale == "auto"
                      else float(config.init_scale))
        starts = [solver.initial_factors(config.seed, J, b.j, n, b.hi - b.lo, r, init_scale) for b in blocks]
    U = [np.ascontiguousarray(s[0], dtype=dtype) for s in starts]
    V = [np.ascontiguousarray(s[1], dtype=dtype) for s in starts]
    return Prepared(n, m, r, offsets, network, warnings, blocks, U, V, sigma1, step_size, step_bound, init_scale)


def solve(prepared: Prepared, config: RunConfig, context: Context, on_record=None) -> solver.Outcome:
    """Run DGD+LOCAL on a prepared problem (no files written)."""
    settings = solver.Settings(step_size=prepared.step_size, iterations=config.iterations, tolerance=config.tolerance,
                               log_every=config.log_every, J=context.J, weights=prepared.network.weights)
    exchange = context.make_exchange(prepared.network.weights, (prepared.n, prepared.r), np.dtype(config.dtype))
    try:
        return solver.run(prepared.blocks, prepared.U, prepared.V, settings, exchange, context.reducer,
                          on_record=on_record)
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
        f"dgdlocal: DGD+LOCAL factorization of a {n}×{m} matrix, rank {r}, on J={J} "
        f"{'simulated ' if config.simulate else ''}ranks; {network.source} network"
        f"{' (lazy (W+I)/2 applied)' if network.lazy_applied else ''}: ω={summary['omega']:.3g}, "
        f"λ_min={summary['lambda_min']:.3g}, spectral gap={summary['spectral_gap']:.3g}\n"
        f"dgdlocal: step {prepared.step_size:.3g} ({'auto' if config.step == 'auto' else 'given'}; "
        f"Thm 2.5 bound (1-2ω)/L = {prepared.step_bound:.3g} with L = 4σ₁ = {4 * prepared.sigma1:.3g}), "
        f"up to {config.iterations} iterations, tolerance {config.tolerance:g}")
    progress = _progress_printer(context, config)
    try:
        outcome = solve(prepared, config, context, on_record=progress)
    finally:
        if progress is not None:
            progress.finish()

    V_full = context.reducer.gather_rows(outcome.V)
    # The simulation cannot tell its virtual ranks' time apart: each gets an equal share.
    blocks = prepared.blocks
    timing = {name: context.reducer.gather_values([seconds / len(blocks)] * len(blocks))
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
    if outcome.status == solver.STATUS_MAX_ITERS:
        lines.append(f"warning: the iteration cap {config.iterations} was reached before the tolerance "
                     f"{config.tolerance:g}; raise --iterations or resume from the result.")
    if outcome.status == solver.STATUS_DIVERGED:
        lines.append("error: the objective became non-finite or exploded; the run diverged. "
                     "Use a smaller --step (or --step auto).")
    print("\n".join(lines), file=sys.stdout, flush=True)
