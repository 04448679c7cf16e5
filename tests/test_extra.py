"""--method extra: EXTRA's correction on the U step reaches the centralized optimum, also on full-rank data."""

import numpy as np
import pytest

from dgdlocal import runner, solver
from dgdlocal.errors import InputError
from dgdlocal.problems import Factorization
from dgdlocal.simulate import SimulatedExchange, SimulatedReducer


def _simulate(J, **settings):
    config = runner.RunConfig(quiet=True, **settings)
    context = runner.simulated_context(J)
    prepared = runner.prepare(config, context)
    return prepared, runner.solve(prepared, config, context)


def _excess_over_svd(Y, outcome, r):
    """(‖Y − ŪVᵀ‖ − ‖Y − Y_r‖) / ‖Y − Y_r‖."""
    optimum = np.sqrt(np.sum(np.linalg.svd(Y, compute_uv=False)[r:] ** 2))
    return (np.linalg.norm(Y - outcome.mean_U @ np.concatenate(outcome.V).T) - optimum) / optimum


@pytest.fixture(scope="module")
def full_rank(tmp_path_factory):
    """A Gaussian 30×80 matrix (full rank 30) as a data file."""
    Y = np.random.default_rng(0).standard_normal((30, 80))
    path = tmp_path_factory.mktemp("extra") / "Y.npy"
    np.save(path, Y)
    return Y, str(path)


def test_extra_reaches_the_truncated_svd_on_full_rank_data_where_dgd_local_does_not(full_rank):
    Y, path = full_rank
    settings = dict(data=path, rank=3, topology="ring", iterations=20000, tolerance=1e-12, log_every=100)
    _, extra = _simulate(4, method="extra", **settings)
    assert extra.status == "converged"
    assert _excess_over_svd(Y, extra, 3) <= 1e-10
    assert extra.diagnostics["relative_consensus"][-1] <= 1e-10
    _, plain = _simulate(4, **settings)   # measured: excess 1.5e-2, relative consensus 0.5 after 20000
    assert plain.status == "max_iters"
    assert _excess_over_svd(Y, plain, 3) > 1e-6


def test_extra_reaches_exact_consensus_and_fit_on_exact_rank_data():
    _, outcome = _simulate(5, method="extra", n=30, m=48, rank=3, condition_number=10.0, topology="star",
                           seed=11, iterations=40000, tolerance=1e-10, log_every=100)
    assert outcome.status == "converged"
    assert outcome.diagnostics["relative_error"][-1] <= 1e-10
    assert outcome.diagnostics["relative_consensus"][-1] <= 1e-10


def test_extra_on_one_rank_is_gradient_descent_bit_for_bit():
    """J = 1: W = [1], so D stays 0 and the step is U − µ∇_U f."""
    settings = dict(n=20, m=30, rank=3, noise=0.1, iterations=300, tolerance=0.0, log_every=50)
    _, plain = _simulate(1, method="dgd-local", **settings)
    _, extra = _simulate(1, method="extra", **settings)
    np.testing.assert_array_equal(extra.U[0], plain.U[0])
    np.testing.assert_array_equal(extra.V[0], plain.V[0])
    assert not np.any(extra.correction[0])
    for name in ("objective", "gradient_norm", "stationarity"):
        np.testing.assert_array_equal(extra.diagnostics[name], plain.diagnostics[name], err_msg=name)


@pytest.mark.parametrize("dtype, floor", [("float64", 1e-14), ("float32", 2e-6)])
def test_extra_stays_at_its_rounding_floor(dtype, floor):
    """The correction adds up P_j = Σ_{i≠j} W_ji (U_i − U_j), exactly 0 at consensus; adding up (W U)_j − U_j instead
    (rows of W sum to 1 only to rounding) made the stationarity grow by 4e-13 (float64) / 2e-4 (float32) per 1000
    iterations here. J = 1 float32 gradient descent sits at 6e-7."""
    _, outcome = _simulate(3, method="extra", dtype=dtype, noise=0.1, iterations=3000, tolerance=0.0, log_every=500)
    stationarity = outcome.diagnostics["stationarity"]
    assert max(stationarity[2:]) <= floor, stationarity
    assert outcome.diagnostics["relative_consensus"][-1] <= (1e-15 if dtype == "float64" else 1e-7)


