"""Lost in the middle on kvret: rope, rope + Ms-PoE, rope + MoICE routers, position by position.

The experiment of the MoICE/Ms-PoE issue, end to end with the programs a user has:

1. bin/train: a rope model on kvret whose training puts the queried pair mostly at the ends
   (--kv-positions ends), the setting in which small models show a U-shaped accuracy curve,
   snapshotted at --early-step (the lookup still forming: the ends learned first) and at the
   end of its budget;
2. bin/eval: each snapshot's accuracy per position bin (the sweep);
3. bin/eval --mspoe MIN:MAX: the same sweep with Ms-PoE's per-head position rescaling (no
   training);
4. bin/train --init ... --moice-bases ... --train-only routers: MoICE routers fine-tuned with
   everything else frozen (the official recipe: a few steps, AdamW lr 1e-4, no weight decay,
   constant schedule), then bin/eval of that checkpoint, for each snapshot;
5. a table (accuracy per bin, middle mean, best end - worst middle gap) and one PNG with a
   panel per snapshot, each with the three curves.

    /usr/bin/python3 train/lost_in_middle.py [--out checkpoints/lost-in-middle] [--seed 1]
        [--early-step 250] [--mspoe 1.2:1.8] [--mspoe-skip-layers 1] [--moice-bases short] [--moice-steps 7]
        [--reuse] [-- extra bin/train flags for the rope run]

Every command it runs is printed first, so any step can be repeated by hand.
"""
import argparse
import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
TRAIN, EVAL = ROOT / "bin" / "train", ROOT / "bin" / "eval"


def run(command):
    print("$ " + " ".join(shlex.quote(str(c)) for c in command), flush=True)
    done = subprocess.run([str(c) for c in command], cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"lost_in_middle.py: the command above failed (exit {done.returncode})")


def sweep(checkpoint, rows, *flags):
    """bin/eval's JSON row for one checkpoint and flags (appended to rows, last line read)."""
    run([EVAL, checkpoint, "--json", rows, *flags])
    return json.loads(rows.read_text().splitlines()[-1])


METHODS = ("rope", "rope + Ms-PoE", "rope + MoICE routers")


def methods_of(model, moice, rows, a):
    """The three sweeps of one rope checkpoint: as trained, with Ms-PoE, with MoICE routers."""
    return {
        "rope": sweep(model, rows),
        "rope + Ms-PoE": sweep(model, rows, "--mspoe", a.mspoe,
                               "--mspoe-skip-layers", a.mspoe_skip_layers),
        "rope + MoICE routers": sweep(moice, rows),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="checkpoints/lost-in-middle")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--early-step", type=int, default=250,
                    help="the step of the snapshot taken while the lookup is still forming")
    ap.add_argument("--mspoe", default="1.2:1.8", help="Ms-PoE ratios MIN:MAX (official 1.2:1.8)")
    ap.add_argument("--mspoe-skip-layers", type=int, default=1,
                    help="layers Ms-PoE leaves unchanged (official 2; the classroom model has 2 in all)")
    ap.add_argument("--moice-bases", default="short")
    ap.add_argument("--moice-steps", type=int, default=7)
    ap.add_argument("--moice-batch", type=int, default=128)
    ap.add_argument("--moice-lr", default="1e-4")
    ap.add_argument("--reuse", action="store_true", help="keep finished runs found in --out")
    ap.add_argument("extra", nargs="*", help="flags for the rope run (after --)")
    a = ap.parse_args()

    out = ROOT / a.out
    out.mkdir(parents=True, exist_ok=True)
    rows = out / "sweeps.jsonl"
    if rows.exists():
        rows.unlink()
    common = ["--threads", a.threads]
    early, full = out / "rope-early", out / "rope"
    # One rope run: stopped at --early-step (its checkpoint kept as the early snapshot), then
    # resumed to the end, so both snapshots come from the same run.
    if not (a.reuse and (full / "model.h5").exists()):
        run([TRAIN, "--task", "kvret", "--pe", "rope", "--kv-positions", "ends", "--seed", a.seed,
             "--stop-at", a.early_step, "--out", early, "--force", *common, *a.extra])
        if full.exists():
            shutil.rmtree(full)
        shutil.copytree(early, full)
        run([TRAIN, "--resume", full / "model.h5", *common])
    snapshots = {}
    for name, rope in (("early", early), ("trained", full)):
        moice = out / f"moice-{name}"
        if not (a.reuse and (moice / "model.h5").exists()):
            run([TRAIN, "--init", rope / "model.h5", "--moice-bases", a.moice_bases,
                 "--train-only", "routers", "--steps", a.moice_steps, "--batch", a.moice_batch,
                 "--lr", a.moice_lr, "--min-lr", a.moice_lr, "--weight-decay", "0",
                 "--schedule", "constant", "--warmup", "0", "--eval-every", "0",
                 "--seed", a.seed, "--out", moice, "--force", *common])
        step = json.loads((rope / "metrics.jsonl").read_text().splitlines()[-1])["step"]
        snapshots[f"{name} (step {step})"] = methods_of(rope / "model.h5", moice / "model.h5", rows, a)

    bins = len(next(iter(next(iter(snapshots.values())).values()))["sweep"]["accuracy"])
    width = max(len(s) + len(m) for s in snapshots for m in METHODS) + 3
    lines = [f"{'model: method':<{width}}  " + " ".join(f"{'bin' + str(b):>6}" for b in range(bins))
             + "  middle     gap", ""]
    for snap, results in snapshots.items():
        for name, r in results.items():
            acc = [100 * x for x in r["sweep"]["accuracy"]]
            lines.append(f"{snap + ': ' + name:<{width}}  " + " ".join(f"{x:6.1f}" for x in acc)
                         + f"  {100 * r['sweep']['middle_mean']:6.1f}"
                         + f"  {100 * r['sweep']['end_middle_gap']:+6.1f}")
    lines[1] = "-" * len(lines[0])
    table = "\n".join(lines)
    print("\naccuracy % of the queried value by the position bin of the queried pair (kvret, "
          "rope trained with --kv-positions ends)\n" + table)
    (out / "table.txt").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps(snapshots, indent=1) + "\n")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(snapshots), figsize=(12, 4), sharey=True)
    for ax, (snap, results) in zip(axes, snapshots.items()):
        for (name, r), marker in zip(results.items(), "osD"):
            ax.plot(range(bins), [100 * x for x in r["sweep"]["accuracy"]], marker=marker, label=name)
        ax.set_title(f"rope, {snap}")
        ax.set_xlabel("position bin of the queried pair (0 = first pairs)")
        ax.set_xticks(range(bins))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy % of the queried value")
    axes[0].legend(fontsize=8)
    fig.suptitle("kvret, rope trained with the queried pair mostly at the ends")
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=120)
    print(f"\nwrote {out / 'curves.png'}, {out / 'table.txt'} and {out / 'results.json'}")


if __name__ == "__main__":
    main()
