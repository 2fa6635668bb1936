"""Lost in the middle on kvret: rope, rope + Ms-PoE, rope + MoICE routers, position by position.

The experiment of the lasting U (Wu et al. 2025's biased training data), end to end with the
programs a user has, once per seed:

1. bin/train: a rope model on kvret whose training queries a pair at the ends only
   (--kv-positions ends --kv-middle-share S, S = --middle-share, default 0: the middle is never
   queried), optionally snapshotted at --early-step (the lookup still forming) as well as at the
   end of its budget;
2. bin/eval: each snapshot's accuracy per position bin (the sweep) and the duplicate-key probe
   (--kv-duplicate-probe P: the queried key twice, which of its two values comes back);
3. bin/eval --mspoe MIN:MAX: the same with Ms-PoE's per-head position rescaling (no training);
4. bin/train --init ... --moice-recipe official: MoICE routers fine-tuned with everything else
   frozen (the MoICE authors' recipe; one run per --moice-bases set, `official` = the recipe's
   own bases, chosen for 4k-token contexts, `short` = pelab's set for short contexts), then
   bin/eval of each;
5. over the seeds: a markdown table (accuracy per bin, mean ± sd over seeds; each seed's 95 %
   Wilson interval; the probe's earlier / later / neither shares), results.json, and one PNG
   (curves with the seeds' band, the probe as heatmaps).

    /usr/bin/python3 train/lost_in_middle.py [--out checkpoints/lost-in-middle] [--seeds 1 2 3]
        [--middle-share 0] [--early-step 0] [--mspoe 1.2:1.8] [--mspoe-skip-layers 1]
        [--moice-recipe official|pelab] [--moice-bases official short] [--probe 3]
        [--eval-seqs 1024] [--threads 1] [--reuse] [-- extra bin/train flags for the rope run]

The first version of this experiment (one seed, 10 % of training queries in the middle, a
snapshot at step 250, routers with pelab's MoICE defaults and the `short` bases):
    --seeds 1 --middle-share 0.1 --early-step 250 --moice-recipe pelab --moice-bases short
        --probe 0 --eval-seqs 256 --threads 2

The MoICE runs take kvret's preset task (uniform positions: middle queries included), since
--init takes the model from the rope run and the task from the flags: the routers are
fine-tuned on unbiased data, as the MoICE authors fine-tune on general data.

Every command it runs is printed first, so any step can be repeated by hand.
"""
import argparse
import json
import os
import pathlib
import shlex
import shutil
import statistics
import subprocess
import sys

import h5py

ROOT = pathlib.Path(__file__).resolve().parent.parent
TRAIN, EVAL = ROOT / "bin" / "train", ROOT / "bin" / "eval"
# libgomp's default spin-waiting makes a second thread crawl when other jobs share the cores.
ENV = {"OMP_WAIT_POLICY": "passive", **os.environ}
# The earlier router fine-tuning: pelab's MoICE defaults (top-K 3, aux 0.2, routers
# N(0, 1/sqrt(d)), beta2 0.95) with the official run's steps, batch and constant lr.
PELAB_MOICE = ["--train-only", "routers", "--steps", 7, "--batch", 128, "--lr", "1e-4",
               "--min-lr", "1e-4", "--weight-decay", 0, "--schedule", "constant", "--warmup", 0]
ANSWERS = {"earlier": "target", "later": "second", "neither": "neither"}


def run(command):
    print("$ " + " ".join(shlex.quote(str(c)) for c in command), flush=True)
    done = subprocess.run([str(c) for c in command], cwd=ROOT, env=ENV)
    if done.returncode != 0:
        sys.exit(f"lost_in_middle.py: the command above failed (exit {done.returncode})")


def sweep(checkpoint, rows, a, *flags):
    """One bin/eval of a checkpoint, reduced to what the report needs: accuracy per position
    bin with its 95 % interval, the sweep's summaries and the probe's answers per split."""
    probe = ["--kv-duplicate-probe", a.probe] if a.probe else []
    run([EVAL, checkpoint, "--json", rows, "--eval-seqs", a.eval_seqs, "--threads", a.threads,
         *probe, *flags])
    r = json.loads(rows.read_text().splitlines()[-1])
    bins = len(r["sweep"]["accuracy"])
    # accuracy = 1 - token error (one scored value per sequence), so its interval is the
    # error's mirrored
    ci = [[1 - r["eval"][f"bin{b}"]["token_error_ci95"][1],
           1 - r["eval"][f"bin{b}"]["token_error_ci95"][0]] for b in range(bins)]
    return {"accuracy": r["sweep"]["accuracy"], "ci95": ci, "scored": r["eval"]["bin0"]["scored"],
            "middle_mean": r["sweep"]["middle_mean"], "end_middle_gap": r["sweep"]["end_middle_gap"],
            "probe": {split[3:]: {k: e["probe"][v] for k, v in ANSWERS.items()}
                      for split, e in r["eval"].items() if "probe" in e}}


