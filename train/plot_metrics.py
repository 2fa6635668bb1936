#!/usr/bin/python3
"""Draws the curves of one or more bin/train runs from their metrics logs.

    train/plot_metrics.py RUN_DIR [RUN_DIR ...] --out curves.png

Left panel: training loss against step. Then one panel per evaluation split: token error rate
against step. One line per run, labelled with its folder name. Error rates are drawn on a log
scale, since the interesting differences between encodings lie between 1% and 0.01%; a rate of
exactly zero is drawn at a floor of 1e-5 instead of vanishing from the log axis, so a run that
reaches zero error stays visible. The training loss is on a log scale too, for the same reason.
"""
import argparse
import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

ZERO_FLOOR = 1e-5


def read_rows(run_dir):
    """The rows of RUN_DIR/metrics.jsonl; exits with one line if there are none."""
    path = pathlib.Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        sys.exit(f"plot_metrics.py: {path} does not exist; "
                 "pass the --out folder of a bin/train run")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            sys.exit(f"plot_metrics.py: {path} line {number} is not JSON; is this a metrics log?")
    if not rows:
        sys.exit(f"plot_metrics.py: {path} has no rows yet; "
                 "the first is written at the run's first evaluation")
    return rows


def plot(runs, out):
    splits = list(dict.fromkeys(s for rows in runs.values() for r in rows for s in r["eval"]))
    fig, axes = plt.subplots(1, 1 + len(splits), figsize=(4.2 * (1 + len(splits)), 3.6),
                             squeeze=False)
    axes = axes[0]
    for name, rows in runs.items():
        steps = [r["step"] for r in rows]
        axes[0].plot(steps, [r["loss"] for r in rows], marker=".", label=name)
        for ax, split in zip(axes[1:], splits):
            points = [(r["step"], r["eval"][split]["token_error"])
                      for r in rows if split in r["eval"]]
            ax.plot([s for s, _ in points], [max(e, ZERO_FLOOR) for _, e in points], marker=".",
                    label=name)
    axes[0].set_title("training loss")
    axes[0].set_yscale("log")
    for ax, split in zip(axes[1:], splits):
        ax.set_title(f"token error: {split}")
        ax.set_yscale("log")
        ax.set_ylim(bottom=ZERO_FLOOR / 2)
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main():
    parser = argparse.ArgumentParser(description="Plot loss and per-split error of bin/train runs.")
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="--out folder of a run")
    parser.add_argument("--out", required=True, metavar="PNG", help="image to write")
    args = parser.parse_args()
    runs = {}
    for run_dir in args.runs:
        name = pathlib.Path(run_dir).resolve().name
        runs[name if name not in runs else run_dir] = read_rows(run_dir)
    plot(runs, args.out)
    print(args.out)


if __name__ == "__main__":
    main()
