"""Set up one run (data, network, initial point, step), run the solver, write the result.

The same code serves the MPI run (one block per rank) and the serial simulation
(all J blocks in one process); a `Context` carries the difference: which blocks
are local, how failures are agreed on, how sums and the exchange are done.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from . import checkpoint as checkpoint_module
from . import data as data_module
from . import builders, kernels, solver, topology
from .errors import InputError
from .signals import StopRequest
from .supervisor import supervisor_pid

EXIT_OK, EXIT_CRASH, EXIT_INPUT, EXIT_DIVERGED, EXIT_INTERRUPTED = 0, 1, 2, 3, 4
#: Test-only fault injection, read in `_test_fault` alone: "raise:RANK:ITER", "kill:RANK:ITER" or
#: "signal:RANK:ITER" makes MPI rank RANK raise an exception, SIGKILL itself or SIGTERM itself
#: at iteration ITER.
TEST_FAULT_VARIABLE = "DGDLOCAL_TEST_FAULT"

#: The embedded problem solved by `python -m dgdlocal` with no options.
DEFAULT_N, DEFAULT_M, DEFAULT_R = 100, 400, 5
DEFAULT_CONDITION_NUMBER = 2.0
#: --init-scale auto: ε = INIT_SCALE_FACTOR · √(σ₁(Y) / max(n, m)), so ‖U_j(0)‖₂ ≈ 2·10⁻³ √σ₁ at any data scale.
INIT_SCALE_FACTOR = 1e-3


#: --method auto: adapt-then-combine with the exchange behind the local pass; the papers' order where the atc forms
#: do not apply (--preconditioner scaled takes metric steps and changes the gauge at every iteration).
AUTO_METHOD, AUTO_METHOD_SCALED = "atc-overlap", "dgd-local"
#: The adapt-then-combine orders: plain gradient steps only, and the gap gain of --step auto (solver.atc_step_gain).
ADAPT_THEN_COMBINE = ("atc", "atc-overlap")


@dataclass
class RunConfig:
    """Every resolved setting of a run; stored in /config of the result file."""

    problem: str = "factorization"
    algorithm: str = "auto"
    method: str = "auto"        # resolved in __post_init__: AUTO_METHOD, or AUTO_METHOD_SCALED with scaled steps
    data: str | None = None
    n: int = DEFAULT_N
    m: int = DEFAULT_M
    rank: int = DEFAULT_R
    condition_number: float = DEFAULT_CONDITION_NUMBER
    noise: float = 0.0
    truth: str = "orthonormal"
    sampling_rate: float = 0.5
    measurements: int | None = None
    balance: float = 0.0
    preconditioner: str = "none"
    precond_damping: float = 1e-3
    rebalance_every: int = solver.REBALANCE_EVERY
    rebalance_threshold: str | float = "auto"
    align_gain: float = solver.ALIGN_GAIN
    u_step_scale: str | float = "auto"
    topology: str = "ring"
    weights: str | None = None
    weight_rule: str = "metropolis"
    weight_transform: str = "shift"
    edge_probability: float = 0.5
    lazy: bool = False
    init: str = "random"
    init_scale: str | float = "auto"
    initial: str | None = None
    step: str | float = "auto"
    iterations: int = 200000
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
    checkpoint_every: int = 0
    resume: str | None = None

    def __post_init__(self):
        if self.method == "auto":
            self.method = AUTO_METHOD_SCALED if self.preconditioner == "scaled" else AUTO_METHOD


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
    """The mixing matrix W̃ (built-in topology and rule, or a user file) and any warnings about it."""
    network, warnings = _network_from_config(config, J)
    return network, warnings + slow_network_warnings(network.summary["spectral_gap"], J)


def _network_from_config(config: RunConfig, J: int):
    if config.weights is not None and config.topology_file is not None:
        raise InputError("Give either --weights or --topology-file, not both.")
    if config.topology_file is not None:
        from .graph_files import network_from_file

        return network_from_file(config.topology_file, J, rule=config.weight_rule, transform=config.weight_transform)
    if config.weights is not None:
        W = data_module.load_small_matrix(config.weights, "weights")
        return topology.network_from_weights(W, J, lazy_transform=config.lazy)
    network = topology.make_network(config.topology, J, rule=config.weight_rule, seed=config.seed,
                                    edge_probability=config.edge_probability, transform=config.weight_transform)
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


#: Spectral gaps below this are warned about: slower than every network measured to converge reliably (the 64-rank
#: ring and the 32-rank path have 2.4e-3; the 128-rank ring and 64-rank path, 6.0e-4, converge with some steps only).
SLOW_NETWORK_GAP = 2e-3


def slow_network_warnings(spectral_gap: float, J: int) -> list[str]:
    """A warning when the network mixes more slowly than SLOW_NETWORK_GAP (e.g. a ring of more than 64 ranks)."""
    if J == 1 or spectral_gap >= SLOW_NETWORK_GAP:
        return []
    return [f"the network mixes slowly (spectral gap {spectral_gap:.2g} < {SLOW_NETWORK_GAP:g}, as on rings of more "
            f"than 64 ranks or paths of more than 32). Reaching consensus then takes tens of thousands of iterations, "
            f"and measured runs on such networks converged for some steps and not for others. A better-connected graph "
            f"with the same number of ranks needs far fewer iterations (--topology exponential or torus)."]


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
    try:
        kernel = kernels.mode()
    except ValueError as error:
        raise InputError(f"{error}.", collective=True) from None
    if kernel == "numba" and not kernels.available():
        raise InputError(f"{kernels.ENVIRONMENT}=numba, but numba does not import: install it with "
                         "pip install 'dgdlocal[fast]', or unset the variable.", collective=True)
    if config.init == "spectral" and config.problem == "least-squares":
        raise InputError("--init spectral is for the low-rank problems; least squares starts from --init random.",
                         collective=True)
    if config.method in ADAPT_THEN_COMBINE and config.preconditioner == "scaled":
        raise InputError(f"--method {config.method} (adapt, then combine) runs on plain gradient steps; it does not "
                         "combine with --preconditioner scaled (drop one of the two).", collective=True)
    if config.method == "extra" and (config.preconditioner == "scaled" or config.balance > 0):
        raise InputError(f"--method extra runs EXTRA's correction on plain gradient steps; it does not combine with "
                         + ("--preconditioner scaled" if config.preconditioner == "scaled" else "--balance")
                         + " (drop that option, or use --method dgd-local).", collective=True)
    if config.u_step_scale not in ("auto", 1.0, 1):
        if config.method == "extra" or config.preconditioner == "scaled":
            raise InputError(f"--u-step-scale {config.u_step_scale:g} is for plain DGD+LOCAL steps; it does not "
                             "combine with " + ("--method extra" if config.method == "extra" else
                                                "--preconditioner scaled")
                             + " (drop one of the two).", collective=True)
        if config.problem not in builders.MATRIX_PROBLEMS:
            raise InputError(f"--u-step-scale {config.u_step_scale:g} needs a local factor V_j; the "
                             f"{config.problem} problem has none (it runs classical DGD).", collective=True)
    if 0 < config.align_gain < 1:
        raise InputError(f"The 'align-gain' parameter must be 0 (off) or >= 1. Got {config.align_gain:g} instead.",
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
    fingerprint: str | None = None        # of the data (coordinator only)
    start_iteration: int = 0              # > 0 when resumed from a checkpoint
    history: dict | None = None           # diagnostics before start_iteration (coordinator only)
    correction: list | None = None        # --method extra / atc-overlap resumed: the D_j at the checkpoint
    u_step_curvature: float | None = None  # --u-step-scale auto resumed: SharedStep.state at the checkpoint
    elapsed_before: float = 0.0           # seconds spent before the checkpoint
    step_gain: float = 1.0                # --step auto's gain a (solver.atc_step_gain; 1: dgd-local, extra, given µ)
    local_step_gain: float = solver.LOCAL_STEP_MAX_GAIN   # cap on V_j's t under --u-step-scale auto (1: resumed
    #                                                       from a checkpoint written before it)

    def step_attributes(self, config: RunConfig) -> dict:
        return {"step_size": self.step_size, "step_rule": "auto" if config.step == "auto" else "given",
                "step_gain": self.step_gain, "local_step_gain": self.local_step_gain,
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

            into_itself = config.resume is not None and _same_file(config.resume, config.output)
            check_output_path(config.output, config.force or into_itself)
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
    step_bound = max(0.0, 1.0 - 2.0 * summary["omega"]) / lipschitz   # 0: ω ≥ 1/2, no step is covered
    step_gain = (solver.atc_step_gain(summary["spectral_gap"])
                 if config.step == "auto" and config.method in ADAPT_THEN_COMBINE else 1.0)
    step_size = (solver.auto_step(lipschitz, summary["lambda_min"], step_gain) if config.step == "auto"
                 else float(config.step))
    digests = context.reducer.gather_values([checkpoint_module.problem_digest(p) for p in local_problems])
    fingerprint = checkpoint_module.data_fingerprint(digests) if context.is_root else None
    resumed = {}
    if config.resume is not None:
        U, V, step_size, init_scale, resumed = _resumed_point(config, context, local_problems, offsets, fingerprint)
    else:
        U, V, init_scale = _initial_point(config, context, local_problems, offsets, n, r, sigma1)
    U = [np.ascontiguousarray(x, dtype=dtype) for x in U]
    V = [None if x is None else np.ascontiguousarray(x, dtype=dtype) for x in V]
    if resumed.get("correction") is not None:
        resumed["correction"] = [np.ascontiguousarray(x, dtype=dtype) for x in resumed["correction"]]
    step_gain = resumed.pop("step_gain", step_gain)
    return Prepared(n, m, r, offsets, network, warnings, local_problems, U, V, sigma1, step_size, step_bound,
                    init_scale, lipschitz, fingerprint, step_gain=step_gain, **resumed)


def _resumed_point(config, context, local_problems, offsets, fingerprint):
    """(U, V, step, init scale, resume state) from the /checkpoint of `--resume FILE`."""
    from .results import read_checkpoint, read_checkpoint_factors

    state = context.agree(read_checkpoint, config.resume)
    attrs = state["attrs"]
    context.agree(lambda: context.is_root and checkpoint_module.check_fingerprint(attrs, fingerprint, config.resume))
    starts = context.agree(lambda: [read_checkpoint_factors(config.resume, j, offsets[j], offsets[j + 1])
                                    for j in context.local_ranks])
    U = [s[0] for s in starts]
    V = [s[1] if p.has_local else None for s, p in zip(starts, local_problems)]
    resumed = dict(start_iteration=int(attrs["iteration"]), elapsed_before=float(attrs["elapsed"]),
                   history=state["history"] if context.is_root else None)
    if config.method in ("extra", "atc-overlap") and starts[0][2] is not None:   # none stored: the k = 0 form
        resumed["correction"] = [s[2] for s in starts]
    if "u_step_curvature" in attrs:
        resumed["u_step_curvature"] = float(attrs["u_step_curvature"])
    # the step and its gain as the run began (a checkpoint written before the gain existed: 1); likewise the cap on
    # V_j's step gain under --u-step-scale auto
    resumed["step_gain"] = float(attrs.get("step_gain", 1.0))
    resumed["local_step_gain"] = float(attrs.get("local_step_gain", 1.0))
    return U, V, float(attrs["step_size"]), float(attrs["init_scale_used"]), resumed


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


def _same_file(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def resumed_config(config: RunConfig, given: set, context: Context) -> RunConfig:
    """The configuration of `--resume FILE`: the checkpoint's, with the continuation options given."""
    from .results import read_checkpoint

    attrs = context.agree(read_checkpoint, config.resume)["attrs"]
    return RunConfig(**checkpoint_module.resumed_settings(attrs, asdict(config), given, config.resume, context.J))


