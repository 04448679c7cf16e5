"""Command line: `python -m dgdlocal [run|generate|info|plot] [options]`.

Every rank parses the same arguments and so reaches the same verdict without
messages; only the coordinator prints help and errors.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from . import __version__, builders, runner, topology
from .errors import InputError

SUBCOMMANDS = ("run", "generate", "info", "plot")
DEFAULTS = runner.RunConfig()


class _Parser(argparse.ArgumentParser):
    """argparse that raises InputError instead of exiting, and prints only where told to."""

    def __init__(self, *args, printer=True, **kwargs):
        self.printer = printer
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise InputError(f"{message} (see `python -m dgdlocal {self.prog.split()[-1]} --help`)"
                         if self.prog.split()[-1] in SUBCOMMANDS else message, collective=True)

    def _print_message(self, message, file=None):
        if self.printer:
            super()._print_message(message, file)


def _number(kind, name, *, minimum=None, strict=False, allow_auto=False):
    """An argparse type that checks the value and names the parameter in its message."""
    words = {int: "an integer", float: "a number"}[kind]

    def parse(text):
        if allow_auto and text == "auto":
            return "auto"
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"The '{name}' parameter must be {words}{' or auto' if allow_auto else ''}. Got {text!r} instead.") from None
        if kind is float and value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"The '{name}' parameter must be finite. Got {text!r} instead.")
        if minimum is not None and (value <= minimum if strict else value < minimum):
            bound = f"> {minimum}" if strict else f">= {minimum}"
            raise argparse.ArgumentTypeError(f"The '{name}' parameter must be {bound}. Got {text} instead.")
        return value

    parse.__name__ = name
    return parse


def build_parser(printer=True) -> argparse.ArgumentParser:
    parser = _Parser(prog="dgdlocal", printer=printer,
                     formatter_class=argparse.RawDescriptionHelpFormatter,
                     description="Distributed low-rank matrix factorization Y ≈ U Vᵀ with DGD+LOCAL over MPI.\n"
                                 "Run under mpirun: `mpirun -n J python -m dgdlocal [run] [options]`.\n"
                                 "With no subcommand, `run` is assumed.",
                     epilog=EXAMPLES)
    parser.add_argument("--version", action="version", version=f"dgdlocal {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="{run,generate,info,plot}", parser_class=_Parser,
                                     title="subcommands (`python -m dgdlocal SUBCOMMAND --help` for each)")
    parser.run_parser = commands.add_parser("run", help="solve a problem (default); writes one HDF5 result file",
                                            printer=printer, description="Solve with DGD+LOCAL; rank 0 writes one HDF5 file.")
    _add_run(parser.run_parser)
    _add_generate(commands.add_parser("generate", help="write a synthetic low-rank problem to HDF5", printer=printer,
                                      description="Write Y = U⋆V⋆ᵀ (+ noise) and its ground truth to HDF5."))
    from . import info, plot  # both import matplotlib / h5py only when they run

    info.add_arguments(commands.add_parser("info", help="summarize a result file (text, --json or --toml)",
                                           printer=printer, description=info.DESCRIPTION))
    plot.add_arguments(commands.add_parser("plot", help="draw curves, the network and the reconstruction (matplotlib)",
                                           printer=printer, description=plot.DESCRIPTION,
                                           formatter_class=argparse.RawDescriptionHelpFormatter))
    return parser


EXAMPLES = """examples:
  mpirun -n 4 python -m dgdlocal                          the embedded synthetic problem
  mpirun -n 4 python -m dgdlocal --config run.toml --iterations 500
                                                          settings from a file, one overridden
  mpirun -n 4 python -m dgdlocal --data data/camera-256.npy --rank 20 --output camera.h5
  mpirun -n 6 python -m dgdlocal --topology-file graph.txt
                                                          network from an edge list
  python -m dgdlocal info camera.h5 [--json]              summary of a result
  python -m dgdlocal plot camera.h5 other.h5 -o curves.png --network --image
