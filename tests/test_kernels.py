"""The compiled Gram kernel (dgdlocal/_numba_gram.py, numba) against the numpy path, and the choice between them."""

import os
import subprocess
import sys

import numpy as np
import pytest

from dgdlocal import kernels, problems, runner

numba = pytest.importorskip("numba")

# n not a multiple of the 8-row groups; m not a multiple of any panel, vector width or unroll
SHAPES = [(37, 1001), (61, 2999), (8, 257), (3, 19)]


def _random(n, m, r, dtype, seed):
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(shape).astype(dtype) for shape in ((n, r), (m, r), (n, m)))


def _relative(a, b):
    return float(np.linalg.norm((a - b).astype(np.float64)) / np.linalg.norm(b.astype(np.float64)))


@pytest.mark.parametrize("n,m", SHAPES)
@pytest.mark.parametrize("r", [1, 2, 3, 4, 5, 7])
def test_compiled_products_equal_numpy_to_rounding(monkeypatch, n, m, r):
    monkeypatch.setattr(kernels, "PANEL_BYTES", 2 * r * 8 * 256)   # 256-column panels: several panels and a ragged last one
    U, V, Y = _random(n, m, r, np.float64, seed=n + m + r)
    YV, UtY = kernels.gram_products(U, V, Y)
    YV_numpy, UtY_numpy = problems.gram_products(U, V, Y)
    assert _relative(YV, YV_numpy) <= 1e-13
    assert _relative(UtY, UtY_numpy) <= 1e-13


@pytest.mark.parametrize("n,m", SHAPES[:2])
@pytest.mark.parametrize("r", [1, 3, 5])
def test_compiled_gradients_equal_numpy_in_float64_and_float32(monkeypatch, n, m, r):
    for dtype, tolerance in ((np.float64, 1e-13), (np.float32, 1e-5)):
        U, V, Y = _random(n, m, r, dtype, seed=r)
        monkeypatch.setenv(kernels.ENVIRONMENT, "numba")
        grad_U, grad_V = problems.factorization_gradients(U, V, Y)
        monkeypatch.setenv(kernels.ENVIRONMENT, "numpy")
        grad_U_numpy, grad_V_numpy = problems.factorization_gradients(U, V, Y)
        assert grad_U.dtype == grad_V.dtype == dtype
        assert _relative(grad_U, grad_U_numpy) <= tolerance
        assert _relative(grad_V, grad_V_numpy) <= tolerance


def test_a_nan_in_the_data_reaches_the_gradients(monkeypatch):
    monkeypatch.setenv(kernels.ENVIRONMENT, "numba")
    U, V, Y = _random(20, 50, 2, np.float64, seed=9)
    Y[13, 7] = np.nan
    grad_U, grad_V = problems.factorization_gradients(U, V, Y)
    assert np.isnan(grad_U[13]).all() and np.isnan(grad_V[7]).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("r", [1, 3, 4])
def test_warm_up_compiles_what_the_iterations_call(monkeypatch, dtype, r):
    """Factorization.warm_up (called by the solver before its timed loop) leaves nothing to compile or load for the
    real arrays: the driver's compiled signatures do not change at the first full-size call."""
    monkeypatch.setenv(kernels.ENVIRONMENT, "numba")
    U, V, Y = _random(37, 301, r, dtype, seed=r)
    problem = problems.Factorization(Y)
    assert problem.warm_up(U, V)
    compiled = set(kernels.driver(r).signatures)
    problem.value_and_gradients(U, V, value=False)
    assert set(kernels.driver(r).signatures) == compiled
    monkeypatch.setenv(kernels.ENVIRONMENT, "numpy")
    assert not problem.warm_up(U, V)