def step_origin(prepared: Prepared, config: RunConfig) -> str:
    """How the step was chosen, for the start-up line: 'given', 'auto' or 'auto, ×a for the network's gap'."""
    if config.step != "auto":
        return "given"
    return "auto" if prepared.step_gain == 1.0 else f"auto, ×{prepared.step_gain:.3g} for the network's gap"


def shared_step(prepared: Prepared, config: RunConfig, J: int) -> "solver.SharedStep | None":
    """--u-step-scale: None when every step is the papers' (s = 1, or auto where it does not apply: --method
    extra, --preconditioner scaled, or a problem without a curvature bound in U)."""
    scale = config.u_step_scale
    if scale in (1, 1.0) or J == 1:
        return None
    if scale == "auto" and (config.method == "extra" or config.preconditioner == "scaled"
                            or not hasattr(prepared.problems[0], "u_curvature")):
        return None
    return solver.SharedStep(scale, J, prepared.network.summary["spectral_gap"], prepared.step_size,
                             start_iteration=prepared.start_iteration, curvature=prepared.u_step_curvature,
                             margin=solver.SHARED_STEP_MARGIN * prepared.step_gain,
                             local_gain=prepared.local_step_gain)


def solve(prepared: Prepared, config: RunConfig, context: Context, on_record=None, interrupt=None,
          checkpoint=None) -> solver.Outcome:
    """Run DGD+LOCAL on a prepared problem (files are written only by the `checkpoint` callback)."""
    settings = solver.Settings(step_size=prepared.step_size, iterations=config.iterations, tolerance=config.tolerance,
                               log_every=config.log_every, J=context.J, weights=prepared.network.weights,
                               balance_weight=config.balance,
                               scaled=solver.ScaledStep(config.precond_damping * prepared.sigma1, context.J)
                               if config.preconditioner == "scaled" else None,
                               rebalance=solver.Rebalance(config.rebalance_every, config.rebalance_threshold,
                                                          context.J) if config.rebalance_every > 0 else None,
                               extra=solver.Extra(prepared.U, prepared.correction)
                               if config.method == "extra" else None,
                               align=solver.Align(config.rebalance_every, config.align_gain)
                               if config.rebalance_every > 0 and config.align_gain > 0 else None,
                               shared_step=shared_step(prepared, config, context.J),
                               adapt_then_combine=config.method == "atc",
                               delayed=solver.DelayedCombine(prepared.U, prepared.correction)
                               if config.method == "atc-overlap" else None)
    # the shape of what the loop posts: U_j, or atc-overlap's packed [U_j; D_j]
    message_shape = (prepared.U if settings.delayed is None else settings.delayed.packed)[0].shape
    exchange = context.make_exchange(prepared.network.weights, message_shape, np.dtype(config.dtype))
    ended = False   # on every rank alike: the last sends can be completed before freeing the exchange
    try:
        outcome = solver.run(prepared.problems, context.local_ranks, prepared.U, prepared.V, settings, exchange,
                             context.reducer, on_record=on_record, start_iteration=prepared.start_iteration,
                             history=prepared.history, interrupt=interrupt, checkpoint=checkpoint,
                             checkpoint_every=config.checkpoint_every if checkpoint is not None else 0)
        ended = True
        return outcome
    finally:
        if hasattr(exchange, "free"):
            exchange.free(complete=ended)


