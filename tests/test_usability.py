"""Config files, progress lines, `info`, `plot` and topology files (serial; runs use --simulate)."""

import io
import json
import os
import sys

import numpy as np
import pytest

from conftest import REPOSITORY, launch
from dgdlocal import cli, config, graph_files, progress, solver, topology
from dgdlocal.errors import InputError


def dgdlocal(*args, cwd=None, timeout=60):
    return launch([sys.executable, "-m", "dgdlocal", *map(str, args)], cwd=cwd, timeout=timeout,
                  env={"OMP_NUM_THREADS": "1", "PYTHONPATH": REPOSITORY})


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    """One small finished run on 4 simulated ranks (exact rank-3 data, converged)."""
    folder = tmp_path_factory.mktemp("result")
    path = folder / "run.h5"
    code, stdout, stderr = dgdlocal("run", "--simulate", 4, "--n", 30, "--m", 40, "--rank", 3, "--topology", "path",
                                    "--log-every", 20, "--output", path)
    assert code == 0, stderr
    return path


# --------------------------------------------------------------------------- --config


def _write(folder, name, text):
    path = folder / name
    path.write_text(text)
    return str(path)


def test_config_file_sets_options_and_command_line_overrides(tmp_path):
    path = _write(tmp_path, "run.toml", 'rank = 7\nlog-every = 50\ntopology = "star"\nquiet = true\n'
                                        'tolerance = 1e-8\n[run]\nstep = 0.01\n')
    arguments = cli.parse(["--config", path, "--rank", "3", "--no-quiet"], printer=False)
    assert arguments.rank == 3 and arguments.quiet is False            # command line wins
    assert arguments.log_every == 50 and arguments.topology == "star"  # from the file
    assert arguments.tolerance == 1e-8 and arguments.step == 0.01
    assert arguments.iterations == cli.DEFAULTS.iterations             # default otherwise
    assert cli.config_from_arguments(arguments).config == path         # recorded in /config


def test_config_accepts_underscores_and_every_run_option_is_a_key():
    table = config.option_table(cli.build_parser(printer=False).run_parser)
    fields = set(cli.runner.RunConfig.__dataclass_fields__) - {"config"}
    assert {name.replace("-", "_") for name in table} == fields


@pytest.mark.parametrize("text, message", [
    ("rnak = 5\n", r"unknown key 'rnak'\. Did you mean 'rank'\?"),
    ("log_evry = 5\n", r"unknown key 'log_evry'\. Did you mean 'log-every'\?"),
    ("config = 'x.toml'\n", r"unknown key 'config'"),
    ("rank = 0\n", r"config file .*'rank' parameter must be >= 1"),
    ("topology = 'rin'\n", r"config file .*invalid choice: 'rin'"),
    ("quiet = 'yes'\n", r"'quiet' is a switch and takes true or false"),
    ("rank = [1, 2]\n", r"'rank' takes a single string or number"),
    ("rank = [1\n", r"not valid TOML"),
])
def test_config_errors_name_the_key(tmp_path, text, message):
    path = _write(tmp_path, "bad.toml", text)
    with pytest.raises(InputError, match=message):
        cli.parse(["run", "--config", path], printer=False)


def test_missing_config_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        cli.parse(["--config", str(tmp_path / "nope.toml")], printer=False)


def test_config_run_end_to_end_prints_and_stores_resolved_settings(tmp_path):
    _write(tmp_path, "run.toml", 'n = 20\nm = 24\nrank = 2\nsimulate = 3\niterations = 40\nlog-every = 20\n'
                                 'output = "from-file.h5"\n')
    code, stdout, stderr = dgdlocal("--config", "run.toml", "--iterations", 60, cwd=tmp_path)
    assert code == 0, stderr
    assert "configuration (file run.toml, then the command line)" in stdout
    assert "iterations=60" in stdout and "rank=2" in stdout
    code, stdout, stderr = dgdlocal("info", "from-file.h5", "--json", cwd=tmp_path)
    stored = json.loads(stdout)["config"]
    assert stored["iterations"] == 60 and stored["n"] == 20 and stored["config"] == "run.toml"
    # `info --toml` writes a config file that reproduces the run
    code, toml_text, stderr = dgdlocal("info", "from-file.h5", "--toml", cwd=tmp_path)
    (tmp_path / "again.toml").write_text(toml_text)
    again = cli.parse(["--config", str(tmp_path / "again.toml")], printer=False)
    assert (again.n, again.m, again.rank, again.iterations, again.simulate) == (20, 24, 2, 60, 3)


