"""Damaged, crafted and changed files from the command line (issue: hostile files).

- Every file pelab writes (checkpoint, dataset, attention maps) starts with a checksum record
  that `tail -c +513 FILE | sha256sum` checks by hand; bin/train and bin/eval refuse a file
  whose bytes changed before libhdf5 reads it, with one line and exit 2.
- A file without the record (another tool's) is read, and stderr says so once.
- A checkpoint's config is checked against itself: a task context past the model's (the model's
  buffers are sized by it: a heap overflow before) or another vocabulary is refused.
- String attributes as h5py writes them (variable-length) are read as text.
- Weights that are not numbers are refused at load.
- The checkpoint records the --data it trains on (bytes and SHA-256); --resume on changed data
  is refused unless --allow-data-change says so.
"""
import hashlib
import json
import shutil

import h5py
import numpy as np
import pytest

from harness import EVAL, FIXTURES, assert_refused, run, strip_checksum, train

TINY = ["--pe", "rope", "--layers", "1", "--dim", "16", "--heads", "2", "--seq-len", "16",
        "--batch", "4", "--eval-seqs", "8", "--threads", "1", "--eval-every", "0"]


@pytest.fixture
def ckpt(tmp_path):
    done = train(*TINY, "--steps", "2", "--out", tmp_path / "run")
    assert done.returncode == 0, done.stderr
    return tmp_path / "run" / "model.h5"


def record_of(path):
    """The checksum record's fields, and the SHA-256 and length of what follows it."""
    data = path.read_bytes()
    head, rest = data[:512], data[512:]
    text = head.rstrip(b"\0").decode()
    assert head.rstrip(b"\0") + b"\0" * (512 - len(head.rstrip(b"\0"))) == head
    magic, sha, count, *_ = text.split("\n")
    return magic, sha, count, hashlib.sha256(rest).hexdigest(), len(rest)


def test_every_written_file_carries_a_checksum_that_checks_by_hand(tmp_path):
    out = tmp_path / "run"
    done = train(*TINY, "--steps", "2", "--attention-maps", "1", "--out", out)
    assert done.returncode == 0, done.stderr
    data = tmp_path / "d.h5"
    assert train(*TINY, "--write-data", data).returncode == 0
    for path in (out / "model.h5", out / "attention.h5", data):
        magic, sha, count, actual, length = record_of(path)
        assert magic == "pelab-checksum 1"
        assert sha == f"sha256 {actual}" and count == f"bytes {length}", path
        with h5py.File(path, "r") as f:  # h5py skips the block
            assert len(f.keys()) > 0


@pytest.mark.parametrize("where", ["middle", "end"])
def test_a_changed_byte_is_refused_by_train_and_eval(ckpt, where):
    data = bytearray(ckpt.read_bytes())
    at = len(data) // 2 if where == "middle" else len(data) - 1
    data[at] ^= 1
    ckpt.write_bytes(bytes(data))
    fragment = f"checkpoint {ckpt} is damaged: its contents do not match the checksum"
    assert_refused(train("--resume", ckpt, "--steps", "3"), fragment)
    assert_refused(run(EVAL, ckpt), fragment)


def test_a_file_without_the_record_is_read_and_says_so(ckpt):
    strip_checksum(ckpt)
    done = train("--resume", ckpt, "--steps", "3")
    assert done.returncode == 0, done.stderr
    notes = [l for l in done.stderr.splitlines() if "no pelab checksum" in l]
    assert len(notes) == 1 and str(ckpt) in notes[0], done.stderr


def assert_refused_foreign(done, fragment):
    """As assert_refused, for a file without the checksum record: the note saying so comes
    first on stderr."""
    lines = done.stderr.splitlines()
    assert lines and "no pelab checksum" in lines[0], done.stderr
    done.stderr = "\n".join(lines[1:]) + "\n"
    return assert_refused(done, fragment)


