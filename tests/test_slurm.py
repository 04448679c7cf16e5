"""slurm/run.sbatch and slurm/sweep.sbatch on a real single-node SLURM.

Run by scripts/slurm-test, which starts munge, slurmctld and slurmd (scripts/slurm-up),
runs this file with --slurm and stops them. Without --slurm these tests are skipped; with
it, a SLURM that does not answer is a failure.
"""

import os
import re
import shutil
import subprocess
import sys
import time

import h5py
import pytest

from conftest import REPOSITORY

pytestmark = pytest.mark.slurm
SMALL = ["--n", 30, "--m", 40, "--rank", 3]
ENV = {"DGDLOCAL_PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module", autouse=True)
def slurm_is_up():
    if shutil.which("sbatch") is None or "SLURM_CONF" not in os.environ:
        pytest.fail("no SLURM here: run these tests through scripts/slurm-test")
    state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10)
    if state.stdout.strip() not in ("idle", "mixed", "allocated"):
        pytest.fail(f"the SLURM node is not usable: sinfo says {state.stdout!r} {state.stderr!r}")


def _submit(tmp_path, script, *arguments, sbatch=(), env=None):
    command = ["sbatch", "--parsable", "--ntasks=2", "--overcommit", f"--output={tmp_path}/job-%j.out", f"--chdir={tmp_path}",
               *sbatch, os.path.join(REPOSITORY, "slurm", script), *map(str, arguments)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30,
                          env={**os.environ, **ENV, **(env or {})})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().split(";")[0]


def _job(job_id):
    """scontrol's fields of a job (kept for MinJobAge after it ends)."""
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=10).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


