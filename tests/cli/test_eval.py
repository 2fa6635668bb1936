"""bin/eval (train/eval_main.c): evaluating checkpoints, with and without Ms-PoE.

- Happy path: a checkpoint of a tiny bin/train run evaluates to exactly the numbers of the run's
  final table and last metrics row (same sequences, batch and threads); Ms-PoE with every ratio
  1 changes no number, with the official ratios it changes the loss; kvret's options widen the
  sweep and add a `long` split longer than the trained context; --json appends one row per run.
- Bad input (docs/testing.md): exit status 2, ONE line on stderr naming the problem and the fix,
  nothing on stdout.
"""
import json
import pathlib
import re

import h5py
import numpy as np
import pytest

from harness import CROSSCHECK, EVAL, TRAIN, assert_refused, run


TINY = ["--lr", "0.003", "--layers", "2", "--dim", "16", "--heads", "2", "--batch", "4",
        "--eval-seqs", "8", "--threads", "1", "--eval-every", "0"]
RUNS = {
    "flipflop-rope": ["--task", "flipflop", "--pe", "rope", "--seq-len", "16", "--steps", "30"],
    "flipflop-abs": ["--task", "flipflop", "--pe", "abs", "--seq-len", "16", "--steps", "2"],
    "kvret-rope": ["--task", "kvret", "--pe", "rope", "--kv-pairs", "6", "--position-bins", "3",
                   "--steps", "30"],
    "kvret-abs": ["--task", "kvret", "--pe", "abs", "--kv-pairs", "6", "--position-bins", "3",
                  "--steps", "2"],
    "kvret-rel": ["--task", "kvret", "--pe", "rel", "--kv-pairs", "6", "--position-bins", "3",
                  "--steps", "2"],
    "kvret-cope": ["--task", "kvret", "--pe", "cope", "--kv-pairs", "6", "--position-bins", "3",
                   "--steps", "2"],
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    out = {"tmp": tmp}
    for name, flags in RUNS.items():
        done = run(TRAIN, *TINY, *flags, "--out", tmp / name)
        assert done.returncode == 0, done.stderr
        out[name] = tmp / name / "model.h5"
        out[name + "-stdout"] = done.stdout
    model_only = run(CROSSCHECK, "--pe", "rope", "--norm", "pre", "--act", "gelu", "--out",
                     tmp / "model-only")
    assert model_only.returncode == 0, model_only.stderr
    out["model-only"] = tmp / "model-only" / "model.h5"
    out["garbage"] = tmp / "garbage.h5"
    out["garbage"].write_text("not a checkpoint\n" * 100)
    out["truncated"] = tmp / "truncated.h5"
    out["truncated"].write_bytes(out["flipflop-rope"].read_bytes()[:3000])
    out["foreign"] = tmp / "foreign.h5"
    with h5py.File(out["foreign"], "w") as f:
        f["x"] = np.zeros(3)
    out["missing"] = tmp / "missing.h5"
    return out


def evaluate(ckpt, tmp, *flags):
    """Runs bin/eval with --json and returns (stdout, the JSON row)."""
    rows = tmp / "rows.jsonl"
    rows.unlink(missing_ok=True)
    done = run(EVAL, ckpt, *flags, "--json", rows)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = rows.read_text().splitlines()
    assert len(lines) == 1
    return done.stdout, json.loads(lines[0])


def table_rows(stdout):
    """The split and sweep rows of a printed evaluation table."""
    return re.findall(r"^(?:in|sparse|dense|bin\d+|long) .*$|^middle bins' .*$", stdout, re.M)


def last_metrics(ckpt):
    return json.loads((ckpt.parent / "metrics.jsonl").read_text().splitlines()[-1])


@pytest.mark.parametrize("name", ["flipflop-rope", "kvret-rope"])
def test_equals_the_training_runs_final_evaluation(files, name, tmp_path):
    stdout, row = evaluate(files[name], tmp_path)
    last = last_metrics(files[name])
    assert row["eval"] == last["eval"]  # exactly: same sequences, batch and threads
    assert row.get("sweep") == last.get("sweep")
    assert row["mspoe"] is None
    assert table_rows(stdout) and table_rows(stdout) == table_rows(files[name + "-stdout"])
    assert re.search(rf"^pelab eval \| {re.escape(str(files[name]))} \| task ", stdout, re.M)


def test_mspoe_with_ratios_of_one_changes_nothing(files, tmp_path):
    ckpt = files["flipflop-rope"]
    _, plain = evaluate(ckpt, tmp_path)
    stdout, one = evaluate(ckpt, tmp_path, "--mspoe", "1:1", "--mspoe-skip-layers", "0")
    assert one["eval"] == plain["eval"]
    assert one["mspoe"] == {"ratio_min": 1, "ratio_max": 1, "skip_layers": 0, "order": "score"}
    assert "Ms-PoE: layers 0-1 rotate head h by positions t / r_h, r from 1 to 1" in stdout


def test_mspoe_skips_two_layers_but_keeps_one_to_rescale(files, tmp_path):
    # the official script leaves 2 layers alone; a 2-layer model keeps 1 to rescale
    stdout, row = evaluate(files["flipflop-rope"], tmp_path, "--mspoe", "1.2:1.8")
    assert row["mspoe"]["skip_layers"] == 1
    assert "Ms-PoE: layers 1-1 rotate head h" in stdout


@pytest.mark.parametrize("order", ["score", "plain", "official"])
def test_mspoe_changes_the_rope_model(files, tmp_path, order):
    ckpt = files["flipflop-rope"]
    _, plain = evaluate(ckpt, tmp_path)
    _, mspoe = evaluate(ckpt, tmp_path, "--mspoe", "1.2:1.8", "--mspoe-skip-layers", "1",
                        "--mspoe-order", order)
    assert mspoe["mspoe"] == {"ratio_min": 1.2, "ratio_max": 1.8, "skip_layers": 1,
                              "order": order}
    assert set(mspoe["eval"]) == set(plain["eval"])
    assert any(mspoe["eval"][s]["loss"] != plain["eval"][s]["loss"] for s in plain["eval"])


def test_kvret_options_widen_the_sweep_and_the_context(files, tmp_path):
    # The run had 6 pairs (15 tokens) and 3 bins; 12 pairs need 27 tokens, which rope can run.
    stdout, row = evaluate(files["kvret-rope"], tmp_path, "--position-bins", "4",
                           "--kv-eval-pairs", "12", "--eval-seqs", "5", "--mspoe", "1.2:1.8",
                           "--mspoe-skip-layers", "1")
    assert list(row["eval"]) == ["in", "bin0", "bin1", "bin2", "bin3", "long"]
    assert len(row["sweep"]["accuracy"]) == 4
    assert row["eval_seqs"] == 5
    assert "position sweep" in stdout
    assert re.search(r"^long\s+12 pairs \(more than in training\)", stdout, re.M)


@pytest.mark.parametrize("name", ["kvret-rel", "kvret-cope"])
def test_longer_sequences_keep_the_position_tables(files, tmp_path, name):
    # rel and cope size their tables by the context (npos 0): the wider context must not change
    # them, or the checkpoint would not load.
    _, row = evaluate(files[name], tmp_path, "--kv-eval-pairs", "12")
    assert list(row["eval"])[-1] == "long"
    _, plain = evaluate(files[name], tmp_path)
    assert {k: v for k, v in row["eval"].items() if k != "long"} == plain["eval"]


def test_json_appends_a_row_per_run(files, tmp_path):
    rows = tmp_path / "rows.jsonl"
    for ratios in ("1.2:1.8", "1.5:2.5"):
        done = run(EVAL, files["flipflop-rope"], "--mspoe", ratios, "--mspoe-skip-layers", "1",
                   "--json", rows)
        assert done.returncode == 0, done.stderr
    got = [json.loads(line)["mspoe"]["ratio_max"] for line in rows.read_text().splitlines()]
    assert got == [1.8, 2.5]


def test_help_lists_every_flag():
    done = run(EVAL, "--help")
    assert done.returncode == 0 and done.stderr == ""
    for flag in ("--checkpoint", "--eval-seqs", "--batch", "--threads", "--position-bins",
                 "--kv-eval-pairs", "--mspoe MIN:MAX", "--mspoe-skip-layers", "--mspoe-order",
                 "--json", "--help"):
        assert flag in done.stdout, flag


BAD_INPUT = [
    ([], "no checkpoint given; pass one"),
    (["{flipflop-rope}", "{flipflop-rope}"], "unexpected argument"),
    (["{flipflop-rope}", "--bogus"], "unknown flag --bogus; see --help"),
    (["{flipflop-rope}", "--eval-seqs"], "--eval-seqs needs a value (N)"),
    (["{flipflop-rope}", "--eval-seqs", "0"], "--eval-seqs must be an integer from 1"),
    (["{flipflop-rope}", "--threads", "two"], "--threads needs an integer, got 'two'"),
    (["{flipflop-rope}", "--batch", "-1"], "--batch must be an integer from 1"),
    # files
    (["{missing}"], "cannot open checkpoint {missing}: No such file or directory"),
    (["--checkpoint", "{garbage}"], "{garbage} is not an HDF5 file"),
    (["{foreign}"], "{foreign} is an HDF5 file but not a pelab checkpoint"),
    (["{truncated}"], "checkpoint {truncated} is damaged: it is not as long as when written"),
    (["{model-only}"], "has no usable run config (config has no \"task\" object); bin/eval "
                       "needs a checkpoint written by bin/train"),
    (["{flipflop-rope}", "--json", "{tmp}/no/such/dir/rows.jsonl"], "cannot open --json"),
    # task options
    (["{flipflop-rope}", "--position-bins", "4"],
     "--position-bins is an option of task kvret, and checkpoint {flipflop-rope} is of task "
     "flipflop; leave it out"),
    (["{kvret-rope}", "--position-bins", "2"], "--position-bins must be an integer from 3"),
    (["{kvret-rope}", "--position-bins", "7"], "kvret needs --kv-pairs from --position-bins"),
    (["{kvret-rope}", "--kv-eval-pairs", "4"], "--kv-eval-pairs must lie above --kv-pairs 6"),
    (["{kvret-abs}", "--kv-eval-pairs", "12"],
     "split long tests length generalisation (41 tokens, training 29), which --pe abs cannot"),
    # Ms-PoE
    (["{flipflop-abs}", "--mspoe", "1.2:1.8"],
     "Ms-PoE rescales rope's positions, and this model uses --pe abs"),
    (["{flipflop-rope}", "--mspoe", "1.2"], "--mspoe needs two ratios MIN:MAX such as 1.2:1.8"),
    (["{flipflop-rope}", "--mspoe", "a:b"], "--mspoe needs two ratios MIN:MAX"),
    (["{flipflop-rope}", "--mspoe", "1.2:1.8:2"], "--mspoe needs two ratios MIN:MAX"),
    (["{flipflop-rope}", "--mspoe", "1.8:1.2"], "--mspoe 1.8:1.2 has MIN above MAX"),
    (["{flipflop-rope}", "--mspoe", "0:1"], "ratios divide the positions, so they must be positive"),
    (["{flipflop-rope}", "--mspoe", "-1:2"], "must be positive"),
    (["{flipflop-rope}", "--mspoe", "1.2:1.8", "--mspoe-skip-layers", "2"],
     "--mspoe-skip-layers 2 leaves no layer of this 2-layer model to rescale; pass a value from 0 "
     "to 1"),
    (["{flipflop-rope}", "--mspoe", "1.2:1.8", "--mspoe-order", "random"],
     "--mspoe-order must be score, plain or official, got 'random'"),
    (["{flipflop-rope}", "--mspoe-order", "plain"],
     "--mspoe-skip-layers and --mspoe-order set up Ms-PoE; add --mspoe MIN:MAX"),
]


@pytest.mark.parametrize("args,fragment", BAD_INPUT, ids=[" ".join(a) or "nothing" for a, _ in BAD_INPUT])
def test_bad_input_says_what_and_exits_2(files, args, fragment):
    fill = {k: str(v) for k, v in files.items() if isinstance(v, pathlib.Path)}
    done = run(EVAL, *[a.format(**fill) for a in args])
    assert_refused(done, fragment.format(**fill))
