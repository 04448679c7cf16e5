"""Global communication outside the neighbour exchange: agreed errors, checks, reductions.

Used only at start-up, at diagnostic iterations and at the end; the iteration
itself talks to graph neighbours only (exchange.py).
"""

from __future__ import annotations

import hashlib
import traceback

import numpy as np
from mpi4py import MPI

from .errors import InputError, RankFailure


def agreed(comm, action, *args, **kwargs):
    """Run `action` on every rank; if it raises InputError on any rank, raise it on all.

    The message names the lowest failing rank, so the job ends with one clear message
    instead of one rank waiting forever in the next collective. Unexpected exceptions
    are turned into an agreed failure too, carrying their traceback.
    """
    failure = None
    result = None
    try:
        result = action(*args, **kwargs)
    except InputError as exc:
        failure = ("input", str(exc))
    except Exception:  # noqa: BLE001 - reported collectively below
        failure = ("crash", traceback.format_exc())
    failures = comm.allgather(failure)
    for rank, failure in enumerate(failures):
        if failure is None:
            continue
        kind, message = failure
        if kind == "input":
            where = "" if all(f == failure for f in failures) else f" (on rank {rank})"
            raise InputError(message + where, collective=True)
        raise RankFailure(f"rank {rank} failed unexpectedly:\n{message}")
    return result


def check_identical(comm, what: str, payload: bytes) -> None:
    """Stop with an agreed error unless every rank holds the same `payload` (compared by SHA-256)."""
    digest = hashlib.sha256(payload).hexdigest()
    digests = comm.allgather(digest)
    differing = [rank for rank, d in enumerate(digests) if d != digests[0]]
    if differing:
        raise InputError(f"The ranks disagree on the {what}: rank(s) {differing} differ from rank 0. "
                         "Every rank must be started with the same arguments and files.", collective=True)


class Reducer:
    """Reductions to the coordinator (rank 0) and the shared stop decision, on an MPI communicator."""

    def __init__(self, comm):
        self.comm = comm
        self.is_root = comm.Get_rank() == 0

    def sum(self, local: np.ndarray) -> np.ndarray:
        """Σ over ranks of `local` (every rank gets the total)."""
        local = np.ascontiguousarray(local, dtype=np.float64)
        total = np.empty_like(local)
        self.comm.Allreduce(local, total, op=MPI.SUM)
        return total

    def ordered_sum(self, local: np.ndarray) -> np.ndarray:
        """Σ over ranks added in ascending rank order (allgather): the same bits as the simulation. Small arrays only."""
        parts = self.comm.allgather(np.ascontiguousarray(local, dtype=np.float64))
        total = parts[0].copy()
        for part in parts[1:]:
            total += part
        return total

    def broadcast(self, array: np.ndarray) -> np.ndarray:
        """Rank 0's `array` (float64) on every rank; the others pass any array of the same shape."""
        array = np.ascontiguousarray(array, dtype=np.float64)
        if not self.is_root:
            array = np.empty_like(array)
        self.comm.Bcast(array, root=0)
        return array

    def start_max(self, value: float) -> "PendingMax":
        """Post max over ranks of `value` (a nonblocking Iallreduce MAX); `.wait()` returns it on every rank."""
        return PendingMax(self.comm, value)

    def decide(self, decision):
        """The coordinator's decision, on every rank."""
        return self.comm.bcast(decision, root=0)

    def stop_vote(self) -> "StopVote":
        return StopVote(self.comm)

    def gather_rows(self, blocks: list) -> np.ndarray | None:
        """Stack every rank's row block (m_j × r) in rank order on the coordinator."""
        (local,) = blocks
        local = np.ascontiguousarray(local, dtype=np.float64)
        counts = self.comm.gather(local.size, root=0)
        out = None
        if self.is_root:
            out = np.empty((sum(counts) // local.shape[1], local.shape[1]))
            self.comm.Gatherv(local, (out, counts), root=0)
        else:
            self.comm.Gatherv(local, None, root=0)
        return out

    def gather_values(self, values: list) -> list | None:
        """Concatenate every rank's list of values on the coordinator."""
        gathered = self.comm.gather(values, root=0)
        return [v for part in gathered for v in part] if self.is_root else None


class PendingMax:
    """One nonblocking max over ranks of a float, progressed by the neighbour exchange posted beside it."""

    def __init__(self, comm, value: float):
        self.local = np.array([value], dtype=np.float64)
        self.total = np.empty(1, dtype=np.float64)
        self.request = comm.Iallreduce(self.local, self.total, op=MPI.MAX)
        self.value = None

    def wait(self) -> float:
        """The max (waits the first time; later calls return it again)."""
        if self.value is None:
            self.request.Wait()
            self.value = float(self.total[0])
        return self.value


class StopVote:
    """Agree on a per-rank flag (a stop request) once per iteration without a blocking collective.

    Each call waits for the vote posted by the previous call (a nonblocking 1-byte
    Iallreduce LOR, progressed by the neighbour exchange in between), returns its
    outcome and posts a new one: every rank gets the same answer, one iteration after
    the flag was raised. `close()` completes the last vote.
    """

    def __init__(self, comm):
        self.comm = comm
        self.local = np.zeros(1, dtype=np.bool_)
        self.total = np.zeros(1, dtype=np.bool_)
        self.request = None

    def __call__(self, flag: bool) -> bool:
        agreed = False
        if self.request is not None:
            self.request.Wait()
            agreed = bool(self.total[0])
        self.local[0] = flag
        self.request = self.comm.Iallreduce(self.local, self.total, op=MPI.LOR)
        return agreed

    def close(self) -> None:
        if self.request is not None:
            self.request.Wait()
            self.request = None
