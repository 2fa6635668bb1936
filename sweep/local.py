"""The local backend: a pool of bin/train processes, N at a time, with a progress line.

Ctrl-C (or SIGTERM) stops launching and passes one SIGINT to every running bin/train, which
saves its checkpoint and exits 130; a rerun resumes those runs. A second Ctrl-C is passed on
too, and bin/train then stops without saving (as it does for a second Ctrl-C of its own).
"""
import signal
import sys
import time

from . import runs as R


def _fraction(sweep, run):
    step = R.progress(sweep, run)
    return step[0] / step[1] if step else 0.0


def _duration(seconds):
    s = int(seconds + 0.5)
    return f"{s}s" if s < 60 else f"{s // 60}m{s % 60:02d}s" if s < 3600 else \
        f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """One line: done/running/failed of total and an ETA from the work done in this session
    (fractions of runs, from their logs' progress lines)."""

    def __init__(self, sweep, total, already_done):
        self.sweep, self.total, self.start = sweep, total, time.time()
        self.base_done = already_done
        self.tty = sys.stderr.isatty()
        self.last = ""
        self.counts, self.printed = None, 0.0

    def show(self, done, running, failed, work_start, final=False):
        work_now = done - self.base_done + sum(_fraction(self.sweep, r) for r in running)
        work_left = self.total - done - failed
        elapsed = time.time() - self.start
        rate = (work_now - work_start) / elapsed if elapsed > 0 else 0
        eta = _duration(work_left / rate) if rate > 0 and work_left else "-" if work_left else "0s"
        counts = (done, len(running), failed)
        line = (f"sweep: {done} done, {len(running)} running, {failed} failed of {self.total} "
                f"| {_duration(elapsed)} | eta {eta}")
        if self.tty:  # one line, rewritten in place
            sys.stderr.write("\r" + line.ljust(len(self.last)) + ("\n" if final else ""))
        elif counts != self.counts or (not final and time.time() - self.printed > 60):
            sys.stderr.write(line + "\n")  # a log file: a line when something changes
            self.counts, self.printed = counts, time.time()
        sys.stderr.flush()
        self.last = line


def run(grid, sweep, jobs, threads):
    """Runs every unfinished run of the grid; returns the exit status (0 all done, 1 a run
    failed, 130 interrupted)."""
    todo, done = [], 0
    for run in grid.runs:
        if R.state(sweep, run) == "done" or R.finish(sweep, run):
            done += 1
        else:
            todo.append(run)
    total = len(grid.runs)
    if not todo:
        print(f"sweep {grid.name}: all {total} runs are finished; nothing to do "
              f"(bin/sweep report {grid.path})")
        return 0
    print(f"sweep {grid.name}: {total} runs, {done} finished, {len(todo)} to run, "
          f"{jobs} at a time x {threads} threads, in {sweep}", flush=True)

    stop = {"signals": 0}

    def on_signal(sig, frame):
        stop["signals"] += 1
        for proc, _, _ in running.values():
            proc.send_signal(signal.SIGINT)

    running, failed, busy = {}, [], []
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    progress = Progress(sweep, total, done)
    work_start = sum(_fraction(sweep, r) for r in todo)
    try:
        while todo or running:
            while todo and len(running) < jobs and not stop["signals"]:
                run = todo.pop(0)
                held = R.lock(sweep, run)
                if held is None:
                    busy.append(run)
                    continue
                running[run.name] = (R.start(sweep, run, threads, held, own_session=True), run,
                                     held)
            if not running:
                break
            for name, (proc, run, held) in list(running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                held.close()
                del running[name]
                if R.finish(sweep, run):
                    done += 1
                elif not stop["signals"]:
                    failed.append(run)
                    sys.stderr.write(f"\nsweep: run {run.name} failed (exit {rc}); the end of "
                                     f"{R.run_dir(sweep, run)}/train.log:\n"
                                     f"{R.log_tail(sweep, run)}\n")
            progress.show(done, [r for _, r, _ in running.values()], len(failed), work_start)
            time.sleep(0.2)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    progress.show(done, [], len(failed), work_start, final=True)
    for run in busy:
        print(f"sweep: skipped {run.name}: another process holds {R.run_dir(sweep, run)}/lock "
              "(still running elsewhere)")
    if stop["signals"]:
        print(f"sweep: interrupted; {total - done} runs unfinished, their checkpoints saved; "
              f"run the same command again to continue")
        return 130
    if failed:
        print(f"sweep: {len(failed)} runs failed: {', '.join(r.name for r in failed)}; rerun "
              "to retry them")
        return 1
    return 0 if not busy else 1
