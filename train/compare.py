#!/usr/bin/python3
"""Train every positional encoding on one task with the same seed and budget; print one table.

    train/compare.py                              # flipflop, classroom preset, all encodings, seed 1
    train/compare.py --seeds 1 2 3 --pes abs rope cope --threads 2
    train/compare.py --task flipflop --preset classroom -- --steps 500   # extra bin/train flags

Each run goes to OUT/<pe>-s<seed>/ (checkpoint and metrics.jsonl, as bin/train writes them);
the table reads the last evaluation row of each run. With several seeds a cell is
"mean ± sd" over seeds. The table is printed as Markdown and also saved to OUT/table.md,
with the raw numbers in OUT/results.json and the curves of every run in OUT/curves.png.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ALL_PES = ["none", "abs", "sin", "rel", "t5", "alibi", "rope", "cope"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def last_row(run_dir):
    path = os.path.join(run_dir, "metrics.jsonl")
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if not rows:
        sys.exit(f"compare.py: {path} has no rows; the run did not evaluate")
    return rows[-1]


def cell(values, percent=True):
    scale = 100.0 if percent else 1.0
    vals = [v * scale for v in values]
    if len(vals) == 1:
        return f"{vals[0]:.2f}" if percent else f"{vals[0]:.0f}"
    mean, sd = statistics.mean(vals), statistics.stdev(vals)
    return f"{mean:.2f} ± {sd:.2f}" if percent else f"{mean:.0f} ± {sd:.0f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="flipflop")
    ap.add_argument("--preset", default="classroom")
    ap.add_argument("--pes", nargs="+", default=ALL_PES, metavar="PE")
    ap.add_argument("--seeds", nargs="+", type=int, default=[1], metavar="SEED")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", default=None, help="folder of the runs (default checkpoints/compare-TASK)")
    ap.add_argument("--reuse", action="store_true", help="skip runs whose metrics already exist")
    ap.add_argument("extra", nargs="*", help="flags passed to every bin/train run (after --)")
    args = ap.parse_args()
    out = args.out or os.path.join("checkpoints", f"compare-{args.task}")
    train = os.path.join(ROOT, "bin", "train")
    if not os.access(train, os.X_OK):
        sys.exit("compare.py: bin/train is missing; build it first with `make`")
    unknown = [pe for pe in args.pes if pe not in ALL_PES]
    if unknown:
        sys.exit(f"compare.py: unknown encoding {unknown[0]}; choose from {', '.join(ALL_PES)}")
    os.makedirs(out, exist_ok=True)

    results = {}
    total = len(args.pes) * len(args.seeds)
    done = 0
    for seed in args.seeds:
        for pe in args.pes:
            run_dir = os.path.join(out, f"{pe}-s{seed}")
            done += 1
            if not (args.reuse and os.path.exists(os.path.join(run_dir, "metrics.jsonl"))):
                cmd = [train, "--task", args.task, "--preset", args.preset, "--pe", pe,
                       "--seed", str(seed), "--threads", str(args.threads), "--out", run_dir,
                       "--force"] + args.extra
                print(f"[{done}/{total}] {' '.join(cmd)}", flush=True)
                t0 = time.time()
                with open(os.path.join(out, f"{pe}-s{seed}.log"), "w") as log:
                    rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
                if rc != 0:
                    sys.exit(f"compare.py: run {pe} seed {seed} failed (exit {rc}); see {out}/{pe}-s{seed}.log")
                print(f"      done in {time.time() - t0:.0f} s", flush=True)
            results.setdefault(pe, []).append(last_row(run_dir))

    splits = list(next(iter(results.values()))[0]["eval"].keys())
    header = ["PE"] + [f"{s} tok err %" for s in splits] + [f"{s} seq err %" for s in splits] + ["train tok/s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for pe in args.pes:
        rows = results[pe]
        cells = [pe]
        cells += [cell([r["eval"][s]["token_error"] for r in rows]) for s in splits]
        cells += [cell([r["eval"][s]["seq_error"] for r in rows]) for s in splits]
        cells += [cell([r["tok_per_s"] for r in rows], percent=False)]
        lines.append("| " + " | ".join(cells) + " |")
    seeds = ", ".join(map(str, args.seeds))
    caption = (f"{args.task}, preset {args.preset}, seeds {seeds}, {args.threads} threads, "
               f"step {rows[0]['step']}" + (f", extra flags: {' '.join(args.extra)}" if args.extra else ""))
    table = caption + "\n\n" + "\n".join(lines) + "\n"
    print("\n" + table)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(table)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"task": args.task, "preset": args.preset, "seeds": args.seeds, "results": results}, f, indent=1)
    run_dirs = [os.path.join(out, f"{pe}-s{s}") for s in args.seeds for pe in args.pes]
    subprocess.call([sys.executable, os.path.join(ROOT, "train", "plot_metrics.py"), *run_dirs,
                     "--out", os.path.join(out, "curves.png")])


if __name__ == "__main__":
    main()
