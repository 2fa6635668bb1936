"""One run of a sweep on disk, whichever backend runs it:

    <sweep>/runs/<name>/        bin/train --out: model.h5, metrics.jsonl; train.log (its output),
                                run.json (flags, commit of each start), lock (held while running)
    <sweep>/summaries/<name>.json   written once the run is finished: final metrics, every
                                metrics row, the checkpoint's resolved config, the commit

A run is finished when its summary exists. A run with a checkpoint short of its --steps resumes
from it with bin/train --resume, which continues bit for bit (the checkpoint's thread count
applies, whatever --threads-per-run says now); a run without one starts over.
"""
import ctypes
import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import time

import h5py

from .grid import ROOT, TRAIN


def run_dir(sweep, run):
    return os.path.join(sweep, "runs", run.name)


def summary_path(sweep, run):
    return os.path.join(sweep, "summaries", run.name + ".json")


def write_text(path, text):
    """Temp file, fsync, rename, fsync of the folder: a reader never sees half a file, a crash
    never loses the old one nor the rename; a failed write leaves no temp file."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    folder = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=1) + "\n")


def read_json(path):
    with open(path) as f:
        return json.load(f)


def checkpoint(sweep, run):
    """(step, steps, config) of the run's checkpoint, or None when there is none."""
    path = os.path.join(run_dir(sweep, run), "model.h5")
    if not os.path.exists(path):
        return None
    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["config"])
        return int(f.attrs["step"]), int(config["train"]["steps"]), config


def state(sweep, run):
    """'done', ('partial', step, steps) or 'new'."""
    if os.path.exists(summary_path(sweep, run)):
        return "done"
    ckpt = checkpoint(sweep, run)
    if ckpt:
        return ("partial", ckpt[0], ckpt[1])
    return "new"


def git_commit():
    """The commit of the pelab checkout that trains, "+dirty" with uncommitted changes."""
    try:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def lock(sweep, run):
    """An open file holding an exclusive lock on the run's folder, or None when another process
    (a sweep, a Slurm task, or a bin/train left over from one) holds it. bin/train inherits the
    descriptor, so the lock lasts as long as the training does."""
    d = run_dir(sweep, run)
    os.makedirs(d, exist_ok=True)
    f = open(os.path.join(d, "lock"), "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


def command(sweep, run, threads):
    """The bin/train command that starts or resumes the run; records the attempt in run.json."""
    d = run_dir(sweep, run)
    ckpt = checkpoint(sweep, run)
    info_path = os.path.join(d, "run.json")
    info = read_json(info_path) if os.path.exists(info_path) and ckpt else {
        "name": run.name, "flags": run.flags, "attempts": []}
    attempt = {"commit": git_commit(), "host": socket.gethostname(),
               "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if ckpt:
        argv = [TRAIN, "--resume", os.path.join(d, "model.h5")]
        attempt["resumed_at_step"] = ckpt[0]
    else:
        argv = [TRAIN, *run.argv(), "--threads", str(threads), "--out", d, "--force"]
    info["attempts"].append(attempt)
    write_json(info_path, info)
    return argv


def _die_with_parent():
    """In the child: SIGTERM when the sweep dies (even by SIGKILL), so bin/train saves and stops
    instead of training on unwatched."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start(sweep, run, threads, held_lock, own_session):
    """Starts bin/train for the run, output appended to its train.log. own_session: the child
    does not get the terminal's Ctrl-C; the sweep forwards it (once)."""
    argv = command(sweep, run, threads)
    log = open(os.path.join(run_dir(sweep, run), "train.log"), "a")
    log.write(f"\n$ {' '.join(argv)}\n")
    log.flush()
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            pass_fds=[held_lock.fileno()], start_new_session=own_session,
                            preexec_fn=_die_with_parent)
    log.close()
    return proc


def finish(sweep, run):
    """Writes the summary if the run trained all its steps; returns whether it did."""
    ckpt = checkpoint(sweep, run)
    if not ckpt or ckpt[0] < ckpt[1]:
        return False
    step, steps, config = ckpt
    d = run_dir(sweep, run)
    with open(os.path.join(d, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if not rows or rows[-1]["step"] != steps:
        return False
    info = read_json(os.path.join(d, "run.json"))
    write_json(summary_path(sweep, run), {
        "name": run.name, "axes": run.axes, "flags": run.flags,
        "commit": info["attempts"][0]["commit"], "attempts": info["attempts"],
        "threads": config["train"]["threads"], "steps": steps, "final": rows[-1],
        "metrics": rows, "config": config})
    return True


STEP_RE = re.compile(rb"step (\d+)/(\d+)")


def progress(sweep, run):
    """(step, steps) of the latest progress line in the run's log, or None."""
    try:
        with open(os.path.join(run_dir(sweep, run), "train.log"), "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            found = STEP_RE.findall(f.read())
    except OSError:
        return None
    return (int(found[-1][0]), int(found[-1][1])) if found else None


def log_tail(sweep, run, lines=15):
    path = os.path.join(run_dir(sweep, run), "train.log")
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""
