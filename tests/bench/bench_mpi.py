"""Throughput of data-parallel training (`make bench-mpi`; docs/mpi.md): bin/train against
bin/train-mpi under `mpirun -np P`, one thread per rank, on the same run, interleaved round by
round so that a busy machine slows both sides alike. Prints training tokens/s (the metrics row's
tok_per_s: training steps only, not the evaluation) per round and the median per side; nothing
is asserted.

    /usr/bin/python3 tests/bench/bench_mpi.py [--ranks 2] [--rounds 3] [--steps 100] [-- train flags]
"""
import argparse
import json
import pathlib
import statistics
import subprocess
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe"]


def tokens_per_s(cmd, out):
    subprocess.run([*cmd, "--out", str(out), "--force"], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return rows[-1]["tok_per_s"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("train", nargs="*", help="more bin/train flags (after --)")
    a = ap.parse_args()
    run = ["--steps", str(a.steps), "--eval-every", "0", "--eval-seqs", "64", "--threads", "1",
           *a.train]
    sides = {"1 process": [str(ROOT / "bin" / "train"), *run],
             f"{a.ranks} ranks": [*MPIRUN, "-np", str(a.ranks), str(ROOT / "bin" / "train-mpi"), *run]}
    rates = {side: [] for side in sides}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            for side, cmd in sides.items():
                rates[side].append(tokens_per_s(cmd, pathlib.Path(tmp) / "run"))
                print(f"round {r + 1} {side}: {rates[side][-1]:.0f} tok/s", flush=True)
    for side, xs in rates.items():
        print(f"{side}: median {statistics.median(xs):.0f} tok/s over {len(xs)} rounds")


if __name__ == "__main__":
    main()