# --------------------------------------------------------------------------- progress


def _record(iteration, elapsed):
    return {"iteration": iteration, "elapsed": elapsed, "objective": 1.0, "relative_error": 0.5,
            "consensus_error": 1e-3}


def test_progress_plain_lines_with_rate_and_eta():
    stream = io.StringIO()
    printer = progress.Progress(1000, stream, in_place=False)
    printer(_record(0, 0.0))
    printer(_record(100, 0.5))
    printer.finish()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in stream.getvalue()
    assert "iter    0/1000" in lines[0] and "-- it/s" in lines[0]
    assert "200 it/s" in lines[1] and "ETA 0:00:04" in lines[1] and "10%" in lines[1]
    assert "objective 1.000e+00" in lines[1] and "rel.err 5.000e-01" in lines[1] and "consensus 1.000e-03" in lines[1]


def test_progress_in_place_on_a_terminal():
    stream = io.StringIO()
    printer = progress.Progress(100, stream, in_place=True)
    printer(_record(0, 0.0))
    printer(_record(50, 1.0))
    printer.finish()
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1


def test_progress_in_a_log_file_is_plain(tmp_path):
    code, stdout, stderr = dgdlocal("--simulate", 2, "--n", 10, "--m", 12, "--rank", 2, "--iterations", 30,
                                    "--log-every", 10, "--output", tmp_path / "r.h5")
    assert code == 0, stderr
    assert "\r" not in stdout and stdout.count("it/s") == 4 and "ETA" in stdout


def test_duration_format():
    assert progress.format_duration(3725) == "1:02:05"
    assert progress.format_duration(float("nan")) == "--:--"


# --------------------------------------------------------------------------- info


def test_info_text(result):
    code, stdout, stderr = dgdlocal("info", result)
    assert code == 0, stderr
    for expected in ("status converged", "30×40", "rank r=3", "J=4 (simulated)", "m_j = 10", "path, weights metropolis",
                     "ω = ", "spectral gap", "Thm 2.5 bound", "final", "relative error", "rank 3", "compute",
                     "method      atc-overlap",   # the default --method auto, resolved
                     "(auto, ×"):                   # and the gain of its step on this network
        assert expected in stdout, expected
    bound = json.loads(dgdlocal("info", result, "--json")[1])["step"]["bound_thm25"]
    assert ("(1−2ω)/L = none (ω ≥ 1/2)" in stdout) == (bound == 0.0)


