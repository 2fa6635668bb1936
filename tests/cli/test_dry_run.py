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


# docs/reproduce.md, MoICE: the authors' run script (router-only, 7 steps of 128 at lr 1e-4,
# HuggingFace AdamW defaults, their 7 bases all kept, aux 0.3) and routers drawn N(0, 0.02).
OFFICIAL_MOICE = {
    "moice-bases": "10000,17500,18000,19000,20000,22500,25000", "moice-topk": "7",
    "moice-aux": "0.3", "moice-router-std": "0.02", "train-only": "routers", "steps": "7",
    "batch": "128", "lr": "0.0001", "beta2": "0.999", "weight-decay": "0",
    "schedule": "constant", "warmup": "0", "clip": "1",
}


def test_moice_recipe_is_the_official_one_and_given_flags_win(tmp_path):
    base = tmp_path / "rope"
    done = train("--layers", "1", "--dim", "16", "--heads", "2", "--steps", "2", "--batch", "4",
                 "--threads", "1", "--out", base)
    assert done.returncode == 0, done.stderr
    d = dry_run("--init", base / "model.h5", "--moice-recipe", "official", "--out", tmp_path / "x")
    assert {k: d["flags"][k]["value"] for k in OFFICIAL_MOICE} == OFFICIAL_MOICE
    assert d["config"]["model"]["moice"]["router_std"] == 0.02
    d = dry_run("--init", base / "model.h5", "--moice-recipe", "official", "--steps", "50",
                "--out", tmp_path / "y")
    assert d["flags"]["steps"] == {"value": "50", "from": "flag"}
    assert d["flags"]["moice-topk"] == {"value": "7", "from": "preset"}
    resumed = train("--resume", base / "model.h5", "--moice-recipe", "official")
    assert resumed.returncode == 2 and "drop --moice-recipe" in resumed.stderr
