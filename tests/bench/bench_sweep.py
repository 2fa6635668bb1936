#!/usr/bin/python3
"""Runs at once or threads per run: the runs per hour of bin/sweep on this machine for
`--jobs 2 --threads-per-run 1` (two one-thread runs side by side) against `--jobs 1
--threads-per-run 2` (one two-thread run after another), on the same two runs (seeds 1 and 2)
of a preset, interleaved in ABBA order so that a change of the machine's load hits both sides.

    tests/bench/bench_sweep.py                                   # classroom and paper, Flip-Flop
    tests/bench/bench_sweep.py --presets classroom --steps 1500 --rounds 4

The paper preset runs few --steps (its full 10000 would take hours); the figure is the rate of
those steps, evaluation included. The 1-minute load average before each side is printed, since
other work on the machine shares its cores.
"""
import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
SWEEP = ROOT / "bin" / "sweep"
SIDES = {"2 runs x 1 thread": ["--jobs", "2", "--threads-per-run", "1"],
         "1 run x 2 threads": ["--jobs", "1", "--threads-per-run", "2"]}


def one_side(preset, steps, eval_seqs, side, work):
    grid = pathlib.Path(work) / f"{preset}.toml"
    grid.write_text(f'name = "bench-{preset}"\n[flags]\ntask = "flipflop"\npreset = "{preset}"\n'
                    f'steps = {steps}\neval-every = 0\neval-seqs = {eval_seqs}\n'
                    f'[axes]\nseed = [1, 2]\n')
    out = pathlib.Path(work) / f"{preset}-{time.time_ns()}"
    load = os.getloadavg()[0]
    start = time.perf_counter()
    subprocess.run([str(SWEEP), "run", str(grid), "--out", str(out), *SIDES[side]], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start, load


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", nargs="+", default=["classroom", "paper"])
    ap.add_argument("--steps", type=int, nargs="+", default=[200, 4],
                    help="steps of each preset's runs, in --presets order")
    ap.add_argument("--eval-seqs", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2, help="ABBA rounds: 2 = A B B A")
    args = ap.parse_args()
    if not os.access(SWEEP, os.X_OK):
        sys.exit("bench_sweep.py: bin/sweep is missing; build with `make`")
    print(f"{os.cpu_count()} cores; Flip-Flop, 2 runs (seeds 1, 2) per side, evaluation at the "
          f"end on {args.eval_seqs} sequences per split")
    print("| preset | steps | side | wall s per pair (each round) | load before | runs/hour |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        for preset, steps in zip(args.presets, args.steps):
            times = {side: [] for side in SIDES}
            loads = {side: [] for side in SIDES}
            order = []
            for r in range(args.rounds):
                order += list(SIDES) if r % 2 == 0 else list(reversed(SIDES))
            for side in order:
                wall, load = one_side(preset, steps, args.eval_seqs, side, work)
                times[side].append(wall)
                loads[side].append(load)
            for side in SIDES:
                rate = 2 * len(times[side]) / sum(times[side]) * 3600
                print(f"| {preset} | {steps} | {side} | "
                      f"{', '.join(f'{t:.1f}' for t in times[side])} | "
                      f"{', '.join(f'{x:.2f}' for x in loads[side])} | {rate:.0f} |", flush=True)


if __name__ == "__main__":
    main()
