"""The command line end to end under mpirun, and every bad input ending the job cleanly."""

import os

import h5py
import numpy as np
import pytest

from conftest import mpirun

SCHEMA_DATASETS = ["topology/weights", "partition/offsets", "result/U", "result/V",
                   "diagnostics/iteration", "diagnostics/elapsed", "diagnostics/objective",
                   "diagnostics/penalized_objective", "diagnostics/consensus_error", "diagnostics/gradient_norm",
                   "diagnostics/relative_error", "diagnostics/optimality_error", "diagnostics/balance"]


@pytest.mark.parametrize("J", [1, 3, 4])
def test_default_run_writes_every_dataset_of_the_schema(tmp_path, J):
    output = tmp_path / "result.h5"
    code, stdout, stderr = mpirun(J, "--output", output, "--log-every", 500, timeout=120)
    assert code == 0, stderr
    assert "status converged" in stdout and "Traceback" not in stderr
    with h5py.File(output) as handle:
        for name in SCHEMA_DATASETS:
            assert name in handle, name
        assert handle.attrs["status"] == "converged"
        assert handle.attrs["mpi_size"] == J
        assert handle.attrs["schema_version"] == 1
        lengths = {len(handle["diagnostics"][k]) for k in handle["diagnostics"]}
        assert len(lengths) == 1
        assert handle["diagnostics/relative_error"][-1] <= 1e-10
        assert handle["diagnostics/relative_consensus"][-1] <= 1e-10
        assert handle["result/V"].shape == (handle["config"].attrs["m"], handle["config"].attrs["r"])
        np.testing.assert_array_equal(handle["partition/offsets"][...][[0, -1]], [0, handle["config"].attrs["m"]])
        for name in ("compute", "wait", "diagnostics", "startup"):
            assert len(handle[f"timing/{name}"]) == J, name
        for key in ("step_size", "step_bound_thm25", "n", "m", "r", "topology", "weight_rule", "seed", "dtype"):
            assert key in handle["config"].attrs, key
        for key in ("omega", "lambda_min", "spectral_gap", "lazy_applied"):
            assert key in handle["topology"].attrs, key


def test_existing_result_is_not_overwritten_without_force(tmp_path):
    output = tmp_path / "result.h5"
    output.write_bytes(b"precious")
    code, _, stderr = mpirun(2, "--output", output, "--iterations", 5)
    assert code != 0 and "--force" in stderr and "Traceback" not in stderr
    assert output.read_bytes() == b"precious"
    code, _, stderr = mpirun(2, "--output", output, "--iterations", 5, "--force")
    assert code == 0, stderr
    assert h5py.is_hdf5(output)


def test_user_weights_with_omega_above_one_half_run_with_a_warning(tmp_path):
    weights = tmp_path / "W.txt"
    np.savetxt(weights, [[0.4, 0.6], [0.6, 0.4]])
    output = tmp_path / "r.h5"
    code, stdout, stderr = mpirun(2, "--weights", weights, "--output", output, timeout=60)
    assert code == 0, stderr
    assert "= 0.6 >= 1/2" in stdout and "--lazy" in stdout and "Thm 2.5" in stdout
    with h5py.File(output) as handle:
        assert handle["topology"].attrs["omega"] == pytest.approx(0.6)
        assert not handle["topology"].attrs["lazy_applied"]
        np.testing.assert_allclose(handle["topology/weights"][...], [[0.4, 0.6], [0.6, 0.4]])


def test_help_lists_every_option_on_rank_zero_only():
    code, stdout, stderr = mpirun(3, "run", "--help", timeout=30)
    assert code == 0
    assert stdout.count("usage: dgdlocal run") == 1
    for option in ("--data", "--rank", "--topology", "--weights", "--weight-rule", "--weight-transform",
                   "--edge-probability", "--lazy", "--init-scale", "--initial", "--step", "--iterations", "--tolerance",
                   "--log-every", "--seed", "--output", "--dtype", "--force", "--problem", "--balance", "--init", "--simulate"):
        assert option in stdout, option


def test_simulate_refuses_to_run_under_a_multi_rank_job(tmp_path):
    code, _, stderr = mpirun(2, "run", "--simulate", 4, "--output", tmp_path / "r.h5", timeout=20)
    assert code == 2 and "without mpirun" in stderr and "Traceback" not in stderr
