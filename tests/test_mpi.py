"""Multi-rank tests: run under `mpirun -n J python -m mpi4py -m pytest --with-mpi` for J = 1, 2, 3, 4.

Each test reads the communicator size, never assumes one, and agrees on its verdict
(allgather) before asserting, so a failure on one rank cannot hang the others.
"""

import os

import numpy as np
import pytest

from dgdlocal import runner

pytestmark = pytest.mark.mpi(min_size=1)


def _comm():
    from mpi4py import MPI

    return MPI.COMM_WORLD


def _max():
    from mpi4py import MPI

    return MPI.MAX


def test_ranks_that_disagree_on_the_configuration_stop_with_one_agreed_error():
    from dgdlocal import collectives
    from dgdlocal.errors import InputError

    comm = _comm()
    payload = b"same" if comm.Get_rank() < 2 else b"different"
    if comm.Get_size() <= 2:
        collectives.check_identical(comm, "configuration", payload)   # everyone agrees: no error
        return
    with pytest.raises(InputError, match=r"disagree on the configuration: rank\(s\) \[2"):
        collectives.check_identical(comm, "configuration", payload)


def test_an_input_error_on_one_rank_is_raised_on_every_rank():
    from dgdlocal import collectives
    from dgdlocal.errors import InputError

    comm = _comm()
    last = comm.Get_size() - 1

    def action():
        if comm.Get_rank() == last:
            raise InputError("bad block")
        return 1

    with pytest.raises(InputError, match="bad block") as caught:
        collectives.agreed(comm, action)
    assert caught.value.collective


def _config(**overrides):
    settings = dict(n=23, m=31, rank=3, condition_number=3.0, iterations=200, tolerance=0.0, log_every=50,
                    seed=7, quiet=True)
    settings.update(overrides)
    return runner.RunConfig(**settings)


