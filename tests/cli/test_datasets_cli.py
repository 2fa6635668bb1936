"""Fixed training sets and dataset files from the command line (data/, train/run_data.c).

- --write-data writes the documented HDF5 layout (tokens [N, W+1], lengths, score_mask, vocab),
  which h5py reads back into the same scored targets the task draws.
- Training on a written file (--data) is bit-identical to training on the same set drawn by the
  task (--train-seqs), so a shared file reproduces a run.
- A run on a fixed set stopped in the middle of an epoch and resumed equals the uninterrupted
  run bit for bit (the epoch order is a function of seed, epoch and step).
- Bad files and impossible combinations end with exit 2 and one line naming the problem and fix.
"""
import json
import re
import subprocess

import h5py
import numpy as np
import pytest

from harness import ENV, EVAL, FIXTURES, ROOT, assert_refused, assert_same, train

FIXTURE = FIXTURES / "counting"


TINY = ["--task", "kvret", "--kv-pairs", "10", "--pe", "rope", "--layers", "1", "--dim", "16", "--heads", "2",
        "--batch", "8", "--eval-seqs", "16", "--threads", "2", "--dropout", "0.1"]


def weights(path):
    with h5py.File(path, "r") as f:
        return {k: f["model"][k][...] for k in f["model"]}


def moments(path):
    with h5py.File(path, "r") as f:
        return {f"{g}/{k}": f["optim"][g][k][...] for g in ("m", "v") for k in f["optim"][g]}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "kv.h5"
    done = train(*TINY, "--train-seqs", "100", "--write-data", path)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and "train 100 x 37" in done.stdout
    return path


def test_the_file_has_the_documented_layout(written):
    with h5py.File(written, "r") as f:
        assert f.attrs["format"] == b"pelab-dataset" or f.attrs["format"] == "pelab-dataset"
        splits = f.attrs["splits"]
        splits = (splits.decode() if isinstance(splits, bytes) else splits).split(",")
        assert splits[0] == "in" and splits[1:] == [f"bin{b}" for b in range(10)]
        assert f.attrs["sweep_first"] == 1 and f.attrs["sweep_bins"] == 10
        vocab = [v.decode() for v in f["vocab"][...]]
        assert vocab[0] == "k0" and vocab[-1] == "?"
        tokens, lengths, mask = f["train/tokens"][...], f["train/lengths"][...], f["train/score_mask"][...]
    assert tokens.shape == (100, 38) and lengths.shape == (100,) and mask.shape == (100, 37)
    # kvret classroom: "k v ... ? k_q1 v_q1 ... k_q8 v_q8" with 2 to 10 pairs, 8 scored positions
    # (the queried keys), whose targets are their values.
    pairs = (lengths - 17) // 2
    assert (lengths == 2 * pairs + 17).all() and pairs.min() == 2 and pairs.max() == 10
    assert (mask.sum(axis=1) == 8).all()
    for row, n in enumerate(pairs):
        scored = 2 * n + 1 + 2 * np.arange(8)
        assert (mask[row, scored] == 1).all(), row
        assert tokens[row, 2 * n] == vocab.index("?")
        assert ((tokens[row, scored + 1] >= 128) & (tokens[row, scored + 1] < 144)).all()


def test_training_on_the_file_equals_training_on_the_drawn_set(written, tmp_path):
    on_file = train(*TINY, "--data", written, "--steps", "30", "--eval-every", "0", "--out", tmp_path / "file")
    assert on_file.returncode == 0, on_file.stderr
    assert "training set: 100 sequences from" in on_file.stdout
    drawn = train(*TINY, "--train-seqs", "100", "--steps", "30", "--eval-every", "0", "--out", tmp_path / "drawn")
    assert drawn.returncode == 0, drawn.stderr
    assert_same(weights(tmp_path / "file" / "model.h5"), weights(tmp_path / "drawn" / "model.h5"))


def test_resume_in_the_middle_of_an_epoch_is_bit_identical(tmp_path):
    # 100 sequences in batches of 8: 12 steps per epoch; stop at 17, in the second epoch.
    common = [*TINY, "--train-seqs", "100", "--steps", "30", "--eval-every", "10"]
    whole = train(*common, "--out", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    part = train(*common, "--out", tmp_path / "part", "--stop-at", "17")
    assert part.returncode == 0, part.stderr
    rest = train("--resume", tmp_path / "part" / "model.h5")
    assert rest.returncode == 0, rest.stderr
    a, b = tmp_path / "whole" / "model.h5", tmp_path / "part" / "model.h5"
    assert_same(weights(a), weights(b))
    assert_same(moments(a), moments(b))
    rows = lambda d: [{k: v for k, v in json.loads(l).items() if k not in ("tok_per_s", "elapsed_s")}
                      for l in (d / "metrics.jsonl").read_text().splitlines()]
    assert rows(tmp_path / "whole") == rows(tmp_path / "part")


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, written):
    tmp = tmp_path_factory.mktemp("bad")
    no_train = tmp / "no_train.h5"
    assert train(*TINY, "--write-data", no_train).returncode == 0
    flip = tmp / "flip.h5"
    assert train("--task", "flipflop", "--seq-len", "16", "--eval-seqs", "4", "--write-data", flip).returncode == 0
    garbage = tmp / "garbage.h5"
    garbage.write_text("nope")
    return {"written": written, "no_train": no_train, "flip": flip, "garbage": garbage, "tmp": tmp}


