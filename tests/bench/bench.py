"""Training-step benchmark of the C model against the PyTorch reference (`make bench`).

For each task preset and positional encoding, bin/bench times training steps of the C model
(forward, backward, clipping, AdamW) and, in the same process right after them, a bare
2048 x 2048 x 2048 OpenBLAS sgemm on the same threads: the sgemm ceiling, what this machine's
BLAS reaches at that moment. The same steps (same config, batches, optimiser) run in the plain
float32 PyTorch GPT of tests/reference.py with torch.set_num_threads(1) and (2): Debian's torch
can run slower on 2 threads because its BLAS and OpenMP pools fight, so the best is reported
with its thread count. C and torch each run on 1 and 2 threads (--threads, --torch-threads) and the best is
reported: on a loaded machine 2 threads can lose to 1 on both sides. They are interleaved:
every row runs --rounds rounds of (C on each thread count, torch on each thread count), so that
a burst of other work on a shared machine hits both sides. Every measurement is
a process of its own, so that its peak memory is its own.

Steps are timed one by one and the median over all rounds is reported: on a shared machine
other processes slow some steps, and the median ignores those outliers. tok/s counts real (not
padding) tokens. GFLOP/s divides the FLOPs a step must compute (model/gpt.c's
gpt_flops_per_step: 2 per multiply-add of every matrix product, attention over the causal half
with its diagonal only, the backward twice the forward; elementwise work not counted) by the
step's time; "% ceil" is that over the row's own sgemm ceiling (median of 5 products). Where
other work keeps the cores busy, OpenMP's default spin-waiting loses whole time slices at every
barrier; OMP_WAIT_POLICY=passive (passed on to both sides) then gives steadier figures.
The figures are printed and written as JSON (--json); nothing is asserted: timings belong in a
benchmark, not in a test.

    /usr/bin/python3 tests/bench/bench.py [--runs flipflop:classroom counting:paper] [--pes abs cope]
                                    [--steps N] [--rounds 2] [--torch-threads 1 2] [--json FILE]
"""
import argparse
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
BENCH = ROOT / "bin" / "bench"

# Timed steps per preset and round (after warmup): a few seconds per measurement on 2 cores.
DEFAULT_STEPS = {"classroom": 15, "paper": 2}
WARMUP = 1


def torch_worker(args):
    """Runs in a child process: times the reference's training step on the model config and
    batch that bin/bench used (JSON on stdin) and prints JSON."""
    import torch

    sys.path.insert(0, str(ROOT / "tests" / "reference"))
    from reference import GPT, adamw_step, make_adamw

    torch.set_num_threads(args.threads)
    spec = json.load(sys.stdin)
    cfg, B = spec["model"], spec["batch"]
    torch.manual_seed(1)
    model = GPT(cfg)
    opt = make_adamw(model, lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    batches = [(torch.tensor(b["inputs"], dtype=torch.int64).view(B, b["T"]),
                torch.tensor(b["targets"], dtype=torch.int64).view(B, b["T"])) for b in spec["batches"]]
    seconds = []
    for inputs, targets in batches:
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        _, loss = model(inputs, targets)
        loss.backward()
        adamw_step(model, opt, 1.0)
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"step_seconds": seconds[WARMUP:],
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "version": torch.__version__}))


