"""Progress of a run on the coordinator: one line per diagnostic iteration.

On a terminal the line is rewritten in place (carriage return); in a file or a
pipe (a SLURM output file) every update is a plain line of its own.
"""

from __future__ import annotations

import math
import sys
import time


def format_duration(seconds: float) -> str:
    """h:mm:ss, or '--:--' when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "--:--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class Progress:
    """Callable on each diagnostics record: iteration, objective, errors, it/s and ETA to the cap.

    it/s is measured over the interval since the previous record; the ETA assumes
    that rate until the iteration cap (the run may stop earlier on the tolerance).
    """

    def __init__(self, iterations: int, stream=None, *, in_place: bool | None = None, clock=time.perf_counter):
        self.iterations = iterations
        self.stream = sys.stdout if stream is None else stream
        if in_place is None:
            isatty = getattr(self.stream, "isatty", None)
            in_place = bool(isatty and isatty())
        self.in_place = in_place
        self.clock = clock
        self.last = None  # (iteration, elapsed) of the previous record
        self.width = 0

    def line(self, record: dict) -> str:
        iteration, elapsed = record["iteration"], record["elapsed"]
        rate = math.nan
        if self.last is not None and iteration > self.last[0] and elapsed > self.last[1]:
            rate = (iteration - self.last[0]) / (elapsed - self.last[1])
        self.last = (iteration, elapsed)
        digits = len(str(self.iterations))
        percent = 100.0 * iteration / self.iterations if self.iterations else 100.0
        speed = f"{rate:8.0f} it/s" if math.isfinite(rate) else "     -- it/s"
        eta = (self.iterations - iteration) / rate if math.isfinite(rate) and rate > 0 else math.nan
        return (f"iter {iteration:>{digits}d}/{self.iterations} {percent:3.0f}%  objective {record['objective']:.3e}  "
                f"rel.err {record['relative_error']:.3e}  consensus {record['consensus_error']:.3e}  "
                f"{speed}  ETA {format_duration(eta)}")

    def __call__(self, record: dict) -> None:
        text = self.line(record)
        if self.in_place:
            padding = " " * max(0, self.width - len(text))
            self.width = len(text)
            self.stream.write("\r" + text + padding)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """End the in-place line so the next output starts on a fresh line."""
        if self.in_place and self.width:
            self.stream.write("\n")
            self.stream.flush()
            self.width = 0
