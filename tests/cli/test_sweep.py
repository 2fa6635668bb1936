"""bin/sweep, local backend: a 4-run grid runs; interrupted in the middle, a rerun finishes it
without redoing finished runs and the resumed runs end bit for bit where uninterrupted ones do;
a second rerun does nothing; the report's figures are the runs' own metrics; bad grids are
refused before anything starts. (The Slurm backend: tests/slurm/slurm_backend.py.)
"""
import json
import os
import pathlib
import shutil
import signal
import statistics
import subprocess
import time

import h5py
import pytest

from sweep_helpers import FLAGS, GRID, ROOT, SWEEP, TRAIN, last_rows, results, summaries, sweep, \
    write_grid


def files_state(folder):
    """(path, size, mtime) of every file under folder: what a run that did nothing leaves."""
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in pathlib.Path(folder).rglob("*") if p.is_file())


def checkpoint_steps(folder):
    """{run name: its checkpoint's step} for the runs that have one."""
    steps = {}
    for path in (folder / "runs").glob("*/model.h5"):
        try:
            with h5py.File(path, "r") as f:
                steps[path.parent.name] = int(f.attrs["step"])
        except OSError:  # renamed over while opening
            pass
    return steps


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """The grid started with 2 jobs and stopped by a Ctrl-C (SIGINT) while the second pair of
    runs is between its first checkpoint and its end."""
    cwd = tmp_path_factory.mktemp("sweep")
    grid = write_grid(cwd)
    folder = cwd / "sweeps" / "pe-seeds"
    proc = subprocess.Popen([str(SWEEP), "run", str(grid), "--jobs", "2"], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # A generous deadline: on a loaded machine the first pair of runs alone can take minutes.
    deadline, ready = time.time() + 900, False
    while time.time() < deadline and not ready and proc.poll() is None:
        done = set(summaries(folder)) if (folder / "summaries").exists() else set()
        # Half a run left at least: the Ctrl-C must reach a run before it ends, and a run of
        # this grid takes a few seconds.
        ready = bool(done) and any(0 < step < FLAGS["steps"] // 2
                                   for step in checkpoint_steps(folder).values())
        if not ready:
            time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    if not ready:
        out, _ = proc.communicate(timeout=60)
        pytest.fail("the sweep never had a finished run and a run between checkpoints at once, "
                    "so the interruption tests cannot run:\n" + out)
    out, _ = proc.communicate(timeout=60)
    return cwd, grid, folder, proc.returncode, out


def test_interrupt_stops_cleanly_with_checkpoints(interrupted):
    cwd, grid, folder, rc, out = interrupted
    assert rc == 130, out
    assert "interrupted" in out
    done = summaries(folder)
    status = sweep("status", grid, cwd=cwd).stdout
    partial = [line.split()[0] for line in status.splitlines() if "at step" in line]
    assert 1 <= len(done) < 4, status
    assert partial, status  # saved at Ctrl-C, short of its 1000 steps
    assert not set(partial) & set(done)


def test_report_lists_unfinished_runs_apart(interrupted, tmp_path):
    cwd, grid, folder, _, _ = interrupted
    done = summaries(folder)
    r = sweep("report", grid, "--report-dir", tmp_path, cwd=cwd)
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "report.json").read_text())
    names = [line.split()[0] for line in sweep("status", grid, cwd=cwd).stdout.splitlines()[:4]]
    assert sorted(rep["unfinished"]) == sorted(set(names) - set(done))
    assert sum(g["metrics"]["token_error"]["in"]["n"] for g in rep["groups"]) == len(done)
    for name in rep["unfinished"]:
        assert name in (tmp_path / "report.md").read_text().split("Unfinished runs")[1]


@pytest.fixture(scope="module")
def rerun(interrupted):
    cwd, grid, folder, _, _ = interrupted
    done_before = summaries(folder)
    kept = {name: files_state(folder / "runs" / name) for name in done_before}
    r = sweep("run", grid, "--jobs", "2", cwd=cwd)
    return cwd, grid, folder, done_before, kept, r


