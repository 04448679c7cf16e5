"""Smoke test of scripts/bench.py --quick: the script runs and writes its JSON and markdown (no timing is checked)."""

import json
import os
import sys

from conftest import REPOSITORY, launch


def test_bench_quick_writes_json_and_markdown(tmp_path):
    script = os.path.join(REPOSITORY, "scripts", "bench.py")
    code, stdout, stderr = launch([sys.executable, script, "--quick", "--sections", "a,overlap,b,gap",
                                   "--out", str(tmp_path)], timeout=120)
    assert code == 0, stdout + stderr
    with open(tmp_path / "bench.json") as handle:
        results = json.load(handle)
    assert {"meta", "a", "overlap", "b", "gap"} <= set(results)
    assert all(row["ratio"] > 0 for row in results["a"])
    assert all(row["pass_s"] > 0 and row["compute_s"] > 0 and row["blas_YV_ratio"] > 0 and row["blas_UtY_ratio"] > 0
               for row in results["overlap"]["rows"])   # none without numba
    markdown = (tmp_path / "bench.md").read_text()
    assert all(title in markdown for title in ("Roofline", "arithmetic roofs", "formulations", "spectral gap"))


def test_bench_network_gap_quick_resume_and_cost_model(tmp_path):
    """bench_network.py gap --quick writes rows, --resume skips them, and cost_model.py fits them."""
    script = os.path.join(REPOSITORY, "scripts", "bench_network.py")
    out = str(tmp_path / "gap.jsonl")
    code, stdout, stderr = launch([sys.executable, script, "gap", "--quick", "--out", out], timeout=120)
    assert code == 0, stdout + stderr
    rows = [json.loads(line) for line in open(out)]
    assert [(x["J"], x["topology"]) for x in rows] == [(4, "ring"), (9, "torus")]
    assert all(x["iterations"] and x["rebalance_every"] > 0 for x in rows)
    code, stdout, stderr = launch([sys.executable, script, "gap", "--quick", "--resume", "--out", out], timeout=120)
    assert code == 0 and stdout.count("skipped") == 2, stdout + stderr
    plain = str(tmp_path / "gap-plain.jsonl")
    code, stdout, stderr = launch([sys.executable, script, "gap", "--rows", "4:ring:20,9:torus:2000,16:torus:2000",
                                   "--rebalance-every", "0", "--out", plain], timeout=120)
    assert code == 0, stdout + stderr
    first = json.loads(open(plain).readline())
    assert (first["J"], first["cap"], first["rebalance_every"], first["iterations"]) == (4, 20, 0, None)
    cost_model = os.path.join(REPOSITORY, "scripts", "cost_model.py")
    code, stdout, stderr = launch([sys.executable, cost_model, "--r", "5", "--gap-runs", plain], timeout=120)
    assert code == 0, stdout + stderr
    assert "Iterations vs spectral gap" in stdout and "> 20 (rel. error" in stdout
    with open(out, "a") as handle:
        handle.write(open(plain).readline())
    code, stdout, stderr = launch([sys.executable, cost_model, "--gap-runs", out], timeout=120)
    assert code != 0 and "different --rebalance-every" in stdout + stderr


def test_bench_network_seeds_runs_the_grid_and_summarizes_it(tmp_path):
    """bench_network.py seeds: the defaults and every rule × µL of the grid for one problem and seed, each grid run
    capped at twice the default's iterations; summary compares the defaults with the best setting."""
    script = os.path.join(REPOSITORY, "scripts", "bench_network.py")
    out = str(tmp_path / "seeds.jsonl")
    code, stdout, stderr = launch([sys.executable, script, "seeds", "--seeds", "0:1", "--problems",
                                   "exponential J=16 κ=2", "--out", out], timeout=180)
    assert code == 0, stdout + stderr
    rows = [json.loads(line) for line in open(out)]
    default = rows[0]
    assert default["step_rule"] == "auto" and default["iterations"] and len(rows) == 1 + 3 * 9
    assert all(x["cap"] == 2 * default["iterations"] for x in rows[1:])
    assert all(x["iterations"] is None or x["iterations"] <= x["cap"] for x in rows)
    code, stdout, stderr = launch([sys.executable, script, "summary", out], timeout=120)
    assert code == 0, stdout + stderr
    line = next(x for x in stdout.splitlines() if x.startswith("| exponential J=16 κ=2 | 1 |"))
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    fewest = min(x["iterations"] for x in rows if x["iterations"])
    assert float(cells[4]) == round(default["iterations"] / fewest, 2) >= 1.0   # default / best of this seed


