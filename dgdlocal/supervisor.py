"""A per-rank supervisor that names the rank when the solver process dies from a signal.

When a rank is killed (kill -9, the out-of-memory killer, a crash in compiled code), MPICH's
mpirun ends the job but names a PID that is often another rank's. So under an MPI launcher
`python -m dgdlocal` starts the solver as a child process and waits for it:

* the child exits normally: the supervisor exits with the same code and prints nothing;
* the child dies from a signal: the supervisor prints one line naming the rank, the pid,
  the signal and its common causes, then ends itself by the same signal (without a core
  file), so the launcher sees the rank die as it would have unsupervised and ends the job;
* the supervisor dies (kill -9 of its pid): the kernel kills the child (PR_SET_PDEATHSIG),
  so no solver process is left behind;
* SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGHUP and SIGCONT sent to the supervisor are passed
  on to the child (mpirun and SLURM signal both anyway; a second copy only sets the same flag).

The child keeps the launcher's file descriptors (the PMI socket of PMI_FD), environment and
process group, so MPI starts in it as it would have in the supervisor. This module imports only the
standard library: the supervisor never loads numpy, mpi4py or h5py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

#: Set in the child to the supervisor's pid: the child is the solver and is not supervised again.
SUPERVISED_VARIABLE = "DGDLOCAL_SUPERVISED"
#: DGDLOCAL_SUPERVISOR=off runs the solver in the process the launcher started (e.g. under a debugger).
SWITCH_VARIABLE = "DGDLOCAL_SUPERVISOR"
#: The rank as MPICH's hydra (and srun --mpi=pmi2), Open MPI / PMIx and srun announce it, in that order.
RANK_VARIABLES = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID")
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGCONT)
PR_SET_PDEATHSIG = 1   # from <linux/prctl.h>

CAUSES = {
    signal.SIGKILL: "most often the out-of-memory killer (see `dmesg` or the batch system's memory report); "
                    "otherwise the batch system, an administrator or `kill -9`",
    signal.SIGSEGV: "a crash in compiled code (numpy, BLAS, MPI or another library)",
    signal.SIGBUS: "a crash in compiled code, or a full /dev/shm (MPI's shared memory; `df -h /dev/shm`)",
    signal.SIGILL: "a crash in compiled code, e.g. a library built for another CPU",
    signal.SIGFPE: "a crash in compiled code",
    signal.SIGABRT: "an abort in compiled code (see the lines above)",
    signal.SIGXCPU: "the CPU-time limit (`ulimit -t` or the batch system's)",
}


def launcher_rank() -> str | None:
    """This process's MPI rank as the launcher announced it in the environment, or None."""
    return next((os.environ[name] for name in RANK_VARIABLES if os.environ.get(name, "").isdigit()), None)


def supervisor_pid() -> int | None:
    """The supervisor's pid when this process is the supervised solver, else None."""
    value = os.environ.get(SUPERVISED_VARIABLE, "")
    return int(value) if value.isdigit() and int(value) == os.getppid() else None


def wanted() -> bool:
    """Supervise when started by an MPI launcher, unless switched off, already supervised, or
    mpi4py.MPI is loaded already (MPI may have started in this process)."""
    return (launcher_rank() is not None and os.environ.get(SWITCH_VARIABLE, "").lower() != "off"
            and supervisor_pid() is None and "mpi4py.MPI" not in sys.modules)


def _die_with(parent: int):
    """A preexec_fn for the child: SIGKILL it when `parent` dies; exit at once if that already happened."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):   # not Linux: the launcher's group kill must do
        return None

    def preexec():
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:   # the supervisor died before prctl took effect
            os._exit(128 + signal.SIGKILL)

    return preexec


def describe_death(rank: str, pid: int, number: int) -> str:
    """The one line printed when the solver process of `rank` died from signal `number`."""
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    cause = CAUSES.get(number, "a signal sent by another process")
    return (f"dgdlocal: rank {rank} (pid {pid} on {os.uname().nodename}) was killed by signal {number} ({name}) "
            f"at {time.strftime('%Y-%m-%d %H:%M:%S')}; the job cannot go on without it. "
            f"Common cause: {cause}.\n")


def supervise(command: list[str]) -> int | None:
    """Run `command` (the same dgdlocal invocation) as the supervised solver; return its exit code,
    or None if it could not be started (then run unsupervised). If it dies from a signal, report
    it and die by the same signal."""
    rank = launcher_rank()
    child = None
    pending, received = [], set()

    def forward(number, frame):  # noqa: ARG001 - signal handler signature
        received.add(number)
        if child is None:
            pending.append(number)
        else:
            child.send_signal(number)   # a no-op once the child has been reaped

    previous = {number: signal.signal(number, forward) for number in FORWARDED_SIGNALS}
    try:
        child = subprocess.Popen(command, close_fds=False, preexec_fn=_die_with(os.getpid()),
                                 env={**os.environ, SUPERVISED_VARIABLE: str(os.getpid())})
    except OSError as exc:
        for number, handler in previous.items():
            signal.signal(number, handler)
        sys.stderr.write(f"dgdlocal: warning: rank {rank}: cannot start the solver as a supervised process "
                         f"({exc}); running without the supervisor.\n")
        for number in pending:
            signal.raise_signal(number)
        return None
    for number in pending:
        child.send_signal(number)
    code = child.wait()
    if code >= 0:
        return code
    if -code not in received:   # not a signal sent to the whole job, e.g. Ctrl-C before the solver started
        os.write(2, describe_death(rank, child.pid, -code).encode())
    _die_by(-code)


def _die_by(number: int) -> None:
    """End this process by signal `number`, as the child ended: the launcher then sees the rank die
    exactly as it would have without the supervisor. No core file of its own."""
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    if number != signal.SIGKILL:
        signal.signal(number, signal.SIG_DFL)
    os.kill(os.getpid(), number)
    os._exit(128 + number)   # only if the signal does not end a process by default
