"""The tasks beyond Flip-Flop from the command line (tasks/kvret.c, tasks/selcopy.c).

- Bad task options end with exit status 2 and one line naming the problem and the fix.
- kvret: the run prints the position-sweep table, and its metrics rows carry the sweep
  (accuracy per bin, middle mean, end-middle gap) consistent with the bins' own error rates;
  the length-generalisation split `long` exists where the encoding allows it; the context is
  derived from the pairs; a stopped and resumed run equals the uninterrupted one.
- selcopy: the splits in / dense / sparse, and a context that fits the sparse split.
- Checkpoints: a task's own options are stored in the config and required only for that task,
  so a config without them (written before the task existed) still resumes.

Models are tiny (width 16) and runs a few steps, so the module takes seconds.
"""
import json
import re

import h5py
import numpy as np
import pytest

from harness import assert_refused, registry, strip_checksum, train

TINY = ["--pe", "rope", "--layers", "1", "--dim", "16", "--heads", "2", "--batch", "4",
        "--eval-seqs", "8", "--threads", "1", "--lr", "0.001"]


def config_of(checkpoint):
    with h5py.File(checkpoint, "r") as f:
        return json.loads(f.attrs["config"])


def rows_of(run):
    return [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]


BAD = [
    (["--task", "kvret", "--kv-pairs", "8"],
     "kvret needs --kv-pairs from --position-bins (10, a pair per bin) to 128"),
    (["--task", "kvret", "--kv-pairs", "200"], "--kv-pairs must be an integer from 1 to 128"),
    (["--task", "kvret", "--kv-pairs", "16", "--kv-eval-pairs", "16"],
     "--kv-eval-pairs must lie above --kv-pairs 16"),
    (["--task", "kvret", "--kv-positions", "middle"], "--kv-positions must be uniform or ends"),
    (["--task", "kvret", "--kv-pairs", "12", "--kv-keys", "11"],
     "kvret needs --kv-keys from the pairs of its longest sequence (12, each with a key of its "
     "own) to 128, got 11"),
    (["--task", "kvret", "--kv-pairs", "12", "--kv-eval-pairs", "20", "--kv-keys", "16"],
     "kvret needs --kv-keys from the pairs of its longest sequence (20,"),
    (["--task", "kvret", "--kv-keys", "129"], "--kv-keys must be an integer from 1 to 128"),
    (["--task", "kvret", "--position-bins", "2"], "--position-bins must be an integer from 3 to 32"),
    (["--task", "kvret", "--kv-pairs", "16", "--seq-len", "20"],
     "task kvret with these options has sequences of 49 tokens, more than --seq-len 20"),
    (["--task", "kvret", "--kv-pairs", "16", "--pe", "abs", "--kv-eval-pairs", "24", "--kv-keys",
      "24"],
     "split long of task kvret tests length generalisation (65 tokens, training 49), which --pe "
     "abs cannot"),
    (["--task", "kvret", "--kv-queries", "0"], "--kv-queries must be an integer from 1 to 64"),
    (["--task", "kvret", "--kv-min-pairs", "1"],
     "kvret's --kv-min-pairs must lie from 2 (a key to tell from another) to --kv-pairs 10"),
    (["--task", "kvret", "--kv-min-pairs", "11"], "--kv-pairs 10, or be 0"),
    (["--task", "kvret", "--init-std", "0"], "--init-std must be"),
    (["--task", "kvret", "--emb-std", "-1"], "--emb-std must be"),
    (["--task", "selcopy", "--sel-blanks", "1"], "--sel-blanks must be an integer from 2"),
    (["--task", "selcopy", "--sel-data", "0"], "--sel-data must be an integer from 1"),
    (["--task", "selcopy", "--seq-len", "64"],
     "task selcopy with these options has sequences of 65 tokens, more than --seq-len 64"),
    (["--task", "selcopy", "--preset", "nope"], "task selcopy has no preset 'nope'; choose one of "
     "classroom, paper"),
]


