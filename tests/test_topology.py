"""Graphs, mixing-weight rules and weight validation (serial, pure numpy)."""

import ast
import math
import pathlib

import numpy as np
import pytest

from dgdlocal import topology
from dgdlocal.errors import InputError
from dgdlocal.topology import (TOPOLOGIES, WEIGHT_RULES, build_adjacency, grid_shape, is_connected, lazy,
                               make_network, mixing_weights, neighbours, network_from_weights, omega,
                               spectral_summary, validate_weights)

SIZES = (1, 2, 3, 4, 5, 8, 9, 12, 16)


def formable(name, J):
    if name == "hypercube":
        return J & (J - 1) == 0
    if name == "grid":
        return J <= 3 or grid_shape(J)[0] > 1
    if name == "torus":
        return J == 1 or grid_shape(J)[0] > 1
    return True


CASES = [(name, J) for name in TOPOLOGIES for J in SIZES if formable(name, J)]


def edges(A):
    return {(int(i), int(j)) for i, j in np.argwhere(np.triu(A, k=1))}


def assert_mixing_matrix(W, A, *, positive_diagonal=True):
    J = A.shape[0]
    assert W.dtype == np.float64 and W.shape == (J, J)
    np.testing.assert_array_equal(W, W.T)
    assert W.min() >= 0.0
    np.testing.assert_allclose(W.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    off = ~np.eye(J, dtype=bool)
    np.testing.assert_array_equal(W[off] > 0, A[off])
    if positive_diagonal:
        assert np.all(np.diag(W) > 0)


# --------------------------------------------------------------------------- adjacency


@pytest.mark.parametrize("name, J", CASES)
def test_adjacency_is_symmetric_boolean_connected(name, J):
    A = build_adjacency(name, J)
    assert A.dtype == bool and A.shape == (J, J)
    np.testing.assert_array_equal(A, A.T)
    assert not np.diag(A).any()
    assert is_connected(A)


def test_every_topology_covered_at_several_sizes():
    for name in TOPOLOGIES:
        assert sum(1 for case in CASES if case[0] == name) >= 4, name


def test_single_rank_is_an_empty_graph():
    for name in TOPOLOGIES:
        A = build_adjacency(name, 1)
        np.testing.assert_array_equal(A, [[False]])
        for rule in WEIGHT_RULES:
            np.testing.assert_array_equal(mixing_weights(A, rule), [[1.0]])


def test_two_ranks_ring_path_complete_agree():
    expected = np.array([[False, True], [True, False]])
    for name in ("ring", "path", "complete", "star", "exponential", "hypercube", "grid"):
        np.testing.assert_array_equal(build_adjacency(name, 2), expected, err_msg=name)


def test_simple_graph_edges():
    assert edges(build_adjacency("ring", 5)) == {(0, 1), (1, 2), (2, 3), (3, 4), (0, 4)}
    assert edges(build_adjacency("path", 4)) == {(0, 1), (1, 2), (2, 3)}
    assert edges(build_adjacency("star", 4)) == {(0, 1), (0, 2), (0, 3)}
    assert len(edges(build_adjacency("complete", 5))) == 10
    # exponential, J=8: offsets ±1, ±2, ±4 mod 8 -> degree 5 everywhere
    A = build_adjacency("exponential", 8)
    assert neighbours(A, 0) == [1, 2, 4, 6, 7]
    assert set(A.sum(axis=1)) == {5}


def test_grid_and_torus_shapes_for_12_ranks():
    assert grid_shape(12) == (3, 4)
    assert grid_shape(9) == (3, 3)
    assert grid_shape(8) == (2, 4)
    grid = build_adjacency("grid", 12)
    # rank id = row*4 + col
    assert neighbours(grid, 0) == [1, 4]
    assert neighbours(grid, 5) == [1, 4, 6, 9]
    assert neighbours(grid, 11) == [7, 10]
    assert len(edges(grid)) == 3 * 3 + 2 * 4
    torus = build_adjacency("torus", 12)
    assert neighbours(torus, 0) == [1, 3, 4, 8]
    assert neighbours(torus, 5) == [1, 4, 6, 9]
    assert set(torus.sum(axis=1)) == {4}
    assert len(edges(torus)) == 24


def test_torus_with_a_side_of_two_has_no_duplicate_edges():
    # 2×4: wrapping the side of length 2 repeats the vertical edge; degree is 3, not 4
    A = build_adjacency("torus", 8)
    assert set(A.sum(axis=1)) == {3}
    # 2×2: the torus is the grid (a 4-cycle 0-1-3-2), every rank of degree 2
    np.testing.assert_array_equal(build_adjacency("torus", 4), build_adjacency("grid", 4))
    assert edges(build_adjacency("torus", 4)) == {(0, 1), (0, 2), (1, 3), (2, 3)}


def test_grid_and_torus_match_networkx():
    nx = pytest.importorskip("networkx")
    for J in (6, 12, 16, 15):
        rows, cols = grid_shape(J)
        for name, periodic in (("grid", False), ("torus", True)):
            graph = nx.grid_2d_graph(rows, cols, periodic=periodic)
            expected = {tuple(sorted((r * cols + c, s * cols + d))) for (r, c), (s, d) in graph.edges}
            assert edges(build_adjacency(name, J)) == expected, (name, J)


def test_hypercube_neighbours_differ_in_one_bit():
    for J in (2, 4, 8, 16):
        A = build_adjacency("hypercube", J)
        k = int(math.log2(J))
        assert set(A.sum(axis=1)) == {k}
        for i, j in edges(A):
            assert bin(i ^ j).count("1") == 1


def test_erdos_renyi_is_seeded_and_connected():
    a = build_adjacency("erdos-renyi", 16, seed=3, edge_probability=0.3)
    b = build_adjacency("erdos-renyi", 16, seed=3, edge_probability=0.3)
    c = build_adjacency("erdos-renyi", 16, seed=4, edge_probability=0.3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    for seed in range(20):
        assert is_connected(build_adjacency("erdos-renyi", 12, seed=seed, edge_probability=0.25))
    np.testing.assert_array_equal(build_adjacency("erdos-renyi", 6, edge_probability=1.0),
                                  build_adjacency("complete", 6))


@pytest.mark.parametrize("J", [5, 7, 13])
def test_grid_of_prime_rank_count_is_refused(J):
    with pytest.raises(InputError, match=rf"2-D grid cannot be formed from J={J} ranks.*J=\d+ or J=\d+.*ring"):
        build_adjacency("grid", J)
    with pytest.raises(InputError, match=rf"2-D torus cannot be formed from J={J} ranks"):
        build_adjacency("torus", J)


def test_grid_error_names_nearby_counts():
    with pytest.raises(InputError, match=r"J=6 or J=8"):
        build_adjacency("grid", 7)
    with pytest.raises(InputError, match=r"J=4"):
        build_adjacency("torus", 3)


def test_hypercube_needs_power_of_two():
    with pytest.raises(InputError, match=r"^The hypercube topology needs a power-of-two number of ranks\. Got J=6\."):
        build_adjacency("hypercube", 6)


@pytest.mark.parametrize("p", [0, -0.1, 1.5, float("nan")])
def test_erdos_renyi_probability_range(p):
    with pytest.raises(InputError, match=r"'edge_probability' parameter must be a float in the range \(0, 1\]"):
        build_adjacency("erdos-renyi", 5, edge_probability=p)


def test_erdos_renyi_gives_up_with_advice():
    with pytest.raises(InputError, match=r"J=40 .* p=0\.01 .*100 draws.*larger --edge-probability"):
        build_adjacency("erdos-renyi", 40, edge_probability=0.01)


def test_unknown_names_use_the_parameter_message():
    with pytest.raises(InputError, match=r"^The 'topology' parameter must be one of ring, path, star, complete, "
                                         r"grid, torus, hypercube, erdos-renyi, exponential\. Got 'foo' instead\.$"):
        build_adjacency("foo", 4)
    with pytest.raises(InputError, match=r"^The 'rule' parameter must be one of metropolis, max-degree, "
                                         r"laplacian\. Got 'uniform' instead\.$"):
        mixing_weights(build_adjacency("ring", 4), "uniform")
    with pytest.raises(InputError, match="'topology' parameter"):
        make_network("moebius", 4)
    with pytest.raises(InputError, match="'J' parameter"):
        build_adjacency("ring", 0)


# --------------------------------------------------------------------------- weights


@pytest.mark.parametrize("rule", WEIGHT_RULES)
@pytest.mark.parametrize("name, J", CASES)
def test_every_rule_on_every_topology(name, J, rule):
    A = build_adjacency(name, J, seed=1)
    W = mixing_weights(A, rule)
    assert_mixing_matrix(W, A)
    assert is_connected(W != 0)
    # default: the smallest self-weight shift (1 − t) W + t I with λ_min ≥ 0
    network = make_network(name, J, rule=rule, seed=1)
    assert_mixing_matrix(network.weights, A)
    lambda_min = np.linalg.eigvalsh(W)[0]
    t = network.self_weight_shift
    if lambda_min < -1e-12:
        assert t == pytest.approx(-lambda_min / (1 - lambda_min), rel=1e-12) and 0 < t <= 0.5
        assert network.summary["lambda_min"] == pytest.approx(0.0, abs=1e-12)
    else:
        assert t == 0.0
        np.testing.assert_array_equal(network.weights, W)
    np.testing.assert_allclose(network.weights, (1 - t) * W + t * np.eye(J), rtol=0, atol=1e-15)
    assert network.lazy_applied == (t == 0.5)
    assert network.source == name
    assert 0.0 < network.summary["spectral_gap"] <= 1.0
    # the papers' lazy transform: (W + I)/2 iff ω ≥ 1/2, which gives ω < 1/2
    papers = make_network(name, J, rule=rule, seed=1, transform="lazy")
    assert_mixing_matrix(papers.weights, A)
    assert papers.summary["omega"] < 0.5
    assert papers.lazy_applied == (omega(W) >= 0.5) == (papers.self_weight_shift == 0.5)
    np.testing.assert_array_equal(papers.weights, lazy(W) if papers.lazy_applied else W)
    # the shift never narrows the spectral gap more than the lazy transform does
    assert network.summary["spectral_gap"] >= papers.summary["spectral_gap"] - 1e-12


def test_metropolis_and_max_degree_values_on_a_star():
    A = build_adjacency("star", 4)  # hub degree 3, leaves degree 1
    W = mixing_weights(A, "metropolis")
    np.testing.assert_allclose(W[0], [0.25, 0.25, 0.25, 0.25])
    np.testing.assert_allclose(W[1], [0.25, 0.75, 0.0, 0.0])
    path = build_adjacency("path", 3)  # degrees 1, 2, 1
    np.testing.assert_allclose(mixing_weights(path, "metropolis"),
                               [[2 / 3, 1 / 3, 0], [1 / 3, 1 / 3, 1 / 3], [0, 1 / 3, 2 / 3]])
    np.testing.assert_allclose(mixing_weights(path, "max-degree"),
                               [[2 / 3, 1 / 3, 0], [1 / 3, 1 / 3, 1 / 3], [0, 1 / 3, 2 / 3]])
    np.testing.assert_allclose(mixing_weights(A, "max-degree")[1], [0.25, 0.75, 0, 0])


def test_laplacian_rule_uses_the_best_constant_when_it_keeps_self_weights_positive():
    # ring of 5: L eigenvalues 2 − 2cos(2πk/5); α = 2/(λ_max + λ_2) = 2/5 exactly (λ_max + λ_2 = 5)
    W = mixing_weights(build_adjacency("ring", 5), "laplacian")
    assert W[0, 1] == pytest.approx(0.4, abs=1e-14)
    assert W[0, 0] == pytest.approx(0.2, abs=1e-14)
    # hypercube of 8: L eigenvalues 0, 2, 4, 6 -> α = 2/8
    W = mixing_weights(build_adjacency("hypercube", 8), "laplacian")
    assert W[0, 1] == pytest.approx(0.25, abs=1e-14)


def test_laplacian_rule_falls_back_to_max_degree():
    # star of 6: α_best = 2/(6 + 1) would make the hub's self-weight 1 − 5·2/7 < 0
    # path: α_best = 1/2 exactly, which zeroes the interior self-weights
    for name, J in (("star", 6), ("path", 6), ("grid", 12)):
        A = build_adjacency(name, J)
        np.testing.assert_array_equal(mixing_weights(A, "laplacian"), mixing_weights(A, "max-degree"))


def test_mixing_weights_rejects_bad_adjacency():
    with pytest.raises(InputError, match="square"):
        mixing_weights(np.zeros((2, 3), dtype=bool))
    with pytest.raises(InputError, match=r"symmetric; entry \(0, 1\)"):
        mixing_weights(np.array([[0, 1], [0, 0]], dtype=bool))
    with pytest.raises(InputError, match="False diagonal"):
        mixing_weights(np.eye(2, dtype=bool))


def test_ring_of_four_spectrum_in_closed_form():
    # Metropolis on a ring of 4: every weight 1/3, circulant (1/3, 1/3, 0, 1/3),
    # eigenvalues 1/3 + (2/3)cos(2πk/4) = 1, 1/3, −1/3, 1/3.
    W = mixing_weights(build_adjacency("ring", 4), "metropolis")
    np.testing.assert_allclose(W, np.full((4, 4), 1 / 3) * (1 - np.fliplr(np.eye(4))[[1, 0, 3, 2]]), atol=1e-15)
    summary = spectral_summary(W)
    assert summary["omega"] == pytest.approx(2 / 3, abs=1e-15)
    assert summary["lambda_min"] == pytest.approx(-1 / 3, abs=1e-14)
    assert summary["lambda_2"] == pytest.approx(1 / 3, abs=1e-14)
    assert summary["spectral_gap"] == pytest.approx(2 / 3, abs=1e-14)
    # default shift: t = (1/3)/(4/3) = 1/4, eigenvalues (3λ + 1)/4 = 1, 1/2, 1/2, 0
    network = make_network("ring", 4)
    assert network.self_weight_shift == pytest.approx(0.25, abs=1e-15) and not network.lazy_applied
    assert network.summary["omega"] == pytest.approx(1 / 2, abs=1e-15)
    assert network.summary["lambda_min"] == pytest.approx(0.0, abs=1e-14)
    assert network.summary["lambda_2"] == pytest.approx(1 / 2, abs=1e-14)
    assert network.summary["spectral_gap"] == pytest.approx(1 / 2, abs=1e-14)
    # ω = 2/3 >= 1/2, so the papers' transform goes lazy: eigenvalues (1 + λ)/2 = 1, 2/3, 2/3, 1/3
    network = make_network("ring", 4, transform="lazy")
    assert network.lazy_applied and network.self_weight_shift == 0.5
    assert network.summary["omega"] == pytest.approx(1 / 3, abs=1e-15)
    assert network.summary["lambda_min"] == pytest.approx(1 / 3, abs=1e-14)
    assert network.summary["lambda_2"] == pytest.approx(2 / 3, abs=1e-14)
    assert network.summary["spectral_gap"] == pytest.approx(1 / 3, abs=1e-14)


def test_ring_of_five_spectrum_in_closed_form():
    W = mixing_weights(build_adjacency("ring", 5), "metropolis")
    eig = [1 / 3 + 2 / 3 * math.cos(2 * math.pi * k / 5) for k in range(5)]
    summary = spectral_summary(W)
    assert summary["lambda_min"] == pytest.approx(min(eig), abs=1e-14)
    assert summary["lambda_2"] == pytest.approx(sorted(eig)[-2], abs=1e-14)
    # λ_2 = 1/3 + (2/3)cos(2π/5) ≈ 0.539 beats |λ_min| = |1/3 + (2/3)cos(4π/5)| ≈ 0.206
    assert summary["spectral_gap"] == pytest.approx(2 / 3 - 2 / 3 * math.cos(2 * math.pi / 5), abs=1e-14)


def test_single_rank_summary():
    assert spectral_summary(np.array([[1.0]])) == {"omega": 0.0, "lambda_min": 1.0, "lambda_2": 0.0,
                                                  "spectral_gap": 1.0}


def test_lazy_and_omega():
    W = mixing_weights(build_adjacency("complete", 4))  # all entries 1/4
    assert omega(W) == pytest.approx(0.75)
    np.testing.assert_allclose(lazy(W), np.full((4, 4), 1 / 8) + np.eye(4) / 2)
    assert omega(lazy(W)) == pytest.approx(0.375)


def test_neighbours_are_sorted_python_ints():
    W = make_network("star", 5).weights
    assert neighbours(W, 0) == [1, 2, 3, 4]
    assert neighbours(W, 3) == [0]
    assert all(type(i) is int for i in neighbours(W, 0))
    assert neighbours(np.array([[1.0]]), 0) == []


def test_network_weights_are_read_only():
    network = make_network("ring", 6)
    with pytest.raises(ValueError):
        network.weights[0, 0] = 2.0


# --------------------------------------------------------------------------- validation


def ring_weights(J=4):
    return mixing_weights(build_adjacency("ring", J))


def test_validate_weights_accepts_and_symmetrises():
    W = ring_weights(5)
    W[0, 1] += 1e-13
    W[0, 0] -= 1e-13
    checked = validate_weights(W.tolist(), 5)
    assert checked.dtype == np.float64 and checked.flags.c_contiguous
    np.testing.assert_array_equal(checked, checked.T)
    np.testing.assert_allclose(checked, ring_weights(5), atol=1e-12)
    fortran = np.asfortranarray(ring_weights(5))
    assert validate_weights(fortran, 5).flags.c_contiguous
    np.testing.assert_array_equal(validate_weights([[1.0]], 1), [[1.0]])


@pytest.mark.parametrize("W, J, message", [
    (np.ones(4) / 4, 4, r"must be 2-D \(J×J\)\. Got an array of shape \(4,\)"),
    (np.ones((2, 3)) / 3, 2, r"must be square \(J×J\)\. Got 2×3"),
    (np.ones((3, 3)) / 3, 4, r"^The weight matrix is 3×3 but the job has J=4 ranks\.$"),
    ([["a", "b"], ["c", "d"]], 2, r"must be a numeric J×J array"),
    (np.array([[0.5, 0.5j], [0.5, 0.5]]), 2, r"must be real"),
])
def test_validate_weights_shape_errors(W, J, message):
    with pytest.raises(InputError, match=message):
        validate_weights(W, J)


def test_validate_weights_non_finite():
    W = ring_weights()
    W[2, 3] = np.nan
    with pytest.raises(InputError, match=r"1 non-finite entries; W\[2, 3\] = nan"):
        validate_weights(W, 4)
    W[2, 3] = np.inf
    with pytest.raises(InputError, match=r"W\[2, 3\] = inf"):
        validate_weights(W, 4)


def test_validate_weights_asymmetric():
    W = ring_weights()
    W[0, 1], W[0, 0] = 0.5, W[0, 0] - (0.5 - W[0, 1])
    with pytest.raises(InputError, match=r"symmetric: W\[0, 1\] = 0\.5 but W\[1, 0\] = 0\.333"):
        validate_weights(W, 4)


def test_validate_weights_negative():
    W = np.array([[1.2, -0.2], [-0.2, 1.2]])
    with pytest.raises(InputError, match=r"non-negative: W\[0, 1\] = -0\.2 \(2 negative entries\)"):
        validate_weights(W, 2)


def test_validate_weights_clips_roundoff_negatives():
    W = ring_weights()
    W[0, 2] = W[2, 0] = -1e-13
    checked = validate_weights(W, 4)
    assert checked[0, 2] == 0.0 and checked.min() >= 0.0


def test_validate_weights_row_sums():
    W = ring_weights()
    W[3, 3] = 0.5
    with pytest.raises(InputError, match=r"row 3 sums to 1\.166.*\(1 of 4 rows"):
        validate_weights(W, 4)


def test_validate_weights_disconnected():
    W = np.kron(np.eye(2), np.full((2, 2), 0.5))  # ranks {0, 1} and {2, 3}
    with pytest.raises(InputError, match=r"must be connected; it has 2 components: ranks 0, 1; ranks 2, 3"):
        validate_weights(W, 4)
    with pytest.raises(InputError, match=r"3 components"):
        validate_weights(np.eye(3), 3)


def test_network_from_weights_warns_when_omega_is_large():
    W = ring_weights()  # ω = 2/3
    network, warnings = network_from_weights(W, 4)
    assert network.source == "file" and not network.lazy_applied
    assert network.summary["omega"] == pytest.approx(2 / 3)
    assert len(warnings) == 1
    assert "omega < 1/2" in warnings[0] and "Thm 2.5" in warnings[0] and "--lazy" in warnings[0]
    assert "(W+I)/2" in warnings[0]

    network, warnings = network_from_weights(W, 4, lazy_transform=True)
    assert network.lazy_applied and warnings == []
    assert network.summary["omega"] == pytest.approx(1 / 3)
    np.testing.assert_allclose(network.weights, lazy(W))


def test_network_from_weights_small_omega_has_no_warning():
    network, warnings = network_from_weights(make_network("ring", 6, transform="lazy").weights, 6)
    assert warnings == [] and network.summary["omega"] < 0.5


def test_network_from_weights_zero_self_weight_still_warns_after_lazy():
    W = np.array([[0.0, 1.0], [1.0, 0.0]])
    network, warnings = network_from_weights(W, 2, lazy_transform=True)
    assert network.summary["omega"] == pytest.approx(0.5)
    assert len(warnings) == 1 and "self-weight" in warnings[0]


def test_topology_module_is_pure_numpy():
    source = pathlib.Path(topology.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "math", "dataclasses", "numpy"}, imported


def test_describe_step_bound():
    """Thm 2.5's bound is stored as 0 when ω ≥ 1/2 and then shown as none."""
    assert topology.describe_step_bound(0.0) == "none (ω ≥ 1/2)"
    assert topology.describe_step_bound(0.0123456) == "0.0123"
    assert topology.describe_step_bound(0.0123456, ".4g") == "0.01235"