def test_info_json(result):
    code, stdout, stderr = dgdlocal("info", result, "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["status"] == "converged" and summary["ranks"]["J"] == 4
    assert summary["problem"]["n"] == 30 and summary["problem"]["r"] == 3
    assert summary["topology"]["source"] == "path" and 0 < summary["topology"]["spectral_gap"] < 1
    assert summary["final"]["relative_error"] <= 1e-8
    assert summary["final"]["optimality_error"] <= 1e-8
    assert len(summary["timing_per_rank_s"]["compute"]) == 4
    assert summary["step"]["step_size"] > 0
    # --step auto in the default order (atc-overlap): µ = 0.5 · a · min(1, 1 + λ_min) / L with a from the gap
    gain = solver.atc_step_gain(summary["topology"]["spectral_gap"])
    assert summary["step"]["gain"] == gain > 1.0
    assert summary["step"]["step_size"] == solver.auto_step(summary["step"]["lipschitz_estimate"],
                                                            summary["topology"]["lambda_min"], gain)
    # Thm 2.5's (1 − 2ω)/L, or 0 where ω ≥ 1/2 (the default self-weight shift of a path can give that)
    omega = summary["topology"]["omega"]
    assert summary["step"]["bound_thm25"] == (pytest.approx((1 - 2 * omega) / summary["step"]["lipschitz_estimate"])
                                              if omega < 0.5 else 0.0)


def test_info_refuses_a_file_that_is_not_a_result(tmp_path):
    (tmp_path / "x.h5").write_text("not hdf5")
    code, _, stderr = dgdlocal("info", tmp_path / "x.h5")
    assert code == 2 and "not an HDF5 file" in stderr and "Traceback" not in stderr
    code, _, stderr = dgdlocal("info", tmp_path / "missing.h5")
    assert code == 2 and "does not exist" in stderr


# --------------------------------------------------------------------------- plot


def _is_png(path):
    return os.path.getsize(path) > 5000 and open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_plot_curves_network_and_image(result, tmp_path):
    pytest.importorskip("matplotlib")
    figure = tmp_path / "fig.png"
    code, stdout, stderr = dgdlocal("plot", result, "-o", figure, "--network", "--image")
    assert code == 0, stderr
    for path in (figure, tmp_path / "fig-network.png", tmp_path / "fig-image.png"):
        assert _is_png(path), path
        assert str(path) in stdout


def test_plot_several_results_on_one_figure(result, tmp_path):
    pytest.importorskip("matplotlib")
    other = tmp_path / "other.h5"
    code, _, stderr = dgdlocal("run", "--simulate", 2, "--n", 30, "--m", 40, "--rank", 3, "--output", other)
    assert code == 0, stderr
    code, stdout, stderr = dgdlocal("plot", result, other, "-o", tmp_path / "both.pdf", "--label", "path J=4",
                                    "--label", "ring J=2")
    assert code == 0, stderr
    assert (tmp_path / "both.pdf").stat().st_size > 5000


def test_plot_image_reads_the_recorded_data_file(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(1)
    np.save(tmp_path / "Y.npy", rng.random((16, 5)) @ rng.random((5, 24)))
    code, _, stderr = dgdlocal("--simulate", 3, "--data", "Y.npy", "--rank", 5, "--iterations", 50,
                               "--output", "y.h5", cwd=tmp_path)
    assert code == 0, stderr
    code, _, stderr = dgdlocal("plot", tmp_path / "y.h5", "--image")  # from elsewhere: found beside the result
    assert code == 0, stderr
    assert _is_png(tmp_path / "y-image.png")
    code, _, stderr = dgdlocal("plot", tmp_path / "y.h5", "--image", "--data", tmp_path / "missing.npy")
    assert code == 2 and "does not exist" in stderr and "Traceback" not in stderr


def test_plot_without_matplotlib_says_how_to_install(result, tmp_path):
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "matplotlib.py").write_text("raise ImportError('blocked for the test')\n")
    code, _, stderr = launch([sys.executable, "-m", "dgdlocal", "plot", str(result), "-o", str(tmp_path / "f.png")],
                             env={"PYTHONPATH": f"{blocker}{os.pathsep}{REPOSITORY}"})
    assert code == 2 and "pip install 'dgdlocal[plot]'" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "f.png").exists()


# --------------------------------------------------------------------------- --topology-file


def test_edge_list_gives_the_builtin_ring(tmp_path):
    path = _write(tmp_path, "ring.txt", "# a ring of 5\n0 1\n1 2\n2,3\n3 4 0.7\n4 0\n")
    network, warnings = graph_files.network_from_file(path, 5)
    np.testing.assert_allclose(network.weights, topology.make_network("ring", 5).weights)
    assert warnings == [] and network.source == "file ring.txt"
    papers, _ = graph_files.network_from_file(path, 5, transform="lazy")
    np.testing.assert_allclose(papers.weights, topology.make_network("ring", 5, transform="lazy").weights)
    assert papers.lazy_applied and papers.self_weight_shift == 0.5 and network.self_weight_shift < 0.5


def test_labels_not_0_to_J_minus_1_are_relabelled_in_sorted_order(tmp_path):
    path = _write(tmp_path, "star.txt", "hub a\nhub b\nhub c\n")  # sorted: a, b, c, hub
    network, warnings = graph_files.network_from_file(path, 4)
    assert topology.neighbours(network.weights, 3) == [0, 1, 2] and "sorted order" in warnings[0]
    A, labels = graph_files.read_adjacency(_write(tmp_path, "one.txt", "1 2\n2 3\n"))
    assert labels == ["1", "2", "3"] and A[0, 1] and A[1, 2] and not A[0, 2]


def test_networkx_formats(tmp_path):
    networkx = pytest.importorskip("networkx")
    graph = networkx.cycle_graph(6)
    networkx.write_graphml(graph, tmp_path / "g.graphml")
    networkx.write_adjlist(graph, tmp_path / "g.adjlist")
    networkx.write_gml(graph, tmp_path / "g.gml")
    expected = topology.make_network("ring", 6, rule="max-degree").weights  # (W+I)/2 applied as ω = 2/3
    for name in ("g.graphml", "g.adjlist", "g.gml"):
        network, _ = graph_files.network_from_file(str(tmp_path / name), 6, rule="max-degree")
        np.testing.assert_allclose(network.weights, expected)


