"""`python -m dgdlocal plot`: figures from result files (matplotlib, Agg, no display needed).

- curves: objective, relative error, consensus error and gradient norm against the
  iteration on log scales, one line per result file (the look of Fig. 1 of Zhu et al.);
- --network: the communication graph, node area proportional to the columns m_j a
  rank owns, edge width proportional to its weight W̃_ij;
- --image: the data matrix Y shown as an image next to the rank-r reconstruction Ū Vᵀ
  (Y is read back from the --data path stored in /config, or regenerated if synthetic).
"""

from __future__ import annotations

import math
import os

import numpy as np

from .errors import InputError

DESCRIPTION = """Figures from result files (matplotlib; no display needed).

- curves: objective, relative error, consensus error and gradient norm against the
  iteration on log scales, one line per result file;
- --network: the communication graph, node area ∝ the columns m_j a rank owns,
  edge width ∝ W̃_ij;
- --image: Y as an image next to the rank-r reconstruction ŪVᵀ (Y is read back
  from the --data path recorded in the result, or regenerated if synthetic)."""
CURVES = (("objective", "objective f(z)"), ("relative_error", "relative error ‖ŪVᵀ − Y‖_F / ‖Y‖_F"),
          ("consensus_error", "consensus error Σ_j ‖U_j − Ū‖_F²"), ("gradient_norm", "gradient norm ‖∇g(z)‖"))
#: Largest Y (entries) that --image loads whole.
MAX_IMAGE_ENTRIES = 20_000_000


def add_arguments(parser) -> None:
    parser.add_argument("results", nargs="+", metavar="RESULT.h5",
                        help="one or more result files; several are drawn on the same axes")
    output = parser.add_argument_group("output")
    output.add_argument("-o", "--output", metavar="FIG.png",
                        help="figure of the curves (default: the first result's name with .png). --network and "
                             "--image write FIG-network.png and FIG-image.png beside it (with the result's name "
                             "added when several results are given). The format follows the suffix (.png, .pdf, .svg)")
    output.add_argument("--label", action="append", metavar="TEXT",
                        help="legend entry of each result, in order (repeat; default: the file names)")
    output.add_argument("--dpi", type=int, default=120, help="resolution of raster figures (default %(default)s)")
    extra = parser.add_argument_group("extra figures")
    extra.add_argument("--network", action="store_true",
                       help="also draw the network: node area ∝ m_j (columns per rank), edge width ∝ W̃_ij")
    extra.add_argument("--image", action="store_true",
                       help="also draw Y as an image next to its rank-r reconstruction ŪVᵀ")
    extra.add_argument("--data", metavar="PATH[:DATASET]",
                       help="read Y for --image from here instead of the --data path recorded in the result")


