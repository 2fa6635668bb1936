"""Training-step benchmark of the C model against the PyTorch reference (`make bench`).

For each preset and positional encoding, bin/bench times training steps of the C model
(forward, backward, clipping, AdamW) and reports tokens/s, achieved GFLOP/s against the analytic
FLOP count of a step and peak memory. Then the same step (same config, batch, optimiser) runs in
the float32 PyTorch reference with torch.set_num_threads(1) and (2): Debian's torch can run
slower on 2 threads because its BLAS and OpenMP pools fight, so the best is reported with its
thread count. Every measurement runs in a process of its own, so that peak memory is its own.
Steps are timed one by one and the median is reported (the best in brackets): on a shared
machine other processes slow some steps, and the median ignores those outliers. Where other
work keeps the cores busy, OpenMP's default spin-waiting loses whole time slices at every
barrier; OMP_WAIT_POLICY=passive (passed on to both sides) then gives steadier figures.
The figures are printed, nothing is asserted: timings belong in a benchmark, not in a test.

    /usr/bin/python3 tests/bench/bench.py [--runs flipflop:classroom counting:paper] [--pes abs cope]
                                    [--steps N] [--torch-threads 1 2]
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

# Timed steps per preset (after warmup): a few seconds per measurement on 2 cores.
DEFAULT_STEPS = {"classroom": 30, "paper": 4}
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


def add_rates(run, batches):
    """Median and best step time; tokens/s (real, not padding) and GFLOP/s as the median over
    steps of each step's own rate, so that a step slowed by other work does not count and
    batches of different lengths (counting) weigh by what they hold."""
    timed = batches[-len(run["step_seconds"]):]
    run["median_s"] = statistics.median(run["step_seconds"])
    run["best_s"] = min(run["step_seconds"])
    run["tokens_per_s"] = statistics.median(b["real_tokens"] / s for b, s in zip(timed, run["step_seconds"]))
    run["gflops"] = statistics.median(b["flops"] / s for b, s in zip(timed, run["step_seconds"])) * 1e-9
    return run


def measure(task, preset, pe, steps, torch_threads):
    c = run_json([str(BENCH), "--pe", pe, "--task", task, "--preset", preset, "--steps", str(steps),
                  "--warmup", str(WARMUP)])
    batches = c["batches"]
    add_rates(c, batches)
    c["shape"] = f"{c['batch']}x{max(b['T'] for b in batches)}"
    spec = json.dumps({k: c[k] for k in ("model", "batch", "batches")})
    best = None
    for n in torch_threads:
        # The OpenMP pool of torch's BLAS follows OMP_NUM_THREADS, not set_num_threads alone.
        env = dict(os.environ, OMP_NUM_THREADS=str(n))
        t = run_json([sys.executable, __file__, "--torch-worker", "--threads", str(n)], env=env, stdin=spec)
        t["threads"] = n
        add_rates(t, batches)
        if best is None or t["tokens_per_s"] > best["tokens_per_s"]:
            best = t
    return c, best


ALL_PES = ["none", "abs", "sin", "rel", "t5", "alibi", "rope", "cope"]
# What `make bench` measures by default: every encoding at classroom size, and at the published
# sizes the encodings with a published figure to compare with (Flip-Flop; the official CoPE trainer's
# counting config, abs/rel/cope).
DEFAULT_RUNS = [("flipflop:classroom", ALL_PES), ("flipflop:paper", ["abs", "rope", "cope"]),
                ("counting:paper", ["abs", "rel", "cope"])]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", nargs="+", metavar="TASK:PRESET",
                    help="task presets to time (default: " + " ".join(r for r, _ in DEFAULT_RUNS) + ")")
    ap.add_argument("--pes", nargs="+", help="positional encodings, by name as --pe takes them "
                    "(default: all at classroom size, those with a published figure at paper size)")
    ap.add_argument("--steps", type=int, help="timed steps (default: per preset)")
    ap.add_argument("--torch-threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_worker:
        return torch_worker(args)
    if not BENCH.exists():
        sys.exit(f"bench: {BENCH} is missing; run `make bin/bench` first")
    runs = [(r, args.pes or pes) for r, pes in DEFAULT_RUNS] if not args.runs else \
        [(r, args.pes or dict(DEFAULT_RUNS).get(r, ALL_PES)) for r in args.runs]

    def ms(run):
        return f"{run['median_s'] * 1e3:.0f} ({run['best_s'] * 1e3:.0f})"

    head = (f"{'task:preset':<18} {'pe':<6} {'B x T':>9} {'params':>7} | {'C tok/s':>8} {'GFLOP/s':>7} "
            f"{'ms/step (best)':>15} {'MiB':>5} | {'torch tok/s':>11} {'GFLOP/s':>7} "
            f"{'ms/step (best)':>15} {'thr':>3} {'MiB':>5} | {'C/torch':>7}")
    rows = []
    c_step_s = {}  # (run, pe) -> median C step time, for CoPE's cost relative to RoPE
    for run, pes in runs:
        task, preset = run.split(":")
        for pe in pes:
            steps = args.steps or DEFAULT_STEPS.get(preset, 5)
            c, t = measure(task, preset, pe, steps, args.torch_threads)
            c_step_s[run, pe] = c["median_s"]
            rows.append(
                f"{run:<18} {pe:<6} {c['shape']:>9} "
                f"{c['parameters'] / 1e6:>6.2f}M | {c['tokens_per_s']:>8.0f} {c['gflops']:>7.1f} "
                f"{ms(c):>15} {c['peak_rss_mib']:>5.0f} | {t['tokens_per_s']:>11.0f} "
                f"{t['gflops']:>7.1f} {ms(t):>15} {t['threads']:>3} {t['peak_rss_mib']:>5.0f} | "
                f"{c['tokens_per_s'] / t['tokens_per_s']:>6.2f}x")
            print(rows[-1], file=sys.stderr, flush=True)  # progress while the rest runs
    print(f"\ntraining step = forward + backward + clip + AdamW on one batch (fixed training sets: "
          f"a new batch of the first epoch every step, cut to its longest sequence, T = the longest); "
          f"median over timed steps after {WARMUP} warmup; C on {c['threads']} OpenMP threads; torch "
          f"{t['version']} float32 at its best thread count (thr) of {args.torch_threads}; "
          f"tok/s = real (not padding) tokens per second and GFLOP/s = analytic FLOPs of the step, "
          f"each per step, median over steps; MiB = peak resident memory; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(default)')}")
    print(head)
    print("-" * len(head))
    print("\n".join(rows))
    for run, _ in runs:
        if (run, "cope") in c_step_s and (run, "rope") in c_step_s:
            print(f"{run}: a cope step takes {c_step_s[run, 'cope'] / c_step_s[run, 'rope']:.2f}x "
                  f"the time of a rope step in C")


if __name__ == "__main__":
    main()