def test_the_summed_form_equals_the_two_step_recursion_of_the_paper():
    """U¹ = W U⁰ − µ g⁰, U^{k+2} = W U^{k+1} + U^{k+1} − ½(I + W) U^k − µ (g^{k+1} − g^k), written out here
    independently of the solver, with V_j ← V_j − µ ∇_V f_j; equal to rounding after 60 steps."""
    W = np.array([[4, 1, 0, 1], [1, 4, 1, 0], [0, 1, 4, 1], [1, 0, 1, 4]]) / 6.0
    rng = np.random.default_rng(2)
    J, n, r, step, iterations = 4, 6, 2, 0.02, 60
    Ys = [rng.standard_normal((n, 3 + j)) for j in range(J)]
    U0 = [rng.standard_normal((n, r)) * 0.5 for _ in range(J)]
    V0 = [rng.standard_normal((3 + j, r)) * 0.5 for j in range(J)]

    def gradients(U, V):
        residuals = [U[j] @ V[j].T - Ys[j] for j in range(J)]
        return [2 * R @ V_j for R, V_j in zip(residuals, V)], [2 * R.T @ U_j for R, U_j in zip(residuals, U)]

    def mixed(U):
        return [sum(W[j, i] * U[i] for i in range(J)) for j in range(J)]

    previous_U, (previous_g, g_V) = U0, gradients(U0, V0)
    U = [m - step * g for m, g in zip(mixed(U0), previous_g)]
    V = [v - step * g for v, g in zip(V0, g_V)]
    for _ in range(iterations - 1):
        g_U, g_V = gradients(U, V)
        lazy = [(u + m) / 2 for u, m in zip(previous_U, mixed(previous_U))]
        U, previous_U, previous_g = ([m + u - w - step * (g - h) for m, u, w, g, h in
                                      zip(mixed(U), U, lazy, g_U, previous_g)], U, g_U)
        V = [v - step * g for v, g in zip(V, g_V)]

    settings = solver.Settings(step_size=step, iterations=iterations, tolerance=0.0, log_every=iterations, J=J,
                               weights=W, extra=solver.Extra(U0))
    outcome = solver.run([Factorization(Y) for Y in Ys], list(range(J)), [u.copy() for u in U0],
                         [v.copy() for v in V0], settings, SimulatedExchange(W), SimulatedReducer())
    for j in range(J):
        np.testing.assert_allclose(outcome.U[j], U[j], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(outcome.V[j], V[j], rtol=1e-12, atol=1e-12)


def test_a_rebalance_keeps_a_converged_extra_run_at_its_fixed_point(full_rank):
    """The correction follows the gauge (D_j ← D_j A⁻ᵀ): a fixed point in an unbalanced gauge stays one after
    Rebalance. Measured: restarting the recursion (D ← 0) instead throws the run off consensus to 2e-2."""
    Y, path = full_rank
    prepared, converged = _simulate(4, method="extra", data=path, rank=3, iterations=20000, tolerance=1e-12,
                                    log_every=100, rebalance_every=0)
    A = np.diag([1.3, 1.0, 1 / 1.3]) @ np.linalg.qr(np.random.default_rng(1).standard_normal((3, 3)))[0]
    A_inv_T = np.linalg.inv(A).T
    U = [U_j @ A for U_j in converged.U]
    V = [V_j @ A_inv_T for V_j in converged.V]
    rebalance = solver.Rebalance(10, 1.2, 4)
    settings = solver.Settings(step_size=prepared.step_size, iterations=500, tolerance=0.0, log_every=10, J=4,
                               weights=prepared.network.weights, rebalance=rebalance,
                               extra=solver.Extra(U, [D_j @ A_inv_T for D_j in converged.correction]))
    outcome = solver.run(prepared.problems, list(range(4)), U, V, settings, SimulatedExchange(prepared.network.weights),
                         SimulatedReducer())
    assert outcome.rebalances == 1
    assert max(outcome.diagnostics["relative_consensus"]) <= 1e-11
    assert _excess_over_svd(Y, outcome, 3) <= 1e-12


def test_an_alignment_restarts_the_recursion_and_extra_needs_none_on_the_locking_path():
    """Align rotates copies one by one (U_j R_j); D_j R_j would break Σ_j D_j = 0, so any rotation restarts EXTRA
    (D ← 0). On the 12-rank path where plain DGD+LOCAL locks into opposite signs without alignment, extra converges
    without a single alignment (measured: 1900 iterations, with or without --align-gain)."""
    settings = dict(method="extra", noise=0.3, iterations=5, tolerance=0.0, log_every=5, rebalance_every=5)
    _, aligned = _simulate(3, align_gain=1.0, **settings)
    _, unaligned = _simulate(3, align_gain=0.0, **settings)
    assert aligned.alignments >= 1 and not any(np.any(D_j) for D_j in aligned.correction)
    assert unaligned.alignments == 0 and all(np.any(D_j) for D_j in unaligned.correction)
    _, path = _simulate(12, method="extra", topology="path", n=50, m=600, rank=1, condition_number=2.0, seed=686,
                        iterations=20000, tolerance=1e-10, log_every=100)
    assert path.status == "converged" and path.alignments == 0
    assert path.diagnostics["relative_error"][-1] <= 1e-10


@pytest.mark.parametrize("problem, settings", [
    ("completion", dict(sampling_rate=0.4, n=30, m=48, rank=3, seed=3)),
    ("sensing", dict(n=20, m=15, rank=2, seed=5)),
])
def test_extra_on_noisy_completion_and_sensing_reaches_a_consensus_critical_point(problem, settings):
    """Noisy data: plain DGD+LOCAL stays off consensus (measured 1.9e-2 / 2.5e-2 after 30000 iterations)."""
    _, outcome = _simulate(4, method="extra", problem=problem, noise=0.1, iterations=30000, tolerance=1e-11,
                           log_every=100, **settings)
    assert outcome.status == "converged"
    assert outcome.diagnostics["stationarity"][-1] <= 1e-11
    assert outcome.diagnostics["relative_consensus"][-1] <= 1e-12


def test_extra_on_least_squares_reaches_the_optimum_where_classical_dgd_stalls():
    """EXTRA's own example: classical DGD stops at a consensus floor (x 4e-3 off x⋆); EXTRA reaches x⋆."""
    _, outcome = _simulate(5, method="extra", problem="least-squares", n=10, m=60, seed=1, iterations=30000,
                           tolerance=1e-13, log_every=100)
    assert outcome.status == "converged"
    assert outcome.diagnostics["optimality_error"][-1] <= 1e-11
    assert outcome.diagnostics["relative_consensus"][-1] <= 1e-13


@pytest.mark.parametrize("option, message", [
    (dict(preconditioner="scaled"), "--method extra .* does not combine with --preconditioner scaled"),
    (dict(balance=0.1), "--method extra .* does not combine with --balance"),
])
def test_extra_refuses_the_options_it_does_not_combine_with(option, message):
    with pytest.raises(InputError, match=message):
        _simulate(3, method="extra", **option)
