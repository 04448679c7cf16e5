"""Serial tests of the engine through the simulation: step rule, data, initial points, divergence."""

import h5py
import numpy as np
import pytest

from conftest import mpirun
from dgdlocal import data, runner, solver


def _simulate(J, **settings):
    config = runner.RunConfig(quiet=True, **settings)
    context = runner.simulated_context(J)
    prepared = runner.prepare(config, context)
    return prepared, runner.solve(prepared, config, context)


@pytest.mark.parametrize("condition_number", [1.0, 10.0, 100.0])
@pytest.mark.parametrize("topology,J", [("ring", 5), ("star", 4), ("erdos-renyi", 6)])
def test_auto_step_converges_on_exact_rank_problems_up_to_condition_number_100(condition_number, topology, J):
    prepared, outcome = _simulate(J, n=30, m=48, rank=3, condition_number=condition_number, topology=topology,
                                  edge_probability=0.4, seed=11, iterations=40000, tolerance=1e-10, log_every=200)
    assert outcome.status == "converged", outcome.diagnostics["relative_error"][-1]
    assert outcome.diagnostics["relative_error"][-1] <= 1e-10
    assert outcome.diagnostics["relative_consensus"][-1] <= 1e-10


@pytest.mark.parametrize("shape", [
    dict(n=20, m=16, rank=3, condition_number=1.0, seed=879),     # 2 columns per rank
    dict(n=30, m=48, rank=3, condition_number=100.0, seed=11),    # 6 columns per rank, κ = 100
])
def test_default_rebalancing_converges_where_plain_dgd_local_drifts(shape):
    """8-rank star: plain DGD+LOCAL drifts towards unbalanced factors (relative error 5e-3 after 40000 iterations
    at κ = 100; 1.4e-5 consensus after 100000 at κ = 1); with the default rebalancing both reach 1e-10."""
    settings = dict(topology="star", iterations=60000, tolerance=1e-10, log_every=100, **shape)
    _, outcome = _simulate(8, **settings)
    assert outcome.status == "converged" and outcome.rebalances >= 1
    assert outcome.diagnostics["relative_error"][-1] <= 1e-10
    assert outcome.diagnostics["relative_consensus"][-1] <= 1e-10
    _, plain = _simulate(8, **{**settings, "iterations": outcome.iterations, "rebalance_every": 0})
    assert plain.status == "max_iters" and plain.rebalances == 0
    assert plain.diagnostics["relative_error"][-1] > 1e-6


class _SerialReducer:
    def ordered_sum(self, array):
        return array


def test_rebalancing_keeps_every_product_and_balances_the_gram_matrices():
    rng = np.random.default_rng(3)
    J, n, r = 3, 7, 2
    U = [rng.standard_normal((n, r)) * 1e-2 for _ in range(J)]
    V = [rng.standard_normal((4 + j, r)) * 10.0 for j in range(J)]
    rebalance = solver.Rebalance(every=10, threshold=16.0, J=J)
    before = solver.gram_totals(U, V, _SerialReducer())
    assert rebalance.imbalance(before)[0] > 16.0
    U2, V2 = rebalance(U, V, _SerialReducer())
    assert rebalance.count == 1
    for U_j, V_j, U2_j, V2_j in zip(U, V, U2, V2):
        np.testing.assert_allclose(U2_j @ V2_j.T, U_j @ V_j.T, rtol=1e-13, atol=1e-13 * np.abs(U_j @ V_j.T).max())
    mean_UtU, VtV = solver.gram_totals(U2, V2, _SerialReducer())
    mean_UtU /= J
    np.testing.assert_allclose(mean_UtU, VtV, rtol=1e-12, atol=1e-12 * np.abs(VtV).max())
    assert np.allclose(mean_UtU, np.diag(np.diag(mean_UtU)), atol=1e-12 * np.abs(VtV).max())
    assert rebalance.imbalance(solver.gram_totals(U2, V2, _SerialReducer()))[0] == pytest.approx(1.0, abs=1e-9)
    # balanced enough, or a singular Gram matrix: nothing changes
    U3, V3 = rebalance(U2, V2, _SerialReducer())
    assert rebalance.count == 1 and all(a is b for a, b in zip(U3, U2))
    zero = [np.zeros((n, r)) for _ in range(J)]
    assert rebalance(zero, V, _SerialReducer())[0] is zero and rebalance.count == 1


