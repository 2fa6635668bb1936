"""What the tests of bin/sweep share: the 4-run grid (2 encodings x 2 seeds) and readers.

The runs are tiny (1 layer, width 32, 32-token Flip-Flop, batch 16) and one thread each, so that
the same seed gives the same bits on either backend; 1000 steps (2-4 s a run) leave time to
interrupt a run after its first checkpoint (every 50 steps) and before its end.
"""
import json
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent.parent
SWEEP = ROOT / "bin" / "sweep"
TRAIN = ROOT / "bin" / "train"

FLAGS = {"task": "flipflop", "layers": 1, "dim": 32, "heads": 2, "seq-len": 32, "batch": 16,
         "steps": 1000, "warmup": 10, "eval-every": 250, "eval-seqs": 64, "save-every": 50}
GRID = """name = "pe-seeds"
[flags]
""" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in FLAGS.items()) + """
[axes]
pe = ["abs", "rope"]
seed = [1, 2]
[resources]
threads = 1
time = "00:10:00"
[report]
metrics = ["token_error", "seq_error", "loss"]
"""


def write_grid(folder, text=GRID):
    path = pathlib.Path(folder) / "grid.toml"
    path.write_text(text)
    return path


def sweep(*args, cwd, env=None, timeout=300):
    return subprocess.run([str(SWEEP), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def summaries(folder):
    """{run name: summary} of a sweep folder."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(
        (pathlib.Path(folder) / "summaries").glob("*.json"))}


def last_rows(folder):
    """{run name: last metrics.jsonl row} as bin/train wrote them."""
    rows = {}
    for log in sorted((pathlib.Path(folder) / "runs").glob("*/metrics.jsonl")):
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        rows[log.parent.name] = lines[-1]
    return rows


def results(folder):
    """What must not depend on the backend or on interruptions: the final evaluation and
    training loss of every run."""
    return {name: (s["final"]["eval"], s["final"]["loss"], s["steps"])
            for name, s in summaries(folder).items()}
