"""bin/train --dry-run: the resolved configuration, each flag with where its value came from.

The counting paper preset is held to the official trainer's values as docs/reproduce.md audits
them, through the resolved config a run would use, and nothing is written.
"""
import json

from harness import train

# docs/reproduce.md, section 2: the official trainer's counting configuration.
OFFICIAL_COUNTING = {
    "layers": "4", "dim": "256", "heads": "4", "ffn": "1024", "norm": "post", "act": "relu",
    "dropout": "0.1", "ffn-dropout": "0.1", "init-scheme": "torch", "emb-std": "0.0625",
    "seq-len": "512", "lr": "7e-05", "beta1": "0.9", "beta2": "0.999", "weight-decay": "0",
    "clip": "0", "warmup": "0", "schedule": "constant", "batch": "64", "batch-order": "shuffle",
    "steps": "15700", "count-vars": "3", "count-statements": "512",
}


def dry_run(*args):
    done = train(*args, "--dry-run")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_counting_paper_preset_resolves_to_the_official_configuration(tmp_path):
    out = tmp_path / "never"
    d = dry_run("--task", "counting", "--preset", "paper", "--pe", "cope", "--out", out)
    got = {k: d["flags"][k]["value"] for k in OFFICIAL_COUNTING}
    assert got == OFFICIAL_COUNTING
    model, train_cfg = d["config"]["model"], d["config"]["train"]
    assert (model["init_scheme"], model["ffn_dropout"], model["n_layer"], model["pe"]) == \
        ("torch", 0.1, 4, "cope")
    assert (train_cfg["batch_order"], train_cfg["steps"], train_cfg["clip"]) == ("shuffle", 15700, 0)
    assert not out.exists(), "--dry-run must write nothing"


def test_sources_say_where_each_value_came_from(tmp_path):
    d = dry_run("--task", "counting", "--preset", "paper", "--lr", "1e-4", "--out", tmp_path / "x")
    src = {k: v["from"] for k, v in d["flags"].items()}
    assert src["lr"] == "flag" and src["layers"] == "preset" and src["seed"] == "default"
    assert src["ffn"] == "derived" and src["min-lr"] == "derived"


def test_a_resumed_run_takes_its_values_from_the_checkpoint(tmp_path):
    run = tmp_path / "run"
    done = train("--layers", "1", "--dim", "16", "--heads", "2", "--steps", "2", "--batch", "4",
                 "--threads", "1", "--lr", "0.002", "--out", run)
    assert done.returncode == 0, done.stderr
    d = dry_run("--resume", run / "model.h5", "--steps", "4")
    src = {k: v["from"] for k, v in d["flags"].items()}
    assert src["steps"] == "flag" and src["lr"] == "checkpoint" and src["layers"] == "checkpoint"
    assert d["flags"]["lr"]["value"] == "0.002"