def test_default_alignment_undoes_copies_locked_in_opposite_signs_on_a_long_path():
    """12-rank path, r = 1: without alignment the two ends lock into opposite signs of U (Ū ≈ 0, relative error
    ≈ 1 after 100000 iterations, README "When plain DGD+LOCAL drifts"); the default alignment to rank 0's copy
    every 100 iterations flips them back and the run reaches 1e-10 (3400 iterations)."""
    settings = dict(topology="path", n=50, m=600, rank=1, condition_number=2.0, seed=686, iterations=20000,
                    tolerance=1e-10, log_every=100)
    _, outcome = _simulate(12, **settings)
    assert outcome.status == "converged" and outcome.alignments >= 1
    assert outcome.diagnostics["relative_error"][-1] <= 1e-10
    assert outcome.diagnostics["relative_consensus"][-1] <= 1e-10
    _, unaligned = _simulate(12, **{**settings, "iterations": outcome.iterations, "align_gain": 0.0})
    assert unaligned.status == "max_iters" and unaligned.alignments == 0
    assert unaligned.diagnostics["relative_error"][-1] > 0.5
    assert unaligned.diagnostics["relative_consensus"][-1] > 0.5


class _BroadcastingReducer:
    """One process holding every block: rank 0's block is the first; sums are local."""

    def broadcast(self, array):
        return np.asarray(array, dtype=np.float64).copy()

    def sum(self, array):
        return np.asarray(array, dtype=np.float64)


def test_alignment_rotates_disagreeing_copies_onto_rank_0s_and_keeps_every_product():
    rng = np.random.default_rng(5)
    n, r = 9, 3
    U0 = rng.standard_normal((n, r))
    rotation = np.linalg.qr(rng.standard_normal((r, r)))[0]
    flip = np.diag([1.0, -1.0, 1.0])
    U = [U0, U0 @ flip, U0 @ rotation + 1e-3 * rng.standard_normal((n, r)), U0 + 1e-3 * rng.standard_normal((n, r))]
    V = [rng.standard_normal((4 + j, r)) for j in range(4)]
    align = solver.Align(every=100, gain=2.0)
    U2, V2 = align(U, V, _BroadcastingReducer(), [0, 1, 2, 3])
    assert align.count == 2   # the flipped and the rotated copy; rank 0's and the nearly equal one stay
    assert U2[0] is U[0] and U2[3] is U[3] and V2[3] is V[3]
    np.testing.assert_allclose(U2[1], U0, atol=1e-14)
    np.testing.assert_allclose(U2[2], U0, atol=1e-2)
    for U_j, V_j, U2_j, V2_j in zip(U, V, U2, V2):
        np.testing.assert_allclose(U2_j @ V2_j.T, U_j @ V_j.T, rtol=1e-13, atol=1e-13 * np.abs(U_j @ V_j.T).max())
    # copies that agree (or a zero reference) are left alone
    U3, _ = align(U2, V2, _BroadcastingReducer(), [0, 1, 2, 3])
    assert align.count == 2 and all(a is b for a, b in zip(U3, U2))
    zero = [np.zeros((n, r))] + U[1:]
    assert align(zero, V, _BroadcastingReducer(), [0, 1, 2, 3])[0][1] is U[1] and align.count == 2


