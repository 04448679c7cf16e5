"""The layering rule of DESIGN §4 / STYLE.md, checked by scanning imports.

mpi4py only in the MPI layer (exchange.py, collectives.py, __main__.py); h5py only in
the file layer (data.py, results.py); `import dgdlocal` starts neither.
"""

import ast
import pathlib
import subprocess
import sys

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "dgdlocal"
ALLOWED = {"mpi4py": {"exchange.py", "collectives.py", "__main__.py"}, "h5py": {"data.py", "results.py"}}


def _imported_modules(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0]


def test_mpi4py_and_h5py_are_imported_only_by_their_layers():
    offenders = [(path.name, module) for path in sorted(PACKAGE.glob("*.py"))
                 for module in set(_imported_modules(path))
                 if module in ALLOWED and path.name not in ALLOWED[module]]
    assert offenders == []


def test_importing_the_package_starts_neither_mpi_nor_hdf5():
    code = ("import sys, dgdlocal, dgdlocal.solver, dgdlocal.runner, dgdlocal.problems, dgdlocal.topology; "
            "print(sorted(m for m in ('mpi4py', 'h5py') if m in sys.modules))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_the_supervisor_loads_only_the_standard_library():
    """The per-rank supervisor (console_script under a launcher) stays small: no numpy, mpi4py or h5py."""
    code = ("import sys, dgdlocal.__main__, dgdlocal.supervisor; "
            "print(sorted(m for m in ('numpy', 'mpi4py', 'h5py') if m in sys.modules))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"
