"""The same network run serially in one process: J virtual ranks, no MPI.

The loop, the gradients and the mixing are those of the MPI run (solver.py);
only the transport differs, so a J-rank MPI run reproduces the simulation to
rounding. Use it as the reference in tests and for networks larger than the
machine (`python -m dgdlocal run --simulate J`).
"""

from __future__ import annotations

import numpy as np

from .topology import neighbours


class SimulatedExchange:
    """All J copies live here; 'receiving' U_i is reading the list."""

    def __init__(self, weights: np.ndarray):
        J = weights.shape[0]
        self.entries = [[(i, float(weights[j, i])) for i in sorted(neighbours(weights, j) + [j])] for j in range(J)]
        self.U = None

    def start(self, U_list):
        self.U = list(U_list)

    def finish(self):
        return [[(i, weight, self.U[i]) for i, weight in row] for row in self.entries]


class SimulatedReducer:
    """One process holds every rank: local sums are already global."""

    is_root = True

    def sum(self, local):
        return np.asarray(local, dtype=np.float64).copy()

    def ordered_sum(self, local):
        return np.asarray(local, dtype=np.float64).copy()

    def broadcast(self, array):
        return np.asarray(array, dtype=np.float64).copy()

    def start_max(self, value):
        return _Ready(float(value))

    def decide(self, decision):
        return decision

    def stop_vote(self):
        return _ImmediateVote()

    def gather_rows(self, blocks):
        return np.concatenate(blocks)

    def gather_values(self, values):
        return list(values)


class _Ready:
    """A reduction that is already complete: the local value is the global one."""

    def __init__(self, value):
        self.value = value

    def wait(self):
        return self.value


class _ImmediateVote:
    """One process: its own flag is everybody's."""

    def __call__(self, flag):
        return bool(flag)

    def close(self):
        pass
