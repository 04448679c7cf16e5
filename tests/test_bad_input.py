"""Bad input through the CLI under mpirun: every case ends all ranks within 10 s, with exit code ≠ 0,
one clear message, no Python traceback, and no result file left behind."""

import os
import re
import shutil
import subprocess

import h5py
import numpy as np
import pytest

from conftest import mpirun

LIMIT = 10  # seconds; a hang fails the test


def _ring_weights(J):
    W = np.zeros((J, J))
    for j in range(J):
        for i in ((j - 1) % J, (j + 1) % J):
            W[j, i] = 1 / 3
        W[j, j] = 1 - W[j].sum() + W[j, j]
    return W


def _write(tmp_path, name, array):
    path = tmp_path / name
    np.save(path, array) if name.endswith(".npy") else np.savetxt(path, array)
    return path


def _low_rank(n=12, m=10, r=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, r)) @ rng.standard_normal((r, m))


def case_asymmetric(tmp_path):
    W = _ring_weights(3)
    W[0, 1], W[0, 2] = 0.5, 1 / 6
    return 3, ["--weights", _write(tmp_path, "W.txt", W)], "asymmetric|symmetric"


def case_disconnected(tmp_path):
    W = np.eye(4) * 0.5
    W[0, 1] = W[1, 0] = W[2, 3] = W[3, 2] = 0.5
    return 4, ["--weights", _write(tmp_path, "W.npy", W)], "connected"


def case_weights_wrong_size(tmp_path):
    return 2, ["--weights", _write(tmp_path, "W.txt", _ring_weights(3))], "3×3 but the job has J=2"


def case_rows_not_summing_to_one(tmp_path):
    W = _ring_weights(3) * 0.9
    return 3, ["--weights", _write(tmp_path, "W.txt", W)], "sum"


def case_negative_weights(tmp_path):
    W = np.array([[1.2, -0.2], [-0.2, 1.2]])
    return 2, ["--weights", _write(tmp_path, "W.txt", W)], "negative"


def case_rank_too_large(tmp_path):
    return 2, ["--n", 8, "--m", 20, "--rank", 9], "at most min\\(n, m\\) = 8"


def case_more_ranks_than_columns(tmp_path):
    return 4, ["--n", 8, "--m", 3, "--rank", 1], "more ranks than the matrix has columns"


def case_missing_file(tmp_path):
    return 2, ["--data", tmp_path / "nothing.h5"], "does not exist"


def case_missing_dataset(tmp_path):
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as handle:
        handle["X"] = _low_rank()
    return 2, ["--data", f"{path}:Y", "--rank", 2], "no dataset 'Y'.*X"


def case_nonfinite_on_one_rank(tmp_path):
    Y = _low_rank()
    Y[3, 9] = np.nan   # column 9 belongs to the last rank only
    return 3, ["--data", _write(tmp_path, "Y.npy", Y), "--rank", 2], "non-finite.*column 9.*on rank 2"


def case_step_not_positive(tmp_path):
    return 2, ["--step", "-1"], "'step' parameter must be > 0"


def case_step_not_numeric(tmp_path):
    return 2, ["--step", "fast"], "'step' parameter must be a number or auto"


def case_negative_iterations(tmp_path):
    return 2, ["--iterations", "-3"], "'iterations' parameter must be >= 0"


def case_unknown_topology(tmp_path):
    return 2, ["--topology", "moebius"], "invalid choice: 'moebius'"


def case_hypercube_not_power_of_two(tmp_path):
    return 3, ["--topology", "hypercube"], "power-of-two"


def case_not_hdf5(tmp_path):
    path = tmp_path / "data.h5"
    path.write_text("just text\n")
    return 2, ["--data", path], "not an HDF5 file"


def case_one_dimensional(tmp_path):
    return 2, ["--data", _write(tmp_path, "Y.npy", np.ones(10))], "must be 2-D"


def case_three_dimensional(tmp_path):
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as handle:
        handle["Y"] = np.ones((3, 4, 5))
    return 2, ["--data", path], "must be 2-D"


def case_integer_npy(tmp_path):
    return 2, ["--data", _write(tmp_path, "Y.npy", np.arange(20).reshape(4, 5))], "floating-point"


