"""The papers' problem family on the shared engine: gradients, convergence claims in numbers, the DGD floor."""

import numpy as np
import pytest

from dgdlocal import builders, problems, runner, solver
from dgdlocal.data import SyntheticSpec
from dgdlocal.simulate import SimulatedReducer


def _check_gradient(value_and_gradients, U, V, seed=0):
    """Central differences along random directions against ⟨∇f, d⟩."""
    _, grad_U, grad_V = value_and_gradients(U, V)
    rng = np.random.default_rng(seed)
    for _ in range(3):
        dU = rng.standard_normal(U.shape)
        dV = None if V is None else rng.standard_normal(V.shape)
        h = 1e-6
        shift = (lambda s: (U + s * dU, None if V is None else V + s * dV))
        plus, minus = value_and_gradients(*shift(h))[0], value_and_gradients(*shift(-h))[0]
        analytic = np.vdot(grad_U, dU) + (0.0 if V is None else np.vdot(grad_V, dV))
        assert abs((plus - minus) / (2 * h) - analytic) <= 1e-6 * max(1.0, abs(analytic))


def _config(problem, **overrides):
    settings = dict(problem=problem, n=12, m=10, rank=2, seed=3, quiet=True)
    settings.update(overrides)
    return runner.RunConfig(**settings)


@pytest.mark.parametrize("problem", builders.PROBLEMS)
def test_gradients_match_finite_differences(problem):
    config = _config(problem, noise=0.05)
    local = builders.build(config, 1, 3, 7 if problem != "symmetric-sensing" else 40, 12, 10 if problem != "symmetric-sensing" else 12, 3, np.float64)
    rng = np.random.default_rng(1)
    r = 1 if problem == "least-squares" else 2
    U = rng.standard_normal((12, r))
    V = rng.standard_normal((4, r)) if local.has_local else None
    _check_gradient(local.value_and_gradients, U, V)


def test_balance_gradient_matches_finite_differences():
    rng = np.random.default_rng(2)
    J, r = 3, 2
    U = [rng.standard_normal((5, r)) for _ in range(J)]
    V = [rng.standard_normal((m_j, r)) for m_j in (2, 3, 4)]
    balance = solver.Balance(0.7, J)

    def total(Us, Vs):
        return balance.terms(Us, Vs, solver.gram_totals(Us, Vs, SimulatedReducer()))[0]

    _, grads_U, grads_V = balance.terms(U, V, solver.gram_totals(U, V, SimulatedReducer()))
    dU = [rng.standard_normal(x.shape) for x in U]
    dV = [rng.standard_normal(x.shape) for x in V]
    h = 1e-6
    plus = total([a + h * b for a, b in zip(U, dU)], [a + h * b for a, b in zip(V, dV)])
    minus = total([a - h * b for a, b in zip(U, dU)], [a - h * b for a, b in zip(V, dV)])
    analytic = sum(np.vdot(a, b) for a, b in zip(grads_U + grads_V, dU + dV))
    assert abs((plus - minus) / (2 * h) - analytic) <= 1e-7 * abs(analytic)
    # at consensus the regularizer equals the centralized (µ/4)‖UᵀU − VᵀV‖²
    same = [U[0]] * J
    VtV = sum(v.T @ v for v in V)
    assert total(same, V) == pytest.approx(0.7 / 4 * np.sum((U[0].T @ U[0] - VtV) ** 2), rel=1e-12)


def test_completion_keeps_only_observed_entries_and_no_dense_mask():
    spec = SyntheticSpec(n=50, m=40, r=2, seed=1)
    rows, cols, values = builders.sample_entries(spec, 0.3, 10, 25)
    assert 0.25 < len(rows) / (50 * 15) < 0.35
    assert cols.min() >= 10 and cols.max() < 25
    X = spec.truth_U() @ spec.truth_V(0, 40).T
    np.testing.assert_allclose(values, X[rows, cols], rtol=1e-12, atol=1e-14)
    # the sample does not depend on how columns are split
    a = builders.sample_entries(spec, 0.3, 10, 18)
    b = builders.sample_entries(spec, 0.3, 18, 25)
    np.testing.assert_array_equal(np.concatenate([a[1], b[1]]), cols)