def test_choice_of_kernel(monkeypatch):
    U, V, Y = _random(16, 40, 2, np.float64, seed=1)
    monkeypatch.delenv(kernels.ENVIRONMENT, raising=False)
    assert kernels.mode() == "auto"
    assert not kernels.use_compiled(U, V, Y)                  # small: numpy
    monkeypatch.setattr(kernels, "MIN_BYTES", Y.nbytes)
    assert not kernels.use_compiled(U, V, Y)                  # 40 columns: numpy
    monkeypatch.setattr(kernels, "MIN_COLUMNS", 40)
    assert kernels.use_compiled(U, V, Y)                      # large enough: compiled
    monkeypatch.setenv(kernels.ENVIRONMENT, "numpy")
    assert not kernels.use_compiled(U, V, Y)
    monkeypatch.setenv(kernels.ENVIRONMENT, "numba")
    assert kernels.use_compiled(U, V, Y)
    assert not kernels.use_compiled(U, V, np.asfortranarray(Y))            # unsuitable inputs: numpy path
    assert not kernels.use_compiled(U, V.astype(np.float32), Y)
    assert not kernels.use_compiled(U.astype(int), V, Y)
    monkeypatch.setenv(kernels.ENVIRONMENT, "fast")
    with pytest.raises(ValueError, match="DGDLOCAL_KERNEL"):
        kernels.use_compiled(U, V, Y)


def test_a_simulated_run_is_the_same_with_either_kernel(monkeypatch):
    """Whole DGD+LOCAL runs (4 simulated ranks, 300 iterations) with each kernel agree to rounding."""
    config = runner.RunConfig(n=45, m=203, rank=3, condition_number=3.0, iterations=300, tolerance=0.0, log_every=50,
                              seed=3, quiet=True)
    outcomes = {}
    for mode in ("numba", "numpy"):
        monkeypatch.setenv(kernels.ENVIRONMENT, mode)
        context = runner.simulated_context(4)
        outcomes[mode] = runner.solve(runner.prepare(config, context), config, context)
    for j in range(4):
        assert _relative(outcomes["numba"].U[j], outcomes["numpy"].U[j]) <= 1e-11
        assert _relative(outcomes["numba"].V[j], outcomes["numpy"].V[j]) <= 1e-11
    # ‖R‖ = √f to 1e-8, or within 1e-15 ‖Y‖ (≈ 4ε ‖Y‖, the rounding of R itself) once the run is at that floor
    residuals = {mode: np.sqrt(outcome.diagnostics["objective"]) for mode, outcome in outcomes.items()}
    data_norm = residuals["numpy"][0]   # f(z_0) ≈ ‖Y‖² from the small initialization
    np.testing.assert_allclose(residuals["numba"], residuals["numpy"], rtol=1e-8, atol=1e-15 * data_norm)
    assert residuals["numpy"][-1] <= 1e-12 * data_norm   # the run did reach the floor


def test_the_kernel_still_loads_where_numba_has_no_writable_cache_dir():
    """cache=True raises at import when numba finds no cache locator; the kernel then compiles uncached."""
    if not hasattr(numba.core.config, "CACHE_LOCATOR_CLASSES"):
        pytest.skip("this numba has no NUMBA_CACHE_LOCATOR_CLASSES to simulate it")
    code = ("from dgdlocal import kernels; assert kernels.available(); "
            "print(type(kernels._load().gram_products_1._cache).__name__)")
    env = dict(os.environ, NUMBA_CACHE_LOCATOR_CLASSES="IPythonCacheLocator")   # finds nothing for a .py file
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "NullCache"


def test_a_bad_kernel_variable_ends_the_job_with_one_message_and_no_result(tmp_path):
    from conftest import mpirun

    output = tmp_path / "r.h5"
    code, stdout, stderr = mpirun(2, "--output", output, env={"DGDLOCAL_KERNEL": "fast"}, timeout=30)
    assert code == 2 and "Traceback" not in stderr
    assert stderr.count("DGDLOCAL_KERNEL='fast': choose one of auto, numba, numpy") == 1
    assert not output.exists()