def method_names(a):
    names = ["rope", f"rope + Ms-PoE {a.mspoe}"]
    return names + [f"rope + MoICE routers ({b} bases)" for b in a.moice_bases]


def rope_snapshots(seed, out, a):
    """The seed's rope run: {snapshot name: run folder}. With --early-step, stopped there (its
    checkpoint kept as the early snapshot), then resumed to the end, so both come from one run."""
    early, full = out / "rope-early", out / "rope"
    train = [TRAIN, "--task", "kvret", "--pe", "rope", "--kv-positions", "ends",
             "--kv-middle-share", a.middle_share, "--seed", seed, "--threads", a.threads,
             "--force", *a.extra]
    if not (a.reuse and (full / "model.h5").exists()):
        if a.early_step:
            run([*train, "--stop-at", a.early_step, "--out", early])
            if full.exists():
                shutil.rmtree(full)
            shutil.copytree(early, full)
            run([TRAIN, "--resume", full / "model.h5", "--threads", a.threads])
        else:
            run([*train, "--out", full])
    return {"early": early, "trained": full} if a.early_step else {"trained": full}


def moice_checkpoint(rope, bases, seed, out, a):
    """Routers fine-tuned on the rope checkpoint with everything else frozen."""
    if a.moice_recipe == "official":
        recipe = ["--moice-recipe", "official"]
        recipe += [] if bases == "official" else ["--moice-bases", bases]
    else:
        recipe = ["--moice-bases", bases, *PELAB_MOICE]
    # given after the recipe, so they win (bin/train: the last value of a flag counts)
    if a.moice_steps is not None:
        recipe += ["--steps", a.moice_steps]
    if a.moice_lr is not None:
        recipe += ["--lr", a.moice_lr, "--min-lr", a.moice_lr]
    if not (a.reuse and (out / "model.h5").exists()):
        run([TRAIN, "--init", rope / "model.h5", *recipe, "--eval-every", 0, "--seed", seed,
             "--threads", a.threads, "--out", out, "--force"])
    return out / "model.h5"


def methods_of(rope, seed, snap, out, rows, a):
    """Every method's sweep of one rope snapshot."""
    model = rope / "model.h5"
    names = method_names(a)
    results = {names[0]: sweep(model, rows, a),
               names[1]: sweep(model, rows, a, "--mspoe", a.mspoe,
                               "--mspoe-skip-layers", a.mspoe_skip_layers)}
    for name, bases in zip(names[2:], a.moice_bases):
        results[name] = sweep(moice_checkpoint(rope, bases, seed, out / f"moice-{bases}-{snap}", a),
                              rows, a)
    return results


def training_curve(rope):
    """The rope run's own evaluations (its --eval-every rows): does the dip close with training?"""
    rows = [json.loads(l) for l in (rope / "metrics.jsonl").read_text().splitlines()]
    return [{"step": r["step"], "loss": r["loss"], "accuracy": r["sweep"]["accuracy"],
             "middle_mean": r["sweep"]["middle_mean"], "scored": r["eval"]["bin0"]["scored"]}
            for r in rows if "sweep" in r]


def mean_sd(values):
    return [statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0]


def summarise(per_seed):
    """{method: result} per seed -> {method: mean and sd over the seeds of every number}."""
    seeds = list(per_seed.values())
    out = {}
    for m in seeds[0]:
        runs = [s[m] for s in seeds]
        acc = [mean_sd([r["accuracy"][b] for r in runs]) for b in range(len(runs[0]["accuracy"]))]
        out[m] = {"accuracy_mean": [x[0] for x in acc], "accuracy_sd": [x[1] for x in acc],
                  "middle_mean": mean_sd([r["middle_mean"] for r in runs]),
                  "end_middle_gap": mean_sd([r["end_middle_gap"] for r in runs]),
                  "probe": {split: {k: mean_sd([r["probe"][split][k]["share"] for r in runs])
                                    for k in ANSWERS}
                            for split in runs[0]["probe"]}}
    return out


def pct(ms):
    return f"{100 * ms[0]:.1f} ± {100 * ms[1]:.1f}"