def test_rerun_finishes_without_redoing(rerun):
    cwd, grid, folder, done_before, kept, r = rerun
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(done_before)} finished, {4 - len(done_before)} to run" in r.stdout
    assert len(summaries(folder)) == 4
    for name, state in kept.items():
        assert files_state(folder / "runs" / name) == state, f"{name} was run again"
        assert summaries(folder)[name] == done_before[name]
    resumed = [name for name in summaries(folder) if name not in done_before]
    for name in resumed:
        attempts = json.loads((folder / "runs" / name / "run.json").read_text())["attempts"]
        if len(attempts) == 2:  # interrupted after its first step: resumed from its checkpoint
            assert 0 < attempts[1]["resumed_at_step"] < FLAGS["steps"]
            assert "resuming" in (folder / "runs" / name / "train.log").read_text()
    assert any(len(json.loads((folder / "runs" / n / "run.json").read_text())["attempts"]) == 2
               for n in resumed)


def test_resumed_runs_equal_uninterrupted_ones(rerun, tmp_path):
    _, _, folder, done_before, _, _ = rerun
    got = results(folder)
    for name, s in summaries(folder).items():
        if name in done_before:
            continue
        flags = [a for k, v in s["flags"].items() for a in (f"--{k}", v)]
        argv = [str(TRAIN), *flags, "--threads", "1", "--out", str(tmp_path / name)]
        subprocess.run(argv, check=True, capture_output=True, timeout=120)
        row = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text()
               .splitlines()][-1]
        assert got[name] == (row["eval"], row["loss"], FLAGS["steps"]), name


def test_second_rerun_does_nothing(rerun):
    cwd, grid, folder, _, _, _ = rerun
    before = files_state(folder)
    r = sweep("run", grid, cwd=cwd)
    assert r.returncode == 0
    assert "nothing to do" in r.stdout
    assert files_state(folder) == before


def test_report_figures_are_the_runs_metrics(rerun, tmp_path):
    cwd, grid, folder, _, _, _ = rerun
    r = sweep("report", grid, cwd=cwd)
    assert r.returncode == 0, r.stderr
    rep = json.loads((folder / "report" / "report.json").read_text())
    rows = last_rows(folder)
    assert rep["unfinished"] == []
    assert [g["axes"]["pe"] for g in rep["groups"]] == ["abs", "rope"]
    for g in rep["groups"]:
        assert g["seeds"] == ["1", "2"]
        for metric, by_split in g["metrics"].items():
            assert set(by_split) == {"in", "sparse", "dense"}
            for split, a in by_split.items():
                values = [rows[name]["eval"][split][metric] for name in g["runs"]]
                assert a["n"] == 2
                assert a["mean"] == pytest.approx(statistics.fmean(values), rel=1e-12)
                assert a["std"] == pytest.approx(statistics.stdev(values), rel=1e-12)
                assert (a["min"], a["max"]) == (min(values), max(values))
                # each run's own value, with its count and interval where it is an error rate
                for name, cell in zip(g["runs"], g["per_run"][metric][split]):
                    e = rows[name]["eval"][split]
                    assert cell["value"] == e[metric]
                    if metric == "loss":
                        assert set(cell) == {"value"}
                    else:
                        n = e["scored" if metric == "token_error" else "seqs"]
                        assert (cell["n"], cell["ci95"]) == (n, e[metric + "_ci95"])
                        assert cell["ci95"][0] <= cell["value"] <= cell["ci95"][1]
    md = (folder / "report" / "report.md").read_text()
    lo, hi = rep["groups"][0]["per_run"]["token_error"]["in"][0]["ci95"]
    assert f"[{100 * lo:.2f}, {100 * hi:.2f}] (n=" in md.split("Per run: final token_error")[1]
    for name in ["error-token_error.png", "curves-loss.png", "report.md"]:
        assert (folder / "report" / name).stat().st_size > 0
    page = (folder / "report" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 6 and "src='http" not in page

    # The summaries alone, elsewhere, give the same report.
    elsewhere = tmp_path / "results"
    shutil.copytree(folder / "summaries", elsewhere)
    grid_copy = tmp_path / "grid.toml"
    grid_copy.write_text(GRID)
    r = sweep("report", grid_copy, "--summaries", elsewhere, "--report-dir", tmp_path / "rep",
              cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "rep" / "report.json").read_text()) == rep