def execute(config: RunConfig, context: Context, command: str) -> int:
    """Run the configured problem on `context`, write the result file; return the exit code.

    SIGTERM, SIGINT or SIGUSR1 at any time from here on stop the run at the next iteration
    (the same on every rank): the result file gets status interrupted and a checkpoint.
    """
    stop = StopRequest.install()
    try:
        return _execute(config, context, command, stop)
    finally:
        stop.restore()


#: How the start-up line names the --method in use (none for the papers' order).
ORDER_NOTES = {"extra": " with EXTRA", "atc": " (adapt, then combine)",
               "atc-overlap": " (adapt, then combine; the neighbours' steps one iteration late)"}


def _execute(config: RunConfig, context: Context, command: str, stop: StopRequest) -> int:
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
    shift = topology.describe_shift(network.self_weight_shift)
    say(context, config,
        f"dgdlocal: {'DGD+LOCAL' if prepared.problems[0].has_local else 'classical DGD'}"
        f"{ORDER_NOTES.get(config.method, '')} {config.problem}, "
        f"{n}×{m}, rank {r}, on J={J} "
        f"{'simulated ' if config.simulate else ''}ranks; {network.source} network"
        f"{f' ({shift})' if shift else ''}: ω={summary['omega']:.3g}, "
        f"λ_min={summary['lambda_min']:.3g}, spectral gap={summary['spectral_gap']:.3g}\n"
        f"dgdlocal: step {prepared.step_size:.3g} ({step_origin(prepared, config)}; "
        f"Thm 2.5 bound (1-2ω)/L = {topology.describe_step_bound(prepared.step_bound)} with L ≈ {prepared.lipschitz:.3g}), "
        f"up to {config.iterations} iterations, tolerance {config.tolerance:g}")
    if not config.simulate:
        places = context.reducer.gather_values([(f"{socket.gethostname()}:{os.getpid()}", supervisor_pid())])
        say(context, config, _process_map(places or []))
    if config.resume is not None:
        say(context, config, f"dgdlocal: resuming from iteration {prepared.start_iteration} of {config.resume}")
    writer = _ResultWriter(prepared, config, context, command)
    fault = _test_fault(context)
    vote = context.reducer.stop_vote()

    def interrupt(iteration):
        if fault is not None:
            fault(iteration)
        return vote(stop.is_set())

    def checkpoint(iteration, U, V, history, correction, u_step_state):
        writer.write(solver.STATUS_RUNNING, iteration, U, V, history, correction=correction,
                     u_step_state=u_step_state)

    progress = _progress_printer(context, config)
    try:
        outcome = solve(prepared, config, context, on_record=progress, interrupt=interrupt, checkpoint=checkpoint)
    finally:
        vote.close()
        if progress is not None:
            progress.finish()

    # The simulation cannot tell its virtual ranks' time apart: each gets an equal share.
    count = len(prepared.problems)
    timing = {name: context.reducer.gather_values([seconds / count] * count)
              for name, seconds in outcome.timing.items()}
    interrupted = outcome.status == solver.STATUS_INTERRUPTED
    writer.write(outcome.status, outcome.iterations, outcome.U, outcome.V, outcome.diagnostics,
                 mean_U=outcome.mean_U, timing=timing, with_checkpoint=interrupted or config.checkpoint_every > 0,
                 correction=outcome.correction, u_step_state=outcome.u_step_state)
    if context.is_root:
        _print_summary(config, outcome, timing, stop.received, J, prepared)
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_DIVERGED if outcome.status == solver.STATUS_DIVERGED else EXIT_OK


