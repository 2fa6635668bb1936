"""kvret's duplicate-key probe, counted by bin/eval and recounted with the PyTorch reference.

A tiny kvret model trains a few dozen steps (enough to answer with value tokens, some of them
either of a duplicated key's values); bin/eval --kv-duplicate-probe 2 counts, per probe split,
the predictions that gave the earlier value (the target), the later value, or neither. The
same splits, written by bin/train --write-data with the same options (the splits are drawn from
seeds fixed per split, so the sequences are the same), run through the reference model loaded
from the checkpoint; its argmax at each query, classified by the sequence's own two values, must
give the same three counts.
"""
import json

import h5py
import numpy as np
import torch

from reference import GPT
from harness import EVAL, TRAIN, run

TASK = ["--task", "kvret", "--kv-pairs", "8", "--position-bins", "4"]
PROBE = ["--kv-duplicate-probe", "2", "--eval-seqs", "64"]


def reference_counts(model, split):
    """[target, second, neither] of the reference's argmax over one probe split of the file."""
    tokens, lengths = split["tokens"][()], split["lengths"][()]
    mask = split["score_mask"][()]
    counts = np.zeros(3, np.int64)
    inputs = torch.from_numpy(tokens[:, :-1].astype(np.int64))
    with torch.no_grad():
        logits, _ = model(inputs, None)
    for n in range(len(tokens)):
        (t,) = np.nonzero(mask[n, :lengths[n]])[0]
        row = tokens[n]
        key, target = row[t], row[t + 1]
        values = [row[p + 1] for p in range(0, t - 1, 2) if row[p] == key]
        assert len(values) == 2 and values[0] == target and values[1] != target, n
        predicted = int(torch.argmax(logits[n, t]))
        counts[0 if predicted == target else 1 if predicted == values[1] else 2] += 1
    return counts


def test_probe_counts_match_the_reference(tmp_path):
    out = tmp_path / "run"
    done = run(TRAIN, *TASK, "--layers", "1", "--dim", "16", "--heads", "2", "--batch", "8",
               "--threads", "1", "--eval-every", "0", "--lr", "0.003", "--steps", "60",
               "--eval-seqs", "48", "--out", out)
    assert done.returncode == 0, done.stderr
    rows = tmp_path / "rows.jsonl"
    done = run(EVAL, out / "model.h5", *PROBE, "--json", rows)
    assert done.returncode == 0, done.stderr
    evals = json.loads(rows.read_text())["eval"]
    data = tmp_path / "probe.h5"
    done = run(TRAIN, *TASK, *PROBE, "--write-data", data)
    assert done.returncode == 0, done.stderr
    with h5py.File(out / "model.h5", "r") as f:
        model = GPT(json.loads(f.attrs["config"])["model"])
        model.load_state_dict({k: torch.from_numpy(f["model"][k][()]) for k in f["model"]})
    model = model.double().eval()
    seconds = 0
    with h5py.File(data, "r") as f:
        for name in ("dup0-0", "dup0-1", "dup1-1"):
            probe = evals[name]["probe"]
            got = [probe[k]["count"] for k in ("target", "second", "neither")]
            assert got == list(reference_counts(model, f[name])), name
            seconds += got[1]
    # The comparison must cover the second answer, not only targets and misses.
    assert seconds > 0
