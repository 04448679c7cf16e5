"""Stop requests from the outside world: SIGTERM, SIGINT and SIGUSR1 set a flag, nothing more.

`scancel`, a SLURM time limit with `--signal`, Ctrl-C and `kill` on mpirun all reach
every rank (MPICH's mpirun forwards them). A Python handler runs only when the rank
is back in Python, so it just records the signal; the ranks agree on the flag once
per iteration (collectives.Reducer.any) and all stop at the same iterate.

A supervised rank gets each such signal twice: MPICH's mpirun signals the whole process group
(checked here: a child that forwards nothing receives it), and the supervisor forwards its copy.
The flag makes the two one; after the run the CLI ignores late copies
(__main__.ignore_late_stop_signals).
"""

from __future__ import annotations

import signal

#: Signals that ask for a checkpoint and a clean stop.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class StopRequest:
    """Install with `StopRequest.install()`; `is_set()` is True once a stop signal arrived."""

    def __init__(self):
        self.received = None      # name of the first signal received, e.g. "SIGTERM"
        self._previous = {}

    @classmethod
    def install(cls, signals=STOP_SIGNALS) -> "StopRequest":
        request = cls()
        for number in signals:
            request._previous[number] = signal.signal(number, request._handle)
        return request

    def _handle(self, number, frame):  # noqa: ARG002 - signal handler signature
        if self.received is None:
            self.received = signal.Signals(number).name

    def is_set(self) -> bool:
        return self.received is not None

    def restore(self) -> None:
        """Put the previous handlers back (a second run in the same process starts clean)."""
        for number, previous in self._previous.items():
            signal.signal(number, previous)
        self._previous = {}