def test_bench_random_runs_two_variants_resumes_and_tables(tmp_path):
    """bench_random.py: problems 0 and 1 (a 24-rank torus and an 8-rank complete graph, κ = 1) under two
    variants, --resume skips them, and the table counts what converged."""
    script = os.path.join(REPOSITORY, "scripts", "bench_random.py")
    out = str(tmp_path / "random.jsonl")
    command = [sys.executable, script, "run", "--problems", "2", "--cap", "3000", "--out", out,
               "--variant", "lazy:weight_transform=lazy", "--variant", "shift:weight_transform=shift"]
    code, stdout, stderr = launch(command, timeout=120)
    assert code == 0, stdout + stderr
    rows = [json.loads(line) for line in open(out)]
    assert [(row["problem"]["J"], row["problem"]["topology"]) for row in rows] == [(24, "torus"), (8, "complete")]
    assert all(row["results"][label]["status"] == "converged" for row in rows for label in ("lazy", "shift"))
    code, stdout, stderr = launch([*command, "--resume"], timeout=120)
    assert code == 0 and len(open(out).readlines()) == 2, stdout + stderr
    code, stdout, stderr = launch([sys.executable, script, "table", out], timeout=60)
    assert code == 0 and "lazy: 2 of 2 converged" in stdout and "shift: 2 of 2 converged" in stdout, stdout + stderr


def test_bench_noisy_prints_the_excess_over_the_svd_for_each_order_and_step():
    """bench_noisy.py (50 iterations): six rows (two noise levels × three networks); the atc-overlap defaults take
    twice the step of the other two columns on these well-mixing networks, and every excess is finite and ≥ 0."""
    script = os.path.join(REPOSITORY, "scripts", "bench_noisy.py")
    code, stdout, stderr = launch([sys.executable, script, "--iterations", "50"], timeout=120)
    assert code == 0, stdout + stderr
    rows = [line for line in stdout.splitlines() if line.startswith("| 0.")]
    assert len(rows) == 6
    for row in rows:
        cells = row.strip("|").split("|")[2:]
        steps = [float(cell.split(":")[0].split("=")[1]) for cell in cells]
        excesses = [float(cell.split(":")[1].split("(")[0]) for cell in cells]
        assert steps[0] == steps[1] and 1.9 * steps[0] <= steps[2] <= 2.1 * steps[0], row
        assert all(0 <= value < 1 for value in excesses), row


def test_bench_precond_quick_with_todays_defaults(tmp_path):
    """bench_precond.py --quick --defaults: J = 4 ring and Erdős–Rényi at κ = 1 and 100, both methods converge and
    the preconditioned step needs ≥ 5× fewer iterations at κ = 100 (item 6) also against today's plain default."""
    script = os.path.join(REPOSITORY, "scripts", "bench_precond.py")
    code, stdout, stderr = launch([sys.executable, script, "--quick", "--defaults", "--out", str(tmp_path)],
                                  timeout=240)
    assert code == 0, stdout + stderr
    with open(tmp_path / "precond.json") as handle:
        results = json.load(handle)
    assert results["settings"] == "defaults" and len(results["rows"]) == 4
    for row in results["rows"]:
        assert row["none"]["status"] == row["scaled"]["status"] == "converged"
        assert row["none"]["step"] == 0.25   # the gap gain: 2 on these networks
        if row["kappa"] == 100.0:
            assert row["ratio"] >= 5.0, row
