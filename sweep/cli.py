#!/usr/bin/python3
"""bin/sweep: a grid of bin/train runs, on this machine or a Slurm cluster, reported over seeds.

See docs/sweeps.md for the grid file.

    bin/sweep run GRID [--jobs N] [--threads-per-run T]     this machine, N runs at a time
    bin/sweep run GRID --backend slurm [--max-running C]     one Slurm job array
    bin/sweep status GRID                                   each run's state
    bin/sweep report GRID [--summaries DIR]                 tables, plots, one HTML page

Exit status: 0 done, 1 a run failed, 2 bad input (nothing started), 130 interrupted.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

from sweep import grid as G  # noqa: E402
from sweep import runs as R  # noqa: E402

# Runs at once on this machine: as many one-thread runs as cores. Measured on a 2-core machine,
# two one-thread runs side by side finish more runs per hour than one two-thread run after
# another (docs/sweeps.md, "Runs at once or threads per run").
DEFAULT_THREADS = 1


def _describe(sweep, run, slurm_states):
    st = R.state(sweep, run)
    text = "done" if st == "done" else "new" if st == "new" else f"at step {st[1]} of {st[2]}"
    if st != "done" and os.path.exists(os.path.join(R.run_dir(sweep, run), "lock")):
        held = R.lock(sweep, run)
        if held is None:
            at = R.progress(sweep, run)
            text += f", running (step {at[0]} of {at[1]})" if at else ", running"
        else:
            held.close()
    if run.name in slurm_states:
        state, job, task = slurm_states[run.name]
        text += f", slurm {job}_{task} {state}"
    return text


def _slurm_states(sweep):
    """The Slurm states of submitted runs; none where Slurm's commands are not at hand (the
    sweep folder copied off the cluster), the files' states then stand alone."""
    from sweep import slurm
    if not slurm.submissions(sweep):
        return {}
    try:
        return slurm.task_states(sweep)
    except G.GridError as e:
        print(f"bin/sweep: no Slurm states: {e}", file=sys.stderr)
        return {}


def cmd_run(args, grid, sweep):
    threads = args.threads_per_run or grid.resources.get("threads") or DEFAULT_THREADS
    if args.backend == "slurm":
        from sweep import slurm
        return slurm.submit(grid, sweep, threads, args.max_running)
    from sweep import local
    jobs = args.jobs or max(1, (os.cpu_count() or 1) // threads)
    return local.run(grid, sweep, jobs, threads)


def cmd_status(args, grid, sweep):
    states = _slurm_states(sweep)
    counts = {"done": 0, "partial": 0, "new": 0}
    width = max(len(r.name) for r in grid.runs)
    for run in grid.runs:
        st = R.state(sweep, run)
        counts[st if isinstance(st, str) else st[0]] += 1
        print(f"{run.name.ljust(width)}  {_describe(sweep, run, states)}")
    print(f"{len(grid.runs)} runs: " + ", ".join(f"{n} {k}" for k, n in counts.items() if n)
          + f" ({sweep})")
    return 0


def cmd_report(args, grid, sweep):
    from sweep import report
    summaries = args.summaries or os.path.join(sweep, "summaries")
    if not os.path.isdir(summaries):
        raise G.GridError(f"no summaries folder {summaries}: run the sweep first, or pass "
                          "--summaries DIR with the <run>.json files of a finished sweep")
    local_runs = os.path.isdir(os.path.join(sweep, "runs"))
    states = {r.name: _describe(sweep, r, {}) if local_runs else "no summary" for r in grid.runs}
    out = args.out or os.path.join(sweep, "report")
    written, finished, missing = report.write(grid, summaries, out, states)
    print(f"sweep {grid.name}: {finished} finished runs in the tables, {len(missing)} "
          f"unfinished listed apart; wrote {', '.join(written)}")
    return 0


def cmd_task(args):
    from sweep import slurm
    return slurm.task(args.runs_file, args.index, args.out, args.threads)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="bin/sweep", description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.split("\n")[2:]))
    sub = ap.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("grid", help="the grid file (TOML)")
    common.add_argument("--out", help="the sweep's folder (default: the grid's `out`, else "
                                      "sweeps/<name>)")
    p = sub.add_parser("run", parents=[common], help="run the unfinished runs")
    p.add_argument("--backend", choices=["local", "slurm"], default="local")
    p.add_argument("--jobs", type=int, help="local: runs at once (default: cores / threads)")
    p.add_argument("--threads-per-run", type=int,
                   help=f"threads of each new run (default: the grid's [resources] threads, "
                        f"else {DEFAULT_THREADS})")
    p.add_argument("--max-running", type=int, default=0,
                   help="slurm: tasks of the array running at once (sbatch --array=0-K%%C); "
                        "0: no limit")
    sub.add_parser("status", parents=[common], help="each run's state")
    p = sub.add_parser("report", parents=[common], help="tables and plots over seeds")
    p.add_argument("--summaries", help="folder of the runs' summary JSON files (default: "
                                       "<sweep>/summaries)")
    p.add_argument("--report-dir", dest="report_out",
                   help="where the report goes (default: <sweep>/report)")
    p = sub.add_parser("task", help="(run by Slurm) one task of a job array")
    p.add_argument("runs_file")
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    for name, least in (("jobs", 1), ("threads_per_run", 1), ("max_running", 0)):
        if getattr(args, name, None) is not None and getattr(args, name) < least:
            ap.error(f"--{name.replace('_', '-')} must be at least {least}")
    try:
        if args.command == "task":
            return cmd_task(args)
        grid = G.load(args.grid, args.out)
        sweep = os.path.abspath(grid.out)
        if args.command == "report":
            args.out = args.report_out
        return {"run": cmd_run, "status": cmd_status, "report": cmd_report}[args.command](
            args, grid, sweep)
    except G.GridError as e:
        print(f"bin/sweep: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