def test_synthetic_matrix_does_not_depend_on_the_number_of_ranks():
    spec = data.SyntheticSpec(n=9, m=13, r=2, condition_number=5.0, noise=0.1, seed=4)
    whole = data.synthetic_block(spec, 0, 0, 13).Y
    for J in (2, 3, 5):
        offsets = data.column_partition(13, J)
        pieces = [data.synthetic_block(spec, j, offsets[j], offsets[j + 1]).Y for j in range(J)]
        np.testing.assert_array_equal(np.concatenate(pieces, axis=1), whole)
    exact = data.SyntheticSpec(n=9, m=13, r=2, condition_number=5.0, noise=0.0, seed=4)
    singular_values = np.linalg.svd(data.synthetic_block(exact, 0, 0, 13).Y, compute_uv=False)
    np.testing.assert_allclose(singular_values[:2], [1.0, 0.2], rtol=1e-12)
    assert singular_values[2] < 1e-14


def test_column_partition_is_as_even_as_possible():
    np.testing.assert_array_equal(data.column_partition(10, 4), [0, 3, 6, 8, 10])
    np.testing.assert_array_equal(data.column_partition(4, 4), [0, 1, 2, 3, 4])


def test_initial_point_file_replays_a_run(tmp_path):
    J, n, m, r = 3, 12, 17, 2
    rng = np.random.default_rng(0)
    U0, V0 = 1e-3 * rng.standard_normal((J, n, r)), 1e-3 * rng.standard_normal((m, r))
    path = tmp_path / "initial.h5"
    with h5py.File(path, "w") as handle:
        handle["U"], handle["V"] = U0, V0
    _, still = _simulate(J, n=n, m=m, rank=r, initial=str(path), iterations=0)
    np.testing.assert_array_equal(np.concatenate(still.V), V0)
    for j in range(J):
        np.testing.assert_array_equal(still.U[j], U0[j])
    _, first = _simulate(J, n=n, m=m, rank=r, initial=str(path), iterations=300, tolerance=0.0)
    _, second = _simulate(J, n=n, m=m, rank=r, initial=str(path), iterations=300, tolerance=0.0)
    for a, b in zip(first.U + first.V, second.U + second.V):
        np.testing.assert_array_equal(a, b)


def test_too_large_a_step_is_reported_as_diverged_by_every_rank(tmp_path):
    output = tmp_path / "r.h5"
    code, stdout, stderr = mpirun(3, "--step", 5.0, "--output", output, "--log-every", 10, timeout=60)
    assert code == runner.EXIT_DIVERGED, stderr
    assert "diverged" in stdout and "Traceback" not in stderr
    with h5py.File(output) as handle:
        assert handle.attrs["status"] == "diverged"
        assert handle["diagnostics/iteration"][-1] < 20000


def test_generate_then_solve_reports_optimality_error_against_the_ground_truth(tmp_path):
    problem = tmp_path / "problem.h5"
    code, _, stderr = mpirun(1, "generate", "--output", problem, "--n", 30, "--m", 25, "--rank", 3,
                             "--noise", 0.01, "--seed", 3)
    assert code == 0, stderr
    output = tmp_path / "r.h5"
    code, stdout, stderr = mpirun(2, "--data", problem, "--rank", 3, "--output", output, timeout=60)
    assert code == 0, stderr
    with h5py.File(output) as handle:
        optimality = handle["diagnostics/optimality_error"][-1]
        relative = handle["diagnostics/relative_error"][-1]
    # with 1 % noise the fit error is ≈ 1e-2 · √(1 − r(n+m)/(nm)), the error to the truth well below it
    assert 5e-3 < relative < 1.2e-2
    assert optimality < relative


def test_a_slowly_mixing_network_is_warned_about():
    """The 64-rank ring (gap 2.41e-3) is not; the 128-rank ring (gap 6.0e-4) is, with the graphs that mix faster."""
    for J, slow in ((64, False), (128, True)):
        prepared = runner.prepare(runner.RunConfig(quiet=True, n=20, m=4 * J, rank=2, iterations=0),
                                  runner.simulated_context(J))
        warned = [w for w in prepared.warnings if "mixes slowly" in w]
        assert (prepared.network.summary["spectral_gap"] < runner.SLOW_NETWORK_GAP) == bool(warned) == slow
    assert "spectral gap 0.0006 < 0.002" in warned[0] and "--topology exponential or torus" in warned[0]


