"""Smoke test of scripts/bench.py --quick: the script runs and writes its JSON and markdown (no timing is checked)."""

import json
import os
import sys

from conftest import REPOSITORY, launch


def test_bench_quick_writes_json_and_markdown(tmp_path):
    script = os.path.join(REPOSITORY, "scripts", "bench.py")
    code, stdout, stderr = launch([sys.executable, script, "--quick", "--sections", "a,b,gap", "--out", str(tmp_path)],
                                  timeout=120)
    assert code == 0, stdout + stderr
    with open(tmp_path / "bench.json") as handle:
        results = json.load(handle)
    assert {"meta", "a", "b", "gap"} <= set(results)
    assert all(row["ratio"] > 0 for row in results["a"])
    markdown = (tmp_path / "bench.md").read_text()
    assert "Roofline" in markdown and "formulations" in markdown and "spectral gap" in markdown
