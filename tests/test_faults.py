"""Faults end to end under mpirun: checkpoint/restart bit for bit, signals, crashes and kills.

The test-only hook DGDLOCAL_TEST_FAULT="KIND:RANK:ITER" (runner._test_fault) makes one rank
raise an exception ("raise"), SIGKILL itself ("kill") or SIGTERM itself ("signal") at a chosen
iteration; the signal tests below also send real signals to mpirun.
"""

import os
import re
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from conftest import finish, launch, mpirun

LIMIT = 10  # seconds from a fault or a signal to the end of the whole job
SMALL = ["--n", 30, "--m", 40, "--rank", 3, "--tolerance", 0, "--log-every", 50, "--quiet"]


def _read(path):
    with h5py.File(path, "r") as handle:
        out = {"status": handle.attrs["status"],
               "diagnostics": {k: v[...] for k, v in handle["diagnostics"].items()},
               "U": handle["result/U"][...], "V": handle["result/V"][...]}
        if "checkpoint" in handle:
            out["checkpoint"] = dict(handle["checkpoint"].attrs)
            out["checkpoint_U"], out["checkpoint_V"] = handle["checkpoint/U"][...], handle["checkpoint/V"][...]
            if "checkpoint/D" in handle:
                out["checkpoint_D"] = handle["checkpoint/D"][...]
    return out


def _assert_identical(a, b):
    """Same final U, V and diagnostics, bit for bit, except the wall-clock `elapsed`."""
    assert a["status"] == b["status"]
    np.testing.assert_array_equal(a["U"], b["U"])
    np.testing.assert_array_equal(a["V"], b["V"])
    assert sorted(a["diagnostics"]) == sorted(b["diagnostics"])
    for name in a["diagnostics"]:
        if name != "elapsed":
            np.testing.assert_array_equal(a["diagnostics"][name], b["diagnostics"][name], err_msg=name)


