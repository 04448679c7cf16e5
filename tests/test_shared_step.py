"""--u-step-scale: the step s·µ on the shared factor (solver.SharedStep), in the serial simulation."""

import warnings

import numpy as np
import pytest

from dgdlocal import runner, solver


def _simulate(J, **settings):
    config = runner.RunConfig(quiet=True, **settings)
    context = runner.simulated_context(J)
    prepared = runner.prepare(config, context)
    return prepared, runner.solve(prepared, config, context)


def _concentrated_data(path, J, n=60, m_j=40, r=4, factor=10.0, seed=1):
    """Exact rank r, with rank 0's columns carrying factor² times the energy of each other rank's."""
    rng = np.random.default_rng(seed)
    U, V = rng.standard_normal((n, r)), rng.standard_normal((J * m_j, r))
    V[:m_j] *= factor
    np.save(path, U @ V.T)
    return str(path)


def test_auto_scale_follows_the_rule_from_gap_and_curvature_one_iterate_late():
    """s_k = max(1, min(2·gap·J, 0.25 / (µ c_{k−1}))), at most J, c the max over ranks of 2λ_max(V_jᵀV_j) at
    iterate k − 1 (at iterate k for the first iteration of a fresh run); a resumed one starts from the stored c."""
    J, gap, step = 8, 0.3, 0.01
    reducer = runner.simulated_context(J).reducer

    class Curvature:
        def __init__(self, value):
            self.value = value

        def u_curvature(self, V):
            return self.value

    def rule(c):
        return max(1.0, min(2 * gap * J, 0.25 / (step * c) if c > 0 else np.inf, J))

    curvatures = [[1.0, 2.0], [40.0, 10.0], [0.0, 0.0], [3.0, 1.0]]   # gap-limited, curvature-limited, V = 0, …
    shared = solver.SharedStep("auto", J, gap, step, start_iteration=5)
    for k, values in enumerate(curvatures, start=5):
        shared.start([Curvature(c) for c in values], [None] * len(values), reducer, k)
        previous = max(curvatures[max(k - 6, 0)])
        assert shared.finish(k) == pytest.approx(rule(previous), rel=1e-15)
    assert shared.state(9) == 3.0
    resumed = solver.SharedStep("auto", J, gap, step, start_iteration=9, curvature=40.0)
    resumed.start([Curvature(1.0)], [None], reducer, 9)
    assert resumed.finish(9) == pytest.approx(rule(40.0), rel=1e-15)
    assert solver.SharedStep(3.5, J, gap, step).finish(0) == 3.5


def test_local_step_gain_follows_the_rule_where_the_network_caps_s_below_J():
    """t = min(q, s, 3) for 1 ≤ q = 1/(µ ‖∇²_V f_j‖) ≤ 3, else 1; only under auto and where 2·gap·J < J."""
    J, gap, step = 8, 0.25, 0.01
    reducer = runner.simulated_context(J).reducer

    class Curvatures:
        def __init__(self, u, v):
            self.u, self.v = u, v

        def u_curvature(self, V):
            return self.u

        def v_curvature(self, U):
            return self.v

    def scale(v_curvature, u_curvature=1.0, scale="auto", spectral_gap=gap, **options):
        """t at the first iteration of a fresh SharedStep (s from this iterate's U curvature)."""
        shared = solver.SharedStep(scale, J, spectral_gap, step, **options)
        problem = Curvatures(u_curvature, v_curvature)
        shared.start([problem], [None], reducer, 0)
        shared.finish(0)
        t = shared.local_scale(problem, None)
        assert shared.largest_local == t
        return t

    # 2·gap·J = 4 < J
    assert scale(1 / (2.5 * step)) == pytest.approx(2.5, rel=1e-15)                            # q = 2.5 ≤ s = 4
    assert scale(1 / (2.5 * step), u_curvature=0.25 / (1.5 * step)) == pytest.approx(1.5, rel=1e-15)   # s = 1.5
    assert scale(1 / (3.5 * step)) == 1.0       # q > 3: U_j still growing from the small start
    assert scale(0.0) == 1.0                    # U_j = 0
    assert scale(2 / step) == 1.0               # q < 1: no gain below the papers' step
    assert scale(np.inf) == scale(np.nan) == 1.0
    assert scale(1 / (2 * step), spectral_gap=0.5) == 1.0        # s may reach J
    assert scale(1 / (2 * step), scale=3.0) == 1.0               # a fixed s
    assert scale(1 / (2 * step), local_gain=1.0) == 1.0          # turned off (a checkpoint from before)


def test_local_step_gain_takes_fewer_iterations_on_the_torus_of_item_5_to_exact_consensus():
    """16-rank torus, κ = 10 (docs/performance.md §8c): s is capped at 2·gap·J = 8, V_j's step gain took 1460 →
    880 iterations (seed 0, measured); both runs reach relative error and consensus 1e-10."""
    settings = dict(n=60, m=240, rank=4, condition_number=10.0, topology="torus", iterations=4000,
                    tolerance=1e-10, log_every=10, seed=0)
    config = runner.RunConfig(quiet=True, **settings)
    outcomes = []
    for gain in (1.0, solver.LOCAL_STEP_MAX_GAIN):
        context = runner.simulated_context(16)
        prepared = runner.prepare(config, context)
        prepared.local_step_gain = gain          # 1: as resumed from a checkpoint written before the gain
        outcomes.append(runner.solve(prepared, config, context))
    without, with_gain = outcomes
    for outcome in outcomes:
        assert outcome.status == "converged"
        assert outcome.diagnostics["relative_error"][-1] <= 1e-10
        assert outcome.diagnostics["relative_consensus"][-1] <= 1e-10
    assert without.v_step_scale == 1.0 and with_gain.v_step_scale > 2.0
    assert without.iterations >= 1.5 * with_gain.iterations, (without.iterations, with_gain.iterations)