def _relative_difference(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


CASES = {
    "factorization-ring": dict(topology="ring"),
    "factorization-complete": dict(topology="complete"),
    "factorization-star": dict(topology="star"),
    "factorization-erdos-renyi": dict(topology="erdos-renyi"),
    "completion": dict(problem="completion", sampling_rate=0.4),
    "sensing": dict(problem="sensing", n=9, m=13, rank=2),
    "sensing-balance": dict(problem="sensing", n=9, m=13, rank=2, balance=0.1),
    "sensing-spectral": dict(problem="sensing", n=9, m=13, rank=2, init="spectral", measurements=600),
    "symmetric-sensing": dict(problem="symmetric-sensing", n=8, rank=2),
    "least-squares": dict(problem="least-squares", n=6, m=31),
    "factorization-scaled": dict(topology="erdos-renyi", preconditioner="scaled", condition_number=100.0),
    "sensing-scaled-balance": dict(problem="sensing", n=9, m=13, rank=2, preconditioner="scaled", balance=0.1),
    # threshold 1: the gauge is applied at every 10th iteration, so the rebalancing path is exercised
    "factorization-rebalanced": dict(topology="star", rebalance_every=10, rebalance_threshold=1.0),
    "completion-rebalanced": dict(problem="completion", sampling_rate=0.4, rebalance_every=7, rebalance_threshold=1.0),
    # --method extra: full-rank (noisy) data, where its correction D_j matters; the gauge moves D_j too
    "extra-factorization-ring": dict(method="extra", noise=0.3),
    "extra-factorization-erdos-renyi": dict(method="extra", topology="erdos-renyi", noise=0.3),
    "extra-factorization-rebalanced": dict(method="extra", topology="star", noise=0.3, rebalance_every=10,
                                           rebalance_threshold=1.0),
    "extra-completion": dict(method="extra", problem="completion", sampling_rate=0.4, noise=0.3),
    "extra-sensing-spectral": dict(method="extra", problem="sensing", n=9, m=13, rank=2, init="spectral",
                                   measurements=600, noise=0.3),
    "extra-least-squares": dict(method="extra", problem="least-squares", n=6, m=31),
    "extra-factorization-aligned": dict(method="extra", noise=0.3, rebalance_every=5, align_gain=1.0),
    # gain 1: every copy that any rotation brings closer to rank 0's is rotated, so the alignment path is exercised
    "factorization-aligned": dict(topology="ring", rebalance_every=5, align_gain=1.0),
    # --u-step-scale: auto (a max over ranks every iteration), and a fixed scale on completion
    "factorization-u-step-auto": dict(topology="complete", u_step_scale="auto"),
    "completion-u-step-2": dict(problem="completion", sampling_rate=0.4, u_step_scale=2.0),
    # --method atc: the exchange carries U_j − sµ∇_U f_j, posted after the pass; with the gauge fixes and auto s
    # a fixed step, so a gauge is due at every check (with the auto step of the atc orders, twice as large at
    # J = 1, one check of the 40 finds the factors already balanced)
    "atc-factorization-rebalanced": dict(method="atc", rebalance_every=5, rebalance_threshold=1.0, align_gain=1.0,
                                         step=0.1),
    "atc-factorization-u-step-auto": dict(method="atc", topology="complete", u_step_scale="auto"),
    "atc-completion": dict(method="atc", problem="completion", sampling_rate=0.4, topology="erdos-renyi"),
    "atc-least-squares": dict(method="atc", problem="least-squares", n=6, m=31),
    # --method atc-overlap: [U_j; D_j^{k-1}] (2 × n × r) posted before the pass; D_j follows the gauge, restarts on Align
    "atc-overlap-factorization-rebalanced": dict(method="atc-overlap", topology="star", rebalance_every=10,
                                                 rebalance_threshold=1.0),
    "atc-overlap-factorization-aligned": dict(method="atc-overlap", rebalance_every=5, align_gain=1.0),
    "atc-overlap-factorization-u-step-auto": dict(method="atc-overlap", topology="complete", u_step_scale="auto"),
    # a star caps s below J (J ≥ 3), so V_j takes its own step t·µ, t from rank j's U_j
    "atc-overlap-factorization-u-step-auto-star": dict(method="atc-overlap", topology="star", u_step_scale="auto"),
    "atc-overlap-completion": dict(method="atc-overlap", problem="completion", sampling_rate=0.4,
                                   topology="erdos-renyi"),
    "atc-overlap-sensing-balance": dict(method="atc-overlap", problem="sensing", n=9, m=13, rank=2, balance=0.1),
    "atc-overlap-least-squares": dict(method="atc-overlap", problem="least-squares", n=6, m=31),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_mpi_run_equals_serial_simulation(case):
    """U_j and V_j of the J-rank MPI run equal the simulation of the same network (m=31 is not divisible by 2, 3, 4)."""
    comm = _comm()
    J, j = comm.Get_size(), comm.Get_rank()
    config = _config(**CASES[case])
    mpi_outcome = runner.solve(runner.prepare(config, runner.mpi_context(comm)), config, runner.mpi_context(comm))
    simulated = runner.simulated_context(J)
    simulated_outcome = runner.solve(runner.prepare(config, simulated), config, simulated)
    differences = [_relative_difference(mpi_outcome.U[0], simulated_outcome.U[j])]
    if mpi_outcome.V[0] is not None:
        differences.append(_relative_difference(mpi_outcome.V[0], simulated_outcome.V[j]))
    worst = comm.allreduce(max(differences), op=_max())
    assert mpi_outcome.iterations == simulated_outcome.iterations == config.iterations
    assert mpi_outcome.rebalances == simulated_outcome.rebalances
    assert mpi_outcome.alignments == simulated_outcome.alignments
    assert mpi_outcome.u_step_scale == simulated_outcome.u_step_scale
    assert mpi_outcome.v_step_scale == simulated_outcome.v_step_scale
    if "u-step" in case and J > 1:
        assert simulated_outcome.u_step_scale[0] > 1.0
    if "u-step-auto-star" in case and J >= 3:   # measured: t up to 2.0 at J = 3 and 4
        assert simulated_outcome.v_step_scale > 1.5
    if "aligned" in case and J > 1:
        assert simulated_outcome.alignments >= 1
    if "rebalanced" in case:
        assert simulated_outcome.rebalances == config.iterations // config.rebalance_every
    assert worst <= 1e-12, f"MPI and simulation differ by {worst:.2e} (relative)"
    if mpi_outcome.correction is not None:
        D_mpi, D_simulated = mpi_outcome.correction[0], simulated_outcome.correction[j]
        # J = 1: D stays exactly 0 on both paths. Elsewhere D_j (atc-overlap: sµ∇_U f_j) → 0 at an exact-rank
        # optimum, and its rounding is that of the U step it enters: relative to ‖D_j‖, or to 1e-2 ‖U_j‖ once smaller
        scale = max(np.linalg.norm(D_simulated), 1e-2 * np.linalg.norm(simulated_outcome.U[j]))
        difference = float(np.linalg.norm(D_mpi - D_simulated) / scale) if np.any(D_simulated) else float(np.any(D_mpi))
        worst_correction = comm.allreduce(difference, op=_max())
        assert worst_correction <= 1e-12, f"the stored D_j differ by {worst_correction:.2e} (relative)"
    if j == 0:
        # the squared norms f = ‖R‖² and Σ_j ‖U_j − Ū‖²: their roots to 1e-10, or within 1e-14 of the scale (‖Y‖,
        # ‖U‖) once a run reaches the rounding floor (consensus error ≈ 1e-30, where no digit is reproducible)
        diagnostics = mpi_outcome.diagnostics, simulated_outcome.diagnostics
        scales = {"objective": np.sqrt(diagnostics[1]["objective"][0]),   # ≈ ‖Y‖ from the small initialization
                  "consensus_error": np.sqrt(sum(np.sum(U * U) for U in simulated_outcome.U))}
        for name, scale in scales.items():
            np.testing.assert_allclose(np.sqrt(diagnostics[0][name]), np.sqrt(diagnostics[1][name]), rtol=1e-10,
                                       atol=1e-14 * scale, err_msg=name)
        np.testing.assert_allclose(diagnostics[0]["gradient_norm"], diagnostics[1]["gradient_norm"], rtol=1e-10,
                                   atol=1e-300)


def test_exact_consensus_and_global_optimality_on_exact_rank_data():
    """Fig. 1 (left): on exact rank-r data both the objective and consensus fall to ≤ 1e-20 (relative)."""
    comm = _comm()
    config = _config(n=40, m=60, rank=4, condition_number=2.0, iterations=20000, tolerance=1e-11, log_every=100)
    context = runner.mpi_context(comm)
    prepared = runner.prepare(config, context)
    outcome = runner.solve(prepared, config, context)
    total_U2 = comm.allreduce(float(np.sum(outcome.U[0] ** 2)))
    consensus = comm.allreduce(float(np.sum((outcome.U[0] - outcome.mean_U) ** 2)))
    y2 = comm.allreduce(float(np.sum(prepared.problems[0].Y ** 2)))
    objective = comm.allreduce(float(np.sum((outcome.U[0] @ outcome.V[0].T - prepared.problems[0].Y) ** 2)))
    assert outcome.status == "converged"
    assert consensus / total_U2 <= 1e-20, consensus / total_U2
    assert objective / y2 <= 1e-20, objective / y2


def test_the_exchange_returns_before_a_busy_neighbour_enters_mpi_again():
    """finish() waits for the receives only: a rank that sent its copy and then computes without MPI calls
    does not hold its neighbours (their sends to it complete later, before their buffer is reused)."""
    import time

    from dgdlocal import topology
    from dgdlocal.exchange import NeighbourExchange

    comm = _comm()
    J, rank = comm.Get_size(), comm.Get_rank()
    weights = topology.mixing_weights(topology.build_adjacency("ring", J))
    # 16 KB messages: above MPICH's eager limit over shared memory (≈ 4 KB), so a send completes only when the
    # receiving rank enters MPI after posting its receive
    shape = (256, 8)
    exchange = NeighbourExchange(comm, weights, shape)
    busy_seconds = 2.0
    rounds = []
    for k in range(3):   # three rounds: the send buffers alternate, so round 2 reuses round 0's
        copy = np.full(shape, 10.0 * k + rank)
        comm.Barrier()
        if rank == 0 and k == 0:
            time.sleep(0.5)   # still busy with the previous iteration: the neighbours' copies arrive first
        exchange.start([copy])
        if rank == 0 and k == 0:
            time.sleep(busy_seconds)   # rank 0 posted its receives and sends, then "computes" without MPI calls
            awake = time.time()
        (entries,) = exchange.finish()
        rounds.append((time.time(), {i: float(U_i[0, 0]) for i, _, U_i in entries}))
    exchange.free()
    woke = comm.bcast(awake if rank == 0 else None, root=0)
    expected = [{i: 10.0 * k + i for i in topology.neighbours(weights, rank) + [rank]} for k in range(3)]
    got = [received for _, received in rounds]
    ahead = rank == 0 or rounds[0][0] < woke   # rank 0 itself sleeps; everyone else returns before it wakes
    verdicts = comm.allgather((got == expected, ahead))
    assert all(ok for ok, _ in verdicts), f"wrong copies received: {got} != {expected}"
    if os.environ.get("MPIR_CVAR_NOLOCAL") != "1":
        # over TCP (shared memory off) a large message moves only while its *sender* is in MPI too (no
        # progress thread), so there the neighbours of a busy rank wait for it whatever the exchange does
        assert all(early for _, early in verdicts), "a rank's finish() waited for rank 0 to enter MPI again"
