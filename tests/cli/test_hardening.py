"""Runs, outputs and flags under hostile conditions (issue 15): what a careful user tries.

- Nothing saved is lost: --write-data replaces a file only with --force and never anything but a
  regular file; a save that hits a full disk or the file size limit ends with one message, exit
  status 1, the previous checkpoint byte for byte as it was and no temporary file left (and no
  crash at exit); temporary files of saves whose writer died are cleared by the next run there.
- One run per --out: a second run on the folder of a live one (with --force or --resume too)
  fails at once naming the live run's pid; bin/eval appends --json nowhere a live run owns.
- A run that diverges (loss or weights no longer finite) stops with a message before it saves
  them over the last good checkpoint.
- Values: every number of the flag table is range-checked where it is finite, and refused where
  it is not, on the command line and in a resumed checkpoint's config alike (--eps included);
  --min-lr below 0 is refused, not replaced.
- Data with nothing to score (an all-zero loss mask) is refused rather than trained on at loss 0
  or reported as "0.000 %".
- Resources: an impossible model names the size of its weights, and --threads beyond what a
  memory limit allows fails with a message instead of spinning inside OpenBLAS.
"""
import fcntl
import json
import os
import resource
import stat
import subprocess
import time

import h5py
import numpy as np
import pytest

from harness import ENV, EVAL, ROOT, SANITIZED, TRAIN, assert_refused, rechecksum, run, train

TINY = ["--pe", "abs", "--lr", "0.001", "--layers", "1", "--dim", "16", "--heads", "2",
        "--seq-len", "16", "--batch", "4", "--eval-seqs", "8", "--threads", "1"]


def temp_files(folder):
    return sorted(p.name for p in folder.iterdir() if ".tmp." in p.name)


def with_limit(kind, nbytes):
    """A child process limit (RLIMIT_FSIZE, RLIMIT_AS) set between fork and exec."""
    return lambda: resource.setrlimit(kind, (nbytes, nbytes))


def run_limited(program, *args, limit, timeout=120):
    return subprocess.run([str(program), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=ENV, preexec_fn=limit)


@pytest.fixture
def stopped_run(tmp_path):
    """A run stopped at step 2 of 4: its folder and its checkpoint's bytes."""
    out = tmp_path / "run"
    done = train(*TINY, "--steps", "4", "--stop-at", "2", "--eval-every", "0", "--out", out)
    assert done.returncode == 0, done.stderr
    return out, (out / "model.h5").read_bytes()


# ---- D1: --write-data

def test_write_data_replaces_an_existing_file_only_with_force(tmp_path):
    path = tmp_path / "sets.h5"
    path.write_text("precious\n")
    assert_refused(train(*TINY, "--write-data", path),
                   f"--write-data {path} already exists; pass --force to replace it")
    assert path.read_text() == "precious\n"
    done = train(*TINY, "--write-data", path, "--force")
    assert done.returncode == 0, done.stderr
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] in (b"pelab-dataset", "pelab-dataset")
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize("kind", ["folder", "fifo", "device"])
def test_write_data_never_replaces_what_is_not_a_file(tmp_path, kind):
    # A device node of the test's own (a twin of /dev/null): a binary that got this wrong must
    # not replace the machine's /dev/null.
    path = tmp_path / kind
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("creating a device node needs root")
    assert_refused(train(*TINY, "--write-data", path, "--force"),
                   f"--write-data {path} exists and is not a regular file")
    assert not path.is_file()


# ---- D4: a full disk or the file size limit while saving

