"""MoICE in bin/train: router-only fine-tuning of a rope checkpoint (docs/design.md).

A tiny rope model trains a few steps; `--init` it with `--moice-bases --train-only routers`:
- every tensor but the routers is bit for bit the rope checkpoint's, and the optimiser state
  (optim/m, optim/v) exists for the routers only, which moved from their initial values;
- the checkpoint's config carries the MoICE options and the trainable set, so the PyTorch
  reference rebuilds the MoICE model from it (strict load: the routers are there), and
  --resume continues router-only training bit for bit like an uninterrupted run;
- bad MoICE input ends with one line and exit status 2 (the table of tests/cli/test_cli.py).
"""
import json

import h5py
import numpy as np
import pytest
import torch

from reference import GPT
from harness import assert_refused, assert_same_checkpoint, train

BASE = ["--pe", "rope", "--lr", "0.003", "--layers", "2", "--dim", "16", "--heads", "2",
        "--seq-len", "16", "--batch", "8", "--eval-seqs", "8", "--threads", "2",
        "--eval-every", "0"]
# The official recipe's optimiser (AdamW, no weight decay, constant), at a larger lr so that
# the routers visibly move in a few steps; top 2 of the official bases.
FINE_TUNE = ["--moice-bases", "official", "--moice-topk", "2", "--moice-aux", "0.2",
             "--train-only", "routers", "--batch", "16", "--lr", "0.01", "--weight-decay", "0",
             "--schedule", "constant", "--threads", "2", "--eval-seqs", "8", "--eval-every", "0"]


def is_router(name):
    return ".attn.router." in name


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("moice")
    done = train(*BASE, "--steps", "20", "--out", tmp / "base")
    assert done.returncode == 0, done.stderr
    done = train("--init", tmp / "base" / "model.h5", *FINE_TUNE, "--steps", "6",
                 "--out", tmp / "ft")
    assert done.returncode == 0, done.stderr
    assert "MoICE: bases 10000,17500,18000,19000,20000,22500,25000, top 2" in done.stdout
    assert "training routers" in done.stdout
    assert " | aux " in done.stdout
    return tmp


def test_router_only_leaves_every_other_tensor_bit_identical(runs):
    with h5py.File(runs / "base" / "model.h5") as base, h5py.File(runs / "ft" / "model.h5") as ft:
        routers = sorted(n for n in ft["model"] if is_router(n))
        assert routers == sorted(f"blocks.{l}.attn.router.{w}.weight" for l in (0, 1)
                                 for w in ("w1", "w2", "w3"))
        assert set(ft["model"]) - set(routers) == set(base["model"])
        for name in base["model"]:
            assert np.array_equal(ft["model"][name][()], base["model"][name][()]), name
        assert ft["model/blocks.0.attn.router.w1.weight"].shape == (7, 8)
        assert ft["model/blocks.0.attn.router.w2.weight"].shape == (7, 7)
        for moment in ("m", "v"):
            assert sorted(ft["optim"][moment]) == routers
            for name in routers:
                assert np.any(ft["optim"][moment][name][()]), f"{moment} of {name} is zero"
        assert ft["optim"].attrs["step"] == 6


def test_routers_move_from_their_initial_values(runs, tmp_path):
    # The same --init with --steps 1 --lr tiny keeps the routers at (almost exactly) their
    # initial values; six steps at lr 0.01 move each by 0.025 to 0.05 (measured).
    done = train("--init", runs / "base" / "model.h5", *FINE_TUNE, "--steps", "1", "--lr",
                 "1e-9", "--out", tmp_path / "init")
    assert done.returncode == 0, done.stderr
    with h5py.File(tmp_path / "init" / "model.h5") as init, \
            h5py.File(runs / "ft" / "model.h5") as ft:
        for name in (n for n in ft["model"] if is_router(n)):
            moved = np.abs(ft["model"][name][()] - init["model"][name][()]).max()
            assert moved > 0.01, f"{name} moved by {moved} only"


def test_config_carries_moice_and_the_reference_rebuilds_it(runs):
    with h5py.File(runs / "ft" / "model.h5") as f:
        config = json.loads(f.attrs["config"])
        state = {k: torch.from_numpy(f["model"][k][()]) for k in f["model"]}
    assert config["model"]["moice"] == {
        "bases": [10000, 17500, 18000, 19000, 20000, 22500, 25000], "top_k": 2,
        "aux_weight": 0.2, "router_std": 0}
    assert config["train"]["train_only"] == "routers"
    model = GPT(config["model"])
    model.load_state_dict(state)  # strict: the routers must be there, and nothing else new
    _, loss = model(torch.zeros(2, 16, dtype=torch.long), torch.zeros(2, 16, dtype=torch.long))
    assert len(model.routings) == 2 and model.aux_loss.item() > 0


def test_resumed_router_only_run_equals_the_uninterrupted_one(runs, tmp_path):
    out = tmp_path / "ft"
    first = train("--init", runs / "base" / "model.h5", *FINE_TUNE, "--steps", "6",
                  "--stop-at", "3", "--out", out)
    assert first.returncode == 0, first.stderr
    second = train("--resume", out / "model.h5")
    assert second.returncode == 0, second.stderr
    assert_same_checkpoint(runs / "ft" / "model.h5", out / "model.h5")


BAD_MOICE = [
    (["--moice-bases", "10000,x"], "--moice-bases '10000,x' is not a list of numbers"),
    (["--pe", "abs", "--moice-bases", "short"], "needs --pe rope"),
    (["--moice-bases", "20000,30000"], "must start with the model's --rope-base 10000"),
    (["--moice-bases", "short", "--moice-topk", "8"],
     "--moice-topk must be from 1 to the 7 bases, got 8"),
    (["--moice-aux", "-1"], "--moice-aux must be a number >= 0"),
    (["--train-only", "some"], "--train-only must be all or routers, got 'some'"),
    (["--train-only", "routers"], "--train-only routers trains MoICE's routers, and this model "
                                  "has none; add --moice-bases"),
]


@pytest.mark.parametrize("args,message", BAD_MOICE)
def test_bad_moice_input_names_the_problem(args, message, tmp_path):
    done = train(*BASE, "--steps", "2", *args, "--out", tmp_path / "run")
    assert_refused(done, message, tmp_path / "run")


def test_resume_keeps_the_moice_options(runs):
    done = train("--resume", runs / "ft" / "model.h5", "--steps", "8", "--moice-topk", "3")
    assert done.returncode == 2
    assert "was trained with --moice-topk 2, not 3" in done.stderr


def test_attention_maps_show_the_mixture(runs, tmp_path):
    """A MoICE head applies its router's mixture of the bases' attention: causal rows of
    probabilities (each base's row sums to 1, and so do the weights)."""
    done = train("--init", runs / "base" / "model.h5", *FINE_TUNE, "--steps", "1",
                 "--attention-maps", "2", "--out", tmp_path / "maps")
    assert done.returncode == 0, done.stderr
    with h5py.File(tmp_path / "maps" / "attention.h5") as f:
        maps = f["in/attention/layer1"][()]
    assert maps.shape == (2, 2, 16, 16)
    assert np.allclose(maps.sum(-1), 1.0, atol=1e-5)
    assert not np.any(np.triu(maps, 1))
