"""What the Python tests share: where the binaries are, how they run, how runs compare."""
import json
import os
import pathlib
import subprocess

import h5py
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
# PELAB_BIN: another folder of the programs (make sanitize runs tests on its ASan/UBSan build).
BIN = pathlib.Path(os.environ.get("PELAB_BIN", ROOT / "bin"))
TRAIN = BIN / "train"
EVAL = BIN / "eval"
CROSSCHECK = ROOT / "bin" / "crosscheck"  # a test tool, never sanitized
# The programs run under AddressSanitizer, which reserves terabytes of address space up front.
SANITIZED = os.environ.get("PELAB_SANITIZED") == "1"
FIXTURES = ROOT / "tests" / "fixtures"
# libgomp's default spin-waiting makes two threads crawl when other processes share the cores.
ENV = {**os.environ, "OMP_WAIT_POLICY": "passive"}


def run(program, *args, timeout=120):
    return subprocess.run([str(program), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=ENV)


def train(*args, timeout=120):
    return run(TRAIN, *args, timeout=timeout)


def strip_checksum(path):
    """Cuts pelab's checksum record (the file's first 512 bytes, docs/formats.md) off path, as
    if another tool had written it: a test that changes a pelab file through h5py calls this
    first, else the changed file is refused as damaged."""
    data = pathlib.Path(path).read_bytes()
    assert data.startswith(b"pelab-checksum 1\n"), f"{path} has no checksum record"
    pathlib.Path(path).write_bytes(data[512:])


def rechecksum(path):
    """Writes pelab's checksum record (docs/formats.md) anew over a pelab file edited in place
    through h5py (which leaves the 512-byte user block as it was): the edited file then reads as
    pelab wrote it, so a test reaches the loader's own checks on its contents."""
    import hashlib
    data = bytearray(pathlib.Path(path).read_bytes())
    assert data.startswith(b"pelab-checksum 1\n"), f"{path} has no checksum record"
    body = bytes(data[512:])
    record = f"pelab-checksum 1\nsha256 {hashlib.sha256(body).hexdigest()}\nbytes {len(body)}\n"
    data[:512] = record.encode().ljust(512, b"\0")
    pathlib.Path(path).write_bytes(bytes(data))


def checkpoint_contents(path):
    """Every dataset of a checkpoint, and the attributes that must match between equal runs
    (elapsed time is wall clock, so it is left out)."""
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
        for key in ("step", "tokens_seen", "config"):
            out["@" + key] = f.attrs[key]
        out["@optim.step"] = f["optim"].attrs["step"]
        out["@loss_sum"] = f["state"].attrs["loss_sum"]
        out["@loss_count"] = f["state"].attrs["loss_count"]
    return out


def assert_same(a, b):
    assert a.keys() == b.keys()
    different = [k for k in a if not np.array_equal(a[k], b[k])]
    assert not different, different


def assert_same_checkpoint(a, b):
    assert_same(checkpoint_contents(a), checkpoint_contents(b))


def metric_rows(run_dir):
    """Metrics rows without the wall-clock fields."""
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        del r["tok_per_s"], r["elapsed_s"]
    return rows


def registry(kind):
    """The names bin/train lists under its registry section of --help: kind "pe" or "task".
    Tests that must cover every encoding or task loop over this, so that a new one is covered
    without a line in the tests."""
    title = {"pe": "positional encodings (--pe):", "task": "tasks (--task):"}[kind]
    done = train("--help")
    assert done.returncode == 0, f"bin/train --help failed: {done.stderr} (run make first)"
    lines = done.stdout.splitlines()
    start = lines.index(title) + 1
    names = []
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        names.append(line.split()[0])
    assert names, f"no names under {title!r} in bin/train --help"
    return names


def assert_refused(done, fragment, unused=None):
    """Bad input: exit status 2, nothing on stdout, ONE line on stderr containing fragment (the
    problem and, where there is one, the fix), and no output folder `unused` created."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert fragment in lines[0], lines[0]
    assert unused is None or not unused.exists(), f"a bad command created {unused}"
    return lines[0]
