"""Exception types shared by every layer (no MPI, no h5py)."""


class InputError(ValueError):
    """Bad user input: reported as one clear message, exit code 2, no traceback.

    ``collective`` is True when every rank is known to raise the same error at
    the same point (argument parsing, an agreed check); otherwise the raising
    rank alone knows and the job must be aborted from that rank.
    """

    def __init__(self, message: str, *, collective: bool = False):
        super().__init__(message)
        self.collective = collective


class RankFailure(RuntimeError):
    """An unexpected exception on some rank, agreed on by every rank (printed once by the coordinator)."""
