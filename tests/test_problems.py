"""Gradients of the local objectives against finite differences; the blocked pass against the plain formula."""

import numpy as np
import pytest

from dgdlocal import problems


def _random_problem(n, m, r, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, r)), rng.standard_normal((m, r)), rng.standard_normal((n, m))


@pytest.mark.parametrize("n,m,r", [(7, 5, 2), (30, 11, 3), (1, 4, 1)])
def test_factorization_gradients_match_central_differences(n, m, r):
    U, V, Y = _random_problem(n, m, r)
    value, grad_U, grad_V = problems.factorization_value_and_gradients(U, V, Y)
    rng = np.random.default_rng(1)
    for _ in range(3):
        dU, dV = rng.standard_normal(U.shape), rng.standard_normal(V.shape)
        h = 1e-6
        plus = problems.factorization_value(U + h * dU, V + h * dV, Y)
        minus = problems.factorization_value(U - h * dU, V - h * dV, Y)
        directional = (plus - minus) / (2 * h)
        analytic = np.vdot(grad_U, dU) + np.vdot(grad_V, dV)
        assert abs(directional - analytic) <= 1e-7 * max(1.0, abs(analytic))
    assert value == pytest.approx(np.linalg.norm(U @ V.T - Y) ** 2, rel=1e-13)


def test_blocked_pass_equals_dense_formula_across_many_row_blocks(monkeypatch):
    monkeypatch.setattr(problems, "RESIDUAL_BLOCK_BYTES", 64)  # forces one row per block
    U, V, Y = _random_problem(37, 9, 4, seed=3)
    value, grad_U, grad_V = problems.factorization_value_and_gradients(U, V, Y)
    residual = U @ V.T - Y
    np.testing.assert_allclose(grad_U, 2 * residual @ V, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(grad_V, 2 * residual.T @ U, rtol=1e-13, atol=1e-13)
    assert value == pytest.approx(np.sum(residual ** 2), rel=1e-13)


def test_objective_has_no_cancellation_floor_near_the_optimum():
    U, V, _ = _random_problem(20, 15, 3)
    Y = U @ V.T
    perturbation = 1e-12
    value = problems.factorization_value(U + perturbation, V, Y)
    exact = np.sum((perturbation * np.ones_like(U) @ V.T) ** 2)
    assert value == pytest.approx(exact, rel=1e-6)
    assert value < 1e-20 * np.sum(Y ** 2)


def test_gram_form_pass_equals_dense_formula_across_many_row_blocks(monkeypatch):
    monkeypatch.setattr(problems, "RESIDUAL_BLOCK_BYTES", 64)  # forces one row per block
    U, V, Y = _random_problem(37, 9, 4, seed=4)
    value, grad_U, grad_V = problems.factorization_value_and_gradients(U, V, Y, value=False)
    residual = U @ V.T - Y
    np.testing.assert_allclose(grad_U, 2 * residual @ V, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad_V, 2 * residual.T @ U, rtol=1e-12, atol=1e-12)
    assert np.isnan(value)


def test_float32_objective_is_accumulated_in_float64():
    Y = np.random.default_rng(5).standard_normal(3_000_000).astype(np.float32)
    exact = float(np.sum(Y.astype(np.float64) ** 2))
    assert problems.squared_norm(Y) == pytest.approx(exact, rel=1e-12)
    U, V = np.ones((1, 1), np.float32), np.zeros((Y.size, 1), np.float32)
    assert problems.factorization_value(U, V, Y[None, :]) == pytest.approx(exact, rel=1e-12)
