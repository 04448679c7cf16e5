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
