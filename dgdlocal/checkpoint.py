"""Checkpoint and restart: what a checkpoint records, and what a resumed run may change.

A checkpoint is the /checkpoint group of the result file (results.py writes and reads
it): every rank's U_j (J×n×r), the whole V (m×r) and, as attributes, the iteration k of
that iterate, the elapsed time, the step used, the full configuration (JSON) and a
fingerprint of the data; /diagnostics holds the history. No random number is drawn after
the initial point, so (U, V, k, history) is the whole state of the iteration: a resumed run
on the same J (hence the same reduction order) repeats the uninterrupted one bit for bit.

Pure Python and numpy: no MPI, no h5py.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from .errors import InputError

#: Settings a resumed run may change; every other one must equal the checkpoint's.
#: `data` may point to a moved copy: the content is compared by fingerprint instead.
CONTINUATION_FIELDS = frozenset({"iterations", "tolerance", "log_every", "output", "force", "quiet",
                                 "checkpoint_every", "resume", "data", "simulate"})


#: Settings that checkpoints of older versions do not store, with the value those versions used.
OLDER_DEFAULTS = {"u_step_scale": 1.0, "weight_transform": "lazy", "method": "dgd-local"}


def block_digest(Y: np.ndarray) -> str:
    """SHA-256 of one rank's columns Y_j (shape, dtype and bytes)."""
    Y = np.ascontiguousarray(Y)
    digest = hashlib.sha256(f"{Y.shape}{Y.dtype.str}".encode())
    digest.update(memoryview(Y).cast("B"))
    return digest.hexdigest()


def problem_digest(problem) -> str:
    """SHA-256 over the data arrays one rank's local problem holds (Y_j, observed entries, A_j and y_j, …)."""
    digest = hashlib.sha256(type(problem).__name__.encode())
    for name in ("Y", "rows", "cols", "values", "A", "y", "b"):
        array = getattr(problem, name, None)
        if array is not None:
            digest.update(f"{name}:".encode())
            digest.update(block_digest(array).encode())
    return digest.hexdigest()


def data_fingerprint(digests: list) -> str:
    """One fingerprint of the whole matrix from the per-rank digests in rank order."""
    return hashlib.sha256("".join(digests).encode()).hexdigest()[:32]


def attributes(config: dict, *, iteration: int, elapsed: float, step_size: float, init_scale: float,
               fingerprint: str, step_gain: float = 1.0, local_step_gain: float = 1.0) -> dict:
    """The /checkpoint attributes."""
    return {"iteration": int(iteration), "elapsed": float(elapsed), "step_size": float(step_size),
            "step_gain": float(step_gain), "local_step_gain": float(local_step_gain),
            "init_scale_used": float(init_scale), "data_fingerprint": fingerprint,
            "J": int(config["J"]), "config_json": json.dumps(config, sort_keys=True)}


def resumed_settings(stored_attrs: dict, current: dict, given: set, path: str, J: int) -> dict:
    """The settings of a run resumed from `path`: the checkpoint's, except the continuation options
    typed on this command line (`given`; their values in `current`), --simulate and --force of this
    command, and --output, which defaults to `path` itself. Raises InputError when the job size or a
    setting that defines the problem differs."""
    stored = json.loads(stored_attrs["config_json"])
    if int(stored_attrs["J"]) != J:
        raise InputError(f"The resume file '{path}' was written by a run on J={int(stored_attrs['J'])} ranks; "
                         f"this job has J={J}. Resume with mpirun -n {int(stored_attrs['J'])} "
                         "(the iterates depend on J), or start a new run.", collective=True)
    differing = [name for name in sorted(given)
                 if name not in CONTINUATION_FIELDS and name in stored and stored[name] != current[name]]
    if differing:
        details = "; ".join(f"{name}={stored[name]!r} there, {current[name]!r} here" for name in differing)
        raise InputError(f"The resume file '{path}' comes from another configuration ({details}). "
                         "Omit these options (a resumed run reads them from the file) or start a new run; "
                         "only --iterations, --tolerance, --log-every, --checkpoint-every, --output, --force, "
                         "--quiet and --data (same content) may change.", collective=True)
    settings = {name: stored.get(name, OLDER_DEFAULTS.get(name, value)) for name, value in current.items()}
    settings.update({name: current[name] for name in given if name in CONTINUATION_FIELDS})
    settings.update(simulate=current["simulate"], force=current["force"], resume=path,
                    output=current["output"] if "output" in given else path)
    return settings


def check_fingerprint(stored_attrs: dict, fingerprint: str, path: str) -> None:
    """Refuse to resume on data other than the checkpoint's."""
    if stored_attrs["data_fingerprint"] != fingerprint:
        raise InputError(f"The data of this run differ from those the resume file '{path}' was computed on "
                         f"(fingerprint {fingerprint} here, {stored_attrs['data_fingerprint']} there). "
                         "Resume with the same data, or start a new run.")