def test_the_auto_step_gain_grows_with_the_gap_for_the_adapt_then_combine_orders_only():
    """a = min(2, max(1, gap / 0.1)) multiplies --step auto and the --u-step-scale margin for atc and atc-overlap;
    the papers' order, EXTRA and a given step keep a = 1."""
    assert solver.atc_step_gain(0.02) == solver.atc_step_gain(0.1) == 1.0
    assert solver.atc_step_gain(0.15) == 1.5 and solver.atc_step_gain(0.1464466) == 1.46   # 3 digits, like µ
    assert solver.atc_step_gain(0.2) == solver.atc_step_gain(1.0) == 2.0
    settings = dict(quiet=True, n=20, m=40, rank=2, iterations=0)
    for method, gain in (("atc", 2.0), ("atc-overlap", 2.0), ("dgd-local", 1.0), ("extra", 1.0)):
        config = runner.RunConfig(method=method, **settings)
        prepared = runner.prepare(config, runner.simulated_context(4))   # ring of 4: gap 0.5
        assert prepared.step_gain == gain, method
        assert prepared.step_size == solver.auto_step(prepared.lipschitz, prepared.network.summary["lambda_min"], gain)
        shared = runner.shared_step(prepared, config, 4)
        if method != "extra":   # EXTRA runs the papers' U step
            assert shared.margin == solver.SHARED_STEP_MARGIN * gain
    given = runner.prepare(runner.RunConfig(step=0.1, **settings), runner.simulated_context(4))
    assert given.step_gain == 1.0 and given.step_size == 0.1
    slow = runner.prepare(runner.RunConfig(**{**settings, "m": 160}), runner.simulated_context(16))
    assert slow.network.summary["spectral_gap"] < 0.1 and slow.step_gain == 1.0   # ring of 16: gap 0.038


def test_a_diverged_run_with_the_gained_auto_step_is_pointed_to_the_step_without_the_gain():
    settings = dict(quiet=True, n=20, m=40, rank=2, iterations=0)
    gained = runner.prepare(runner.RunConfig(**settings), runner.simulated_context(4))   # ring of 4: a = 2
    advice = runner.diverged_advice(gained, runner.RunConfig(**settings))
    assert f"--step {solver.round_significant(gained.step_size / 2):g}" in advice and "×2" in advice
    papers = runner.prepare(runner.RunConfig(method="dgd-local", **settings), runner.simulated_context(4))
    assert runner.diverged_advice(papers, runner.RunConfig(method="dgd-local", **settings)).startswith(
        "Use a smaller --step")


def test_auto_step_rule_is_recorded_with_the_theorem_bound():
    prepared, _ = _simulate(4, iterations=0)
    gain = solver.atc_step_gain(prepared.network.summary["spectral_gap"])   # the default order is atc-overlap
    assert prepared.step_gain == gain == 2.0   # the 4-rank ring: gap 0.5
    assert prepared.step_size == solver.auto_step(4 * prepared.sigma1, prepared.network.summary["lambda_min"], gain)
    assert prepared.step_size == 0.25          # 0.5 · 2 · 1 / (4 σ₁), σ₁ = 1
    papers, _ = _simulate(4, iterations=0, method="dgd-local")
    assert papers.step_gain == 1.0 and papers.step_size == solver.auto_step(4 * papers.sigma1,
                                                                            papers.network.summary["lambda_min"])
    omega = prepared.network.summary["omega"]
    assert prepared.step_bound == pytest.approx((1 - 2 * omega) / (4 * prepared.sigma1))
    assert prepared.sigma1 == pytest.approx(1.0, rel=1e-3)   # synthetic σ₁ = 1