def _simulate(J, config):
    context = runner.simulated_context(J)
    prepared = runner.prepare(config, context)
    return prepared, runner.solve(prepared, config, context)


def _relative_consensus_squared(outcome):
    consensus = sum(np.sum((U - outcome.mean_U) ** 2) for U in outcome.U)
    return consensus / sum(np.sum(U ** 2) for U in outcome.U)


def test_completion_reaches_exact_recovery_and_consensus():
    config = runner.RunConfig(problem="completion", n=40, m=60, rank=3, sampling_rate=0.5, seed=5,
                              iterations=20000, tolerance=1e-11, log_every=100, quiet=True)
    _, outcome = _simulate(4, config)
    assert outcome.diagnostics["relative_error"][-1] <= 1e-10
    assert outcome.diagnostics["optimality_error"][-1] <= 1e-9   # all entries, not just the observed ones
    assert _relative_consensus_squared(outcome) <= 1e-16


def test_sensing_with_three_max_n_m_r_measurements_reaches_exact_recovery_and_consensus():
    config = runner.RunConfig(problem="sensing", n=20, m=15, rank=2, seed=5, iterations=20000, tolerance=1e-11,
                              log_every=100, quiet=True)
    prepared, outcome = _simulate(3, config)
    assert sum(p.A.shape[0] for p in prepared.problems) == 3 * 20 * 2
    assert outcome.diagnostics["relative_error"][-1] <= 1e-10
    assert outcome.diagnostics["optimality_error"][-1] <= 1e-9
    assert _relative_consensus_squared(outcome) <= 1e-16


def test_symmetric_sensing_centralized_and_distributed():
    for J in (1, 3):
        config = runner.RunConfig(problem="symmetric-sensing", n=15, rank=2, seed=2, iterations=20000,
                                  tolerance=1e-11, log_every=100, quiet=True)
        _, outcome = _simulate(J, config)
        assert outcome.diagnostics["optimality_error"][-1] <= 1e-9, J


def test_classical_dgd_stalls_at_a_consensus_floor_that_shrinks_with_the_step():
    """Fig. 1 (right) of the DGD+LOCAL paper: DGD on least squares does not reach consensus at a fixed step."""
    base = dict(problem="least-squares", n=10, m=60, seed=1, iterations=30000, tolerance=1e-13, log_every=100,
                quiet=True)
    prepared, default = _simulate(5, runner.RunConfig(**base))
    floor_default = _relative_consensus_squared(default)
    _, smaller = _simulate(5, runner.RunConfig(**base, step=prepared.step_size / 10))
    floor_smaller = _relative_consensus_squared(smaller)
    assert default.diagnostics["gradient_norm"][-1] < 1e-10 * default.diagnostics["gradient_norm"][0]  # stationary
    assert floor_default > 1e-8
    assert floor_smaller < floor_default / 10
    # while DGD+LOCAL on factorization reaches exact consensus (see test_mpi / test_engine)


def test_balance_regularizer_run_reaches_the_optimum():
    config = runner.RunConfig(problem="sensing", n=20, m=15, rank=2, seed=5, balance=1e-2, iterations=20000,
                              tolerance=1e-11, log_every=100, quiet=True)
    _, outcome = _simulate(3, config)
    assert outcome.diagnostics["optimality_error"][-1] <= 1e-6
    assert outcome.diagnostics["balance"][-1] <= 1e-6


def test_spectral_initialization_starts_near_the_truth():
    """With many measurements the back-projection Σ_j A_jᵀ y_j ≈ X⋆, so its top-r SVD starts close."""
    common = dict(problem="sensing", n=20, m=15, rank=2, seed=5, measurements=6000, iterations=0, quiet=True)
    _, spectral = _simulate(3, runner.RunConfig(init="spectral", **common))
    _, random = _simulate(3, runner.RunConfig(**common))
    assert random.diagnostics["optimality_error"][0] > 0.99
    assert spectral.diagnostics["optimality_error"][0] < 0.5
    assert spectral.diagnostics["relative_consensus"][0] <= 1e-15   # every rank starts from the same U


