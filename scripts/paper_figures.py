"""Shared by the paper scripts (scripts/paper_*.py): where a run executes, claim tables, figures.

* `Launcher` runs a `runner.RunConfig` on J ranks: over MPI when the script was started
  under mpirun (a sub-communicator of the first J ranks when J is smaller than the job),
  otherwise on the serial simulation of the same network. `run` writes the HDF5 result
  file (the same one `python -m dgdlocal` writes) and returns its contents; `solve` returns
  only the diagnostics (for sweeps of many small runs). Both return None on the ranks that
  are not the coordinator.
* `ClaimTable` prints "claim | measured | verdict" rows and keeps the measured numbers,
  which the scripts return so tests/test_papers.py can assert on them.
* `figure`, `curves`, `save` draw with matplotlib on the Agg backend (no display needed).

Only the coordinator (world rank 0) prints, draws and writes summary files.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shlex
import sys
from dataclasses import replace

import numpy as np

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPOSITORY not in sys.path:   # run as `python scripts/paper_x.py` from a checkout
    sys.path.insert(0, REPOSITORY)

from dgdlocal import results, runner  # noqa: E402

_MPI_ENVIRONMENT = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")


def under_mpirun() -> bool:
    """True when the process was started by mpirun/mpiexec (Hydra, Open MPI or PMIx set these)."""
    return any(name in os.environ for name in _MPI_ENVIRONMENT)


def parser(description: str) -> argparse.ArgumentParser:
    """The options every paper script shares: --out DIR, --quick, --full."""
    out = argparse.ArgumentParser(description=description)
    out.add_argument("--out", default="paper-results", help="folder for HDF5 results and PNG figures "
                                                            "(default %(default)s)")
    mode = out.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small sizes, seconds (used by the tests)")
    mode.add_argument("--full", action="store_true", help="the paper's sizes where practical (see docs/results.md)")
    return out


class Launcher:
    """Runs configurations on J ranks: MPI under mpirun, the serial simulation otherwise."""

    def __init__(self, out_dir: str, command: str | None = None):
        self.out_dir = out_dir
        self.command = command or "python " + shlex.join(sys.argv)
        self.comm = None
        self._communicators = {}
        if under_mpirun():
            from mpi4py import MPI

            self.comm = MPI.COMM_WORLD
        self.is_root = self.comm is None or self.comm.Get_rank() == 0
        if self.is_root:
            os.makedirs(out_dir, exist_ok=True)
        self.barrier()

    @property
    def mode(self) -> str:
        return f"MPI ({self.comm.Get_size()} processes)" if self.comm is not None else "serial simulation"

    def barrier(self):
        if self.comm is not None:
            self.comm.Barrier()

    def context(self, J: int):
        """The context of a J-rank run, or None on a process that takes no part in it."""
        if self.comm is None:
            return runner.simulated_context(J)
        from mpi4py import MPI

        size = self.comm.Get_size()
        if J > size:
            raise SystemExit(f"this experiment needs J={J} ranks; start it with `mpirun -n {J}` (or more), "
                             f"or without mpirun to simulate them (got {size}).")
        if J not in self._communicators:
            color = 0 if self.comm.Get_rank() < J else MPI.UNDEFINED
            self._communicators[J] = self.comm.Split(color, self.comm.Get_rank())
        sub = self._communicators[J]
        if sub == MPI.COMM_NULL:
            return None
        return runner.mpi_context(sub)

    def path(self, name: str) -> str:
        return os.path.join(self.out_dir, name)

    def run(self, config: runner.RunConfig, J: int, name: str) -> dict | None:
        """Solve and write `<out>/<name>.h5` like `python -m dgdlocal` does; the file's contents on the coordinator."""
        context = self.context(J)
        if context is None:
            return None
        config = replace(config, output=self.path(name + ".h5"), force=True, quiet=True)
        with contextlib.redirect_stdout(io.StringIO()):
            runner.execute(config, context, self.command)
        return results.read_result(config.output) if context.is_root else None

    def solve(self, config: runner.RunConfig, J: int):
        """(prepared, diagnostics) without writing a file; diagnostics None off the coordinator."""
        context = self.context(J)
        if context is None:
            return None, None
        config = replace(config, quiet=True)
        prepared = runner.prepare(config, context)
        outcome = runner.solve(prepared, config, context)
        return prepared, ({k: np.asarray(v) for k, v in outcome.diagnostics.items()} if context.is_root else None)


class ClaimTable:
    """Rows of (claim, measured, verdict); `values` keeps the numbers for the tests."""

    def __init__(self, title: str):
        self.title, self.rows, self.values = title, [], {}

    def add(self, claim: str, measured: str, ok: bool | None, **values):
        """ok None: a measured finding, not a claim of the paper (shown as n/a)."""
        self.rows.append((claim, measured, "n/a" if ok is None else "yes" if ok else "NO"))
        self.values.update(values)
        return ok

    def render(self) -> str:
        header = ("claim", "measured", "holds")
        widths = [max(len(row[i]) for row in self.rows + [header]) for i in range(3)]
        line = lambda row: " | ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
        return "\n".join([self.title, line(header), "-+-".join("-" * w for w in widths)] + [line(r) for r in self.rows])

    @property
    def all_hold(self) -> bool:
        return all(row[2] != "NO" for row in self.rows)


def write_summary(path: str, arrays: dict, attrs: dict | None = None) -> None:
    """A small HDF5 file of sweep results (arrays by name, scalar attributes)."""
    import h5py

    with h5py.File(path, "w") as handle:
        for key, value in (attrs or {}).items():
            handle.attrs[key] = value
        for key, value in arrays.items():
            handle[key] = np.asarray(value)


def figure(ncols: int = 1, nrows: int = 1, width: float = 5.0, height: float = 3.8):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, axes


def curves(ax, iterations, series: dict, *, title: str = "", ylabel: str = "", floor: float = 1e-32):
    """Log-scale curves {label: values} against iteration (values ≤ 0 drawn at `floor`)."""
    for label, values in series.items():
        ax.semilogy(iterations, np.maximum(np.asarray(values, dtype=float), floor), label=label)
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)


def save(fig, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