@pytest.mark.parametrize("text, J, message", [
    ("0 1\n2 3\n", 4, r"connected; it has 2 components: ranks 0, 1; ranks 2, 3"),
    ("0 1\n1 2\n", 4, r"has 3 nodes but the job has J=4"),
    ("# nothing\n", 1, r"no nodes"),
])
def test_bad_topology_files(tmp_path, text, J, message):
    with pytest.raises(InputError, match=message):
        graph_files.network_from_file(_write(tmp_path, "g.txt", text), J)


def test_topology_file_run_end_to_end(tmp_path):
    _write(tmp_path, "g.txt", "0 1\n1 2\n2 0\n2 3\n")
    code, stdout, stderr = dgdlocal("--simulate", 4, "--n", 12, "--m", 16, "--rank", 2, "--iterations", 20,
                                    "--topology-file", "g.txt", "--output", "r.h5", cwd=tmp_path)
    assert code == 0, stderr
    assert "file g.txt network" in stdout
    _write(tmp_path, "split.txt", "0 1\n2 3\n")
    code, _, stderr = dgdlocal("--simulate", 4, "--topology-file", "split.txt", "--output", "s.h5", cwd=tmp_path)
    assert code == 2 and "connected" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "s.h5").exists()
    code, _, stderr = dgdlocal("--simulate", 4, "--topology-file", "g.txt", "--weights", "w.npy", "--output", "t.h5",
                               cwd=tmp_path)
    assert code == 2 and "not both" in stderr


def test_topology_file_under_mpirun(tmp_path):
    from conftest import mpirun

    _write(tmp_path, "g.txt", "0 1\n1 2\n")
    code, stdout, stderr = mpirun(3, "--n", 12, "--m", 15, "--rank", 2, "--iterations", 30, "--topology-file", "g.txt",
                                  "--output", "r.h5", cwd=tmp_path)
    assert code == 0, stderr
    code, stdout, stderr = mpirun(2, "--topology-file", "g.txt", "--output", "r2.h5", cwd=tmp_path)
    assert code == 2 and stderr.count("has 3 nodes but the job has J=2") == 1


# --------------------------------------------------------------------------- help


@pytest.mark.parametrize("command", [[], ["run"], ["generate"], ["info"], ["plot"]])
def test_help_of_every_subcommand(command):
    code, stdout, stderr = dgdlocal(*command, "--help")
    assert code == 0 and stdout.startswith("usage:"), stderr
    if not command:
        assert all(name in stdout for name in ("run", "generate", "info", "plot", "examples:"))
    if command == ["run"]:
        for group in ("configuration file:", "problem and data:", "network:", "algorithm:", "output:"):
            assert group in stdout
        assert "--topology-file" in stdout and "--config" in stdout


# --------------------------------------------------------------------------- real data


def test_camera_image_factorizes_close_to_the_truncated_svd(tmp_path):
    """The bundled photograph (data/camera-256.npy, CC0 from scikit-image) on 4 simulated ranks, r = 5."""
    data = os.path.join(REPOSITORY, "data", "camera-256.npy")
    Y = np.load(data).astype(np.float64)
    assert Y.shape == (256, 256) and 0.0 <= Y.min() and Y.max() <= 1.0
    singular_values = np.linalg.svd(Y, compute_uv=False)
    best = np.sqrt(np.sum(singular_values[5:] ** 2)) / np.linalg.norm(Y)
    code, stdout, stderr = dgdlocal("--simulate", 4, "--data", data, "--rank", 5, "--iterations", 3000,
                                    "--log-every", 500, "--quiet", "--output", tmp_path / "camera.h5")
    assert code == 0, stderr
    code, stdout, stderr = dgdlocal("info", tmp_path / "camera.h5", "--json")
    reached = json.loads(stdout)["final"]["relative_error"]
    assert best <= reached <= 1.01 * best, (reached, best)


def test_loader_script_reproduces_the_committed_copy(tmp_path):
    pytest.importorskip("skimage")
    code, _, stderr = launch([sys.executable, os.path.join(REPOSITORY, "data", "make_image.py"),
                              "--output", str(tmp_path / "camera.npy")])
    assert code == 0, stderr
    np.testing.assert_array_equal(np.load(tmp_path / "camera.npy"),
                                  np.load(os.path.join(REPOSITORY, "data", "camera-256.npy")))