class _ResultWriter:
    """Gathers V (and every U_j for a checkpoint) to the coordinator, which writes the result file.

    Collective: every rank calls `write` at the same point.
    """

    def __init__(self, prepared: Prepared, config: RunConfig, context: Context, command: str):
        self.prepared, self.config, self.context, self.command = prepared, config, context, command
        self.started = time.perf_counter()
        self.resumed_records = len(prepared.history["iteration"]) if prepared.history is not None else 0
        self.has_local = prepared.problems[0].has_local

    def write(self, status, iteration, U, V, history, *, mean_U=None, timing=None, with_checkpoint=True,
              correction=None, u_step_state=None):
        prepared, config, context = self.prepared, self.config, self.context
        J, n, r = context.J, prepared.n, prepared.r
        V_full = context.reducer.gather_rows(V) if self.has_local else np.zeros((0, r))
        U_all = context.reducer.gather_rows(U) if with_checkpoint else None
        D_all = context.reducer.gather_rows(correction) if with_checkpoint and correction is not None else None
        if not context.is_root:
            return
        from .results import write_result

        elapsed = prepared.elapsed_before + time.perf_counter() - self.started
        resolved = asdict(config)
        resolved.update(n=n, m=prepared.m, r=r, J=J)
        # A resumed run's clock restarts at 0: shift its records by the time spent before.
        history = dict(history, elapsed=history["elapsed"][:self.resumed_records]
                       + [t + prepared.elapsed_before for t in history["elapsed"][self.resumed_records:]])
        state = None
        if U_all is not None:
            U_all = U_all.reshape(J, n, r)
            state = {"U": U_all.astype(config.dtype), "V": V_full.astype(config.dtype),
                     "D": None if D_all is None else D_all.reshape(J, n, r).astype(config.dtype),
                     "attrs": checkpoint_module.attributes(resolved, iteration=iteration, elapsed=elapsed,
                                                           step_size=prepared.step_size,
                                                           init_scale=prepared.init_scale,
                                                           fingerprint=prepared.fingerprint,
                                                           step_gain=prepared.step_gain,
                                                           local_step_gain=prepared.local_step_gain)}
            if u_step_state is not None:
                state["attrs"]["u_step_curvature"] = float(u_step_state)
        network = prepared.network
        topology_attrs = {"source": network.source, "lazy_applied": network.lazy_applied,
                          "self_weight_shift": network.self_weight_shift, **network.summary}
        write_result(config.output, status=status, command=self.command, mpi_size=J, config=resolved,
                     weights=network.weights, topology=topology_attrs, offsets=prepared.offsets,
                     diagnostics=history, U=mean_U if mean_U is not None else U_all.mean(axis=0), V=V_full,
                     timing=timing or {}, step=prepared.step_attributes(config), checkpoint=state)


