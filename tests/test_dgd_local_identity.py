"""DGD+LOCAL is gradient descent on g(z) = Σ_j f_j + Σ_j Σ_{i≠j} (W̃_ji / 4µ) ‖U_j − U_i‖² (DESIGN §1)."""

import numpy as np

from dgdlocal import solver
from dgdlocal.problems import Factorization
from dgdlocal.simulate import SimulatedExchange, SimulatedReducer

# Lazy Metropolis weights of a 4-ring, written out by hand.
W = np.array([[4, 1, 0, 1], [1, 4, 1, 0], [0, 1, 4, 1], [1, 0, 1, 4]]) / 6.0


def g_and_gradient(U, V, Ys, step):
    """g(z) and ∇g(z) from the formula, independently of the solver code."""
    J = len(U)
    value = 0.0
    grad_U, grad_V = [], []
    for j in range(J):
        residual = U[j] @ V[j].T - Ys[j]
        value += np.sum(residual ** 2)
        gU = 2 * residual @ V[j]
        for i in range(J):
            if i != j:
                value += W[j, i] / (4 * step) * np.sum((U[j] - U[i]) ** 2)
                gU = gU + W[j, i] / step * (U[j] - U[i])   # each pair appears in g twice
        grad_U.append(gU)
        grad_V.append(2 * residual.T @ U[j])
    return value, grad_U, grad_V


def _problem(seed=0, n=6, widths=(3, 2, 4, 3), r=2):
    rng = np.random.default_rng(seed)
    Ys = [rng.standard_normal((n, w)) for w in widths]
    U = [rng.standard_normal((n, r)) for _ in widths]
    V = [rng.standard_normal((w, r)) for w in widths]
    return Ys, U, V


def test_gradient_of_g_matches_finite_differences():
    Ys, U, V = _problem()
    step = 0.05
    _, grad_U, grad_V = g_and_gradient(U, V, Ys, step)
    rng = np.random.default_rng(5)
    dU = [rng.standard_normal(x.shape) for x in U]
    dV = [rng.standard_normal(x.shape) for x in V]
    h = 1e-6
    plus = g_and_gradient([a + h * b for a, b in zip(U, dU)], [a + h * b for a, b in zip(V, dV)], Ys, step)[0]
    minus = g_and_gradient([a - h * b for a, b in zip(U, dU)], [a - h * b for a, b in zip(V, dV)], Ys, step)[0]
    analytic = sum(np.vdot(a, b) for a, b in zip(grad_U, dU)) + sum(np.vdot(a, b) for a, b in zip(grad_V, dV))
    assert abs((plus - minus) / (2 * h) - analytic) <= 1e-7 * abs(analytic)


def test_dgd_local_iterates_equal_gradient_descent_on_g():
    Ys, U, V = _problem(seed=1)
    step = 0.01
    blocks = [Factorization(Y) for Y in Ys]
    U_gd, V_gd = [x.copy() for x in U], [x.copy() for x in V]
    iterations = 25
    for _ in range(iterations):
        _, gU, gV = g_and_gradient(U_gd, V_gd, Ys, step)
        U_gd = [a - step * b for a, b in zip(U_gd, gU)]
        V_gd = [a - step * b for a, b in zip(V_gd, gV)]
    settings = solver.Settings(step_size=step, iterations=iterations, tolerance=0.0, log_every=5, J=4, weights=W)
    outcome = solver.run(blocks, list(range(4)), [x.copy() for x in U], [x.copy() for x in V], settings,
                         SimulatedExchange(W), SimulatedReducer())
    assert outcome.iterations == iterations
    for a, b in zip(outcome.U + outcome.V, U_gd + V_gd):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(b).max())


def test_reported_gradient_norm_is_the_norm_of_grad_g():
    Ys, U, V = _problem(seed=2)
    step = 0.01
    blocks = [Factorization(Y) for Y in Ys]
    value, gU, gV = g_and_gradient(U, V, Ys, step)
    expected = np.sqrt(sum(np.sum(x ** 2) for x in gU + gV))
    settings = solver.Settings(step_size=step, iterations=0, tolerance=0.0, log_every=1, J=4, weights=W)
    outcome = solver.run(blocks, list(range(4)), [x.copy() for x in U], [x.copy() for x in V], settings,
                         SimulatedExchange(W), SimulatedReducer())
    assert abs(outcome.diagnostics["gradient_norm"][0] - expected) <= 1e-12 * expected
    assert abs(outcome.diagnostics["penalized_objective"][0] - value) <= 1e-12 * value