def _start(J, *args, env=None):
    """mpirun in its own session (so a hang can be killed as a group), output captured."""
    command = ["mpirun", "-n", str(J), sys.executable, "-m", "dgdlocal", *map(str, args)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("how, at, checkpoint_every", [
    ("raise", 97, 40),    # crash at 97: resume from the periodic checkpoint at 80 (status running)
    ("kill", 131, 40),    # kill -9 of a rank at 131: resume from 120
    ("signal", 136, 0),   # SIGTERM on rank 1 at 136: every rank stops at 137, status interrupted
])
def test_resumed_run_equals_the_uninterrupted_run_bit_for_bit(tmp_path, how, at, checkpoint_every):
    J, iterations = 3, 300
    # the gauges are applied at every 20th iterate (threshold 1, gain 1), so checkpoints at 80 and 120 fall right
    # after a rebalancing and an alignment; --u-step-scale auto is a function of the iterate, so it resumes too
    arguments = [*SMALL, "--iterations", iterations, "--checkpoint-every", checkpoint_every,
                 "--rebalance-every", 20, "--rebalance-threshold", 1, "--align-gain", 1, "--u-step-scale", "auto"]
    code, _, stderr = mpirun(J, *arguments, "--output", tmp_path / "whole.h5", timeout=60)
    assert code == 0, stderr
    part = tmp_path / "part.h5"
    code, _, stderr = mpirun(J, *arguments, "--output", part, timeout=LIMIT,
                             env={"DGDLOCAL_TEST_FAULT": f"{how}:1:{at}"})
    stored = _read(part)
    if how == "signal":   # a SIGTERM seen by rank 1 alone at `at`: every rank stops at the next iterate
        assert code == 4, stderr
        assert stored["status"] == "interrupted" and stored["checkpoint"]["iteration"] == at + 1
    else:
        assert code != 0
        assert stored["status"] == "running"
        assert stored["checkpoint"]["iteration"] == at // checkpoint_every * checkpoint_every
    assert stored["checkpoint"]["iteration"] % 50 != 0, "the test wants a non-diagnostic iteration"
    code, stdout, stderr = mpirun(J, "--resume", part, "--quiet", timeout=60)
    assert code == 0, stderr
    _assert_identical(_read(tmp_path / "whole.h5"), _read(part))



def test_extra_resumed_run_equals_the_uninterrupted_run_bit_for_bit(tmp_path):
    """--method extra: EXTRA's correction D_j (every rank's, J×n×r) is in /checkpoint/D and restored; without it
    the resumed run would restart the recursion and differ."""
    J = 3
    # noisy data (D_j ≠ 0 at the optimum); the gauge, which moves D_j too, is applied at every 20th iterate
    arguments = [*SMALL, "--noise", 0.3, "--method", "extra", "--iterations", 300, "--checkpoint-every", 40,
                 "--rebalance-every", 20, "--rebalance-threshold", 1]
    code, _, stderr = mpirun(J, *arguments, "--output", tmp_path / "whole.h5", timeout=60)
    assert code == 0, stderr
    part = tmp_path / "part.h5"
    code, _, stderr = mpirun(J, *arguments, "--output", part, timeout=LIMIT, env={"DGDLOCAL_TEST_FAULT": "raise:1:97"})
    assert code != 0
    stored = _read(part)
    assert stored["status"] == "running" and stored["checkpoint"]["iteration"] == 80
    assert stored["checkpoint_D"].shape == (J, 30, 3) and np.all(np.any(stored["checkpoint_D"], axis=(1, 2)))
    with h5py.File(part, "r") as handle:
        assert handle["config"].attrs["method"] == "extra"
    zeroed = tmp_path / "zeroed.h5"
    zeroed.write_bytes(part.read_bytes())
    with h5py.File(zeroed, "r+") as handle:
        handle["checkpoint/D"][...] = 0.0
    for path in (part, zeroed):
        code, _, stderr = mpirun(J, "--resume", path, "--quiet", timeout=60)
        assert code == 0, stderr
    _assert_identical(_read(tmp_path / "whole.h5"), _read(part))
    assert not np.array_equal(_read(tmp_path / "whole.h5")["U"], _read(zeroed)["U"])


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT", "SIGUSR1"])
def test_signal_to_mpirun_checkpoints_and_exits_4_within_10_s(tmp_path, name):
    output = tmp_path / "result.h5"
    process = _start(3, "--n", 30, "--m", 40, "--rank", 3, "--iterations", 10**7, "--tolerance", 0,
                     "--log-every", 200, "--output", output)
    for line in process.stdout:   # running: the first progress line is out
        if line.startswith("iter"):
            break
    time.sleep(0.5)
    sent = time.monotonic()
    process.send_signal(getattr(signal, name))
    code, stdout, stderr = finish(process, timeout=30)
    seconds = time.monotonic() - sent
    assert code == 4, f"exit {code}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    assert seconds <= LIMIT, f"{seconds:.1f} s from {name} to the end of the job"
    assert "Traceback" not in stderr
    assert f"interrupted by {name}" in stdout and "--resume" in stdout
    stored = _read(output)
    stopped = stored["checkpoint"]["iteration"]
    assert stored["status"] == "interrupted" and stopped > 0
    code, stdout, stderr = mpirun(3, "--resume", output, "--iterations", stopped + 120, "--quiet", timeout=60)
    assert code == 0, stderr
    resumed = _read(output)
    assert resumed["status"] == "max_iters" and resumed["diagnostics"]["iteration"][-1] == stopped + 120


def _header(stdout):
    """({rank: solver pid}, {rank: supervisor pid}) from the line `dgdlocal: rank host:pid 0=h:p ...`."""
    line = re.search(r"dgdlocal: rank host:pid (.*)", stdout).group(1)
    places, _, parents = line.partition("; supervisor pids ")
    return dict(re.findall(r"(\d+)=[^:\s]+:(\d+)", places)), dict(re.findall(r"(\d+)=(\d+)", parents))


def _gone(pid):
    """True once no process `pid` runs (a zombie counts as gone: PID 1 here does not reap orphans)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("how", ["raise", "kill"])
def test_one_failing_rank_ends_the_job_within_10_s_naming_rank_and_cause(tmp_path, how):
    started = time.monotonic()
    code, stdout, stderr = mpirun(3, "--n", 30, "--m", 40, "--rank", 3, "--iterations", 10**6, "--tolerance", 0,
                                  "--output", tmp_path / "r.h5", timeout=LIMIT + 5,
                                  env={"DGDLOCAL_TEST_FAULT": f"{how}:1:60"})
    assert time.monotonic() - started <= LIMIT
    assert code != 0
    if how == "raise":
        assert "internal error on rank 1" in stderr and "RuntimeError: test fault" in stderr
    else:   # the supervisor of rank 1 names it, with the pid the header shows for it, and the signal
        solvers, supervisors = _header(stdout)
        assert len(solvers) == len(supervisors) == 3, stdout
        named = re.findall(r"dgdlocal: rank (\d+) \(pid (\d+) on [^)]+\) was killed by signal (\d+) \((\w+)\)", stderr)
        assert named == [("1", solvers["1"], "9", "SIGKILL")], stderr
        assert "out-of-memory" in stderr and "Traceback" not in stderr


def _start_and_read_header(J, tmp_path):
    """A long run; returns the process once the header line with the pids is out, and the pids."""
    process = _start(J, "--n", 30, "--m", 40, "--rank", 3, "--iterations", 10**8, "--tolerance", 0,
                     "--log-every", 1000, "--output", tmp_path / "r.h5")
    for line in process.stdout:
        if "host:pid" in line:
            return process, *_header(line)
    pytest.fail(f"no header line; stderr:\n{process.stderr.read()}")


def test_kill_9_of_a_supervisor_ends_the_job_within_10_s_naming_the_rank_and_leaving_no_solver(tmp_path):
    process, solvers, supervisors = _start_and_read_header(3, tmp_path)
    time.sleep(0.3)
    sent = time.monotonic()
    os.kill(int(supervisors["1"]), signal.SIGKILL)
    code, stdout, stderr = finish(process, timeout=30)
    seconds = time.monotonic() - sent
    assert code != 0 and seconds <= LIMIT, f"exit {code} after {seconds:.1f} s"
    named = re.findall(r"dgdlocal: rank (\d+): its supervisor process \(pid (\d+) on [^,]+, the pid MPI reports "
                       r"for this rank\) died .*; its solver \(pid (\d+)\) ends too", stderr)
    assert named == [("1", supervisors["1"], solvers["1"])], stderr
    assert "Traceback" not in stderr
    deadline = time.monotonic() + 2
    while not all(_gone(pid) for pid in solvers.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in solvers.values() if not _gone(pid)] == []


def test_sigterm_to_one_supervisor_reaches_its_rank_and_the_job_exits_4(tmp_path):
    process, solvers, supervisors = _start_and_read_header(3, tmp_path)
    time.sleep(0.3)
    os.kill(int(supervisors["2"]), signal.SIGTERM)
    code, stdout, stderr = finish(process, timeout=30)
    assert code == 4, stderr
    assert "interrupted by a signal to another rank" in stdout and "Traceback" not in stderr


def test_the_supervisor_names_rank_pid_and_signal_and_dies_by_the_same_signal(tmp_path):
    """supervisor.supervise alone, without MPI: a child that SIGKILLs itself, one that exits 3."""
    script = ("import sys; from dgdlocal.supervisor import supervise; "
              "sys.exit(supervise([sys.executable, '-c', sys.argv[1]]))")
    env = {"PMI_RANK": "5", "DGDLOCAL_SUPERVISED": ""}
    code, _, stderr = launch([sys.executable, "-c", script, "import os; os.kill(os.getpid(), 9)"], env=env)
    assert code == -signal.SIGKILL
    assert re.fullmatch(r"dgdlocal: rank 5 \(pid \d+ on \S+\) was killed by signal 9 \(SIGKILL\) at [^;]+; "
                        r"the job cannot go on without it\. Common cause: .*out-of-memory.*\.\n", stderr), stderr
    code, _, stderr = launch([sys.executable, "-c", script, "import sys; sys.exit(3)"], env=env)
    assert code == 3 and stderr == ""


def test_a_supervised_solver_names_its_rank_and_dies_when_the_supervisor_is_killed(tmp_path):
    """supervisor.watch_supervisor without MPI: the solver waits in a blocking C call (as in MPI_Waitall,
    GIL released); kill -9 of the supervisor makes it print one line naming rank and pids, then die."""
    ready = tmp_path / "ready"
    solver = ("import sys, time; from dgdlocal.supervisor import watch_supervisor; watch_supervisor(); "
              f"open({str(ready)!r}, 'w').close(); time.sleep(60); sys.exit(7)")
    script = ("import sys; from dgdlocal.supervisor import supervise; "
              "sys.exit(supervise([sys.executable, '-c', sys.argv[1]]))")
    process = subprocess.Popen([sys.executable, "-c", script, solver], stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PMI_RANK": "4", "DGDLOCAL_SUPERVISED": ""})
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists(), "the solver did not start"
    children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) == 1, children
    sent = time.monotonic()
    process.kill()
    process.wait()
    while not _gone(int(children[0])) and time.monotonic() < sent + 5:
        time.sleep(0.01)
    assert _gone(int(children[0])), "the solver outlived its supervisor"
    assert time.monotonic() - sent < 2
    stderr = process.stderr.read()
    assert re.fullmatch(rf"dgdlocal: rank 4: its supervisor process \(pid {process.pid} on \S+, the pid MPI reports "
                        rf"for this rank\) died at [^,]+, killed by a signal \(.*out-of-memory.*\); its solver "
                        rf"\(pid {children[0]}\) ends too, and the job cannot go on without it\.\n", stderr), stderr


def _checkpointed_run(tmp_path, J=2, *extra):
    path = tmp_path / "previous.h5"
    code, _, stderr = mpirun(J, *SMALL, "--iterations", 20, "--checkpoint-every", 10, "--output", path, *extra,
                             timeout=60)
    assert code == 0, stderr
    return path


@pytest.mark.parametrize("J, options, message", [
    (3, [], r"written by a run on J=2 ranks; this job has J=3"),
    (2, ["--rank", 2], r"another configuration \(rank=3 there, 2 here\)"),
    (2, ["--seed", 5, "--topology", "complete"], r"seed=0 there, 5 here; topology='ring' there, 'complete' here"),
])
def test_resume_from_another_configuration_is_refused(tmp_path, J, options, message):
    previous = _checkpointed_run(tmp_path)
    before = previous.read_bytes()
    code, stdout, stderr = mpirun(J, "--resume", previous, *options, timeout=LIMIT)
    assert code == 2 and "Traceback" not in stderr
    assert re.search(message, stderr), stderr
    assert stderr.count("dgdlocal: error") == 1
    assert previous.read_bytes() == before


def test_resume_on_other_data_is_refused(tmp_path):
    rng = np.random.default_rng(1)
    data = tmp_path / "Y.npy"
    np.save(data, rng.standard_normal((12, 3)) @ rng.standard_normal((3, 16)))
    previous = tmp_path / "previous.h5"
    code, _, stderr = mpirun(2, "--data", data, "--rank", 3, "--iterations", 20, "--checkpoint-every", 10,
                             "--output", previous, "--quiet", timeout=60)
    assert code == 0, stderr
    Y = np.load(data)
    Y[0, 15] += 1e-9   # one entry, on the last rank only
    np.save(data, Y)
    code, _, stderr = mpirun(2, "--resume", previous, timeout=LIMIT)
    assert code == 2 and "Traceback" not in stderr
    assert "data of this run differ" in stderr and stderr.count("dgdlocal: error") == 1


def test_resume_into_another_file_keeps_the_checkpoint_file(tmp_path):
    previous = _checkpointed_run(tmp_path)
    before = previous.read_bytes()
    code, _, stderr = mpirun(2, "--resume", previous, "--iterations", 40, "--output", tmp_path / "more.h5",
                             "--quiet", timeout=60)
    assert code == 0, stderr
    assert previous.read_bytes() == before
    assert _read(tmp_path / "more.h5")["diagnostics"]["iteration"][-1] == 40
    code, _, stderr = mpirun(2, "--resume", previous, "--output", tmp_path / "more.h5", timeout=LIMIT)
    assert code == 2 and "--force" in stderr


def test_resume_needs_a_checkpoint(tmp_path):
    plain = tmp_path / "plain.h5"
    code, _, stderr = mpirun(2, *SMALL, "--iterations", 5, "--output", plain, timeout=60)
    assert code == 0, stderr
    code, _, stderr = mpirun(2, "--resume", plain, timeout=LIMIT)
    assert code == 2 and "holds no checkpoint" in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("method, topology", [("dgd-local", "ring"), ("atc", "ring"), ("atc-overlap", "ring"),
                                              ("atc-overlap", "star")])
def test_simulated_run_checkpoints_and_resumes_bit_for_bit(tmp_path, method, topology):
    """atc-overlap: the lagged steps D_j are in the checkpoint (/checkpoint/D), or the resumed run would differ. On
    the 3-rank star s is capped below J, so V_j takes its own step t·µ (measured: t > 1 at every iteration after
    the checkpoint at 60, up to 2), a function of the iterate and the restored s."""
    simulate = [sys.executable, "-m", "dgdlocal", "run", "--simulate", "3", *map(str, SMALL),
                "--iterations", "200", "--checkpoint-every", "30", "--method", method, "--topology", topology]
    code, _, stderr = launch([*simulate, "--output", str(tmp_path / "whole.h5")])
    assert code == 0, stderr
    code, _, stderr = launch([*simulate, "--output", str(tmp_path / "part.h5")],
                             env={"DGDLOCAL_TEST_FAULT": "raise:2:77"})
    assert code != 0 and "test fault" in stderr
    assert _read(tmp_path / "part.h5")["checkpoint"]["iteration"] == 60
    code, _, stderr = launch([sys.executable, "-m", "dgdlocal", "--resume", str(tmp_path / "part.h5"), "--simulate", "3"])
    assert code == 0, stderr
    _assert_identical(_read(tmp_path / "whole.h5"), _read(tmp_path / "part.h5"))


def test_a_resumed_run_keeps_the_step_gain_of_its_checkpoint(tmp_path):
    """The gain a of --step auto (atc orders) is stored with the step; a checkpoint written before it existed has
    none and resumes with a = 1, i.e. the step and --u-step-scale margin it started with. Likewise the cap on V_j's
    step gain under --u-step-scale auto (3; 1 = V_j keeps µ, as before it existed)."""
    part = tmp_path / "part.h5"
    code, _, stderr = launch([sys.executable, "-m", "dgdlocal", "run", "--simulate", "3", *map(str, SMALL),
                              "--iterations", "60", "--checkpoint-every", "30", "--output", str(part)])
    assert code == 0, stderr
    with h5py.File(part, "r") as handle:
        assert handle["checkpoint"].attrs["step_gain"] == handle["config"].attrs["step_gain"] == 2.0   # gap 1
        assert handle["checkpoint"].attrs["local_step_gain"] == handle["config"].attrs["local_step_gain"] == 3.0
    code, _, stderr = launch([sys.executable, "-m", "dgdlocal", "--resume", str(part), "--simulate", "3",
                              "--iterations", "90", "--force"])
    assert code == 0, stderr
    with h5py.File(part, "a") as handle:
        assert handle["config"].attrs["step_gain"] == 2.0
        del handle["checkpoint"].attrs["step_gain"]   # as written before the gain
        del handle["checkpoint"].attrs["local_step_gain"]
    code, _, stderr = launch([sys.executable, "-m", "dgdlocal", "--resume", str(part), "--simulate", "3",
                              "--iterations", "120", "--force"])
    assert code == 0, stderr
    with h5py.File(part, "r") as handle:
        assert handle["config"].attrs["step_gain"] == handle["checkpoint"].attrs["step_gain"] == 1.0
        assert handle["config"].attrs["local_step_gain"] == handle["checkpoint"].attrs["local_step_gain"] == 1.0
        assert handle.attrs["status"] == "max_iters" and handle["checkpoint"].attrs["iteration"] == 120


@pytest.mark.parametrize("method", ["dgd-local", "extra", "atc-overlap"])
def test_a_finished_run_continued_with_more_iterations_equals_the_longer_run(tmp_path, method):
    """A run that stopped at its cap (status max_iters) resumed with a larger --iterations repeats the run made with
    that cap from the start, bit for bit: the final checkpoint holds the state of the last iterate (for extra and
    atc-overlap, D_j of that iterate, not of the step computed for the diagnostics there)."""
    simulate = [sys.executable, "-m", "dgdlocal", "run", "--simulate", "3", *map(str, SMALL), "--noise", "0.3",
                "--method", method, "--checkpoint-every", "1000"]   # no periodic checkpoint: only the final one
    code, _, stderr = launch([*simulate, "--iterations", "200", "--output", str(tmp_path / "long.h5")])
    assert code == 0, stderr
    code, _, stderr = launch([*simulate, "--iterations", "120", "--output", str(tmp_path / "short.h5")])
    assert code == 0, stderr
    assert _read(tmp_path / "short.h5")["status"] == "max_iters"
    code, _, stderr = launch([sys.executable, "-m", "dgdlocal", "--resume", str(tmp_path / "short.h5"), "--simulate",
                              "3", "--iterations", "200", "--force"])
    assert code == 0, stderr
    _assert_identical(_read(tmp_path / "long.h5"), _read(tmp_path / "short.h5"))


def test_kill_9_of_every_process_at_random_moments_never_leaves_a_truncated_result(tmp_path):
    """Checkpoints every iteration of a problem whose file takes a while to write; SIGKILL to the whole
    job at random moments: the result file is either absent or a complete, readable checkpoint."""
    import random

    output = tmp_path / "r.h5"
    rng = random.Random(7)
    outcomes = set()
    for attempt in range(6):
        if output.exists():
            output.unlink()
        process = _start(2, "--n", 400, "--m", 3000, "--rank", 20, "--iterations", 100000, "--tolerance", 0,
                         "--checkpoint-every", 1, "--quiet", "--output", output)
        time.sleep(rng.uniform(1.5, 4.0))
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=30)
        if not output.exists():
            outcomes.add("absent")
            continue
        with h5py.File(output, "r") as handle:   # must open: never truncated
            assert handle.attrs["status"] == "running"
            iteration = int(handle["checkpoint"].attrs["iteration"])
            assert handle["checkpoint/U"].shape == (2, 400, 20)
            assert np.isfinite(handle["checkpoint/U"][...]).all()
            assert len(handle["diagnostics/iteration"]) >= 1
        outcomes.add("complete")
        assert iteration >= 1
    assert "complete" in outcomes   # the kills did land while checkpoints were being written
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".dgdlocal-tmp")]
    assert len(leftovers) <= 1   # at most the temporary of the write that was killed; removed at the next start