def _figure(**kwargs):
    """A matplotlib Figure on the Agg canvas (no pyplot state, no display)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError("`dgdlocal plot` needs matplotlib, which is not installed: "
                         "pip install 'dgdlocal[plot]' (or pip install matplotlib).", collective=True) from None
    return Figure(**kwargs)


def _positive(values) -> np.ndarray:
    """Values for a log axis: zeros and negatives become gaps instead of errors."""
    values = np.asarray(values, dtype=np.float64)
    return np.where(values > 0, values, np.nan)


def plot_curves(runs: list[tuple[str, dict]], path: str, dpi: int = 120) -> str:
    """Four log-scale panels, one line per (label, inspect_file content); returns the path written."""
    figure = _figure(figsize=(11, 7.5), layout="constrained")
    axes = figure.subplots(2, 2, sharex=True).ravel()
    for (name, title), ax in zip(CURVES, axes):
        for k, (label, content) in enumerate(runs):
            history = content["diagnostics"]
            if name in history and "iteration" in history:
                ax.semilogy(history["iteration"], _positive(history[name]), color=f"C{k}", lw=1.6, label=label)
        ax.set_title(title)
        ax.grid(True, which="major", alpha=0.3)
    for ax in axes[2:]:
        ax.set_xlabel("iteration")
    axes[0].legend(loc="best", fontsize="small")
    first = runs[0][1]
    if len(runs) == 1:
        config = first["config"]
        figure.suptitle(f"DGD+LOCAL, {config.get('n')}×{config.get('m')} rank {config.get('r')} on "
                        f"J={first['attrs'].get('mpi_size')} ({first['topology'].get('source')}): "
                        f"status {first['attrs'].get('status')}")
    else:
        figure.suptitle(f"DGD+LOCAL: {len(runs)} runs")
    figure.savefig(path, dpi=dpi)
    return path


def _layout(source: str, J: int, adjacency: np.ndarray) -> np.ndarray:
    """Node positions: grid/torus on their grid, a spring layout (networkx) when available, else a circle."""
    from . import topology

    if source == "path":
        return np.column_stack([np.arange(J, dtype=float), np.zeros(J)])
    if source in ("grid", "torus"):
        rows, cols = topology.grid_shape(J)
        return np.array([(j % cols, -(j // cols)) for j in range(J)], dtype=float)
    angles = np.pi / 2 - 2 * np.pi * np.arange(J) / max(J, 1)
    circle = np.column_stack([np.cos(angles), np.sin(angles)])
    if source in ("ring", "complete", "exponential", "star") or J < 3:
        return circle
    try:
        import networkx
    except ImportError:
        return circle
    graph = networkx.from_numpy_array(adjacency.astype(int))
    positions = networkx.spring_layout(graph, pos={j: tuple(circle[j]) for j in range(J)}, seed=0)
    return np.array([positions[j] for j in range(J)])


def plot_network(content: dict, path: str, dpi: int = 120) -> str:
    """The graph of W̃ with node area ∝ m_j and edge width ∝ W̃_ij; returns the path written."""
    W = content["weights"]
    if W is None or content["offsets"] is None:
        raise InputError("The result file holds no /topology/weights or /partition/offsets to draw the network from.",
                         collective=True)
    J = len(W)
    sizes = np.diff(content["offsets"]).astype(float)
    adjacency = (W != 0) & ~np.eye(J, dtype=bool)
    positions = _layout(str(content["topology"].get("source")), J, adjacency)
    figure = _figure(figsize=(6.5, 6.5), layout="constrained")
    ax = figure.subplots()
    largest = W[adjacency].max() if adjacency.any() else 1.0
    for i, j in zip(*np.nonzero(np.triu(adjacency))):
        ax.plot(*positions[[i, j]].T, color="0.45", lw=0.5 + 3.0 * W[i, j] / largest, zorder=1)
    area = 900.0 * sizes / sizes.max() * (1.0 if J <= 16 else 16.0 / J) + 20.0
    ax.scatter(*positions.T, s=area, c="C0", edgecolors="white", zorder=2)
    if J <= 64:
        for j in range(J):
            ax.annotate(str(j), positions[j], ha="center", va="center", fontsize=8, color="white", zorder=3)
    summary = content["topology"]
    ax.set_title(f"{summary.get('source')}, J={J}: ω={float(summary.get('omega', math.nan)):.3g}, "
                 f"spectral gap={float(summary.get('spectral_gap', math.nan)):.3g}\n"
                 f"node area ∝ columns m_j ({int(sizes.min())}–{int(sizes.max())}), edge width ∝ W̃_ij")
    ax.set_aspect("equal")
    ax.margins(0.12)
    ax.axis("off")
    figure.savefig(path, dpi=dpi)
    return path


def _data_argument(config: dict, result_path: str, override: str | None) -> str | None:
    """The --data argument to read Y from: the override, else the recorded one (tried from the
    current folder, then from the result file's folder); None for synthetic data."""
    from . import data

    if override is not None:
        return override
    recorded = config.get("data")
    if recorded is None or str(recorded) == "none":
        return None
    recorded = str(recorded)
    for candidate in (recorded, os.path.join(os.path.dirname(os.path.abspath(result_path)), recorded)):
        if os.path.exists(data.split_data_argument(candidate)[0]):
            return candidate
    raise InputError(f"The data file '{recorded}' recorded in '{result_path}' is not found from here; "
                     "pass its path with `plot --data PATH`.", collective=True)


def load_data_matrix(config: dict, result_path: str, override: str | None = None) -> np.ndarray:
    """Y of the run (n×m float64): read from its file, or regenerated from the synthetic settings."""
    from . import data

    n, m = int(config["n"]), int(config["m"])
    if n * m > MAX_IMAGE_ENTRIES:
        raise InputError(f"Y is {n}×{m}, too large to draw as an image (limit {MAX_IMAGE_ENTRIES} entries).",
                         collective=True)
    argument = _data_argument(config, result_path, override)
    if argument is None:
        spec = data.SyntheticSpec(n, m, int(config["r"]), float(config["condition_number"]), float(config["noise"]),
                                  int(config["seed"]))
        return data.synthetic_block(spec, 0, 0, m).Y
    path, dataset = data.split_data_argument(argument)
    shape = data.matrix_shape(path, dataset)
    if shape != (n, m):
        raise InputError(f"The data '{argument}' is {shape[0]}×{shape[1]} but the run factorized a {n}×{m} matrix.",
                         collective=True)
    return data.load_block(path, dataset, 0, 0, m).Y


def plot_image(content: dict, result_path: str, path: str, data_override: str | None = None, dpi: int = 120) -> str:
    """Y next to ŪVᵀ (same grey scale), titled with the relative error; returns the path written."""
    from .results import read_factors

    Y = load_data_matrix(content["config"], result_path, data_override)
    U, V = read_factors(result_path)
    reconstruction = U @ V.T
    error = np.linalg.norm(reconstruction - Y) / np.linalg.norm(Y)
    r = U.shape[1]
    best = ""
    if min(Y.shape) <= 2000:
        singular_values = np.linalg.svd(Y, compute_uv=False)
        best = f" (truncated SVD: {math.sqrt(np.sum(singular_values[r:] ** 2)) / np.linalg.norm(Y):.4g})"
    n, m = Y.shape
    figure = _figure(figsize=(11, 5.5 * n / m + 1.0), layout="constrained")
    low, high = float(Y.min()), float(Y.max())
    for ax, image, title in zip(figure.subplots(1, 2), (Y, reconstruction),
                                (f"original Y ({n}×{m})", f"rank-{r} reconstruction ŪVᵀ")):
        ax.imshow(image, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    offsets = content["offsets"]
    if offsets is not None and len(offsets) > 2:  # column blocks of the ranks
        for edge in offsets[1:-1]:
            figure.axes[0].axvline(edge - 0.5, color="C1", lw=0.6, alpha=0.6)
    figure.suptitle(f"relative error ‖ŪVᵀ − Y‖_F/‖Y‖_F = {error:.4g}{best}; "
                    f"columns split over J={len(offsets) - 1 if offsets is not None else '?'} ranks")
    figure.savefig(path, dpi=dpi)
    return path


def main(arguments) -> list[str]:
    """Draw the figures asked for; return the paths written."""
    from .results import inspect_file

    if arguments.label and len(arguments.label) != len(arguments.results):
        raise InputError(f"Give one --label per result file: {len(arguments.results)} files, "
                         f"{len(arguments.label)} labels.", collective=True)
    runs = [inspect_file(path) for path in arguments.results]
    labels = arguments.label or [os.path.basename(path) for path in arguments.results]
    output = arguments.output or os.path.splitext(arguments.results[0])[0] + ".png"
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise InputError(f"The output folder '{folder}' does not exist.", collective=True)
    written = [plot_curves(list(zip(labels, runs)), output, arguments.dpi)]
    stem, suffix = os.path.splitext(output)
    for result_path, content in zip(arguments.results, runs):
        tag = "" if len(runs) == 1 else "-" + os.path.splitext(os.path.basename(result_path))[0]
        if arguments.network:
            written.append(plot_network(content, f"{stem}-network{tag}{suffix}", arguments.dpi))
        if arguments.image:
            written.append(plot_image(content, result_path, f"{stem}-image{tag}{suffix}", arguments.data,
                                      arguments.dpi))
    return written