def rewrite_config(path, edit, as_h5py_str=False):
    strip_checksum(path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["config"])
        edit(config)
        text = json.dumps(config)
        # h5py stores a str as a variable-length string; bin/train writes fixed-length ones.
        f.attrs["config"] = text if as_h5py_str else np.bytes_(text)
        if as_h5py_str:
            f.attrs["format"] = "pelab-checkpoint"


def test_a_task_context_past_the_models_is_refused(ckpt):
    rewrite_config(ckpt, lambda c: c["model"].__setitem__("seq_len", 8))
    assert_refused_foreign(train("--resume", ckpt, "--steps", "3"),
                   "config gives the task a context of 16 tokens, outside the model's 1 .. 8")


def test_another_vocabulary_is_refused(ckpt):
    rewrite_config(ckpt, lambda c: c["model"].__setitem__("vocab_size", 3))
    assert_refused_foreign(train("--resume", ckpt, "--steps", "3"),
                   "config gives the model a vocabulary of 3 tokens, task flipflop has")


def test_variable_length_string_attributes_are_read_as_text(ckpt):
    rewrite_config(ckpt, lambda c: None, as_h5py_str=True)
    done = train("--resume", ckpt, "--steps", "3")
    assert done.returncode == 0, done.stderr
    done = run(EVAL, ckpt)
    assert done.returncode == 0, done.stderr


def test_weights_that_are_not_numbers_are_refused(ckpt):
    strip_checksum(ckpt)
    with h5py.File(ckpt, "r+") as f:
        w = f["model/wte.weight"]
        values = w[...]
        values[1, 2] = np.nan
        w[...] = values
    assert_refused_foreign(train("--resume", ckpt, "--steps", "3"),
                           "tensor model/wte.weight holds nan at flat index 18")
    assert_refused_foreign(run(EVAL, ckpt), "tensor model/wte.weight holds nan")


KV = ["--task", "kvret", "--kv-pairs", "10", "--pe", "rope", "--layers", "1", "--dim", "16",
      "--heads", "2", "--batch", "4", "--eval-seqs", "8", "--threads", "1", "--eval-every", "0"]


def test_resume_on_changed_data_is_refused_unless_allowed(tmp_path):
    data = tmp_path / "kv.h5"
    assert train(*KV, "--train-seqs", "16", "--write-data", data).returncode == 0
    out = tmp_path / "run"
    done = train(*KV, "--data", data, "--steps", "4", "--stop-at", "2", "--out", out)
    assert done.returncode == 0, done.stderr
    with h5py.File(out / "model.h5", "r") as f:
        assert f["state"].attrs["data_sha256"].decode() == hashlib.sha256(data.read_bytes()).hexdigest()
        assert f["state"].attrs["data_bytes"] == data.stat().st_size
    other = tmp_path / "other.h5"
    assert train(*KV, "--train-seqs", "20", "--write-data", other).returncode == 0
    shutil.copy(other, data)
    assert_refused(train("--resume", out / "model.h5", "--steps", "4"),
                   f"--data {data} changed since checkpoint {out / 'model.h5'} was saved")
    done = train("--resume", out / "model.h5", "--steps", "4", "--allow-data-change")
    assert done.returncode == 0, done.stderr


def test_resume_on_a_changed_json_lines_folder_is_refused(tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(FIXTURES / "counting", folder)
    out = tmp_path / "run"
    args = ["--task", "counting", "--pe", "rope", "--layers", "1", "--dim", "16", "--heads", "2",
            "--batch", "2", "--eval-seqs", "4", "--threads", "1", "--eval-every", "0"]
    done = train(*args, "--data", folder, "--steps", "3", "--stop-at", "1", "--out", out)
    assert done.returncode == 0, done.stderr
    valid = folder / "valid.jsonl"
    lines = valid.read_text().splitlines(keepends=True)
    valid.write_text("".join(lines[1:]))  # one sample fewer
    assert_refused(train("--resume", out / "model.h5", "--steps", "3"), "--allow-data-change")