def run_json(cmd, env=None, stdin=None):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, input=stdin)
    if out.returncode != 0:
        sys.exit(f"bench: {' '.join(map(str, cmd[:3]))} ... failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def rates(step_seconds, batches):
    """Median and best step time; tokens/s (real, not padding) and GFLOP/s as the median over
    steps of each step's own rate, so that a step slowed by other work does not count and
    batches of different lengths (counting) weigh by what they hold. step_seconds holds the
    timed steps of every round, each round the same batches after the warmup."""
    timed = batches[WARMUP:]
    per = [(b, s) for k, s in enumerate(step_seconds) for b in [timed[k % len(timed)]]]
    return {"median_s": statistics.median(step_seconds), "best_s": min(step_seconds),
            "tokens_per_s": statistics.median(b["real_tokens"] / s for b, s in per),
            "gflops": statistics.median(b["flops"] / s for b, s in per) * 1e-9}


CEILING_N = 2048


def measure(task, preset, pe, steps, rounds, threads, torch_threads):
    """One table row: `rounds` rounds of C on each thread count (the ceiling measured with the
    most threads) and torch on each thread count, interleaved."""
    cmd = [str(BENCH), "--pe", pe, "--task", task, "--preset", preset, "--timed-steps", str(steps),
           "--warmup-steps", str(WARMUP)]
    c_steps, c_rss = {n: [] for n in threads}, {n: 0.0 for n in threads}
    ceilings, spec, first = [], None, None
    t_steps = {n: [] for n in torch_threads}
    t_rss, version = {n: 0.0 for n in torch_threads}, None
    for _ in range(rounds):
        for n in threads:
            top = n == max(threads)
            c = run_json(cmd + ["--threads", str(n)] + (["--ceiling", str(CEILING_N)] if top else []))
            first = first or c
            c_steps[n] += c["step_seconds"]
            c_rss[n] = max(c_rss[n], c["peak_rss_mib"])
            if top:
                ceilings += [2.0 * CEILING_N ** 3 / s * 1e-9 for s in c["ceiling_seconds"]]
            spec = spec or json.dumps({k: c[k] for k in ("model", "batch", "batches")})
        for n in torch_threads:
            # The OpenMP pool of torch's BLAS follows OMP_NUM_THREADS, not set_num_threads alone.
            env = dict(os.environ, OMP_NUM_THREADS=str(n))
            t = run_json([sys.executable, __file__, "--torch-worker", "--worker-threads", str(n)], env=env,
                         stdin=spec)
            t_steps[n] += t["step_seconds"]
            t_rss[n] = max(t_rss[n], t["peak_rss_mib"])
            version = t["version"]
    batches = first["batches"]
    row = {"config": f"{task}:{preset}", "encoding": pe, "batch": first["batch"],
           "T": max(b["T"] for b in batches), "parameters": first["parameters"],
           "rounds": rounds, "steps_per_round": steps,
           "ceiling_gflops": statistics.median(ceilings), "ceiling_threads": max(threads),
           "torch_version": version}

    def best(steps, rss):
        runs = {n: dict(rates(steps[n], batches), threads=n, peak_rss_mib=rss[n],
                        step_seconds=steps[n]) for n in steps}
        return max(runs.values(), key=lambda r: r["tokens_per_s"]), list(runs.values())

    row["c"], row["c_all"] = best(c_steps, c_rss)
    row["torch"], row["torch_all"] = best(t_steps, t_rss)
    top = next(r for r in row["c_all"] if r["threads"] == max(threads))
    # % of the ceiling on the threads the ceiling was measured on
    row["pct_ceiling"] = 100.0 * top["gflops"] / row["ceiling_gflops"]
    row["ratio"] = row["c"]["tokens_per_s"] / row["torch"]["tokens_per_s"]
    if len(threads) > 1:
        one = next(r for r in row["c_all"] if r["threads"] == min(threads))
        row["speedup_most_over_1"] = one["median_s"] / top["median_s"]
    return row


ALL_PES = ["none", "abs", "sin", "rel", "t5", "alibi", "rope", "cope"]
TASKS = ["flipflop", "selcopy", "counting", "kvret"]
# What `make bench` measures by default: every encoding at the classroom size of every task, and
# at the published sizes rope (the cope target's reference) and the encodings the paper names a
# figure for (Flip-Flop; the official CoPE trainer's counting config, abs/rel/cope).
DEFAULT_RUNS = [(f"{t}:classroom", ALL_PES) for t in TASKS] + \
    [("flipflop:paper", ["abs", "rope", "cope"]), ("counting:paper", ["abs", "rel", "rope", "cope"])]


def machine():
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return f"{model}, {os.cpu_count()} CPUs"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", nargs="+", metavar="TASK:PRESET",
                    help="task presets to time (default: " + " ".join(r for r, _ in DEFAULT_RUNS) + ")")
    ap.add_argument("--pes", nargs="+", help="positional encodings, by name as --pe takes them "
                    "(default: all at classroom size, a few at paper size)")
    ap.add_argument("--steps", type=int, help="timed steps per round (default: per preset)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds per row")
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2], dest="c_threads",
                    help="C thread counts (the best is reported)")
    ap.add_argument("--torch-threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--json", default="bench.json", help="where the table goes as JSON")
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--worker-threads", type=int, dest="threads", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_worker:
        return torch_worker(args)
    if not BENCH.exists():
        sys.exit(f"bench: {BENCH} is missing; run `make bin/bench` first")
    runs = [(r, args.pes or pes) for r, pes in DEFAULT_RUNS] if not args.runs else \
        [(r, args.pes or dict(DEFAULT_RUNS).get(r, ALL_PES)) for r in args.runs]

    head = (f"{'config':<18} {'pe':<5} {'B x T':>7} | {'tok/s':>7} {'GFLOP/s':>7} {'ceil':>5} "
            f"{'%ceil':>5} {'ms/step':>7} {'thr':>3} {'MiB':>5} {'2/1thr':>6} | {'torch tok/s':>11} {'thr':>3} "
            f"{'MiB':>5} | {'C/torch':>7}")
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    load_before = os.getloadavg()
    meta = {"date": started, "machine": machine(), "load_before": load_before,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
            "c_threads": args.c_threads, "torch_threads": args.torch_threads,
            "ceiling": f"{CEILING_N}^3 sgemm", "warmup": WARMUP, "rounds": args.rounds}
    rows, lines = [], []

    def save(cope_vs_rope=None):  # after every row too, so that a stopped run keeps its rows
        pathlib.Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows,
                                                       "cope_over_rope": cope_vs_rope}, indent=1))

    for run, pes in runs:
        task, preset = run.split(":")
        for pe in pes:
            steps = args.steps or DEFAULT_STEPS.get(preset, 5)
            row = measure(task, preset, pe, steps, args.rounds, args.c_threads, args.torch_threads)
            rows.append(row)
            c, t = row["c"], row["torch"]
            scale = f"{row['speedup_most_over_1']:.2f}x" if "speedup_most_over_1" in row else "-"
            lines.append(
                f"{run:<18} {pe:<5} {row['batch']:>3}x{row['T']:<3} | {c['tokens_per_s']:>7.0f} "
                f"{c['gflops']:>7.1f} {row['ceiling_gflops']:>5.0f} {row['pct_ceiling']:>4.0f}% "
                f"{c['median_s'] * 1e3:>7.1f} {c['threads']:>3} {c['peak_rss_mib']:>5.0f} {scale:>6} | "
                f"{t['tokens_per_s']:>11.0f} {t['threads']:>3} {t['peak_rss_mib']:>5.0f} | "
                f"{row['ratio']:>6.2f}x")
            print(lines[-1], file=sys.stderr, flush=True)  # progress while the rest runs
            save()
    load_after = meta["load_after"] = os.getloadavg()
    meta["torch_version"] = rows[-1]["torch_version"]
    cope_vs_rope = {}
    for run, _ in runs:  # on the same thread count
        step = {r["encoding"]: next(c["median_s"] for c in r["c_all"] if c["threads"] == max(args.c_threads))
                for r in rows if r["config"] == run}
        if "cope" in step and "rope" in step:
            cope_vs_rope[run] = step["cope"] / step["rope"]
    print(f"\n{started} | {meta['machine']} | load {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after (1-min average) | OMP_WAIT_POLICY={meta['omp_wait_policy']}")
    print(f"one step = forward + backward + clip + AdamW on the trainer's batches (fixed sets: the "
          f"first epoch's batches, cut to their longest sequence); medians over {args.rounds} "
          f"interleaved rounds after {WARMUP} warmup step each; C and torch "
          f"{meta['torch_version']} float32 each at its best thread count (thr) of "
          f"{args.c_threads} and {args.torch_threads}; tok/s = real "
          f"(not padding) tokens/s; GFLOP/s = FLOPs the step must compute (causal half of "
          f"attention) / step time; ceil = {CEILING_N}^3 OpenBLAS sgemm GFLOP/s in the same "
          f"process on {max(args.c_threads)} threads, %ceil = the C step's GFLOP/s on those threads "
          f"over it; 2/1thr = C step time on {min(args.c_threads)} thread(s) / on "
          f"{max(args.c_threads)}; MiB = peak RSS")
    print(head)
    print("-" * len(head))
    print("\n".join(lines))
    for run, ratio in cope_vs_rope.items():
        print(f"{run}: a cope step takes {ratio:.2f}x the time of a rope step")
    save(cope_vs_rope)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
