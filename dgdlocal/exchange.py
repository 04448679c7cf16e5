"""The only module that talks to graph neighbours.

Each iteration ``start(U)`` copies U_j into a send buffer and starts persistent
nonblocking sends to, and receives from, exactly the neighbours of rank j (the
nonzero off-diagonal entries of row j of W̃); ``finish()`` waits for them and
returns [(i, W̃_ji, U_i)] in ascending i, self included, for the mixing step.
The graph is declared to MPI with a distributed-graph communicator.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from .topology import neighbours


class NeighbourExchange:
    """Persistent Isend/Irecv of an n×r factor copy (or of any fixed-shape array, e.g. 2 × n × r for
    --method atc-overlap) with the graph neighbours of this rank."""

    def __init__(self, comm, weights: np.ndarray, shape: tuple, dtype=np.float64):
        self.rank = comm.Get_rank()
        self.neighbours = neighbours(weights, self.rank)
        self.graph = comm.Create_dist_graph_adjacent(self.neighbours, self.neighbours, reorder=False)
        self.weights = {i: float(weights[self.rank, i]) for i in self.neighbours + [self.rank]}
        self.send_buffer = np.empty(shape, dtype=dtype)
        self.receive_buffers = {i: np.empty(shape, dtype=dtype) for i in self.neighbours}
        self.requests = [self.graph.Recv_init(self.receive_buffers[i], source=i, tag=0) for i in self.neighbours]
        self.requests += [self.graph.Send_init(self.send_buffer, dest=i, tag=0) for i in self.neighbours]
        self.own = None

    def start(self, U_list):
        """Post the exchange of this rank's U_j (U_list holds exactly one local copy)."""
        (self.own,) = U_list
        np.copyto(self.send_buffer, self.own)
        if self.requests:
            MPI.Prequest.Startall(self.requests)

    def finish(self):
        """Wait for the exchange; return [[(i, W̃_ji, U_i) for i ascending]] for the one local rank."""
        if self.requests:
            MPI.Prequest.Waitall(self.requests)
        entries = [(i, self.weights[i], self.own if i == self.rank else self.receive_buffers[i])
                   for i in sorted(self.weights)]
        return [entries]

    def free(self):
        for request in self.requests:
            request.Free()
        self.graph.Free()