def _test_fault(context: Context):
    """Test-only: the fault named by DGDLOCAL_TEST_FAULT ("raise|kill|signal:RANK:ITER"), or None."""
    spec = os.environ.get(TEST_FAULT_VARIABLE)
    if not spec:
        return None
    kind, rank, at = spec.split(":")
    if int(rank) not in context.local_ranks or kind not in ("raise", "kill", "signal"):
        return None

    def fault(iteration):
        if iteration == int(at):
            if kind == "raise":
                raise RuntimeError(f"test fault injected by {TEST_FAULT_VARIABLE}={spec}")
            os.kill(os.getpid(), signal.SIGKILL if kind == "kill" else signal.SIGTERM)

    return fault


def _process_map(places) -> str:
    """The header line mapping each rank to host:pid of its solver process and, when supervised,
    to the pid of its supervisor (the process the launcher started, which MPICH's messages name)."""
    line = "dgdlocal: rank host:pid " + " ".join(f"{j}={place}" for j, (place, _) in enumerate(places))
    if places and all(parent is not None for _, parent in places):
        line += "; supervisor pids " + " ".join(f"{j}={parent}" for j, (_, parent) in enumerate(places))
    return line


def _progress_printer(context: Context, config: RunConfig):
    """Progress lines on the coordinator (in place on a terminal, plain lines in a log); None if quiet."""
    if not context.is_root or config.quiet:
        return None
    from .progress import Progress

    return Progress(config.iterations)


