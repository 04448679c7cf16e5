"""dgdlocal: distributed low-rank matrix factorization with DGD+LOCAL over MPI.

Importing the package does not start MPI; only the command line does.
"""

__version__ = "0.1.0"
