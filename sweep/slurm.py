"""The Slurm backend: the unfinished runs of a grid become one job array, one task per run.

    <sweep>/slurm/array-<stamp>.json   the runs of one submission (task i runs entry i)
    <sweep>/slurm/array-<stamp>.sh     the batch script given to sbatch
    <sweep>/slurm/logs/<job>_<task>.log   each task's own log (bin/train's is in its run folder)
    <sweep>/slurm/jobs.json            every submission: job id and its runs file

Each task runs `bin/sweep task`, which starts the run or resumes it from its checkpoint: a task
that Slurm requeues (preemption, `scontrol requeue`, a node failure; the script asks for
--requeue) continues where its checkpoint left it. At the time limit Slurm sends SIGTERM, which
bin/train answers by saving; a rerun of `bin/sweep run --backend slurm` submits it again.
States come from squeue and, for tasks that have left the queue, `scontrol show job` (sacct
needs slurmdbd, which a cluster may not run).
"""
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

from . import runs as R
from .grid import GridError, ROOT, Run

ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED",
          "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT", "STOPPED"}


def _tool(name):
    path = shutil.which(name)
    if not path:
        raise GridError(f"{name} is not on PATH: --backend slurm needs Slurm's client commands "
                        "(Debian: apt-get install slurm-client) on a machine of the cluster, "
                        "or run with --backend local")
    return path


def _jobs_path(sweep):
    return os.path.join(sweep, "slurm", "jobs.json")


def submissions(sweep):
    path = _jobs_path(sweep)
    return R.read_json(path) if os.path.exists(path) else []


def task_states(sweep):
    """{run name: (slurm state, job id, task)} from the latest submission holding each run."""
    subs = submissions(sweep)
    if not subs:
        return {}
    found = {}  # (job, task) -> state
    ids = ",".join(s["job"] for s in subs)
    q = subprocess.run([_tool("squeue"), "-h", "-r", "-j", ids, "-o", "%F %K %T"],
                       capture_output=True, text=True)
    for line in q.stdout.splitlines():
        job, task, st = line.split()
        found[(job, task)] = st
    for s in subs:
        show = subprocess.run([_tool("scontrol"), "show", "job", s["job"]], capture_output=True,
                              text=True)
        for record in show.stdout.split("\n\n"):
            m = re.search(r"ArrayJobId=(\d+) ArrayTaskId=(\d+)", record)
            st = re.search(r"JobState=(\S+)", record)
            if m and st:
                found.setdefault((m.group(1), m.group(2)), st.group(1))
    states = {}
    for s in subs:
        names = [r["name"] for r in R.read_json(os.path.join(sweep, "slurm", s["runs"]))]
        for i, name in enumerate(names):
            if (s["job"], str(i)) in found:
                states[name] = (found[(s["job"], str(i))], s["job"], i)
    return states


def _script(grid, sweep, runs_file, n, threads, max_running):
    res = grid.resources
    logs = os.path.join(sweep, "slurm", "logs")
    lines = ["#!/bin/bash",
             f"#SBATCH --job-name=pelab-{grid.name}",
             f"#SBATCH --array=0-{n - 1}" + (f"%{max_running}" if max_running else ""),
             "#SBATCH --ntasks=1",
             f"#SBATCH --cpus-per-task={threads}",
             f"#SBATCH --output={logs}/%A_%a.log",
             "#SBATCH --open-mode=append",
             "#SBATCH --requeue"]
    if "memory" in res:
        lines.append(f"#SBATCH --mem={res['memory']}")
    if "time" in res:
        lines.append(f"#SBATCH --time={res['time']}")
    lines += [f"#SBATCH {opt}" for opt in res.get("sbatch", [])]
    cmd = [sys.executable, os.path.join(ROOT, "sweep", "cli.py"), "task", runs_file,
           "--threads", str(threads), "--out", sweep]
    lines += ["# One task, one run: started, or resumed from its checkpoint when requeued.",
              f"cd {shlex.quote(os.getcwd())}",
              f'exec {shlex.join(cmd)} --index "$SLURM_ARRAY_TASK_ID"', ""]
    return "\n".join(lines)


def submit(grid, sweep, threads, max_running):
    """Submits the unfinished runs not already queued as one job array; returns the exit
    status."""
    sbatch = _tool("sbatch")
    states = task_states(sweep)
    todo, queued = [], []
    for run in grid.runs:
        if R.state(sweep, run) == "done" or R.finish(sweep, run):
            continue
        if states.get(run.name, ("",))[0] in ACTIVE:
            queued.append(run)
        else:
            todo.append(run)
    if not todo:
        print(f"sweep {grid.name}: nothing to submit ({len(queued)} runs still queued or "
              f"running, the rest finished); see bin/sweep status {grid.path}")
        return 0
    stamp = time.strftime("%Y%m%d-%H%M%S")
    slurm_dir = os.path.join(sweep, "slurm")
    os.makedirs(os.path.join(slurm_dir, "logs"), exist_ok=True)
    runs_file = os.path.join(slurm_dir, f"array-{stamp}.json")
    R.write_json(runs_file, [{"name": r.name, "flags": r.flags, "axes": r.axes} for r in todo])
    script = os.path.join(slurm_dir, f"array-{stamp}.sh")
    with open(script, "w") as f:
        f.write(_script(grid, sweep, runs_file, len(todo), threads, max_running))
    done = subprocess.run([sbatch, "--parsable", script], capture_output=True, text=True)
    if done.returncode != 0:
        raise GridError(f"sbatch refused {script}: {done.stderr.strip()}")
    job = done.stdout.strip().split(";")[0]
    subs = submissions(sweep) + [{"job": job, "runs": os.path.basename(runs_file),
                                  "submitted": stamp}]
    R.write_json(_jobs_path(sweep), subs)
    print(f"sweep {grid.name}: submitted job array {job}, {len(todo)} tasks"
          + (f", at most {max_running} at a time" if max_running else "")
          + f" x {threads} threads ({len(queued)} already queued); bin/sweep status {grid.path}")
    return 0


def task(runs_file, index, sweep, threads):
    """One array task: start or resume run `index` of the runs file and write its summary.
    Slurm signals every process of the task, bin/train included, so this process only waits."""
    spec = R.read_json(runs_file)[index]
    run = Run(spec["name"], spec["flags"], spec["axes"])
    if R.state(sweep, run) == "done" or R.finish(sweep, run):
        print(f"{run.name}: finished already")
        return 0
    held = R.lock(sweep, run)
    if held is None:
        print(f"{run.name}: another process holds {R.run_dir(sweep, run)}/lock; not starting")
        return 1
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda sig, frame: None)
    proc = R.start(sweep, run, threads, held, own_session=False)
    print(f"{run.name}: bin/train pid {proc.pid}, log {R.run_dir(sweep, run)}/train.log",
          flush=True)
    rc = proc.wait()
    if R.finish(sweep, run):
        print(f"{run.name}: finished")
        return 0
    print(f"{run.name}: stopped (exit {rc}); the end of its log:\n{R.log_tail(sweep, run)}")
    return rc or 1
