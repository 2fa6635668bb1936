"""train/lost_in_middle.py: the lasting-U experiment over seeds, at a size a test can afford.

- Happy path: two seeds of a 20-step rope run (stopped at step 10 for the early snapshot), Ms-PoE
  and one MoICE fine-tuning, with the duplicate-key probe. The rope runs are trained with the
  queried pair never in the middle; each seed's rope sweep is the rope run's own last evaluation
  (same sequences and threads) and the last row of its training curve, each interval holds its
  accuracy, the summary is the seeds' mean and sample sd, the probe's three answers cover every
  query of the P(P+1)/2 splits; the report's table, JSON and PNG are written.
- Bad input: a middle share outside [0, 1] is refused before anything runs.
"""
import json
import statistics
import subprocess
import sys

import h5py
import pytest

from harness import ENV, ROOT, assert_refused

SCRIPT = ROOT / "train" / "lost_in_middle.py"
SEEDS = (1, 2)
METHODS = ["rope", "rope + Ms-PoE 1.2:1.8", "rope + MoICE routers (short bases)"]


def script(*args, timeout=600):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=ENV)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("lasting-u")
    done = script("--out", out, "--seeds", *SEEDS, "--early-step", 10, "--moice-bases", "short",
                  "--probe", 3, "--eval-seqs", 32,
                  "--", "--steps", 20, "--eval-every", 0, "--eval-seqs", 32)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text())


def test_rope_runs_never_query_the_middle(report):
    out, _ = report
    for seed in SEEDS:
        with h5py.File(out / f"s{seed}" / "rope" / "model.h5", "r") as f:
            task = json.loads(f.attrs["config"])["task"]
            assert (task["kv_positions"], task["kv_middle_share"]) == ("ends", 0)
            assert int(f.attrs["step"]) == 20


def test_each_seed_is_its_runs_own_evaluation(report):
    out, results = report
    trained = results["snapshots"]["trained"]
    assert trained["step"] == 20 and results["snapshots"]["early"]["step"] == 10
    for seed in SEEDS:
        last = json.loads((out / f"s{seed}" / "rope" / "metrics.jsonl").read_text().splitlines()[-1])
        assert trained["seeds"][str(seed)]["rope"]["accuracy"] == last["sweep"]["accuracy"]
        assert results["training"][str(seed)][-1]["step"] == 20
        assert results["training"][str(seed)][-1]["accuracy"] == last["sweep"]["accuracy"]
        for method in METHODS:
            r = trained["seeds"][str(seed)][method]
            assert len(r["accuracy"]) == 10 and r["scored"] == 32
            for acc, (lo, hi) in zip(r["accuracy"], r["ci95"]):
                assert 0 <= lo <= acc <= hi <= 1


def test_summary_is_mean_and_sd_over_seeds(report):
    _, results = report
    for snap in results["snapshots"].values():
        assert list(snap["summary"]) == METHODS
        for method, s in snap["summary"].items():
            runs = [snap["seeds"][str(seed)][method] for seed in SEEDS]
            for b in range(10):
                values = [r["accuracy"][b] for r in runs]
                assert s["accuracy_mean"][b] == pytest.approx(statistics.fmean(values))
                assert s["accuracy_sd"][b] == pytest.approx(statistics.stdev(values))
            assert s["middle_mean"][0] == pytest.approx(statistics.fmean(r["middle_mean"] for r in runs))


def test_probe_answers_cover_every_query(report):
    _, results = report
    splits = [f"{a}-{b}" for a in range(3) for b in range(a, 3)]
    for snap in results["snapshots"].values():
        for per in snap["seeds"].values():
            for r in per.values():
                assert sorted(r["probe"]) == splits
                for p in r["probe"].values():
                    assert sum(p[k]["count"] for k in ("earlier", "later", "neither")) == 32
                    assert sum(p[k]["share"] for k in p) == pytest.approx(1)


def test_report_files(report):
    out, _ = report
    table = (out / "table.md").read_text()
    for method in METHODS:
        assert f"| {method} |" in table
    assert "| rope | 2 |" in table and "| rope | 0-2 |" in table and "| step 20 |" in table
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("share", ["-0.1", "1.5"])
def test_bad_middle_share_is_refused(tmp_path, share):
    assert_refused(script("--out", tmp_path / "never", "--middle-share", share), "--middle-share",
                   tmp_path / "never")
