"""Entry point: `python -m dgdlocal` and the `dgdlocal` console script.

Failures end the whole MPI job promptly with one message:
* an input error every rank agrees on: the coordinator prints it, every rank exits 2;
* an input error only this rank knows of: this rank prints it and aborts the job (exit 2);
* an unexpected exception agreed on by every rank: the coordinator prints it, exit 1;
* any other unexpected exception: this rank prints its traceback and aborts the job (exit 1).
"""

from __future__ import annotations

import os
import sys
import traceback

from .errors import InputError, RankFailure


def _abort(comm, code: int) -> None:
    """MPI_Abort ends every rank; MPICH's Abort can return briefly, so leave at once."""
    sys.stderr.flush()
    sys.stdout.flush()
    comm.Abort(code)
    os._exit(code)


class _QuietOnBrokenPipe:
    """stdout that goes silent when its reader has gone (`dgdlocal ... | head`) instead of raising:
    the run continues and still writes its result file."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._go_silent()
            return len(text)

    def flush(self):
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._go_silent()

    def _go_silent(self):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)

    def __getattr__(self, name):
        return getattr(self._stream, name)


BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _share_cores_among_local_ranks(comm) -> None:
    """Give each rank cores // (ranks on this node) BLAS threads unless the user chose a count.

    Must run before numpy is first imported (OpenBLAS reads the variables when it loads);
    without it, 4 ranks on 2 cores each start 2 BLAS threads and slow down many times over.
    """
    if any(name in os.environ for name in BLAS_THREAD_VARIABLES) or "numpy" in sys.modules:
        return
    from mpi4py import MPI

    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    threads = max(1, (os.cpu_count() or 1) // node.Get_size())
    node.Free()
    for name in BLAS_THREAD_VARIABLES:
        os.environ[name] = str(threads)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not isinstance(sys.stdout, _QuietOnBrokenPipe):
        sys.stdout = _QuietOnBrokenPipe(sys.stdout)
    try:
        from mpi4py import MPI
    except ImportError as exc:
        print(f"dgdlocal: error: mpi4py cannot be imported ({exc}); install MPI, e.g. pip install 'dgdlocal[mpi]'",
              file=sys.stderr)
        return 2
    comm = MPI.COMM_WORLD
    _share_cores_among_local_ranks(comm)
    from . import cli

    rank = comm.Get_rank()
    try:
        return cli.main(argv, comm)
    except InputError as exc:
        if exc.collective:
            if rank == 0:
                print(f"dgdlocal: error: {exc}", file=sys.stderr, flush=True)
            return 2
        print(f"dgdlocal: error on rank {rank}: {exc}", file=sys.stderr, flush=True)
        _abort(comm, 2)
    except RankFailure as exc:
        if rank == 0:
            print(f"dgdlocal: internal error: {exc}", file=sys.stderr, flush=True)
        return 1
    except Exception:  # noqa: BLE001 - anything else must not leave the other ranks waiting
        print(f"dgdlocal: internal error on rank {rank}; aborting the job.\n{traceback.format_exc()}",
              file=sys.stderr, flush=True)
        _abort(comm, 1)
    return 1


def console_script() -> None:
    """`python -m dgdlocal` / `dgdlocal`: under an MPI launcher the solver runs in a supervised child
    (supervisor.py), started with this process's own command line."""
    from . import supervisor

    if supervisor.wanted():
        code = supervisor.supervise([sys.executable, *sys.orig_argv[1:]])
        if code is not None:
            sys.exit(code)
    supervisor.watch_supervisor()
    code = main()
    ignore_late_stop_signals()
    sys.exit(code)


def ignore_late_stop_signals() -> None:
    """After the run: a stop signal can reach a rank twice — MPICH's mpirun signals the whole process group
    and the supervisor forwards its own copy — and the second copy may come after the run restored the
    default handlers, killing a rank that has already written everything (the job then exits 11 = 9 | 10
    instead of 4). The run is over, so such copies are ignored while the process shuts down."""
    import signal

    from .signals import STOP_SIGNALS

    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)


if __name__ == "__main__":
    console_script()
