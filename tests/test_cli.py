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
        assert len(handle["timing/compute"]) == J
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
