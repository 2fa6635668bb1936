"""bin/train --dry-run: the resolved configuration, each flag with where its value came from.

The counting paper preset is held to the official trainer's values and the Flip-Flop paper
preset to the data card's, as docs/reproduce.md audits them, through the resolved config a run
would use, and nothing is written.
"""
import json

import h5py

from harness import train

# docs/reproduce.md, section 2: the official trainer's counting configuration.
OFFICIAL_COUNTING = {
    "layers": "4", "dim": "256", "heads": "4", "ffn": "1024", "norm": "post", "act": "relu",
    "dropout": "0.1", "ffn-dropout": "0.1", "init-scheme": "torch", "emb-std": "0.0625",
    "seq-len": "512", "lr": "7e-05", "beta1": "0.9", "beta2": "0.999", "weight-decay": "0",
    "clip": "0", "warmup": "0", "schedule": "constant", "batch": "64", "batch-order": "shuffle",
    "steps": "15700", "count-vars": "3", "count-statements": "512",
}


# docs/reproduce.md, Flip-Flop: the data card (512-token sequences, training FFL(0.8); splits
# val 16K of FFL(0.8), val_sparse 160K of FFL(0.98), val_dense 4K of FFL(0.1)). eval-seqs 160000
# evaluates every split whole; the budget and the model are pelab's own choices.
FLIPFLOP_CARD = {"seq-len": "512", "eval-seqs": "160000"}
FLIPFLOP_SPLITS = {"in": (16000, "FFL(0.8)"), "sparse": (160000, "FFL(0.98)"),
                   "dense": (4000, "FFL(0.1)")}


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


def test_flipflop_paper_preset_resolves_to_the_data_card(tmp_path):
    d = dry_run("--task", "flipflop", "--preset", "paper", "--pe", "cope", "--out", tmp_path / "x")
    assert {k: d["flags"][k]["value"] for k in FLIPFLOP_CARD} == FLIPFLOP_CARD
    assert {d["flags"][k]["from"] for k in FLIPFLOP_CARD} == {"preset"}
    assert d["config"]["task"]["flipflop_p_train"] == 0.8
    # Every split whole costs as much as training: only the final evaluation runs.
    assert d["flags"]["eval-every"]["value"] == "0"
    assert not (tmp_path / "x").exists()


def test_flipflop_paper_preset_draws_the_data_cards_splits(tmp_path):
    """The splits the preset evaluates: the card's sizes and mixes (at 8 tokens here, so the
    file stays small; the length is the only flag changed), and --eval-seqs takes the first N."""
    data = tmp_path / "card.h5"
    done = train("--task", "flipflop", "--preset", "paper", "--seq-len", "8", "--write-data", data)
    assert done.returncode == 0, done.stderr
    with h5py.File(data, "r") as f:
        assert f.attrs["splits"] in ("in,sparse,dense", b"in,sparse,dense")
        for name, (size, mix) in FLIPFLOP_SPLITS.items():
            assert f[name]["lengths"].shape == (size,), name
            summary = f[name].attrs["summary"]
            assert mix in (summary.decode() if isinstance(summary, bytes) else summary), name
        first = f["sparse"]["tokens"][:300]
    small = tmp_path / "small.h5"
    done = train("--task", "flipflop", "--preset", "paper", "--seq-len", "8", "--eval-seqs",
                 "300", "--write-data", small)
    assert done.returncode == 0, done.stderr
    with h5py.File(small, "r") as f:
        assert [f[n]["lengths"].shape[0] for n in FLIPFLOP_SPLITS] == [300, 300, 300]
        assert (f["sparse"]["tokens"][()] == first).all()