def test_a_save_past_the_file_size_limit_keeps_the_checkpoint(stopped_run):
    out, before = stopped_run
    # The child gets SIGXFSZ's default action (subprocess restores it): bin/train must ignore it
    # itself, or the limit kills it mid-save.
    done = run_limited(TRAIN, *TINY, "--steps", "4", "--eval-every", "0", "--resume",
                       out / "model.h5", limit=with_limit(resource.RLIMIT_FSIZE, 20000))
    assert done.returncode == 1, (done.returncode, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "the file size limit (ulimit -f) is too small" in lines[0]
    assert f"{out}/model.h5 is left as it was" in lines[0]
    assert (out / "model.h5").read_bytes() == before
    assert temp_files(out) == []


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs (root only; skipped where mounting is not allowed)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def fill_up(folder):
    with open(folder / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass


def test_a_full_disk_ends_with_a_message_and_keeps_the_checkpoint(small_disk):
    out = small_disk / "run"
    done = train(*TINY, "--steps", "4", "--stop-at", "2", "--eval-every", "0", "--out", out)
    assert done.returncode == 0, done.stderr
    before = (out / "model.h5").read_bytes()
    fill_up(small_disk)
    done = train(*TINY, "--steps", "4", "--eval-every", "0", "--save-every", "1", "--resume",
                 out / "model.h5")
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "the disk is full; free some space or write elsewhere" in done.stderr
    assert (out / "model.h5").read_bytes() == before
    assert temp_files(out) == []


# ---- D12: temporary files of dead runs

def test_a_run_clears_the_temporary_files_of_dead_writers_only(stopped_run):
    out, _ = stopped_run
    dead = subprocess.Popen(["true"])
    dead.wait()
    (out / f"model.h5.tmp.{dead.pid}").write_bytes(b"")
    (out / f"metrics.jsonl.tmp.{dead.pid}").write_bytes(b"half a log")
    alive = out / f"model.h5.tmp.{os.getpid()}"  # this test's: a writer still going
    alive.write_bytes(b"")
    done = train(*TINY, "--steps", "4", "--eval-every", "0", "--resume", out / "model.h5")
    assert done.returncode == 0, done.stderr
    assert f"removed {out}/model.h5.tmp.{dead.pid}, left by an interrupted save" in done.stdout
    assert temp_files(out) == [alive.name]


# ---- D9: one run per --out

@pytest.fixture
def live_run(tmp_path):
    """A long run in progress: its folder and process (stopped with Ctrl-C afterwards)."""
    out = tmp_path / "live"
    proc = subprocess.Popen([str(TRAIN), *TINY, "--steps", "1000000", "--eval-every", "0",
                             "--save-every", "0", "--out", str(out)], cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not (out / ".lock").exists() or not (out / ".lock").read_text().strip():
            assert proc.poll() is None and time.time() < deadline, "the run took no lock"
            time.sleep(0.05)
        yield out, proc
    finally:
        proc.send_signal(2)
        proc.wait(timeout=60)


@pytest.mark.parametrize("extra", [[], ["--force"]])
def test_a_second_run_on_a_live_runs_folder_fails_at_once(live_run, extra):
    out, proc = live_run
    done = train(*TINY, "--steps", "4", "--out", out, *extra, timeout=30)
    assert_refused(done, f"--out {out} is in use by a run still going (pid {proc.pid})")
    assert proc.poll() is None


def test_resuming_a_live_run_fails_at_once(live_run, stopped_run):
    out, proc = live_run
    stopped, before = stopped_run
    (out / "model.h5").write_bytes(before)  # as an earlier session of the live run left it
    assert_refused(train("--resume", out / "model.h5", timeout=30),
                   f"--out {out} is in use by a run still going (pid {proc.pid})")
    assert proc.poll() is None


def test_eval_does_not_append_into_a_live_runs_folder(live_run, stopped_run):
    out, proc = live_run
    stopped, _ = stopped_run
    rows = out / "results.jsonl"
    done = run(EVAL, stopped / "model.h5", "--json", rows)
    assert_refused(done, f"--json {rows}: its folder {out} is in use by a run still going "
                         f"(pid {proc.pid})")
    assert not rows.exists()


def test_eval_json_is_appended_by_one_process_at_a_time(stopped_run, tmp_path):
    out, _ = stopped_run
    rows = tmp_path / "rows.jsonl"
    assert run(EVAL, out / "model.h5", "--json", rows).returncode == 0
    with open(rows) as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # another appender at work
        assert_refused(run(EVAL, out / "model.h5", "--json", rows),
                       f"--json {rows} is being written by another process")
    assert run(EVAL, out / "model.h5", "--json", rows).returncode == 0
    assert len([json.loads(l) for l in rows.read_text().splitlines()]) == 2


# ---- D10, D11: values

@pytest.mark.parametrize("args,fragment", [
    (["--eps", "0"], "--eps must be a number > 0, got 0"),
    (["--eps", "-1e-8"], "--eps must be a number > 0, got -1e-08"),
    (["--eps", "nan"], "--eps nan does not fit a float"),
    (["--lr", "1e300"], "--lr 1e300 does not fit a float"),
    (["--min-lr", "-0.5"], "--min-lr must be a number >= 0, got -0.5"),
])
def test_out_of_range_values_are_refused(tmp_path, args, fragment):
    assert_refused(train(*TINY, *args, "--out", tmp_path / "run"), fragment, tmp_path / "run")


def edit_config(checkpoint, section, key, text):
    with h5py.File(checkpoint, "r+") as f:
        config = f.attrs["config"]
        config = config.decode() if isinstance(config, bytes) else config
        parsed = json.loads(config)
        old = json.dumps(parsed[section][key])
        needle = f'"{key}":{old}'
        assert needle in config, config
        # a fixed-length string, as pelab writes it
        f.attrs["config"] = np.bytes_(config.replace(needle, f'"{key}":{text}'))
    rechecksum(checkpoint)  # as if pelab had written the edited config


@pytest.mark.parametrize("key,text,fragment", [
    ("lr", "1e999", "--lr is inf, not a finite number"),
    ("eps", "0", "--eps must be a number > 0, got 0"),
    ("clip", "-1", "--clip must be a number >= 0, got -1"),
])
def test_a_resumed_config_is_range_checked_like_the_flags(stopped_run, key, text, fragment):
    out, _ = stopped_run
    edit_config(out / "model.h5", "train", key, text)
    before = (out / "model.h5").read_bytes()
    assert_refused(train("--resume", out / "model.h5"), fragment)
    assert (out / "model.h5").read_bytes() == before


def test_a_diverging_run_stops_before_saving_non_finite_weights(tmp_path):
    out = tmp_path / "run"
    done = train(*TINY, "--lr", "1e30", "--steps", "20", "--save-every", "1", "--out", out)
    assert done.returncode == 1, done.stderr
    assert "the run diverged; lower --lr (1e+30)" in done.stderr
    if (out / "model.h5").exists():
        with h5py.File(out / "model.h5", "r") as f:
            assert all(np.isfinite(f["model"][k][()]).all() for k in f["model"])


def test_weights_overflowed_by_one_step_are_not_saved(stopped_run):
    out, before = stopped_run
    done = train(*TINY, "--lr", "1e38", "--warmup", "0", "--steps", "1", "--out", out, "--force")
    assert done.returncode == 1, done.stderr
    assert "step 1: the weights are no longer finite, the run diverged" in done.stderr
    assert (out / "model.h5").read_bytes() == before


def test_min_lr_defaults_to_a_tenth_of_lr_when_not_given(tmp_path):
    done = train(*TINY, "--lr", "0.003", "--dry-run")
    assert done.returncode == 0, done.stderr
    flags = json.loads(done.stdout)["flags"]
    assert flags["min-lr"] == {"value": "0.0003", "from": "derived"}
    done = train(*TINY, "--min-lr", "0", "--dry-run")
    assert json.loads(done.stdout)["flags"]["min-lr"] == {"value": "0", "from": "flag"}


def test_an_out_that_cannot_be_created_is_bad_input(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_refused(train(*TINY, "--steps", "2", "--out", blocker / "run"),
                   f"cannot create --out {blocker}/run")


@pytest.mark.skipif(SANITIZED, reason="ASan's allocator aborts on huge sizes by design")
def test_an_impossible_model_names_the_size_of_its_weights(tmp_path):
    done = train("--pe", "abs", "--dim", "65536", "--layers", "12", "--steps", "2", "--out",
                 tmp_path / "big")
    assert done.returncode == 1
    assert "618490167296 parameters take 2.3 TiB" in done.stderr
    assert "lower --dim, --ffn or --layers" in done.stderr


@pytest.mark.skipif(SANITIZED, reason="ASan reserves terabytes of address space up front")
def test_threads_beyond_a_memory_limit_fail_with_a_message(tmp_path):
    done = run_limited(TRAIN, *TINY, "--threads", "4096", "--steps", "2", "--out",
                       tmp_path / "run", limit=with_limit(resource.RLIMIT_AS, 4 << 30), timeout=60)
    assert_refused(done, "--threads 4096 needs about")
    assert "lower --threads" in done.stderr


# ---- D7: nothing to score

def test_eval_refuses_batch_0(stopped_run):
    out, _ = stopped_run
    assert_refused(run(EVAL, out / "model.h5", "--batch", "0"),
                   "--batch must be an integer from 1 to")


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "sets.h5"
    done = train(*TINY, "--train-seqs", "16", "--write-data", path)
    assert done.returncode == 0, done.stderr
    return path


def unscore(path, group, rows):
    with h5py.File(path, "r+") as f:
        mask = f[group]["score_mask"][()]
        mask[rows] = 0
        f[group]["score_mask"][...] = mask
    rechecksum(path)


@pytest.mark.parametrize("group,rows,fragment", [
    ("train", slice(3, 4), "sequence 3 of the training set has no scored target"),
    ("train", slice(None), "sequence 0 of the training set has no scored target"),
    ("sparse", slice(None), "sequence 0 of split sparse has no scored target"),
])
def test_data_with_an_all_zero_loss_mask_is_refused(data_file, tmp_path, group, rows, fragment):
    unscore(data_file, group, rows)
    line = assert_refused(train(*TINY, "--data", data_file, "--steps", "2", "--out",
                                tmp_path / "run"), fragment, tmp_path / "run")
    assert f"dataset {data_file}" in line and "loss mask is all zero" in line


def test_eval_refuses_a_split_with_nothing_to_score(data_file, tmp_path):
    out = tmp_path / "run"
    done = train(*TINY, "--data", data_file, "--steps", "2", "--eval-every", "0", "--out", out)
    assert done.returncode == 0, done.stderr
    unscore(data_file, "dense", slice(None))
    line = assert_refused(run(EVAL, out / "model.h5"), "sequence 0 of split dense has no scored")
    assert "0.000" not in line


# Found by fuzz_flags: a step count above 2^53 was taken, and the run's config (JSON numbers,
# exact up to 2^53) then did not read back on --resume. Seeds and step counts stop at 2^53 - 1.
@pytest.mark.parametrize("flag", ["--steps", "--warmup", "--eval-every", "--save-every", "--stop-at", "--seed"])
def test_integers_that_json_cannot_hold_exactly_are_refused(flag, tmp_path):
    out = tmp_path / "run"
    assert_refused(train(flag, "9007199254740992", "--out", out),
                   f"{flag} must be an integer from", out)
    top = ["--steps", "9007199254740991"] if flag != "--steps" else []
    assert train(*top, flag, "9007199254740991", "--dry-run").returncode == 0
