"""The only module that talks to graph neighbours.

Each iteration ``start(U)`` copies U_j into a send buffer and starts persistent
nonblocking sends to, and receives from, exactly the neighbours of rank j (the
nonzero off-diagonal entries of row j of W̃); ``finish()`` waits for the receives
and returns [(i, W̃_ji, U_i)] in ascending i, self included, for the mixing step.
The graph is declared to MPI with a distributed-graph communicator.

The sends are not waited for in the iteration that starts them. MPI completes a
send only once the receiving rank has entered the library after posting its
receive, which a busy neighbour does at the end of its own pass: waiting for the
sends in ``finish()`` would hold every rank until its slowest neighbour has
finished the same iteration. Two send buffers alternate instead, and iteration k
waits for the sends of iteration k − 2 before reusing their buffer; by then every
neighbour has received them (iteration k − 1 needed its message of k − 1, sent
after its iteration k − 2 completed). A rank can then run up to one iteration
ahead of a neighbour, so per-iteration jitter of the ranks' compute averages out
instead of adding up (docs/performance.md §4).
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from .topology import neighbours

#: Exchanges left active after an exception (NeighbourExchange.free(complete=False)): their send buffers must
#: outlive the sends MPI may still be serving.
_ABANDONED: list = []


class NeighbourExchange:
    """Persistent Isend/Irecv of an n×r factor copy (or of any fixed-shape array, e.g. 2 × n × r for
    --method atc-overlap) with the graph neighbours of this rank; sends double-buffered (module docstring)."""

    def __init__(self, comm, weights: np.ndarray, shape: tuple, dtype=np.float64):
        self.rank = comm.Get_rank()
        self.neighbours = neighbours(weights, self.rank)
        self.graph = comm.Create_dist_graph_adjacent(self.neighbours, self.neighbours, reorder=False)
        self.weights = {i: float(weights[self.rank, i]) for i in self.neighbours + [self.rank]}
        self.order = sorted(self.weights)   # the mixing order finish() returns, self included
        self.send_buffers = (np.empty(shape, dtype=dtype), np.empty(shape, dtype=dtype))
        self.receive_buffers = {i: np.empty(shape, dtype=dtype) for i in self.neighbours}
        self.receives = [self.graph.Recv_init(self.receive_buffers[i], source=i, tag=0) for i in self.neighbours]
        self.sends = tuple([self.graph.Send_init(buffer, dest=i, tag=0) for i in self.neighbours]
                           for buffer in self.send_buffers)
        self.posts = tuple(self.receives + sends for sends in self.sends)   # what start() posts with buffer b
        self.in_flight = [False, False]   # sends of send_buffers[b] started and not yet waited for
        self.parity = 0                   # the buffer of the next start()
        self.own = None

    def start(self, U_list):
        """Post the exchange of this rank's U_j (U_list holds exactly one local copy)."""
        (self.own,) = U_list
        if not self.neighbours:
            return
        buffer = self.parity
        if self.in_flight[buffer]:
            MPI.Prequest.Waitall(self.sends[buffer])   # iteration k − 2's sends: already received
        np.copyto(self.send_buffers[buffer], self.own)
        MPI.Prequest.Startall(self.posts[buffer])
        self.in_flight[buffer] = True
        self.parity = 1 - buffer

    def finish(self):
        """Wait for the neighbours' copies; return [[(i, W̃_ji, U_i) for i ascending]] for the one local rank."""
        if self.receives:
            MPI.Prequest.Waitall(self.receives)
        entries = [(i, self.weights[i], self.own if i == self.rank else self.receive_buffers[i])
                   for i in self.order]
        return [entries]

    def free(self, complete: bool = True):
        """Complete the sends still in flight, then free the requests and the graph communicator.

        complete: the run ended on every rank alike, so every neighbour has posted the receives that match
        them and completes them in its own next MPI call. After an exception on this rank (the job is ending)
        nothing is waited for: the requests and buffers are left to MPI, referenced by `_ABANDONED`."""
        if not complete:
            _ABANDONED.append(self)
            return
        for buffer, requests in enumerate(self.sends):
            if self.in_flight[buffer]:
                MPI.Prequest.Waitall(requests)
            for request in requests:
                request.Free()
        for request in self.receives:
            request.Free()
        self.graph.Free()