def test_auto_scale_reaches_exact_consensus_in_fewer_iterations_on_a_well_connected_network():
    """8-rank complete graph, κ = 20: measured 6990 iterations with s = 1 and 3170 with auto (s from 4.7 to 5.0)."""
    settings = dict(n=60, m=320, rank=4, condition_number=20.0, topology="complete", iterations=20000,
                    tolerance=1e-10, log_every=10)
    _, plain = _simulate(8, u_step_scale=1.0, **settings)
    _, scaled = _simulate(8, u_step_scale="auto", **settings)
    for outcome in (plain, scaled):
        assert outcome.status == "converged"
        assert outcome.diagnostics["relative_error"][-1] <= 1e-10
        assert outcome.diagnostics["relative_consensus"][-1] <= 1e-10
    assert plain.u_step_scale is None and scaled.u_step_scale[1] > 4.0
    assert plain.iterations >= 2.0 * scaled.iterations, (plain.iterations, scaled.iterations)


def test_auto_scale_stays_at_one_when_one_rank_holds_the_energy(tmp_path):
    """Rank 0 holds 100× the energy of each other rank: s = J would need 7200 iterations instead of 650 (measured),
    auto takes s = 1 (its curvature bound) and converges like the papers' method."""
    J = 8
    path = _concentrated_data(tmp_path / "Y.npy", J)
    settings = dict(data=path, rank=4, topology="complete", iterations=5000, tolerance=1e-10, log_every=10)
    _, plain = _simulate(J, u_step_scale=1.0, **settings)
    _, scaled = _simulate(J, u_step_scale="auto", **settings)
    assert scaled.status == plain.status == "converged"
    assert scaled.u_step_scale[1] < 1.2
    assert scaled.iterations <= plain.iterations


def test_auto_scale_on_a_slow_network_is_held_near_one_by_the_spectral_gap():
    """24-rank ring (spectral gap 0.017): 2·gap·J ≈ 0.82 keeps auto at 1. (On the lazy 16-rank ring s = J took
    15380 iterations against 3450 for s = 1, measured.)"""
    prepared, outcome = _simulate(24, n=60, m=960, rank=4, topology="ring", u_step_scale="auto", iterations=400,
                                  tolerance=0.0, log_every=100)
    gap = prepared.network.summary["spectral_gap"]
    assert 2 * gap * 24 < 1.0
    assert outcome.u_step_scale == (1.0, 1.0)


@pytest.mark.parametrize("options", [
    {}, {"u_step_scale": "auto"}, {"u_step_scale": 3.0}, {"preconditioner": "scaled"},
    {"preconditioner": "scaled", "balance": 1.0}, {"rebalance_every": 1}, {"method": "extra"},
])
def test_a_diverging_run_is_reported_as_diverged_without_an_exception_or_warnings(options):
    """Step 3 (≈ 50× the auto step) with diagnostics every 100 iterations: the iterates overflow well before the
    first check after 0, and the gauge fixes (alignment at 100, rebalancing, the scaled metric, the U step's
    curvature bound) must leave them to the diagnostics instead of raising LinAlgError."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, outcome = _simulate(2, step=3.0, iterations=1000, log_every=100, **options)
    assert outcome.status == "diverged"
    assert outcome.iterations == 100


def test_a_checkpoint_of_an_older_version_resumes_with_the_papers_u_step():
    """Checkpoints written before --u-step-scale existed ran s = 1; resuming one must not switch to auto."""
    import json
    from dataclasses import asdict

    from dgdlocal import checkpoint

    newer = ("u_step_scale", "weight_transform", "method")
    stored = {name: value for name, value in asdict(runner.RunConfig()).items() if name not in newer}
    attrs = {"J": 2, "config_json": json.dumps(stored)}
    settings = checkpoint.resumed_settings(attrs, asdict(runner.RunConfig()), set(), "old.h5", 2)
    # and the weights those versions built: (W + I)/2 when ω ≥ 1/2, not the self-weight shift; the papers' order
    assert settings["u_step_scale"] == 1.0 and settings["weight_transform"] == "lazy"
    assert settings["method"] == "dgd-local" and runner.RunConfig(**settings).method == "dgd-local"
    attrs["config_json"] = json.dumps({**stored, "u_step_scale": "auto", "weight_transform": "shift",
                                       "method": "atc-overlap"})
    settings = checkpoint.resumed_settings(attrs, asdict(runner.RunConfig()), set(), "new.h5", 2)
    assert settings["u_step_scale"] == "auto" and settings["weight_transform"] == "shift"
    assert settings["method"] == "atc-overlap"