@pytest.mark.parametrize("args,fragment", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_task_options(tmp_path, args, fragment):
    done = train(*TINY, "--out", tmp_path / "unused", *args)
    assert_refused(done, fragment, tmp_path / "unused")


KVRET = [*TINY, "--task", "kvret", "--kv-pairs", "12", "--position-bins", "4",
         "--kv-eval-pairs", "20", "--kv-keys", "24", "--kv-positions", "ends", "--kv-queries", "3",
         "--kv-min-pairs", "0", "--steps", "12",
         "--warmup", "2",
         "--eval-every", "5", "--save-every", "4", "--dropout", "0.1"]


@pytest.fixture(scope="module")
def kvret_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("kvret") / "run"
    done = train(*KVRET, "--out", out)
    assert done.returncode == 0, done.stderr
    return out, done.stdout


def test_kvret_sweep_in_terminal_and_metrics(kvret_run):
    out, stdout = kvret_run
    rows = rows_of(out)
    assert [r["step"] for r in rows] == [5, 10, 12]
    for r in rows:
        assert list(r["eval"]) == ["in", "bin0", "bin1", "bin2", "bin3", "long"]
        acc = [1 - r["eval"][f"bin{b}"]["token_error"] for b in range(4)]
        assert r["sweep"]["accuracy"] == pytest.approx(acc)
        assert r["sweep"]["middle_mean"] == pytest.approx((acc[1] + acc[2]) / 2)
        assert r["sweep"]["end_middle_gap"] == pytest.approx(max(acc[0], acc[3]) - min(acc[1:3]))
    table = re.findall(r"^(bin\d)\s+12 pairs, queried pair (?:is pair|among pairs) [\d-]+\s+([\d.]+)$",
                       stdout, re.M)
    assert [b for b, _ in table] == ["bin0", "bin1", "bin2", "bin3"]
    last = rows[-1]["sweep"]
    for b, acc in table:
        assert float(acc) == pytest.approx(100 * last["accuracy"][int(b[3:])], abs=0.01)
    m = re.search(r"^middle bins' mean accuracy ([\d.]+)% \| best end - worst middle bin "
                  r"([+-][\d.]+) points$", stdout, re.M)
    assert m, stdout
    assert float(m[1]) == pytest.approx(100 * last["middle_mean"], abs=0.01)
    assert float(m[2]) == pytest.approx(100 * last["end_middle_gap"], abs=0.01)
    assert re.search(r"^long\s+20 pairs .*\s24\s", stdout, re.M), "8 sequences of 3 queries"


def test_kvret_context_and_config(kvret_run):
    out, _ = kvret_run
    config = config_of(out / "model.h5")
    assert config["model"]["seq_len"] == 2 * 20 + 1 + 2 * 3, "the context fits the long split"
    task = config["task"]
    assert (task["name"], task["kv_pairs"], task["kv_eval_pairs"], task["kv_keys"],
            task["kv_positions"], task["position_bins"], task["kv_queries"],
            task["kv_min_pairs"]) == ("kvret", 12, 20, 24, "ends", 4, 3, 0)
    assert rows_of(out)[-1]["tokens"] == 12 * 4 * (2 * 12 + 1 + 2 * 3), \
        "training uses the shorter length"


def test_kvret_resume_equals_uninterrupted(kvret_run, tmp_path):
    out, _ = kvret_run
    run = tmp_path / "run"
    assert train(*KVRET, "--out", run, "--stop-at", "6").returncode == 0
    done = train("--resume", run / "model.h5")
    assert done.returncode == 0, done.stderr
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("tok_per_s", "elapsed_s")}
                          for r in rows]
    assert strip(rows_of(run)) == strip(rows_of(out))
    with h5py.File(run / "model.h5", "r") as a, h5py.File(out / "model.h5", "r") as b:
        for key in a["model"]:
            assert (a["model"][key][()] == b["model"][key][()]).all(), key


def test_selcopy_splits_and_context(tmp_path):
    out = tmp_path / "run"
    done = train(*TINY, "--task", "selcopy", "--sel-data", "5", "--sel-blanks", "6", "--steps",
                 "3", "--eval-every", "0", "--attention-maps", "2", "--out", out)
    assert done.returncode == 0, done.stderr
    [row] = rows_of(out)
    assert list(row["eval"]) == ["in", "dense", "sparse"]
    assert "sweep" not in row
    assert config_of(out / "model.h5")["model"]["seq_len"] == 2 * 5 + 12 + 1
    scored = dict(re.findall(r"^(in|dense|sparse)\s+5 data tokens among \d+ blanks .*?\s(\d+)\s",
                             done.stdout, re.M))
    assert scored == {"in": "40", "dense": "40", "sparse": "40"}, done.stdout  # 8 seqs x 5
    # Attention maps at each split's own length (the model's context is the sparse one).
    with h5py.File(out / "attention.h5", "r") as f:
        text = lambda name: f.attrs[name].decode() if isinstance(f.attrs[name], bytes) else f.attrs[name]
        assert text("split_names") == "in,dense,sparse"
        separator = text("token_names").split(",").index("|")
        for split, T in (("in", 17), ("dense", 14), ("sparse", 23)):
            assert f[split]["tokens"].shape == (2, T)
            assert f[split]["attention"]["layer0"].shape == (2, 2, T, T)
            tokens = f[split]["tokens"][()]
            assert (tokens[:, T - 6] == separator).all(), "the separator sits before the 5 copies"