def _has_local_factors(outcome) -> bool:
    """Whether the run had local factors V_j (DGD+LOCAL rather than classical DGD)."""
    return bool(outcome.V) and outcome.V[0] is not None


def diverged_advice(prepared: Prepared, config: RunConfig) -> str:
    """What to try after a diverged run: a smaller step; with the auto step's gap gain, first the step without it."""
    if config.step == "auto" and prepared.step_gain > 1.0:
        plain = solver.round_significant(prepared.step_size / prepared.step_gain)
        return (f"The auto step {prepared.step_size:g} includes the gain ×{prepared.step_gain:g} for this network's "
                f"spectral gap; try --step {plain:g} (the step without it) or smaller.")
    return "Use a smaller --step (or --step auto)."


def _print_summary(config: RunConfig, outcome, timing, signal_name, J, prepared: Prepared) -> None:
    history = outcome.diagnostics
    last = {name: values[-1] for name, values in history.items()}
    lines = [f"dgdlocal: status {outcome.status} after {outcome.iterations} iterations in {last['elapsed']:.2f} s"
             + (f" (last diagnostics at iteration {last['iteration']})" if last["iteration"] != outcome.iterations else ""),
             f"  objective {last['objective']:.3e}   relative error {last['relative_error']:.3e}   "
             f"optimality error {last['optimality_error']:.3e}",
             f"  consensus error {last['consensus_error']:.3e} (relative {last['relative_consensus']:.3e})   "
             f"gradient norm {last['gradient_norm']:.3e}",
             "  time per rank [s]: " + "  ".join(
                 f"{name} {min(values):.2f}-{max(values):.2f}" for name, values in timing.items()),
             f"  result written to {config.output}"]
    if outcome.u_step_scale is not None:
        smallest, last_scale = outcome.u_step_scale
        lines.insert(4, f"  step on the shared factor U: {last_scale:.3g} µ (--u-step-scale {config.u_step_scale}"
                        + (f"; smallest {smallest:.3g} µ" if smallest < last_scale else "") + ")"
                        + (f"; on V_j up to {outcome.v_step_scale:.3g} µ" if (outcome.v_step_scale or 1.0) > 1.0
                           else ""))
    if outcome.alignments:
        lines.insert(4, f"  copies of U realigned to rank 0's {outcome.alignments} time(s) (--rebalance-every "
                        f"{config.rebalance_every}, --align-gain {config.align_gain:g})")
    if outcome.rebalances:
        lines.insert(4, f"  factors rebalanced {outcome.rebalances} time(s) (--rebalance-every "
                        f"{config.rebalance_every}, threshold "
                        + (f"auto = max(16, 2√J) = {solver.auto_threshold(J):.3g})"
                           if config.rebalance_threshold == "auto" else f"{config.rebalance_threshold:g})"))
    if outcome.status == solver.STATUS_CONVERGED and last["relative_consensus"] > config.tolerance:
        lines.append(f"warning: the run reached a stationary point of g whose copies still disagree (relative "
                     f"consensus {last['relative_consensus']:.2e} > {config.tolerance:g}): classical DGD with a "
                     "fixed step stops at a consensus floor that shrinks with the step."
                     if config.method != "extra" else
                     f"warning: the fixed-point residual met the tolerance while the copies still disagree "
                     f"(relative consensus {last['relative_consensus']:.2e} > {config.tolerance:g}); "
                     "a smaller --tolerance continues.")
    if outcome.status == solver.STATUS_MAX_ITERS:
        lines.append(f"warning: the iteration cap {config.iterations} was reached before the tolerance "
                     f"{config.tolerance:g}; raise --iterations" + (
                         f" and continue with --resume {config.output}." if config.checkpoint_every > 0
                         else " (runs with --checkpoint-every can be continued with --resume)."))
    if (outcome.status == solver.STATUS_MAX_ITERS and _has_local_factors(outcome) and last["relative_consensus"] > 1e-6
            and config.method != "extra"):   # the cures named below are for plain DGD+LOCAL
        lines.append(f"hint: the copies of U still disagree (relative consensus {last['relative_consensus']:.1e}). On "
                     "slow networks with few columns per rank plain DGD+LOCAL can drift towards unbalanced factors; "
                     + "try " + ("--rebalance-every 100, " if config.rebalance_every == 0 else "")
                     + "--balance 1 or --preconditioner scaled (README: \"When plain DGD+LOCAL drifts\").")
    if outcome.status == solver.STATUS_DIVERGED:
        lines.append("error: the objective became non-finite or exploded; the run diverged. "
                     + diverged_advice(prepared, config))
    if outcome.status == solver.STATUS_INTERRUPTED:
        lines.append(f"dgdlocal: interrupted by {signal_name or 'a signal to another rank'} at iteration "
                     f"{outcome.iterations}; checkpoint saved in {config.output}. Continue with: "
                     f"mpirun -n {J} python -m dgdlocal --resume {config.output}")
    print("\n".join(lines), file=sys.stdout, flush=True)