def test_summary_is_small_and_complete(rerun):
    _, _, folder, _, _, _ = rerun
    for path in (folder / "summaries").glob("*.json"):
        s = json.loads(path.read_text())
        assert path.stat().st_size < 16384
        assert s["config"]["train"]["steps"] == FLAGS["steps"]
        assert s["config"]["train"]["threads"] == 1
        assert s["config"]["model"]["pe"] == s["axes"]["pe"]
        assert len(s["commit"]) >= 40 or s["commit"] == "unknown"


BAD = [
    ("name = 'x'\n[axes\npe = ['abs']\n", "grid.toml:2: malformed TOML", "line 2, column 6"),
    ("name = 'x'\n[flags]\ntask = 'flipflop'\n[axes]\nencoding = ['abs']\n",
     "grid.toml:5: 'encoding' is not a key of [axes]", "allowed: act,"),
    ("name = 'x'\n[flags]\nsteps = 10\nlayer = 2\n", "grid.toml:4: 'layer'", "layers"),
    ("name = 'x'\n[axes]\npe = ['abs']\nseed = []\n", "grid.toml:4", "zero runs"),
    ("name = 'x'\n[flags]\nout = 'here'\n", "grid.toml:3", "sets --out itself"),
    ("name = 'x'\n[axes]\npe = ['abs', 'ropez']\n", "grid.toml:3", "unknown encoding 'ropez'"),
    ("name = 'x'\n[flags]\ntask = 'flipflop'\npreset = 'huge'\n", "grid.toml:4", "huge"),
    ("[axes]\npe = ['abs']\n", "needs a name", ""),
]


@pytest.mark.parametrize("text,where,what", BAD)
def test_bad_grid_is_refused_before_anything_starts(tmp_path, text, where, what):
    grid = write_grid(tmp_path, text)
    r = sweep("run", grid, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert where in r.stderr and what in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.toml"]


def test_missing_sbatch_is_refused(tmp_path):
    grid = write_grid(tmp_path)
    env = dict(os.environ, PATH=str(tmp_path / "no-slurm-here"))
    r = sweep("run", grid, "--backend", "slurm", cwd=tmp_path, env=env)
    assert r.returncode == 2
    assert "sbatch is not on PATH" in r.stderr and "--backend local" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.toml"]


def test_sweep_runs_from_any_folder():
    r = subprocess.run([str(SWEEP), "--help"], cwd="/", capture_output=True, text=True)
    assert r.returncode == 0 and "bin/sweep run GRID" in r.stdout
    assert os.path.realpath(SWEEP) == str(ROOT / "sweep" / "cli.py")


def test_failed_run_is_reported_and_the_others_finish(tmp_path):
    grid = write_grid(tmp_path, GRID.replace('seed = [1, 2]', 'seed = [1]\nlr = [0.003, -1.0]')
                      .replace('"steps": 200', '"steps": 20').replace("steps = 200", "steps = 20"))
    r = sweep("run", grid, cwd=tmp_path)
    assert r.returncode == 1
    failed = [line for line in r.stderr.splitlines() if "failed (exit 2)" in line]
    assert len(failed) == 2 and all("lr--1.0" in line for line in failed), r.stderr
    assert "--lr" in r.stderr  # the tail of its log: bin/train's own message
    assert "2 runs failed" in r.stdout
    assert sorted(summaries(tmp_path / "sweeps" / "pe-seeds")) == sorted(
        n for n in os.listdir(tmp_path / "sweeps" / "pe-seeds" / "runs") if "lr-0.003" in n)


@pytest.mark.parametrize("grid", sorted((ROOT / "sweep" / "grids").glob("*.toml")), ids=lambda p: p.name)
def test_every_committed_grid_is_valid(grid, tmp_path):
    # The grids docs/reproduce.md tells users to run: each parses, names only bin/train's flags
    # and known encodings, and lists its runs (status starts nothing; its folder goes to tmp_path).
    shutil.copy(grid, tmp_path / grid.name)
    r = sweep("status", tmp_path / grid.name, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert " runs: " in r.stdout and r.stderr == "", (r.stdout, r.stderr)
