"""Shared test helpers.

Under `mpirun ... pytest --with-mpi`, a failed assertion on one rank would leave
the other ranks waiting in the next collective; the hook below aborts the whole
job instead, naming the rank and the test.
"""

import os
import signal
import subprocess
import sys

import pytest

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_addoption(parser):
    parser.addoption("--slurm", action="store_true",
                     help="run the tests marked slurm against the SLURM that scripts/slurm-test starts; "
                          "they fail, not skip, when it does not answer")


def pytest_configure(config):
    config.addinivalue_line("markers", "slurm: needs a running SLURM (scripts/slurm-test runs them with --slurm)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slurm"):
        return
    skip = pytest.mark.skip(reason="needs a SLURM: run scripts/slurm-test (CI does)")
    for item in items:
        if "slurm" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and (item.config.getoption("with_mpi", default=False) or item.config.getoption("only_mpi", default=False)):
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
        if comm.Get_size() > 1:
            sys.stderr.write(f"\n{report.longreprtext}\n\nFAILED {item.nodeid} on rank {comm.Get_rank()} "
                             f"of {comm.Get_size()}; aborting the MPI job so no rank waits forever.\n")
            sys.stderr.flush()
            comm.Abort(1)
            os._exit(1)


def launch(args, *, timeout=60, cwd=None, env=None):
    """Run a command in its own session; on timeout kill the whole process group and fail."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    process = subprocess.Popen(args, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    return finish(process, timeout)


def finish(process, timeout):
    """Wait for a process started in its own session; on timeout kill its whole group and fail."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"{' '.join(process.args)} did not finish within {timeout} s (a hang)\n"
                    f"stdout:\n{stdout}\nstderr:\n{stderr}")
    return process.returncode, stdout, stderr


def mpirun(J, *args, timeout=60, cwd=None, env=None):
    """`mpirun -n J python -m dgdlocal ARGS`, with a timeout."""
    command = ["mpirun", "-n", str(J), sys.executable, "-m", "dgdlocal", *map(str, args)]
    return launch(command, timeout=timeout, cwd=cwd, env=env)
