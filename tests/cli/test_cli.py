"""The command line of bin/train (train/cli.c, train/main.c).

- Bad input (docs/testing.md): every wrong flag, value, file or combination ends with exit status
  2 and ONE line on stderr that contains the expected fragment (the problem and, where there is
  one, the fix), nothing on stdout, and the run already saved in the way is left untouched.
- --help lists every flag of the table with its default, every encoding, task and preset.
- Determinism: the same seed and thread count give identical checkpoints, and a run stopped at
  step N and resumed to 2N equals the uninterrupted 2N-step run bit for bit (weights, AdamW
  moments, data stream, metrics rows). Dropout is on so that its per-step keys are covered.
- Ctrl-C saves a checkpoint that resumes.

All runs are tiny (a width-16 model on 16-token sequences) so the module takes seconds.
"""
import re
import signal
import subprocess

import h5py
import numpy as np
import pytest

from harness import ENV, ROOT, TRAIN, assert_refused, assert_same_checkpoint, metric_rows, train


TINY = ["--pe", "abs", "--lr", "0.001", "--layers", "1", "--dim", "16", "--heads", "2", "--seq-len", "16", "--batch", "4",
        "--eval-seqs", "8", "--threads", "1"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A finished tiny run, a garbage file, and an HDF5 file that is not a checkpoint."""
    tmp = tmp_path_factory.mktemp("cli")
    run = tmp / "run"
    done = train(*TINY, "--steps", "4", "--eval-every", "0", "--out", run)
    assert done.returncode == 0, done.stderr
    garbage = tmp / "garbage.h5"
    garbage.write_text("not a checkpoint\n" * 100)
    truncated = tmp / "truncated.h5"  # what a copy cut short would leave
    truncated.write_bytes((run / "model.h5").read_bytes()[:3000])
    foreign = tmp / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.zeros(3)
    return {"run": run, "ckpt": run / "model.h5", "missing": tmp / "missing.h5",
            "garbage": garbage, "truncated": truncated, "foreign": foreign, "tmp": tmp}


BAD_INPUT = [
    # flags and values
    (["--lyers", "2"], "unknown flag --lyers"),
    (["stray"], "unexpected argument 'stray'"),
    (["--layers"], "--layers needs a value"),
    (["--layers", "--dim", "32"], "--layers needs a value"),
    (["--layers", "two"], "--layers needs an integer, got 'two'"),
    (["--layers", "2.5"], "--layers needs an integer, got '2.5'"),
    (["--layers", "99999999999"], "--layers must be an integer from 1 to 64"),
    (["--lr", "fast"], "--lr needs a number, got 'fast'"),
    (["--lr", "1e99"], "--lr 1e99 does not fit a float"),
    (["--force=yes"], "--force takes no value"),
    # ranges
    (["--layers", "0"], "--layers must be an integer from 1 to 64, got 0"),
    (["--dim", "0"], "--dim must be an integer from 1"),
    # 4 x this overflowed an int when the FF width was derived from it (found by fuzz_flags)
    (["--dim", "642222222"], "--dim must be an integer from 1"),
    (["--batch", "-3"], "--batch must be an integer from 1"),
    (["--steps", "0"], "--steps must be an integer from 1 to 9007199254740991, got 0"),
    (["--lr", "0"], "--lr must be a number > 0, got 0"),
    (["--lr", "-0.1"], "--lr must be a number > 0"),
    (["--dropout", "1"], "--dropout must be a number in [0, 1), got 1"),
    (["--beta2", "1.5"], "--beta2 must be a number in [0, 1)"),
    (["--clip", "-1"], "--clip must be a number >= 0"),
    (["--seed", "-1"], "--seed must be an integer from 0 to"),
    (["--threads", "0"], "--threads must be an integer from 1"),
    (["--eval-seqs", "0"], "--eval-seqs must be an integer from 1"),
    # names
    (["--pe", "nope"], "unknown --pe 'nope'; choose one of none, abs"),
    (["--task", "nope"], "unknown --task 'nope'; choose one of flipflop"),
    (["--preset", "nope"], "task flipflop has no preset 'nope'; choose one of classroom"),
    (["--norm", "middle"], "--norm must be pre or post, got 'middle'"),
    (["--act", "tanh"], "--act must be gelu or relu"),
    (["--schedule", "linear"], "--schedule must be cosine or constant"),
    # combinations
    (["--heads", "3", "--dim", "128"], "--heads 3 does not divide --dim 128"),
    (["--seq-len", "7"], "even --seq-len"),
    (["--steps", "10", "--warmup", "20"], "--warmup 20 is longer than --steps 10"),
    (["--lr", "0.01", "--min-lr", "0.1"], "--min-lr 0.1 is above --lr 0.01"),
    (["--steps", "10", "--stop-at", "11"], "--stop-at 11 is beyond --steps 10"),
    (["--resume", "{ckpt}", "--init", "{ckpt}"], "--resume and --init exclude each other"),
    # files
    (["--resume", "{missing}"], "cannot open checkpoint {missing}: No such file or directory"),
    (["--resume", "{garbage}"], "{garbage} is not an HDF5 file"),
    (["--resume", "{foreign}"], "{foreign} is an HDF5 file but not a pelab checkpoint"),
    (["--resume", "{truncated}"], "checkpoint {truncated} is damaged: it is not as long as when written"),
    (["--init", "{garbage}"], "{garbage} is not an HDF5 file"),
    (["--resume", "{ckpt}"], "is at step 4, the end of --steps 4; pass a larger --steps"),
    (["--resume", "{ckpt}", "--steps", "8", "--stop-at", "3"],
     "--stop-at 3 is not after the checkpoint's step 4"),
    # a checkpoint of another config
    (["--resume", "{ckpt}", "--steps", "8", "--dim", "32"],
     "checkpoint {ckpt} was trained with --dim 16, not 32; drop the flag or pass --dim 16"),
    (["--resume", "{ckpt}", "--steps", "8", "--pe", "rope"], "was trained with --pe abs, not rope"),
    (["--resume", "{ckpt}", "--steps", "8", "--lr", "0.5"], "was trained with --lr 0.001, not 0.5"),
    (["--resume", "{ckpt}", "--steps", "8", "--seq-len", "32"],
     "was trained with --seq-len 16, not 32"),
    (["--init", "{ckpt}", "--heads", "4"],
     "--init keeps the model's shape: drop the flag or pass --heads 2"),
    # the context fixes position tables (abs: one row per position)
    (["--init", "{ckpt}", "--seq-len", "32"],
     "was built for a context of 16 tokens, which --init keeps; pass --seq-len 16 or less"),
    # a run already in the output folder
    (["--out", "{run}"], "{run} already holds a run; pass --resume {ckpt} to continue it, --force"),
]


@pytest.mark.parametrize("args,fragment", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_gives_one_line_and_exit_2(files, args, fragment):
    before = files["ckpt"].read_bytes()
    args = [a.format(**files) for a in args]
    done = train(*TINY, "--out", files["tmp"] / "unused", *args)
    fragment = fragment.format(**files)
    line = assert_refused(done, fragment, files["tmp"] / "unused")
    assert line.startswith(f"{TRAIN}: "), line
    assert files["ckpt"].read_bytes() == before, "a bad command changed the saved checkpoint"


def table_flags():
    """The flag names of every option table of bin/train (train/cli.c and the rows each
    encoding, task and MoICE declare in their own files), so that a new flag cannot miss --help.
    Ms-PoE's rows (model/mspoe.c) are bin/eval's, checked by test_eval.py."""
    names = []
    for path in sorted([ROOT / "train" / "cli.c", *(ROOT / "model").glob("*.c"),
                        *(ROOT / "tasks").glob("*.c")]):
        if path.name == "mspoe.c":
            continue
        names += re.findall(r'^\s*\{"([a-z0-9-]+)", (?:"[^"]*"|NULL), KIND_', path.read_text(),
                            flags=re.M)
    return names


def test_help_lists_every_flag_with_its_default():
    done = train("--help")
    assert done.returncode == 0 and done.stderr == ""
    lines = done.stdout.splitlines()
    required = ("pe task preset layers dim heads ffn seq-len batch steps lr min-lr schedule warmup "
                "weight-decay beta1 beta2 clip dropout norm act seed threads eval-every eval-seqs "
                "save-every out force resume init rope-base rel-npos cope-npos help").split()
    flags = table_flags()
    assert set(required) <= set(flags)
    for flag in flags:
        [line] = [l for l in lines if re.match(rf"  --{flag}(\s|$)", l)]
        if flag not in ("force", "help", "dry-run", "allow-data-change"):  # switches have no value
            assert re.search(r"\[[^\]]+\]$", line), f"--{flag} shows no default: {line}"
    for name in ("none", "abs", "sin", "rel", "t5", "alibi", "rope", "cope", "flipflop", "classroom", "paper"):
        assert re.search(rf"^\s+{name}\s", done.stdout, flags=re.M), f"{name} is not listed"
    assert "[rope]" in done.stdout and "[flipflop]" in done.stdout


def test_help_shows_the_chosen_preset():
    done = train("--preset", "paper", "--help")
    assert done.returncode == 0
    assert re.search(r"--seq-len N .*\[512\]", done.stdout)


# Two threads, so that the determinism covers the parallel reductions; dropout on; evaluation
# and saving at steps that do not line up with the stop, so resuming must restore the running
# loss sum of a metrics row and continue the save cadence.
RESUMABLE = [*TINY, "--threads", "2", "--dropout", "0.1", "--steps", "20", "--warmup", "4",
             "--eval-every", "6", "--save-every", "7"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "run"
    done = train(*RESUMABLE, "--out", out)
    assert done.returncode == 0, done.stderr
    return out


def test_same_seed_and_threads_give_identical_runs(uninterrupted, tmp_path):
    done = train(*RESUMABLE, "--out", tmp_path / "again")
    assert done.returncode == 0, done.stderr
    assert_same_checkpoint(uninterrupted / "model.h5", tmp_path / "again" / "model.h5")
    assert metric_rows(uninterrupted) == metric_rows(tmp_path / "again")


def test_resume_is_bit_identical_to_an_uninterrupted_run(uninterrupted, tmp_path):
    out = tmp_path / "run"
    first = train(*RESUMABLE, "--out", out, "--stop-at", "10")
    assert first.returncode == 0, first.stderr
    assert "continue with --resume" in first.stdout
    with h5py.File(out / "model.h5", "r") as f:
        assert f.attrs["step"] == 10
    assert [r["step"] for r in metric_rows(out)] == [6]
    second = train("--resume", out / "model.h5")
    assert second.returncode == 0, second.stderr
    assert "resuming" in second.stdout
    assert_same_checkpoint(uninterrupted / "model.h5", out / "model.h5")
    assert metric_rows(out) == metric_rows(uninterrupted)
    assert [r["step"] for r in metric_rows(out)] == [6, 12, 18, 20]


def test_resume_drops_metrics_rows_after_the_checkpoint(uninterrupted, tmp_path):
    """A run killed after its last save has logged rows the checkpoint does not know."""
    out = tmp_path / "run"
    assert train(*RESUMABLE, "--out", out, "--stop-at", "7").returncode == 0
    log = out / "metrics.jsonl"
    log.write_text(log.read_text() + '{"step": 12, "stale": true}\n{"step": 1')
    done = train("--resume", out / "model.h5")
    assert done.returncode == 0, done.stderr
    assert metric_rows(out) == metric_rows(uninterrupted)


def test_ctrl_c_saves_a_checkpoint_that_resumes(tmp_path):
    out = tmp_path / "run"
    command = [str(TRAIN), *TINY, "--steps", "1000000", "--warmup", "0", "--eval-every", "50",
               "--out", str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=ENV)
    for line in proc.stdout:
        if line.startswith("step "):
            break
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted after step" in stderr and "--resume" in stderr
    with h5py.File(out / "model.h5", "r") as f:
        step = int(f.attrs["step"])
    assert step >= 1
    done = train("--resume", out / "model.h5", "--steps", step + 2, "--eval-every", "0")
    assert done.returncode == 0, done.stderr
    with h5py.File(out / "model.h5", "r") as f:
        assert f.attrs["step"] == step + 2