def rewrite_config(checkpoint, edit):
    strip_checksum(checkpoint)
    with h5py.File(checkpoint, "r+") as f:
        config = json.loads(f.attrs["config"])
        edit(config["task"])
        # Fixed-length, as bin/train writes it (h5py would store a str as variable-length).
        f.attrs["config"] = np.bytes_(json.dumps(config))


def test_task_options_are_required_only_for_their_task(tmp_path):
    flip = tmp_path / "flip"
    assert train(*TINY, "--seq-len", "16", "--steps", "2", "--eval-every", "0",
                 "--out", flip).returncode == 0
    # A config written before kvret and selcopy existed lacks their options.
    rewrite_config(flip / "model.h5", lambda t: [t.pop(k) for k in
                   ("kv_pairs", "kv_eval_pairs", "kv_keys", "kv_positions", "position_bins",
                    "sel_data", "sel_blanks")])
    done = train("--resume", flip / "model.h5", "--steps", "3")
    assert done.returncode == 0, done.stderr

    kv = tmp_path / "kv"
    assert train(*TINY, "--task", "kvret", "--steps", "2", "--eval-every", "0",
                 "--out", kv).returncode == 0
    rewrite_config(kv / "model.h5", lambda t: t.pop("kv_pairs"))
    done = train("--resume", kv / "model.h5", "--steps", "3")
    assert done.returncode == 2
    assert "config field task.kv_pairs is missing" in done.stderr


def test_a_kvret_checkpoint_from_before_later_options_resumes_as_it_ran(tmp_path):
    """--kv-keys, --kv-queries, --kv-min-pairs, --init-std and --emb-std came after kvret: their
    absence means what pelab did before: 128 key symbols, one query, every sequence at
    --kv-pairs, GPT-2's init."""
    kv = tmp_path / "kv"
    assert train(*TINY, "--task", "kvret", "--steps", "2", "--eval-every", "0",
                 "--out", kv).returncode == 0
    strip_checksum(kv / "model.h5")
    with h5py.File(kv / "model.h5", "r+") as f:
        config = json.loads(f.attrs["config"])
        for key in ("kv_keys", "kv_queries", "kv_min_pairs"):
            config["task"].pop(key)
        for key in ("init_std", "emb_std"):
            config["model"].pop(key)
        f.attrs["config"] = np.bytes_(json.dumps(config))
    done = train("--resume", kv / "model.h5", "--steps", "3")
    assert done.returncode == 0, done.stderr
    with h5py.File(kv / "model.h5", "r") as f:
        config = json.loads(f.attrs["config"])
    task, model = config["task"], config["model"]
    assert (task["kv_keys"], task["kv_queries"], task["kv_min_pairs"]) == (128, 1, 0)
    assert model["init_std"] == model["emb_std"] == 0.02
    assert re.search(r"^in\s+10 pairs, 1 query .*\s8\s", done.stdout, re.M), done.stdout


@pytest.mark.parametrize("task", registry("task"))
def test_every_registered_task_writes_its_evaluation_splits(tmp_path, task):
    """Each task of the registry, with its first preset, writes its sets to a dataset file: the
    task's name, every split it lists, each with at least one scored target per sequence."""
    data = tmp_path / "data.h5"
    done = train("--task", task, "--eval-seqs", "4", "--write-data", data, "--threads", "1")
    assert done.returncode == 0, done.stderr
    with h5py.File(data, "r") as f:
        assert f.attrs["task"].decode() == task
        splits = f.attrs["splits"].decode().split(",")
        assert splits and all(s in f for s in splits)
        for s in splits:
            assert f[s]["tokens"].shape[0] > 0, s
            assert np.all(f[s]["score_mask"][()].any(axis=1)), f"{s}: a sequence scores nothing"