def test_generated_completion_file_runs_under_mpi_and_matches_the_synthetic_run(tmp_path):
    from conftest import mpirun

    problem = tmp_path / "completion.h5"
    code, _, stderr = mpirun(1, "generate", "--problem", "completion", "--n", 30, "--m", 41, "--rank", 2,
                             "--sampling-rate", 0.5, "--seed", 9, "--output", problem)
    assert code == 0, stderr
    results = {}
    for name, extra in (("file", ["--data", problem]), ("synthetic", ["--n", 30, "--m", 41, "--sampling-rate", 0.5])):
        output = tmp_path / f"{name}.h5"
        code, stdout, stderr = mpirun(3, "--problem", "completion", "--rank", 2, "--seed", 9, *extra,
                                      "--iterations", 300, "--tolerance", 0, "--output", output, timeout=60)
        assert code == 0, stderr
        import h5py
        with h5py.File(output) as handle:
            results[name] = handle["result/V"][...]
    np.testing.assert_array_equal(results["file"], results["synthetic"])


def test_dense_matrix_with_nan_is_read_as_a_completion_problem(tmp_path):
    spec = SyntheticSpec(n=10, m=8, r=2, seed=1)
    Y = spec.truth_U() @ spec.truth_V(0, 8).T
    Y[np.random.default_rng(0).random(Y.shape) < 0.3] = np.nan
    path = tmp_path / "Y.npy"
    np.save(path, Y)
    from dgdlocal import data

    rows, cols, values, _, _ = data.load_observed(str(path), "Y", 3, 6)
    observed = ~np.isnan(Y[:, 3:6])
    assert len(values) == observed.sum()
    np.testing.assert_array_equal(values, Y[rows, cols])


def test_sensing_file_replays_the_synthetic_problem_and_refuses_another_J(tmp_path):
    from conftest import mpirun
    import h5py

    problem = tmp_path / "sensing.h5"
    code, _, stderr = mpirun(1, "generate", "--problem", "sensing", "--n", 9, "--m", 13, "--rank", 2, "--ranks", 3,
                             "--seed", 4, "--output", problem)
    assert code == 0, stderr
    results = {}
    for name, extra in (("file", ["--data", problem]), ("synthetic", ["--n", 9, "--m", 13])):
        output = tmp_path / f"{name}.h5"
        code, _, stderr = mpirun(3, "--problem", "sensing", "--rank", 2, "--seed", 4, *extra, "--iterations", 200,
                                 "--tolerance", 0, "--output", output, timeout=60)
        assert code == 0, stderr
        with h5py.File(output) as handle:
            results[name] = handle["result/V"][...]
    np.testing.assert_array_equal(results["file"], results["synthetic"])
    code, _, stderr = mpirun(2, "--problem", "sensing", "--rank", 2, "--data", problem, "--output", tmp_path / "x.h5",
                             timeout=20)
    assert code == 2 and "for J=3 ranks" in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("problem", ["least-squares", "completion", "sensing"])
def test_resume_is_bit_for_bit_for_every_problem_family(tmp_path, problem):
    """A run stopped at a non-diagnostic iteration and resumed equals the uninterrupted run (V None for DGD)."""
    import h5py
    from conftest import mpirun

    common = ["--problem", problem, "--n", 12, "--m", 40, "--rank", 2, "--tolerance", 0, "--quiet"]
    if problem == "sensing":
        common += ["--balance", 0.01]
    whole, part = tmp_path / "whole.h5", tmp_path / "part.h5"
    assert mpirun(3, *common, "--iterations", 150, "--output", whole, timeout=60)[0] == 0
    assert mpirun(3, *common, "--iterations", 77, "--checkpoint-every", 10, "--output", part, timeout=60)[0] == 0
    code, _, stderr = mpirun(3, "--resume", part, "--iterations", 150, "--quiet", timeout=60)
    assert code == 0, stderr
    with h5py.File(whole) as a, h5py.File(part) as b:
        for name in ("result/U", "result/V", "diagnostics/objective", "diagnostics/consensus_error"):
            np.testing.assert_array_equal(a[name][...], b[name][...], err_msg=name)
