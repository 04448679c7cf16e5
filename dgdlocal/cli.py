"""Command line: `python -m dgdlocal [run|generate] [options]`.

Every rank parses the same arguments and so reaches the same verdict without
messages; only the coordinator prints help and errors.
"""

from __future__ import annotations

import argparse
import os
import shlex

from . import __version__, runner, topology
from .errors import InputError

SUBCOMMANDS = ("run", "generate")
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
                     description="Distributed low-rank matrix factorization Y ≈ U Vᵀ with DGD+LOCAL over MPI. "
                                 "Run under mpirun: `mpirun -n J python -m dgdlocal [run] [options]`. "
                                 "With no subcommand, `run` is assumed.")
    parser.add_argument("--version", action="version", version=f"dgdlocal {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="{run,generate}", parser_class=_Parser)
    parser.run_parser = commands.add_parser("run", help="solve a problem (default); writes one HDF5 result file",
                                            printer=printer, description="Solve with DGD+LOCAL; rank 0 writes one HDF5 file.")
    _add_run(parser.run_parser)
    _add_generate(commands.add_parser("generate", help="write a synthetic low-rank problem to HDF5", printer=printer,
                                      description="Write Y = U⋆V⋆ᵀ (+ noise) and its ground truth to HDF5."))
    return parser


def _add_synthetic(group, *, n_default, m_default):
    group.add_argument("--n", type=_number(int, "n", minimum=1), default=n_default, help="rows of Y (default %(default)s)")
    group.add_argument("--m", type=_number(int, "m", minimum=1), default=m_default, help="columns of Y (default %(default)s)")
    group.add_argument("--condition-number", type=_number(float, "condition-number", minimum=1.0),
                       default=DEFAULTS.condition_number,
                       help="σ₁/σ_r of the synthetic matrix; singular values spaced geometrically (default %(default)s)")
    group.add_argument("--noise", type=_number(float, "noise", minimum=0.0), default=0.0,
                       help="Gaussian noise, as a fraction of ‖U⋆V⋆ᵀ‖_F (default 0: exact rank r)")


def _add_run(parser):
    problem = parser.add_argument_group("problem and data")
    problem.add_argument("--problem", choices=["factorization"], default="factorization",
                         help="local objective f_j (default factorization: ‖U V_jᵀ − Y_j‖_F²)")
    problem.add_argument("--data", metavar="PATH[:DATASET]",
                         help="input matrix: HDF5 (dataset default Y) or .npy of floats; each rank reads only its "
                              "columns. Omitted: a synthetic exact-rank matrix drawn from --seed")
    problem.add_argument("--rank", type=_number(int, "rank", minimum=1), default=DEFAULTS.rank,
                         help="factorization rank r (default %(default)s)")
    _add_synthetic(problem, n_default=DEFAULTS.n, m_default=DEFAULTS.m)

    network = parser.add_argument_group("network")
    network.add_argument("--topology", choices=topology.TOPOLOGIES, default=DEFAULTS.topology,
                         help="communication graph over the J ranks (default %(default)s)")
    network.add_argument("--weights", metavar="PATH",
                         help="J×J mixing matrix W̃ (.npy, .txt/.csv or HDF5); replaces --topology")
    network.add_argument("--weight-rule", choices=topology.WEIGHT_RULES, default=DEFAULTS.weight_rule,
                         help="mixing weights from the graph (default %(default)s); (W+I)/2 is applied when ω ≥ 1/2")
    network.add_argument("--edge-probability", type=_number(float, "edge-probability", minimum=0.0, strict=True),
                         default=DEFAULTS.edge_probability, help="edge probability of erdos-renyi (default %(default)s)")
    network.add_argument("--lazy", action="store_true", help="apply (W+I)/2 to a --weights matrix")

    algorithm = parser.add_argument_group("algorithm")
    algorithm.add_argument("--step", type=_number(float, "step", minimum=0.0, strict=True, allow_auto=True),
                           default="auto", help="step size µ, or auto: 0.5·(1+λ_min(W̃))/(4σ₁(Y)) (default auto)")
    algorithm.add_argument("--iterations", type=_number(int, "iterations", minimum=0), default=DEFAULTS.iterations,
                           help="iteration cap (default %(default)s)")
    algorithm.add_argument("--tolerance", type=_number(float, "tolerance", minimum=0.0), default=DEFAULTS.tolerance,
                           help="stop when relative consensus ≤ T and (relative error ≤ T or stationarity ≤ T); "
                                "0 disables (default %(default)s)")
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
    output.add_argument("--force", action="store_true", help="overwrite an existing --output")
    output.add_argument("--log-every", type=_number(int, "log-every", minimum=1), default=DEFAULTS.log_every,
                        help="diagnostics and a progress line every K iterations (default %(default)s)")
    output.add_argument("--quiet", action="store_true", help="print only warnings, errors and the final summary")
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
    parser.add_argument("--output", required=True, metavar="PATH", help="HDF5 file to write (Y, truth/U, truth/V)")
    parser.add_argument("--rank", type=_number(int, "rank", minimum=1), default=DEFAULTS.rank,
                        help="rank r of the ground truth (default %(default)s)")
    _add_synthetic(parser, n_default=DEFAULTS.n, m_default=DEFAULTS.m)
    parser.add_argument("--seed", type=_number(int, "seed", minimum=0), default=0, help="random seed (default 0)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")


def parse(argv, printer=True) -> argparse.Namespace:
    argv = list(argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["run"] + argv
    return build_parser(printer).parse_args(argv)


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
                              arguments.noise, arguments.seed)

    def write():
        if comm.Get_rank() == 0:
            check_output_path(arguments.output, arguments.force)
            data.write_problem(arguments.output, spec)
            print(f"dgdlocal: wrote a {spec.n}×{spec.m} rank-{spec.r} problem to {arguments.output}", flush=True)

    collectives.agreed(comm, write)
    return 0
