#!/usr/bin/python3
"""Draw the attention maps written by `bin/train --attention-maps N` as a grid of heatmaps.

    train/plot_attention.py checkpoints/demo/attention.h5                  # split "in", sequence 0
    train/plot_attention.py RUN/attention.h5 --split sparse --seq 1 --out sparse.png
    train/plot_attention.py RUN/attention.h5 --positions    # cope: the positions p_ij instead

One row per layer, one column per head; row i of a heatmap is what query position i attends
to (keys on the x axis). Scored positions (the bits after a read, for Flip-Flop) are marked on
the y axis, red where the model's prediction is wrong. Sequences of at most 64 tokens get their
tokens as tick labels.
"""
import argparse
import os
import sys

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file", help="attention.h5 written by bin/train --attention-maps")
    ap.add_argument("--split", default=None, help="evaluation split (default: the first)")
    ap.add_argument("--seq", type=int, default=0, help="which of the stored sequences")
    ap.add_argument("--positions", action="store_true", help="draw the encoding's positions (cope)")
    ap.add_argument("--out", default=None, help="PNG path (default: next to the file)")
    args = ap.parse_args()
    if not os.path.exists(args.file):
        sys.exit(f"plot_attention.py: {args.file} does not exist; write it with bin/train --attention-maps 2")
    f = h5py.File(args.file, "r")
    if "split_names" not in f.attrs:
        sys.exit(f"plot_attention.py: {args.file} is not an attention file; bin/train --attention-maps N writes one as <out>/attention.h5")
    splits = text(f.attrs["split_names"]).split(",")
    split = args.split or splits[0]
    if split not in f:
        sys.exit(f"plot_attention.py: no split {split} in {args.file}; it has {', '.join(splits)}")
    kind = "positions" if args.positions else "attention"
    if kind not in f[split]:
        sys.exit(f"plot_attention.py: --pe {text(f.attrs['pe'])} has no positions to draw; drop --positions")
    group = f[split][kind]
    layers = sorted(group.keys(), key=lambda k: int(k[len("layer"):]))
    n = group[layers[0]].shape[0]
    if not 0 <= args.seq < n:
        sys.exit(f"plot_attention.py: --seq {args.seq} is out of range; the file holds {n} sequences per split")
    tokens = f[split]["tokens"][args.seq]
    targets = f[split]["targets"][args.seq]
    predictions = f[split]["predictions"][args.seq]
    names = text(f.attrs["token_names"]).split(",")
    H = group[layers[0]].shape[1]
    T = len(tokens)

    fig, axes = plt.subplots(len(layers), H, figsize=(2.6 * H + 1, 2.6 * len(layers) + 0.6), squeeze=False)
    for row, layer in enumerate(layers):
        maps = group[layer][args.seq]
        for h in range(H):
            ax = axes[row][h]
            image = ax.imshow(maps[h], cmap="viridis" if kind == "attention" else "magma",
                              vmin=0, vmax=1 if kind == "attention" else None, interpolation="nearest")
            ax.set_title(f"layer {row} head {h}", fontsize=9)
            if T <= 64:
                labels = [names[t] for t in tokens]
                ax.set_xticks(range(T), labels, fontsize=5, rotation=90)
                ax.set_yticks(range(T), labels, fontsize=5)
            else:
                ax.tick_params(labelsize=6)
            for i in range(T):
                if targets[i] >= 0:
                    wrong = predictions[i] != targets[i]
                    ax.plot(-0.5, i, marker=">", color="red" if wrong else "white", markersize=3, clip_on=False)
            if kind == "positions":
                fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
    wrong = int(((predictions != targets) & (targets >= 0)).sum())
    scored = int((targets >= 0).sum())
    fig.suptitle(f"{text(f.attrs['task'])} / {split} #{args.seq}, pe {text(f.attrs['pe'])}: {kind} "
                 f"({wrong} of {scored} scored predictions wrong)", fontsize=10)
    fig.tight_layout()
    out = args.out or os.path.join(os.path.dirname(args.file) or ".", f"{kind}-{split}-{args.seq}.png")
    fig.savefig(out, dpi=110)
    print(out)


if __name__ == "__main__":
    main()
