"""bin/sweep's Slurm backend on a real cluster (`make test-slurm` starts a one-node one with
tests/slurm/start-local-cluster.sh and exports its SLURM_CONF): the 4-run grid becomes one job
array through sbatch, a task requeued mid-run resumes from its checkpoint, the results equal the
local backend's bit for bit, and reruns submit only what is unfinished.

Not collected by `make test` (the name does not start with test_): it needs the cluster.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import h5py
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from sweep_helpers import FLAGS, results, summaries, sweep, write_grid  # noqa: E402

TIMEOUT = 180


@pytest.fixture(scope="module")
def cluster():
    if not os.environ.get("SLURM_CONF") or subprocess.run(["sinfo"], capture_output=True) \
            .returncode != 0:
        pytest.fail("no Slurm cluster: run `make test-slurm`, which starts one")


def wait_for(predicate, what):
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out after {TIMEOUT} s waiting for {what}")


def status(grid, cwd):
    r = sweep("status", grid, cwd=cwd)
    assert r.returncode == 0, r.stderr
    return r.stdout


def partial_task(folder, grid, cwd):
    """The Slurm task (job_index) of a running run whose checkpoint is short of the end."""
    for line in status(grid, cwd).splitlines():
        if "RUNNING" in line and "at step" in line:
            name = line.split()[0]
            try:
                with h5py.File(folder / "runs" / name / "model.h5", "r") as f:
                    # half a run left at least, so the requeue reaches it before its end
                    if 0 < int(f.attrs["step"]) < FLAGS["steps"] // 2:
                        return name, line.split("slurm ")[1].split()[0]
            except OSError:
                pass
    return None


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("local")
    r = sweep("run", write_grid(cwd), "--jobs", "2", cwd=cwd)
    assert r.returncode == 0, r.stdout + r.stderr
    return results(cwd / "sweeps" / "pe-seeds")


@pytest.fixture(scope="module")
def submitted(cluster, tmp_path_factory):
    """The grid through sbatch, one task requeued while it trains, waited for to the end."""
    cwd = tmp_path_factory.mktemp("slurm")
    grid = write_grid(cwd)
    folder = cwd / "sweeps" / "pe-seeds"
    r = sweep("run", grid, "--backend", "slurm", "--max-running", "2", cwd=cwd)
    assert r.returncode == 0, r.stdout + r.stderr
    name, task = wait_for(lambda: partial_task(folder, grid, cwd), "a run between checkpoints")
    subprocess.run(["scontrol", "requeue", task], check=True)
    wait_for(lambda: "4 runs: 4 done" in status(grid, cwd), "all 4 runs to finish")
    return cwd, grid, folder, name, r.stdout


def test_one_job_array_with_the_grids_resources(submitted):
    _, _, folder, _, out = submitted
    assert "4 tasks, at most 2 at a time" in out
    scripts = list((folder / "slurm").glob("array-*.sh"))
    assert len(scripts) == 1
    text = scripts[0].read_text()
    for line in ["#SBATCH --array=0-3%2", "#SBATCH --cpus-per-task=1", "#SBATCH --time=00:10:00",
                 "#SBATCH --requeue"]:
        assert line in text.splitlines()
    assert len(list((folder / "slurm" / "logs").glob("*_*.log"))) == 4


def test_results_equal_the_local_backends(submitted, local):
    _, _, folder, _, _ = submitted
    assert results(folder) == local
    assert len(local) == 4


def test_requeued_task_resumed_from_its_checkpoint(submitted):
    _, _, folder, name, _ = submitted
    attempts = json.loads((folder / "runs" / name / "run.json").read_text())["attempts"]
    assert len(attempts) == 2
    assert 0 < attempts[1]["resumed_at_step"] < FLAGS["steps"]
    assert "interrupted after step" in (folder / "runs" / name / "train.log").read_text()


def test_status_shows_slurm_states(submitted):
    cwd, grid, _, _, _ = submitted
    lines = status(grid, cwd).splitlines()
    assert sum("done, slurm" in line and "COMPLETED" in line for line in lines) == 4


def test_rerun_submits_only_the_unfinished(submitted, local):
    cwd, grid, folder, _, _ = submitted
    r = sweep("run", grid, "--backend", "slurm", cwd=cwd)
    assert r.returncode == 0 and "nothing to submit" in r.stdout
    assert len(json.loads((folder / "slurm" / "jobs.json").read_text())) == 1

    # One run lost (its folder and summary deleted): the rerun submits that one alone.
    gone = sorted(summaries(folder))[3]
    shutil.rmtree(folder / "runs" / gone)
    (folder / "summaries" / f"{gone}.json").unlink()
    r = sweep("run", grid, "--backend", "slurm", cwd=cwd)
    assert r.returncode == 0 and "1 tasks" in r.stdout, r.stdout + r.stderr
    wait_for(lambda: "4 runs: 4 done" in status(grid, cwd), "the resubmitted run")
    assert results(folder) == local