@pytest.mark.parametrize("args, fragment", [
    (["--data", "{tmp}/missing.h5"], "cannot open dataset {tmp}/missing.h5"),
    (["--data", "{garbage}"], "is not an HDF5 file"),
    (["--data", "{flip}"], "was written for task flipflop, not kvret; pass --task flipflop"),
    (["--data", "{no_train}"], "has no training set; write one with bin/train --task kvret --train-seqs N"),
    (["--data", "{written}", "--train-seqs", "50"], "--train-seqs does not apply to --data"),
    (["--train-seqs", "4"], "the training set has 4 sequences, fewer than --batch 8"),
])
def test_bad_data_is_refused_with_one_line(bad_files, tmp_path, args, fragment):
    fill = {k: str(v) for k, v in bad_files.items()}
    args = [a.format(**fill) for a in args]
    done = train(*TINY, *args, "--out", tmp_path / "run")
    assert_refused(done, fragment.format(**fill), tmp_path / "run")


def test_bin_eval_uses_the_file_the_run_trained_on(tmp_path):
    """A file with a smaller split than --eval-seqs would draw: bin/eval must score the file's."""
    small = tmp_path / "small.h5"
    assert train(*TINY, "--train-seqs", "40", "--eval-seqs", "12", "--write-data", small).returncode == 0
    run = tmp_path / "run"
    done = train(*TINY, "--data", small, "--steps", "5", "--eval-every", "0", "--out", run)
    assert done.returncode == 0, done.stderr
    rows = tmp_path / "rows.jsonl"
    evaluated = subprocess.run([str(EVAL), str(run / "model.h5"), "--json", str(rows)],
                               capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=60)
    assert evaluated.returncode == 0, evaluated.stderr
    got = json.loads(rows.read_text().splitlines()[0])["eval"]
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["eval"]
    assert got == last
    # 12 sequences per split in the file (not --eval-seqs 16): `in` asks 8 queries a sequence,
    # a bin one.
    assert re.search(r"^in\s.*\s96\s", evaluated.stdout, re.M), evaluated.stdout
    assert re.search(r"^bin0\s.*\s12\s", evaluated.stdout, re.M), evaluated.stdout


COUNT = ["--task", "counting", "--layers", "1", "--dim", "16", "--heads", "2", "--batch", "2", "--threads", "1"]


def test_counting_trains_on_a_folder_of_official_json_lines(tmp_path):
    done = train(*COUNT, "--data", FIXTURE, "--steps", "4", "--out", tmp_path / "run")
    assert done.returncode == 0, done.stderr
    lines = {l.split()[0]: l for l in done.stdout.splitlines() if l.startswith(("valid ", "test "))}
    n_valid = len((FIXTURE / "valid.jsonl").read_text().splitlines())
    n_test = len((FIXTURE / "test.jsonl").read_text().splitlines())
    # One scored token (the answer) per sample.
    assert re.search(rf"\s{n_valid}\s", lines["valid"]) and re.search(rf"\s{n_test}\s", lines["test"])
    assert f"training set: {len((FIXTURE / 'train.jsonl').read_text().splitlines())} sequences" in done.stdout


@pytest.mark.parametrize("file, text, fragment", [
    ("valid.jsonl", '{"context": "a = 0 ;", "question": "print a"}\n', "valid.jsonl line 1"),
    ("train.jsonl", '{"context": "a = 0 ;", "question": "print a", "answer": "0"\n', "train.jsonl line 1"),
    ("test.jsonl", '{"context": "a = 0 ; zzz", "question": "print a", "answer": "0"}\n', "zzz"),
    ("train.jsonl", "", "train.jsonl"),
])
def test_a_bad_json_lines_file_is_refused_with_one_line(tmp_path, file, text, fragment):
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("train.jsonl", "valid.jsonl", "test.jsonl"):
        (folder / name).write_text((FIXTURE / name).read_text())
    (folder / file).write_text(text)
    done = train(*COUNT, "--data", folder, "--steps", "2", "--out", tmp_path / "run")
    assert_refused(done, fragment, tmp_path / "run")
