"""A per-rank supervisor that names the rank when the solver process dies from a signal.

When a rank is killed (kill -9, the out-of-memory killer, a crash in compiled code), MPICH's
mpirun ends the job but names a PID that is often another rank's. So under an MPI launcher
`python -m dgdlocal` starts the solver as a child process and waits for it:

* the child exits normally: the supervisor exits with the same code and prints nothing;
* the child dies from a signal: the supervisor prints one line naming the rank, the pid,
  the signal and its common causes, then ends itself by the same signal (without a core
  file), so the launcher sees the rank die as it would have unsupervised and ends the job;
* the supervisor dies (kill -9 of its pid): the child learns it at once from the lifeline, a
  pipe whose write end only the supervisor holds (end of file = the supervisor is gone), and
  from PR_SET_PDEATHSIG; it prints one line naming its rank and the supervisor's pid, then
  SIGKILLs itself, so no solver process is left behind and the launcher ends the job;
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
#: Set in the child to the file descriptor of the lifeline's read end.
LIFELINE_VARIABLE = "DGDLOCAL_SUPERVISOR_LIFELINE"
#: The child's parent-death signal. Not SIGKILL, so the child can say why it ends; its default
#: action still terminates the child if it comes before `watch_supervisor` installed the handler.
PARENT_DEATH_SIGNAL = signal.SIGPWR if hasattr(signal, "SIGPWR") else signal.SIGTERM
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
    """A preexec_fn for the child: send it PARENT_DEATH_SIGNAL when `parent` dies; exit at once if
    that already happened."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):   # not Linux: the launcher's group kill must do
        return None

    def preexec():
        prctl(PR_SET_PDEATHSIG, PARENT_DEATH_SIGNAL, 0, 0, 0)
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
    # The lifeline: the child inherits the read end; the write end (not inheritable) stays open
    # here until this process ends, however it ends.
    lifeline, _keep_open = os.pipe()
    os.set_inheritable(lifeline, True)
    try:
        child = subprocess.Popen(command, close_fds=False, preexec_fn=_die_with(os.getpid()),
                                 env={**os.environ, SUPERVISED_VARIABLE: str(os.getpid()),
                                      LIFELINE_VARIABLE: str(lifeline)})
    except OSError as exc:
        os.close(lifeline)
        for number, handler in previous.items():
            signal.signal(number, handler)
        sys.stderr.write(f"dgdlocal: warning: rank {rank}: cannot start the solver as a supervised process "
                         f"({exc}); running without the supervisor.\n")
        for number in pending:
            signal.raise_signal(number)
        return None
    os.close(lifeline)
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


def watch_supervisor() -> None:
    """In the supervised solver: when the supervisor dies, print one line naming this rank and the
    supervisor's pid, then SIGKILL this process. Two ways in, whichever comes first: a daemon thread
    blocked on the lifeline (it runs while the main thread waits inside MPI, which releases the GIL)
    and a handler of PARENT_DEATH_SIGNAL (runs when the main thread is back in Python)."""
    import threading

    parent = supervisor_pid()
    descriptor = os.environ.get(LIFELINE_VARIABLE, "")
    if parent is None:
        return
    once = threading.Lock()

    def supervisor_died(*_):
        if once.acquire(blocking=False):
            os.write(2, describe_supervisor_death(launcher_rank(), parent, os.getpid()).encode())
            os.kill(os.getpid(), signal.SIGKILL)

    signal.signal(PARENT_DEATH_SIGNAL, supervisor_died)
    if descriptor.isdigit():
        def wait_for_end_of_file():
            try:
                while os.read(int(descriptor), 1):
                    pass
            except OSError:
                return
            supervisor_died()

        threading.Thread(target=wait_for_end_of_file, name="dgdlocal-lifeline", daemon=True).start()
    if os.getppid() != parent:   # died before the handler was in place
        supervisor_died()


def describe_supervisor_death(rank: str, parent: int, pid: int) -> str:
    """The one line printed by the solver of `rank` when its supervisor `parent` died."""
    return (f"dgdlocal: rank {rank}: its supervisor process (pid {parent} on {os.uname().nodename}, the pid "
            f"MPI reports for this rank) died at {time.strftime('%Y-%m-%d %H:%M:%S')}, killed by a signal "
            f"(`kill -9` of that pid, the out-of-memory killer or the batch system); its solver (pid {pid}) "
            f"ends too, and the job cannot go on without it.\n")