def _wait(job_id, states, timeout=60, restarts=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = _job(job_id)
        if job.get("JobState") in states and restarts in (None, job.get("Restarts")):
            return job
        time.sleep(0.2)
    pytest.fail(f"job {job_id} not in {states} within {timeout} s: {_job(job_id)}")


def _wait_for_line(path, prefix, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and any(line.startswith(prefix) for line in path.read_text().splitlines()):
            return
        time.sleep(0.1)
    pytest.fail(f"no line starting with {prefix!r} in {path} within {timeout} s")


def _attrs(path):
    with h5py.File(path, "r") as handle:
        return dict(handle.attrs), (dict(handle["checkpoint"].attrs) if "checkpoint" in handle else None), \
            handle["diagnostics/iteration"][-1]


def test_run_sbatch_writes_the_result(tmp_path):
    job_id = _submit(tmp_path, "run.sbatch", *SMALL, env={"DGDLOCAL_OUTPUT": "result.h5"})
    job = _wait(job_id, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"})
    log = (tmp_path / f"job-{job_id}.out").read_text()
    assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", log
    attrs, checkpoint, _ = _attrs(tmp_path / "result.h5")
    assert attrs["status"] == "converged" and attrs["mpi_size"] == 2
    assert checkpoint is not None    # run.sbatch checkpoints, so the result can be continued


def test_a_rank_killed_under_srun_is_named_and_the_job_fails(tmp_path):
    job_id = _submit(tmp_path, "run.sbatch", *SMALL, "--iterations", 10**7, "--tolerance", 0,
                     env={"DGDLOCAL_OUTPUT": "result.h5", "DGDLOCAL_TEST_FAULT": "kill:1:60"})
    job = _wait(job_id, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"})
    log = (tmp_path / f"job-{job_id}.out").read_text()
    assert job["JobState"] == "FAILED", log
    named = re.findall(r"dgdlocal: rank (\d+) \(pid \d+ on \S+\) was killed by signal (\d+) \(SIGKILL\)", log)
    assert named == [("1", "9")], log


def test_scancel_leaves_a_checkpoint_and_the_same_job_continues_it(tmp_path):
    long_run = [*SMALL, "--iterations", 10**7, "--tolerance", 0, "--log-every", 500]
    job_id = _submit(tmp_path, "run.sbatch", *long_run, env={"DGDLOCAL_OUTPUT": "result.h5"})
    _wait_for_line(tmp_path / f"job-{job_id}.out", "iter ")
    cancelled = time.monotonic()
    subprocess.run(["scancel", job_id], check=True, timeout=10)
    for _ in range(100):   # the ranks are gone when the result says interrupted
        if (tmp_path / "result.h5").exists() and _attrs(tmp_path / "result.h5")[0]["status"] == "interrupted":
            break
        time.sleep(0.1)
    seconds = time.monotonic() - cancelled
    attrs, checkpoint, _ = _attrs(tmp_path / "result.h5")
    assert attrs["status"] == "interrupted" and checkpoint["iteration"] > 0, seconds
    assert seconds < 10, f"{seconds:.1f} s from scancel to the checkpoint (KillWait is 10 s)"
    _wait(job_id, {"CANCELLED"})
    # the same submission again: run.sbatch sees the file and resumes (here with a lower cap)
    stop = checkpoint["iteration"] + 200
    job_id = _submit(tmp_path, "run.sbatch", *long_run, "--iterations", stop, env={"DGDLOCAL_OUTPUT": "result.h5"})
    job = _wait(job_id, {"COMPLETED", "FAILED", "CANCELLED"})
    log = (tmp_path / f"job-{job_id}.out").read_text()
    assert job["JobState"] == "COMPLETED", log
    assert f"resuming from iteration {checkpoint['iteration']}" in log
    attrs, _, last = _attrs(tmp_path / "result.h5")
    assert attrs["status"] == "max_iters" and last == stop


def test_time_limit_signal_checkpoints_and_requeues(tmp_path):
    """USR1 to the batch shell is what `#SBATCH --signal=B:USR1@90` sends before the time limit."""
    long_run = [*SMALL, "--iterations", 6000, "--tolerance", 0, "--log-every", 500]
    job_id = _submit(tmp_path, "run.sbatch", *long_run, env={"DGDLOCAL_OUTPUT": "result.h5"})
    log_path = tmp_path / f"job-{job_id}.out"
    _wait_for_line(log_path, "iter ")
    subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], check=True, timeout=10)
    _wait_for_line(log_path, "run.sbatch: checkpoint saved before the time limit; requeueing")
    job = _wait(job_id, {"PENDING", "RUNNING", "COMPLETED"}, restarts="1")
    if job["JobState"] == "PENDING":   # a requeued job waits ~2 min before it may start; skip that
        time.sleep(3)                  # (once the old step is cleaned up: a restart at once races with it)
        subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True, timeout=10)
    job = _wait(job_id, {"COMPLETED", "FAILED", "CANCELLED"}, timeout=90, restarts="1")
    log = log_path.read_text()
    assert job["JobState"] == "COMPLETED" and job["Restarts"] == "1", log
    assert "interrupted by SIGUSR1" in log and "continuing from its checkpoint (restart 1)" in log
    attrs, _, last = _attrs(tmp_path / "result.h5")
    assert attrs["status"] == "max_iters" and last == 6000


def test_sweep_sbatch_writes_one_result_per_array_task(tmp_path):
    job_id = _submit(tmp_path, "sweep.sbatch", *SMALL[:4], "--iterations", 300, "--quiet",
                     sbatch=["--array=0-3", "--ntasks=1"],
                     env={"DGDLOCAL_TOPOLOGIES": "ring complete", "DGDLOCAL_RANKS": "2 3"})
    for task in range(4):
        job = _wait(f"{job_id}_{task}", {"COMPLETED", "FAILED", "CANCELLED"})
        assert job["JobState"] == "COMPLETED", (tmp_path / f"job-{job.get('JobId')}.out").read_text()
    results = sorted(p.name for p in (tmp_path / "sweep").iterdir())
    assert results == ["complete-r2.h5", "complete-r3.h5", "ring-r2.h5", "ring-r3.h5"]
    for name in results:
        attrs, _, _ = _attrs(tmp_path / "sweep" / name)
        assert attrs["status"] in ("converged", "max_iters")
