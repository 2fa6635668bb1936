"""The counting task from the command line (tasks/counting.c).

- Bad counting options end with exit status 2 and one line naming the problem and the fix.
- The paper preset carries the official optimiser (Adam without decay, warmup, clipping or
  schedule) through its flags text, and the official model.
- The context follows the statements unless given: the longest program of --count-statements
  (4 tokens a statement, then "print v" and the answer) when that is shorter than the preset's.
- A tiny run evaluates the splits valid and test and stores --count-vars and
  --count-statements in its checkpoint's config.

Models are tiny (width 16) and runs a few steps, so the module takes seconds.
"""
import json
import re

import h5py
import pytest

from harness import assert_refused, train

TINY = ["--pe", "cope", "--layers", "1", "--dim", "16", "--heads", "2", "--batch", "4",
        "--threads", "1", "--lr", "0.001"]


BAD = [
    (["--count-vars", "0"], "--count-vars must be an integer from 1 to 26, got 0"),
    (["--count-vars", "27"], "--count-vars must be an integer from 1 to 26, got 27"),
    (["--count-statements", "2"], "--count-statements must be an integer from 3 to 65536, got 2"),
    (["--count-statements", "many"], "--count-statements needs an integer, got 'many'"),
    (["--seq-len", "2"], "counting needs a --seq-len of at least 3 (the question \"print v\" and "
     "its answer), got 2"),
]


@pytest.mark.parametrize("args,fragment", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_counting_options(tmp_path, args, fragment):
    done = train(*TINY, "--task", "counting", "--out", tmp_path / "unused", *args)
    assert_refused(done, fragment, tmp_path / "unused")


def defaults_in_help(*args):
    """The [default] of every flag as --help prints it for these arguments."""
    done = train("--task", "counting", *args, "--help")
    assert done.returncode == 0, done.stderr
    return dict(re.findall(r"^  --([\w-]+) \S+ .*\[(.*)\]$", done.stdout, re.M))


def config_of(checkpoint):
    with h5py.File(checkpoint, "r") as f:
        return json.loads(f.attrs["config"])


def test_paper_preset_is_the_official_setup(tmp_path):
    d = defaults_in_help("--preset", "paper")
    official = {"layers": "4", "dim": "256", "heads": "4", "norm": "post", "act": "relu",
                "dropout": "0.1", "seq-len": "512", "batch": "64", "lr": "7e-05",
                "steps": "15700", "warmup": "0", "schedule": "constant", "weight-decay": "0",
                "beta1": "0.9", "beta2": "0.999", "clip": "0", "count-statements": "512",
                "ffn-dropout": "0.1", "init-scheme": "torch", "emb-std": "0.0625",
                "batch-order": "shuffle"}
    assert {k: d[k] for k in official} == official
    # A run of it (made tiny): explicit flags override the preset's flags text too, and the
    # context shrinks to the longest program of 20 statements, 83 tokens.
    out = tmp_path / "run"
    done = train(*TINY, "--task", "counting", "--preset", "paper", "--clip", "1", "--steps", "1",
                 "--count-statements", "20", "--out", out)
    assert done.returncode == 0, done.stderr
    config = config_of(out / "model.h5")
    train_cfg, task = config["train"], config["task"]
    assert (train_cfg["schedule"], train_cfg["warmup"], train_cfg["weight_decay"],
            train_cfg["beta2"], train_cfg["clip"]) == \
        ("constant", 0, 0, pytest.approx(0.999), 1)
    assert (config["model"]["n_layer"], config["model"]["norm"], config["model"]["act"]) == \
        (1, "post", "relu")
    assert (task["seq_len"], task["count_vars"], task["count_statements"]) == (83, 3, 20)


def test_context_follows_the_statements():
    """--help shows the preset's values as derived for a new run."""
    assert defaults_in_help()["seq-len"] == "64"
    assert defaults_in_help("--preset", "paper")["seq-len"] == "512"


def test_tiny_run_evaluates_valid_and_test(tmp_path):
    out = tmp_path / "run"
    done = train(*TINY, "--task", "counting", "--count-vars", "3", "--count-statements", "20",
                 "--seq-len", "32", "--steps", "4", "--warmup", "1", "--eval-every", "2",
                 "--out", out)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    assert re.search(r"^valid .*3 variables, 3-20 statements", done.stdout, re.M), done.stdout
    assert re.search(r"^test ", done.stdout, re.M)
    task = config_of(out / "model.h5")["task"]
    assert (task["name"], task["count_vars"], task["count_statements"], task["seq_len"]) == \
        ("counting", 3, 20, 32)
