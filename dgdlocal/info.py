"""`python -m dgdlocal info RESULT.h5 [--json | --toml]`: what a result file says, at a glance."""

from __future__ import annotations

import json
import math

import numpy as np

from . import topology

DESCRIPTION = ("Summarize a result file of `dgdlocal run`: status, problem and sizes, network (ω, spectral gap), "
               "step and its Thm 2.5 bound, final diagnostics and time per rank.")
#: Final diagnostics in the order they are shown.
SHOWN_DIAGNOSTICS = ("objective", "relative_error", "optimality_error", "consensus_error", "relative_consensus",
                     "gradient_norm", "stationarity", "balance")


def _shift_text(network: dict) -> str:
    """', ' + topology.describe_shift of the run's shift, or '' (older files have only `lazy_applied`)."""
    t = network.get("self_weight_shift", 0.5 if network.get("lazy_applied") else 0.0)
    text = topology.describe_shift(float(t))
    return f", {text}" if text else ""


def add_arguments(parser) -> None:
    parser.add_argument("result", metavar="RESULT.h5", help="result file written by `dgdlocal run`")
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print one JSON object (for scripts) instead of text")
    form.add_argument("--toml", action="store_true",
                      help="print the run's settings as a TOML file that `run --config` accepts")


def _plain(value):
    """HDF5 attribute / numpy value → JSON-able Python value; non-finite floats → None."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value == "none":
        return None
    return value


def describe(content: dict, path: str) -> dict:
    """A JSON-able summary of a file read by results.inspect_file."""
    config = {k: _plain(v) for k, v in content["config"].items()}
    attrs = {k: _plain(v) for k, v in content["attrs"].items()}
    network = {k: _plain(v) for k, v in content["topology"].items()}
    offsets = content["offsets"]
    sizes = np.diff(offsets).tolist() if offsets is not None else []
    weights = content["weights"]
    if weights is not None:
        adjacency = (weights != 0) & ~np.eye(len(weights), dtype=bool)
        degrees = adjacency.sum(axis=1)
        network.update(edges=int(adjacency.sum() // 2), degree_min=int(degrees.min()), degree_max=int(degrees.max()),
                       weight_rule=config.get("weight_rule") if config.get("weights") is None else "given")
    diagnostics = content["diagnostics"]
    final = {name: _plain(values[-1]) for name, values in diagnostics.items() if len(values)}
    step = {"step_size": config.get("step_size"), "rule": config.get("step_rule"), "gain": config.get("step_gain", 1.0),
            "bound_thm25": config.get("step_bound_thm25"), "lipschitz_estimate": config.get("lipschitz_estimate"),
            "method": config.get("method", "dgd-local")}
    if step["step_size"] is not None and step["bound_thm25"] is not None and step["bound_thm25"] > 0:
        step["within_bound"] = step["step_size"] < step["bound_thm25"]
    data = config.get("data")
    problem = {"problem": config.get("problem"), "data": data if data is not None else "synthetic",
               "n": config.get("n"), "m": config.get("m"), "r": config.get("r", config.get("rank"))}
    if data is None:
        problem.update(condition_number=config.get("condition_number"), noise=config.get("noise"),
                       seed=config.get("seed"))
    return {
        "file": path, "status": attrs.get("status"), "schema_version": attrs.get("schema_version"),
        "dgdlocal_version": attrs.get("dgdlocal_version"), "command": attrs.get("command"),
        "problem": problem,
        "ranks": {"J": attrs.get("mpi_size", config.get("J")), "columns_per_rank": sizes,
                  "simulated": config.get("simulate") is not None},
        "topology": network, "step": step,
        "iterations": {"done": final.get("iteration"), "cap": config.get("iterations"),
                       "tolerance": config.get("tolerance"), "elapsed_s": final.get("elapsed")},
        "final": {name: final[name] for name in SHOWN_DIAGNOSTICS if name in final},
        "timing_per_rank_s": {name: _plain(values) for name, values in content["timing"].items()},
        "config": config,
    }


def _number(value, spec=".3e"):
    return "n/a" if value is None else format(value, spec)


def _range(values) -> str:
    if not values:
        return "n/a"
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def format_text(summary: dict) -> str:
    """The human summary: one block per topic."""
    problem, ranks, network = summary["problem"], summary["ranks"], summary["topology"]
    step, iterations, final = summary["step"], summary["iterations"], summary["final"]
    data = problem["data"]
    if data == "synthetic":
        data = (f"synthetic exact rank-{problem['r']} matrix (condition number {problem.get('condition_number')}, "
                f"noise {problem.get('noise')}, seed {problem.get('seed')})")
    lines = [f"{summary['file']}: status {summary['status']}  (dgdlocal {summary['dgdlocal_version']}, "
             f"schema {summary['schema_version']})",
             f"  command     {summary['command']}",
             f"problem       {problem['problem']} of a {problem['n']}×{problem['m']} matrix, rank r={problem['r']}",
             f"  data        {data}",
             f"ranks         J={ranks['J']}{' (simulated)' if ranks['simulated'] else ''}, "
             f"columns per rank m_j = {_range(ranks['columns_per_rank'])}"]
    if network:
        lines += [f"topology      {network.get('source')}, weights {network.get('weight_rule')}"
                  f"{_shift_text(network)}; "
                  f"{network.get('edges')} edges, degree {_range([network.get('degree_min'), network.get('degree_max')])}",
                  f"  ω = {_number(network.get('omega'), '.4g')}   λ_min = {_number(network.get('lambda_min'), '.4g')}   "
                  f"λ_2 = {_number(network.get('lambda_2'), '.4g')}   spectral gap = {_number(network.get('spectral_gap'), '.4g')}"]
    if step.get("step_size") is not None:
        verdict = ""
        if "within_bound" in step:
            verdict = "  (below the bound)" if step["within_bound"] else "  (above this sufficient bound)"
        bound = step["bound_thm25"]
        bound = "n/a" if bound is None else topology.describe_step_bound(bound, ".4g")
        rule = step["rule"] if step["gain"] in (None, 1.0) else f"{step['rule']}, ×{_number(step['gain'], '.3g')} for the gap"
        lines.append(f"step          µ = {step['step_size']:.4g} ({rule}); Thm 2.5 bound (1−2ω)/L = "
                     f"{bound} with L ≈ {_number(step['lipschitz_estimate'], '.4g')}" + verdict)
    if step.get("method") == "atc":
        lines.append("  method      atc: adapt, then combine (the exchange carries U_j − sµ∇_U f_j, after the local pass)")
    if step.get("method") == "atc-overlap":
        lines.append("  method      atc-overlap: adapt, then combine, the neighbours' step one iteration late (the "
                     "exchange carries [U_j; sµ∇_U f_j], before the local pass)")
    if step.get("method") == "extra":
        lines.append("  method      extra: EXTRA's correction on the U step (fixed points: the centralized critical points)")
    elapsed = iterations["elapsed_s"]
    lines.append(f"iterations    {iterations['done']} of at most {iterations['cap']}, tolerance {iterations['tolerance']}"
                 + (f", {elapsed:.2f} s" if elapsed is not None else ""))
    if final:
        names = list(final)
        lines.append("final         " + "   ".join(f"{name.replace('_', ' ')} {_number(final[name])}" for name in names[:4]))
        lines.append("              " + "   ".join(f"{name.replace('_', ' ')} {_number(final[name])}" for name in names[4:]))
    timing = summary["timing_per_rank_s"]
    if timing:
        J = len(next(iter(timing.values())))
        lines.append("time per rank [s]   " + "  ".join(f"{name:>11s}" for name in timing))
        shown = range(J) if J <= 16 else (0, 1, 2, J - 2, J - 1)
        for j in shown:
            if J > 16 and j == J - 2:
                lines.append("  ...")
            lines.append(f"  rank {j:<13d} " + "  ".join(f"{_number(values[j], '11.3f')}" for values in timing.values()))
        if J > 1:
            lines.append("  min / max          " + "  ".join(
                f"{min(v):5.2f}/{max(v):<5.2f}" for v in timing.values()))
    return "\n".join(lines)


def run_settings(summary: dict) -> dict:
    """The `run` options stored in /config (without the derived quantities), for `--toml`."""
    from . import runner

    fields = runner.RunConfig.__dataclass_fields__
    return {k: v for k, v in summary["config"].items() if k in fields and k not in ("config", "force")}


def main(arguments) -> str:
    """The text `info` prints for the parsed arguments."""
    from .config import format_toml
    from .results import inspect_file

    summary = describe(inspect_file(arguments.result), arguments.result)
    if arguments.json:
        return json.dumps(summary, indent=2, allow_nan=False)
    if arguments.toml:
        return (f"# settings of {arguments.result}; rerun with: python -m dgdlocal run --config FILE.toml\n"
                + format_toml(run_settings(summary)))
    return format_text(summary)

