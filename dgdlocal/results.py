"""HDF5 result files (coordinator only), written atomically.

A result is written to a temporary file beside the target, closed, fsync'ed and
renamed over the target, then the directory is fsync'ed: a crash at any moment
leaves the previous complete file or none, never a truncated one.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os

import h5py
import numpy as np

from . import __version__
from .errors import InputError

SCHEMA_VERSION = 1
TEMPORARY_SUFFIX = ".dgdlocal-tmp"


def check_output_path(path: str, force: bool) -> None:
    """Refuse an existing result without --force and a folder that cannot be written.

    Writability is tested by creating and removing a file there: os.access says yes to
    root even on a read-only mount or an immutable folder.
    """
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise InputError(f"The output path '{path}' is a directory; give a file name such as '{os.path.join(path, 'result.h5')}'.")
    if os.path.exists(path) and not force:
        raise InputError(f"The output file '{path}' already exists; pass --force to overwrite it or choose another --output.")
    parent = folder
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise InputError(f"The output folder '{folder}' cannot be created: '{parent}' is a file, not a folder.")
    if not os.path.isdir(folder):
        raise InputError(f"The output folder '{folder}' does not exist.")
    probe = os.path.join(folder, f".dgdlocal-write-test.{os.getpid()}")
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        os.remove(probe)
    except OSError as exc:
        raise InputError(f"The output folder '{folder}' is not writable ({exc.strerror}).") from None


def remove_stale_temporaries(path: str) -> None:
    """Delete temporary files a killed run left beside `path`."""
    for stale in glob.glob(glob.escape(os.path.abspath(path)) + ".*" + TEMPORARY_SUFFIX):
        with contextlib.suppress(OSError):
            os.remove(stale)


@contextlib.contextmanager
def atomic_h5(path: str):
    """Yield an open h5py.File that appears at `path` only once it is complete."""
    path = os.path.abspath(path)
    temporary = f"{path}.{os.getpid()}{TEMPORARY_SUFFIX}"
    try:
        with h5py.File(temporary, "w") as handle:
            yield handle
        with open(temporary, "rb") as raw:
            os.fsync(raw.fileno())
        os.replace(temporary, path)
        directory = os.open(os.path.dirname(path), os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)


def _attribute(value):
    """HDF5 attributes take numbers and strings; None becomes 'none', containers become JSON."""
    if value is None:
        return "none"
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, str, np.integer, np.floating)):
        return value
    return json.dumps(value)


def write_result(path: str, *, status: str, command: str, mpi_size: int, config: dict,
                 weights: np.ndarray, topology: dict, offsets: np.ndarray, diagnostics: dict,
                 U: np.ndarray, V: np.ndarray, timing: dict, step: dict, checkpoint: dict | None = None) -> None:
    """Write the result file of schema version 1 (DESIGN §3), with a /checkpoint group if given.

    `checkpoint`: {"U": J×n×r, "V": m×r, "D": J×n×r or None, "attrs": {...}} — every rank's U_j and the whole
    V at iterate `attrs["iteration"]` (and, with --method extra or atc-overlap, every rank's D_j);
    /diagnostics then holds the history up to that iterate.
    """
    with atomic_h5(path) as handle:
        handle.attrs["schema_version"] = SCHEMA_VERSION
        handle.attrs["dgdlocal_version"] = __version__
        handle.attrs["command"] = command
        handle.attrs["mpi_size"] = mpi_size
        handle.attrs["status"] = status
        group = handle.create_group("config")
        for key, value in sorted(config.items()):
            group.attrs[key] = _attribute(value)
        for key, value in sorted(step.items()):
            group.attrs[key] = _attribute(value)
        group = handle.create_group("topology")
        group["weights"] = weights
        for key, value in sorted(topology.items()):
            group.attrs[key] = _attribute(value)
        handle["partition/offsets"] = np.asarray(offsets, dtype=np.int64)
        group = handle.create_group("diagnostics")
        for name, values in diagnostics.items():
            group[name] = np.asarray(values, dtype=np.int64 if name == "iteration" else np.float64)
        handle["result/U"] = U
        handle["result/V"] = V
        group = handle.create_group("timing")
        for name, values in timing.items():
            group[name] = np.asarray(values, dtype=np.float64)
        if checkpoint is not None:
            group = handle.create_group("checkpoint")
            group["U"], group["V"] = checkpoint["U"], checkpoint["V"]
            if checkpoint.get("D") is not None:
                group["D"] = checkpoint["D"]
            for key, value in sorted(checkpoint["attrs"].items()):
                group.attrs[key] = _attribute(value)


def read_checkpoint(path: str) -> dict:
    """The /checkpoint attributes and the diagnostics before its iteration (small; read by every rank)."""
    if not os.path.exists(path):
        raise InputError(f"The resume file '{path}' does not exist.")
    try:
        handle = h5py.File(path, "r")
    except OSError:
        raise InputError(f"The resume file '{path}' is not an HDF5 file (or is damaged).") from None
    with handle:
        if "checkpoint" not in handle:
            raise InputError(f"The resume file '{path}' holds no checkpoint (status {handle.attrs.get('status', '?')!s}); "
                             "only runs interrupted by a signal, or run with --checkpoint-every, can be resumed.")
        attrs = dict(handle["checkpoint"].attrs)
        iterations = handle["diagnostics/iteration"][...]
        keep = iterations < attrs["iteration"]
        history = {name: values[...][keep].tolist() for name, values in handle["diagnostics"].items()}
    return {"attrs": attrs, "history": history}


def read_checkpoint_factors(path: str, j: int, lo: int, hi: int) -> tuple:
    """Rank j's U_j, rows lo:hi of V and EXTRA's D_j (None when the checkpoint has none) from `path`."""
    with h5py.File(path, "r") as handle:
        D_j = handle["checkpoint/D"][j] if "checkpoint/D" in handle else None
        return handle["checkpoint/U"][j], handle["checkpoint/V"][lo:hi], D_j


def read_result(path: str) -> dict:
    """Load a result file into plain Python objects (for tests, plots and `info`)."""
    with h5py.File(path, "r") as handle:
        out = {"attrs": dict(handle.attrs), "config": dict(handle["config"].attrs),
               "topology": dict(handle["topology"].attrs), "weights": handle["topology/weights"][...],
               "offsets": handle["partition/offsets"][...],
               "diagnostics": {k: v[...] for k, v in handle["diagnostics"].items()},
               "U": handle["result/U"][...], "V": handle["result/V"][...],
               "timing": {k: v[...] for k, v in handle["timing"].items()} if "timing" in handle else {}}
    return out


def inspect_file(path: str) -> dict:
    """Like read_result, for `info` and `plot`: checks the file first and tolerates missing parts
    (a checkpoint or an interrupted run); the factors U and V are not loaded."""
    if not os.path.exists(path):
        raise InputError(f"The result file '{path}' does not exist.")
    if not h5py.is_hdf5(path):
        raise InputError(f"The file '{path}' is not an HDF5 file; give a result file written by `dgdlocal run`.")
    with h5py.File(path, "r") as handle:
        if "schema_version" not in handle.attrs and "config" not in handle:
            raise InputError(f"The HDF5 file '{path}' is not a dgdlocal result (no schema_version, no /config).")

        def attrs(name):
            return dict(handle[name].attrs) if name in handle else {}

        def group(name):
            return {k: v[...] for k, v in handle[name].items()} if name in handle else {}

        return {"attrs": dict(handle.attrs), "config": attrs("config"), "topology": attrs("topology"),
                "weights": handle["topology/weights"][...] if "topology/weights" in handle else None,
                "offsets": handle["partition/offsets"][...] if "partition/offsets" in handle else None,
                "diagnostics": group("diagnostics"), "timing": group("timing"),
                "shapes": {name: handle[name].shape for name in ("result/U", "result/V") if name in handle}}


def read_factors(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Ū (n×r) and V (m×r) of a result file."""
    with h5py.File(path, "r") as handle:
        if "result/U" not in handle or "result/V" not in handle:
            raise InputError(f"The result file '{path}' holds no factors (/result/U, /result/V).")
        return handle["result/U"][...], handle["result/V"][...]
