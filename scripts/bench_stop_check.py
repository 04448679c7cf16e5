"""Per-iteration cost of the stop check: none, a blocking 1-byte Allreduce, the deferred Iallreduce vote.

    mpirun -n J python scripts/bench_stop_check.py [n m r iterations]
"""
import sys
import time
import numpy as np
from mpi4py import MPI
from dgdlocal import runner
comm = MPI.COMM_WORLD
n, m, r, iterations = (map(int, sys.argv[1:5]) if len(sys.argv) > 4 else (100, 400, 5, 2000))
config = runner.RunConfig(n=n, m=m, rank=r, iterations=iterations, tolerance=0.0, log_every=100000, quiet=True)
ctx = runner.mpi_context(comm)
flag = np.zeros(1, dtype=np.bool_)
def blocking(it):
    comm.Allreduce(MPI.IN_PLACE, flag, op=MPI.LOR); return bool(flag[0])
res = {"none": [], "allreduce": [], "vote": []}
for rep in range(7):
    for kind in res:
        prepared = runner.prepare(config, ctx)
        vote = ctx.reducer.stop_vote()
        interrupt = {"none": None, "allreduce": blocking, "vote": lambda it: vote(False)}[kind]
        comm.Barrier(); t = time.perf_counter()
        runner.solve(prepared, config, ctx, interrupt=interrupt); vote.close()
        comm.Barrier(); res[kind].append((time.perf_counter() - t) / config.iterations)
if comm.rank == 0:
    base = np.median(res["none"])
    print(f"J={comm.size} median per iteration: none {base*1e6:.0f} us; " + "; ".join(
        f"{k} +{(np.median(v)-base)*1e6:.0f} us ({(np.median(v)-base)/base*100:+.0f}%)" for k, v in res.items() if k != "none"))