def case_object_npy(tmp_path):
    path = tmp_path / "Y.npy"
    np.save(path, np.array([[1, "a"], [2, None]], dtype=object), allow_pickle=True)
    return 2, ["--data", path], "Python objects"


def case_output_folder_missing(tmp_path):
    return 2, ["--output", tmp_path / "no" / "such" / "folder" / "r.h5"], "output folder .* does not exist"


def case_grid_cannot_be_formed(tmp_path):
    return 5, ["--topology", "grid"], "2-D grid cannot be formed from J=5 ranks"


def case_torus_cannot_be_formed(tmp_path):
    return 3, ["--topology", "torus"], "2-D torus cannot be formed from J=3 ranks"


def case_u_step_scale_below_one(tmp_path):
    return 2, ["--u-step-scale", 0.5], "u-step-scale.*at least 1|u-step-scale.*>= 1|u-step-scale.*must be"


def case_atc_with_scaled_preconditioner(tmp_path):
    return 2, ["--method", "atc", "--preconditioner", "scaled"], "--method atc .* does not combine with --preconditioner"


def case_atc_overlap_with_scaled_preconditioner(tmp_path):
    return 2, ["--method", "atc-overlap", "--preconditioner", "scaled"], \
        "--method atc-overlap .* does not combine with --preconditioner"


def case_unknown_weight_transform(tmp_path):
    return 2, ["--weight-transform", "halfway"], "weight-transform.*invalid choice"


def case_u_step_scale_with_extra(tmp_path):
    return 2, ["--u-step-scale", 2, "--method", "extra"], "--u-step-scale 2 is for plain DGD\\+LOCAL steps"


def case_u_step_scale_without_local_factor(tmp_path):
    return 2, ["--u-step-scale", 2, "--problem", "least-squares"], "needs a local factor V_j"


def case_extra_with_scaled_preconditioner(tmp_path):
    return 2, ["--method", "extra", "--preconditioner", "scaled"], "--method extra .* does not combine with"


def case_output_folder_is_a_file(tmp_path):
    (tmp_path / "notes.txt").write_text("a regular file\n")
    return 2, ["--output", tmp_path / "notes.txt" / "r.h5"], "is a file, not a folder"


def case_output_folder_read_only(tmp_path):
    """Really read-only, also for root (for whom os.access always says yes): an immutable folder."""
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", folder]).returncode != 0:
            pytest.skip("chattr +i is not available here, and root can write anywhere else")
        _UNLOCK.append(lambda: subprocess.run(["chattr", "-i", folder], check=True))
    else:
        folder.chmod(0o500)
    return 2, ["--output", folder / "r.h5"], "output folder .*locked' is not writable"


_UNLOCK = []
CASES = {name[5:]: case for name, case in globals().items() if name.startswith("case_")}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_ends_the_job_cleanly(tmp_path, name):
    try:
        _check_case(tmp_path, name)
    finally:
        while _UNLOCK:
            _UNLOCK.pop()()


def _check_case(tmp_path, name):
    J, arguments, message = CASES[name](tmp_path)
    output = tmp_path / "result.h5"
    if "--output" not in arguments:
        arguments = [*arguments, "--output", output]
    code, stdout, stderr = mpirun(J, *arguments, "--iterations", 50, timeout=LIMIT) \
        if "--iterations" not in arguments else mpirun(J, *arguments, timeout=LIMIT)
    assert code != 0
    assert "Traceback" not in stderr + stdout
    assert re.search(message, stderr), stderr
    assert stderr.count("dgdlocal: error") == 1, f"expected one message, got:\n{stderr}"
    assert not output.exists()


def test_bipartite_weights_without_self_weight_are_refused(tmp_path):
    path = _write(tmp_path, "W.npy", np.array([[0.0, 1.0], [1.0, 0.0]]))
    code, _, stderr = mpirun(2, "--weights", path, "--output", tmp_path / "r.h5", timeout=LIMIT)
    assert code == 2 and "--lazy" in stderr and "Traceback" not in stderr
    code, stdout, stderr = mpirun(2, "--weights", path, "--lazy", "--output", tmp_path / "r.h5", timeout=30)
    assert code == 0, stderr
    assert "status converged" in stdout