def tables(results, a):
    """The report's markdown: the seeds' mean ± sd per bin, each seed's intervals, the probe."""
    lines = []
    for snap, r in results["snapshots"].items():
        summary, bins = r["summary"], len(next(iter(r["summary"].values()))["accuracy_mean"])
        title = f"{snap} (step {r['step']})"
        lines += [f"### {title}: accuracy % by position bin, mean ± sd over seeds "
                  f"{', '.join(map(str, a.seeds))}", "",
                  "| method | " + " | ".join(f"bin{b}" for b in range(bins))
                  + " | middle mean | best end − worst middle |",
                  "|---" * (bins + 3) + "|"]
        for m, s in summary.items():
            lines.append(f"| {m} | " + " | ".join(pct([x, d]) for x, d in
                                                 zip(s["accuracy_mean"], s["accuracy_sd"]))
                         + f" | {pct(s['middle_mean'])} | {pct(s['end_middle_gap'])} |")
        lines += ["", f"### {title}: each seed, accuracy % [95 % Wilson interval], "
                  f"{r['scored']} queries a bin", "",
                  "| method | seed | " + " | ".join(f"bin{b}" for b in range(bins)) + " |",
                  "|---" * (bins + 2) + "|"]
        for m in summary:
            for seed, per in r["seeds"].items():
                lines.append(f"| {m} | {seed} | " + " | ".join(
                    f"{100 * x:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"
                    for x, (lo, hi) in zip(per[m]["accuracy"], per[m]["ci95"])) + " |")
        if a.probe:
            lines += ["", f"### {title}: duplicate-key probe, share % of the answers, mean ± sd "
                      f"over seeds (dup a-b: the key's first copy in probe bin a, its second "
                      f"in bin b, of {a.probe})", "",
                      "| method | dup a-b | earlier value | later value | neither |",
                      "|---|---|---|---|---|"]
            for m, s in summary.items():
                for split, p in s["probe"].items():
                    lines.append(f"| {m} | {split} | " + " | ".join(pct(p[k]) for k in ANSWERS)
                                 + " |")
        lines.append("")
    curves = results["training"]
    steps = [c["step"] for c in next(iter(curves.values()))]
    if steps:
        lines += ["### the rope runs' own evaluations: middle mean % (first bin %, last bin %), "
                  f"{next(iter(curves.values()))[0]['scored']} queries a bin", "",
                  "| seed | " + " | ".join(f"step {s}" for s in steps) + " |",
                  "|---" * (len(steps) + 1) + "|"]
        for seed, c in curves.items():
            lines.append(f"| {seed} | " + " | ".join(
                f"{100 * e['middle_mean']:.1f} ({100 * e['accuracy'][0]:.0f}, "
                f"{100 * e['accuracy'][-1]:.0f})" for e in c) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(results, a, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    snaps = results["snapshots"]
    methods = method_names(a)
    rows = 2 if a.probe else 1
    fig = plt.figure(figsize=(4 * max(len(snaps) * 2, len(methods)), 4.2 * rows),
                     layout="constrained")
    grid = fig.add_gridspec(rows, len(methods))
    span = len(methods) // len(snaps)
    curves = [fig.add_subplot(grid[0, i * span:(i + 1) * span]) for i in range(len(snaps))]
    for ax, (snap, r) in zip(curves, snaps.items()):
        for (m, s), marker in zip(r["summary"].items(), "osD^v"):
            x = range(len(s["accuracy_mean"]))
            lo = [min(per[m]["accuracy"][b] for per in r["seeds"].values()) for b in x]
            hi = [max(per[m]["accuracy"][b] for per in r["seeds"].values()) for b in x]
            line, = ax.plot(x, [100 * v for v in s["accuracy_mean"]], marker=marker, label=m)
            ax.fill_between(x, [100 * v for v in lo], [100 * v for v in hi], alpha=0.1,
                            color=line.get_color())
            for per in r["seeds"].values():
                ax.plot(x, [100 * v for v in per[m]["accuracy"]], lw=0.6, alpha=0.5,
                        color=line.get_color())
        ax.set_title(f"{snap} (step {r['step']}): mean of seeds {', '.join(map(str, a.seeds))}, "
                     "band = min..max, thin lines = each seed",
                     fontsize=9)
        ax.set_xlabel("position bin of the queried pair (0 = first pairs)")
        ax.set_ylabel("accuracy % of the queried value")
        ax.set_xticks(list(x))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if a.probe:
        last = snaps[list(snaps)[-1]]
        heatmaps = [fig.add_subplot(grid[1, i]) for i in range(len(methods))]
        for ax, m in zip(heatmaps, methods):
            heat = [[float("nan")] * a.probe for _ in range(a.probe)]
            for split, p in last["summary"][m]["probe"].items():
                i1, i2 = map(int, split.split("-"))
                heat[i1][i2] = 100 * (p["later"][0] - p["earlier"][0])
                ax.text(i2, i1, "\n".join(f"{k[0]} {100 * p[k][0]:.0f}" for k in ANSWERS),
                        ha="center", va="center", fontsize=7)
            image = ax.imshow(heat, cmap="coolwarm", vmin=-100, vmax=100)
            ax.set_title(f"probe: {m}", fontsize=8)
            ax.set_xlabel("bin of the later copy")
            ax.set_ylabel("bin of the earlier copy")
            ax.set_xticks(range(a.probe))
            ax.set_yticks(range(a.probe))
        fig.colorbar(image, ax=heatmaps, label="later % − earlier %", shrink=0.8)
    fig.suptitle(f"kvret, rope trained with {100 * a.middle_share:g} % of its queries in the "
                 "middle; probe cells: e/l/n = earlier/later/neither value %", fontsize=10)
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="checkpoints/lost-in-middle")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--threads", type=int, default=1,
                    help="threads of every run and evaluation (results depend on the count; the "
                         "classroom model gains little from a second thread on a shared machine)")
    ap.add_argument("--middle-share", type=float, default=0.0,
                    help="share of the rope run's training queries in the middle "
                         "(--kv-middle-share; 0: never, the lasting U's biased data)")
    ap.add_argument("--early-step", type=int, default=0,
                    help="also a snapshot at this step, the lookup still forming (0: none)")
    ap.add_argument("--mspoe", default="1.2:1.8", help="Ms-PoE ratios MIN:MAX (official 1.2:1.8)")
    ap.add_argument("--mspoe-skip-layers", type=int, default=1,
                    help="layers Ms-PoE leaves unchanged (official 2; the classroom model has 2 in all)")
    ap.add_argument("--moice-recipe", choices=("official", "pelab"), default="official",
                    help="official: --moice-recipe official; pelab: pelab's MoICE defaults, "
                         "the official run's steps and lr")
    ap.add_argument("--moice-bases", nargs="+", default=["official", "short"],
                    help="one MoICE fine-tuning per set (official: the recipe's own)")
    ap.add_argument("--moice-steps", type=int, help="router steps (default: the recipe's 7)")
    ap.add_argument("--moice-lr", help="router lr, constant (default: the recipe's 1e-4)")
    ap.add_argument("--probe", type=int, default=3,
                    help="bin/eval --kv-duplicate-probe P (0: no probe)")
    ap.add_argument("--eval-seqs", type=int, default=1024, help="bin/eval sequences per split")
    ap.add_argument("--reuse", action="store_true", help="keep finished runs found in --out (they must come from the same settings)")
    ap.add_argument("extra", nargs="*", help="flags for the rope run (after --)")
    a = ap.parse_args()
    if not 0 <= a.middle_share <= 1:
        print(f"lost_in_middle.py: --middle-share {a.middle_share} is not a share: give a value "
              "in [0, 1] (0: the middle never queried)", file=sys.stderr)
        sys.exit(2)

    out = ROOT / a.out
    out.mkdir(parents=True, exist_ok=True)
    rows = out / "sweeps.jsonl"
    if rows.exists():
        rows.unlink()
    snapshots, training = {}, {}
    for seed in a.seeds:
        seed_out = out / f"s{seed}"
        for snap, rope in rope_snapshots(seed, seed_out, a).items():
            entry = snapshots.setdefault(snap, {"seeds": {}})
            with h5py.File(rope / "model.h5", "r") as f:
                entry["step"] = int(f.attrs["step"])
            entry["seeds"][str(seed)] = methods_of(rope, seed, snap, seed_out, rows, a)
        training[str(seed)] = training_curve(seed_out / "rope")
    for entry in snapshots.values():
        entry["summary"] = summarise(entry["seeds"])
        entry["scored"] = next(iter(next(iter(entry["seeds"].values())).values()))["scored"]
    settings = {k: v for k, v in vars(a).items() if k not in ("out", "reuse")}
    results = {"settings": settings, "snapshots": snapshots, "training": training}

    table = tables(results, a)
    print("\n" + table)
    (out / "table.md").write_text(table)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    plot(results, a, out / "curves.png")
    print(f"wrote {out / 'curves.png'}, {out / 'table.md'} and {out / 'results.json'}")


if __name__ == "__main__":
    main()