"""


def _add_synthetic(group, *, n_default, m_default):
    group.add_argument("--n", type=_number(int, "n", minimum=1), default=n_default, help="rows of Y (default %(default)s)")
    group.add_argument("--m", type=_number(int, "m", minimum=1), default=m_default, help="columns of Y (default %(default)s)")
    group.add_argument("--condition-number", type=_number(float, "condition-number", minimum=1.0),
                       default=DEFAULTS.condition_number,
                       help="σ₁/σ_r of the synthetic matrix; singular values spaced geometrically (default %(default)s)")
    group.add_argument("--noise", type=_number(float, "noise", minimum=0.0), default=0.0,
                       help="Gaussian noise, as a fraction of ‖U⋆V⋆ᵀ‖_F (default 0: exact rank r)")
    group.add_argument("--truth", choices=["orthonormal", "gaussian"], default="orthonormal",
                       help="synthetic U⋆, V⋆: orthonormal with geometric singular values (default), or i.i.d. "
                            "N(0, 1) entries as in the papers' sensing experiments (ignores --condition-number)")


def _add_run(parser):
    parser.add_argument_group("configuration file").add_argument(
        "--config", metavar="FILE.toml",
        help="read any of the options below from a TOML file (keys without dashes, e.g. rank = 10, "
             "log-every = 50, quiet = true); options given here override it. Unknown keys are an error")
    problem = parser.add_argument_group("problem and data")
    problem.add_argument("--problem", choices=builders.PROBLEMS, default="factorization",
                         help="local objective f_j (default factorization: ‖U V_jᵀ − Y_j‖_F²); see README")
    problem.add_argument("--algorithm", choices=["auto", "dgd-local", "dgd"], default="auto",
                         help="dgd-local (problems with a local factor V_j) or classical dgd (least-squares, "
                              "symmetric-sensing); auto picks the one the problem needs (default auto)")
    problem.add_argument("--data", metavar="PATH[:DATASET]",
                         help="input matrix: HDF5 (dataset default Y) or .npy of floats; each rank reads only its "
                              "columns. Omitted: a synthetic exact-rank matrix drawn from --seed")
    problem.add_argument("--rank", type=_number(int, "rank", minimum=1), default=DEFAULTS.rank,
                         help="factorization rank r (default %(default)s)")
    _add_synthetic(problem, n_default=DEFAULTS.n, m_default=DEFAULTS.m)
    problem.add_argument("--sampling-rate", type=_number(float, "sampling-rate", minimum=0.0, strict=True),
                         default=DEFAULTS.sampling_rate,
                         help="completion: fraction of entries observed in the synthetic problem (default %(default)s)")
    problem.add_argument("--measurements", type=_number(int, "measurements", minimum=1), default=None,
                         help="sensing: total measurements p, split over the ranks (default 3·max(n,m)·r; "
                              "symmetric-sensing 3·n·r)")
    problem.add_argument("--balance", type=_number(float, "balance", minimum=0.0), default=0.0, metavar="MU",
                         help="add the balancing regularizer (MU/4)‖UᵀU − VᵀV‖_F² (one r×r all-reduce per "
                              "iteration; default 0)")

    network = parser.add_argument_group("network")
    network.add_argument("--topology", choices=topology.TOPOLOGIES, default=DEFAULTS.topology,
                         help="communication graph over the J ranks (default %(default)s)")
    network.add_argument("--topology-file", metavar="PATH",
                         help="graph from a file: a text edge list (one 'i j' per line) or, with networkx, .graphml, "
                              ".gml, .gexf, .adjlist; nodes 0..J-1, otherwise ranks follow the sorted node labels. "
                              "--weight-rule applies; replaces --topology")
    network.add_argument("--weights", metavar="PATH",
                         help="J×J mixing matrix W̃ (.npy, .txt/.csv or HDF5); replaces --topology")
    network.add_argument("--weight-rule", choices=topology.WEIGHT_RULES, default=DEFAULTS.weight_rule,
                         help="mixing weights from the graph (default %(default)s), then --weight-transform")
    network.add_argument("--weight-transform", choices=topology.WEIGHT_TRANSFORMS, default=DEFAULTS.weight_transform,
                         help="what the rule's weights W get before use: shift (default): (1−t)W + tI with the "
                              "smallest t that makes λ_min(W̃) ≥ 0 (none if it already is); lazy: the papers' "
                              "(W+I)/2 when ω ≥ 1/2 (Thm 2.5 needs ω < 1/2)")
    network.add_argument("--edge-probability", type=_number(float, "edge-probability", minimum=0.0, strict=True),
                         default=DEFAULTS.edge_probability, help="edge probability of erdos-renyi (default %(default)s)")
    network.add_argument("--lazy", action=argparse.BooleanOptionalAction, default=False,
                         help="apply (W+I)/2 to a --weights matrix")

    algorithm = parser.add_argument_group("algorithm")
    algorithm.add_argument("--step", type=_number(float, "step", minimum=0.0, strict=True, allow_auto=True),
                           default="auto", help="step size µ > 0, or auto: 0.5·a·min(1, 1+λ_min(W̃))/L, L from a power iteration, "
                                "a = min(2, max(1, gap/0.1)) with --method atc/atc-overlap (the default), "
                                "else 1 (default auto)")
    algorithm.add_argument("--method", choices=["auto", "dgd-local", "extra", "atc", "atc-overlap"], default="auto",
                           help="auto (default): atc-overlap, or dgd-local with --preconditioner scaled; "
                                "dgd-local: the papers' update; extra: EXTRA's correction on the U step "
                                "(same single exchange per iteration, one more n×r array per rank), which reaches "
                                "the centralized optimum also when rank(Y) > r, e.g. the truncated SVD of full-rank "
                                "data (not with --preconditioner scaled or --balance); atc: adapt, then combine, "
                                "U_j ← Σ_i W̃_ji (U_i − sµ∇_U f_i): fewer iterations, but the exchange waits for the "
                                "local pass instead of overlapping it; atc-overlap: atc with the neighbours' sµ∇_U f_i "
                                "one iteration late, so the exchange (2× the bytes: U_j and that step) overlaps the "
                                "pass again, with atc's iteration counts (neither atc form with --preconditioner scaled)")
    algorithm.add_argument("--preconditioner", choices=["none", "scaled"], default="none",
                           help="scaled: ScaledGD-style steps, ∇_V f_j (U_jᵀU_j + λI)⁻¹ and ∇_U f_j (VᵀV + λI)⁻¹ with "
                                "VᵀV from one r×r all-reduce per iteration; nearly κ-independent iteration counts on "
                                "ill-conditioned data (factorization, completion, sensing; default none)")
    algorithm.add_argument("--precond-damping", type=_number(float, "precond-damping", minimum=0.0, strict=True),
                           default=1e-3, metavar="DELTA",
                           help="λ = DELTA·σ₁(data) in --preconditioner scaled (default %(default)s)")
    algorithm.add_argument("--rebalance-every", type=_number(int, "rebalance-every", minimum=0),
                           default=DEFAULTS.rebalance_every, metavar="K",
                           help="every K iterations, sum the r×r Gram matrices (one all-reduce) and apply the common "
                                "gauge U_j A, V_j A⁻ᵀ that balances them if the factors' scales differ by more than "
                                "--rebalance-threshold; keeps every U_j V_jᵀ; stops the drift of plain DGD+LOCAL on "
                                "slow networks (problems with a factor V; 0 = pure DGD+LOCAL as in the papers; "
                                "default %(default)s)")
    algorithm.add_argument("--rebalance-threshold", type=_number(float, "rebalance-threshold", minimum=1.0,
                                                                 allow_auto=True),
                           default=DEFAULTS.rebalance_threshold, metavar="T",
                           help="rebalance when max(‖A‖₂, ‖A⁻¹‖₂)² > T for the balancing gauge A (for r = 1: the "
                                "ratio ‖V‖ / rms‖U_j‖); auto: max(16, 2√J) (default %(default)s)")
    algorithm.add_argument("--align-gain", type=_number(float, "align-gain", minimum=0.0),
                           default=DEFAULTS.align_gain, metavar="G",
                           help="with --rebalance-every K: every K iterations rank 0's U_0 is broadcast and a copy U_j "
                                "that the best rotation R_j brings G times closer to it (squared distance) becomes "
                                "U_j R_j, V_j R_j (keeps every U_j V_jᵀ; undoes copies locked in opposite signs on "
                                "long paths); 0 = off (default %(default)s)")
    algorithm.add_argument("--u-step-scale", type=_number(float, "u-step-scale", minimum=1.0, allow_auto=True),
                           default=DEFAULTS.u_step_scale, metavar="S",
                           help="step S·µ on the shared factor U (V_j keeps µ): U_j ← Σ_i W̃_ji U_i − S µ ∇_U f_j. "
                                "1 = the papers' DGD+LOCAL. Ū moves by (Sµ/J) Σ_j ∇_U f_j, so at S = 1 it takes a J "
                                "times smaller step than centralized gradient descent; auto: S = max(1, min(2·gap·J, "
                                "0.25 / (µ max_j ‖∇²_U f_j‖))) at every iteration (one nonblocking max over ranks, used one "
                                "iteration later), "
                                "smaller on slow networks and when one rank holds most of the data's energy; where "
                                "2·gap·J < J auto also gives V_j the step t·µ, t = min(1 / (µ ‖∇²_V f_j‖), S, 3) once "
                                "that is between 1 and 3 (rank j's own, no communication); "
                                "factorization and completion, plain steps only (default %(default)s)")
    algorithm.add_argument("--iterations", type=_number(int, "iterations", minimum=0), default=DEFAULTS.iterations,
                           help="iteration cap (default %(default)s)")
    algorithm.add_argument("--tolerance", type=_number(float, "tolerance", minimum=0.0), default=DEFAULTS.tolerance,
                           help="stop when relative consensus ≤ T and (relative error ≤ T or stationarity ≤ T); "
                                "0 disables (default %(default)s)")
    algorithm.add_argument("--init", choices=["random", "spectral"], default="random",
                           help="random: small Gaussian N(0, EPS²) (default); spectral: top-r subspace of the data "
                                "(global communication: the one non-decentralized option)")
    algorithm.add_argument("--init-scale", type=_number(float, "init-scale", minimum=0.0, strict=True, allow_auto=True),
                           default="auto", help="initial factors N(0, EPS²); auto: 1e-3·√(σ₁(Y)/max(n,m)) (default auto)")
    algorithm.add_argument("--initial", metavar="PATH",
                           help="start from HDF5 factors U (J×n×r or 1×n×r) and V (m×r) instead of a random point")
    algorithm.add_argument("--seed", type=_number(int, "seed", minimum=0), default=0,
                           help="seed of every random choice (default %(default)s)")
    algorithm.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                           help="working precision (default %(default)s)")

    output = parser.add_argument_group("output")
    output.add_argument("--output", default=DEFAULTS.output, metavar="PATH",
                        help="HDF5 result file (default %(default)s)")
    output.add_argument("--force", action=argparse.BooleanOptionalAction, default=False,
                        help="overwrite an existing --output")
    output.add_argument("--log-every", type=_number(int, "log-every", minimum=1), default=DEFAULTS.log_every,
                        help="diagnostics and a progress line every K iterations (default %(default)s)")
    output.add_argument("--quiet", action=argparse.BooleanOptionalAction, default=False,
                        help="print only warnings, errors and the final summary; otherwise the resolved settings "
                             "and a progress line (in place on a terminal, plain lines in a log file)")
    output.add_argument("--simulate", type=_number(int, "simulate", minimum=1), metavar="J",
                        help="run J virtual ranks serially in this process instead of over MPI")

    restart = parser.add_argument_group("checkpoint and restart")
    restart.add_argument("--checkpoint-every", type=_number(int, "checkpoint-every", minimum=0), metavar="K",
                         default=DEFAULTS.checkpoint_every,
                         help="write a checkpoint (every rank's factors, status running) into the result file "
                              "every K iterations; 0: only when stopped by a signal (default %(default)s)")
    restart.add_argument("--resume", metavar="RESULT.h5",
                         help="continue the run whose checkpoint is in RESULT.h5, with its settings, on the same "
                              "number of ranks; the result goes into the same file unless --output is given")


def _add_generate(parser):
    output = parser.add_argument_group("output")
    output.add_argument("--output", required=True, metavar="PATH", help="HDF5 file to write (Y, truth/U, truth/V)")
    output.add_argument("--force", action="store_true", help="overwrite an existing file")
    problem = parser.add_argument_group("problem")
    problem.add_argument("--problem", choices=["factorization", "completion", "sensing"], default="factorization",
                         help="factorization: dense Y; completion: observed entries rows/cols/values (sorted by "
                              "column, with col_ptr) and attribute shape; sensing: per-rank operators rank{j}/A, "
                              "rank{j}/y for --ranks J (default %(default)s)")
    problem.add_argument("--rank", type=_number(int, "rank", minimum=1), default=DEFAULTS.rank,
                         help="rank r of the ground truth (default %(default)s)")
    _add_synthetic(problem, n_default=DEFAULTS.n, m_default=DEFAULTS.m)
    problem.add_argument("--seed", type=_number(int, "seed", minimum=0), default=0, help="random seed (default 0)")
    problem.add_argument("--sampling-rate", type=_number(float, "sampling-rate", minimum=0.0, strict=True), default=0.5,
                         help="completion: probability that an entry is observed (default %(default)s)")
    problem.add_argument("--ranks", type=_number(int, "ranks", minimum=1), default=1,
                         help="sensing: the number of ranks J the operators are drawn for (default 1)")
    problem.add_argument("--measurements", type=_number(int, "measurements", minimum=1), default=None,
                         help="sensing: total measurements p (default 3·max(n,m)·r)")


def parse(argv, printer=True) -> argparse.Namespace:
    argv = list(argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["run"] + argv
    parser = build_parser(printer)
    arguments = parser.parse_args(argv)
    if getattr(arguments, "config", None) is not None:
        from .config import merge

        arguments = parser.parse_args(merge(argv, arguments.config, build_parser(printer=False).run_parser))
    return arguments


def given_options(argv) -> set:
    """Names of the `run` options typed in argv (as opposed to left at their defaults)."""
    parser = build_parser(printer=False)
    for action in parser.run_parser._actions:  # noqa: SLF001 - argparse has no public accessor
        action.default = argparse.SUPPRESS
    argv = list(argv)
    if not argv or argv[0].startswith("-"):
        argv = ["run"] + argv
    return set(vars(parser.parse_args(argv))) - {"command"}


def config_from_arguments(arguments: argparse.Namespace) -> runner.RunConfig:
    fields = runner.RunConfig.__dataclass_fields__
    return runner.RunConfig(**{k: v for k, v in vars(arguments).items() if k in fields})


def main(argv, comm) -> int:
    """Parse argv and run the subcommand on communicator `comm`; return the exit code."""
    is_root = comm.Get_rank() == 0
    try:
        arguments = parse(argv, printer=is_root)
    except SystemExit as done:  # --help / --version: printed by rank 0, every rank stops
        return int(done.code or 0)
    command = "dgdlocal " + shlex.join(argv)
    if arguments.command == "generate":
        return _generate(arguments, comm)
    if arguments.command in ("info", "plot"):
        return _inspect(arguments, comm)
    config = config_from_arguments(arguments)
    expected = os.environ.get("DGDLOCAL_EXPECTED_RANKS")   # set by slurm/*.sbatch
    if expected and config.simulate is None and int(expected) != comm.Get_size():
        raise InputError(f"The job was started as {expected} tasks but MPI sees {comm.Get_size()} rank(s): "
                         "the launcher did not connect them (with srun use --mpi=pmi2).", collective=True)
    if config.simulate is not None:
        if comm.Get_size() > 1:
            raise InputError("--simulate runs every rank in one process; start it without mpirun "
                             f"(got an MPI job of {comm.Get_size()} ranks).", collective=True)
        context = runner.simulated_context(config.simulate)
    else:
        context = runner.mpi_context(comm)
    if config.resume is not None:
        config = runner.resumed_config(config, given_options(argv), context)
    return runner.execute(config, context, command)


def _generate(arguments, comm) -> int:
    from . import collectives, data
    from .results import check_output_path

    if arguments.rank > min(arguments.n, arguments.m):
        raise InputError(f"The 'rank' parameter must be at most min(n, m) = {min(arguments.n, arguments.m)}. "
                         f"Got {arguments.rank} instead.", collective=True)
    spec = data.SyntheticSpec(arguments.n, arguments.m, arguments.rank, arguments.condition_number,
                              arguments.noise, arguments.seed, arguments.truth)

    def write():
        if comm.Get_rank() == 0:
            check_output_path(arguments.output, arguments.force)
            if arguments.problem == "completion":
                if arguments.sampling_rate > 1:
                    raise InputError(f"The 'sampling-rate' parameter must be in (0, 1]. Got {arguments.sampling_rate}.")
                data.write_completion(arguments.output, spec, arguments.sampling_rate)
            elif arguments.problem == "sensing":
                config = runner.RunConfig(problem="sensing", n=spec.n, m=spec.m, rank=spec.r,
                                          condition_number=spec.condition_number, noise=spec.noise, seed=spec.seed,
                                          measurements=arguments.measurements)
                data.write_sensing(arguments.output, config, arguments.ranks)
            else:
                data.write_problem(arguments.output, spec)
            print(f"dgdlocal: wrote a {spec.n}×{spec.m} rank-{spec.r} {arguments.problem} problem to "
                  f"{arguments.output}", flush=True)

    collectives.agreed(comm, write)
    return 0


def _inspect(arguments, comm) -> int:
    """`info` and `plot`: rank 0 reads the files and prints or draws; every rank learns of a failure."""
    from . import collectives, info, plot

    def work():
        if comm.Get_rank() != 0:
            return
        text = info.main(arguments) if arguments.command == "info" else "\n".join(
            f"dgdlocal: wrote {path}" for path in plot.main(arguments))
        try:
            print(text, flush=True)
        except BrokenPipeError:  # `info --json | head`: the reader left, which is fine
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

    collectives.agreed(comm, work)
    return 0
