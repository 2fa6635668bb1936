"""Grid files: a TOML file that names a sweep, the bin/train flags of every run, the axes whose
product makes the runs, the resources of one run and what the report shows (docs/sweeps.md).

A run's name is its axis values plus a hash of all its flags, so it stays the same when axes
grow (more seeds) and changes when any flag of the run changes (another --steps is another run).
"""
import difflib
import hashlib
import itertools
import json
import os
import re
import subprocess
import tomllib
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "bin", "train")

TOP_KEYS = {"name", "out", "flags", "axes", "resources", "report"}
RESOURCE_KEYS = {"threads", "memory", "time", "sbatch"}
REPORT_KEYS = {"metrics", "splits", "x"}
METRICS = ("token_error", "seq_error", "loss")
# Flags the sweep sets itself: each run's folder, its continuation, its thread count.
OWN_FLAGS = {
    "out": "every run gets its own folder under the sweep's",
    "force": "a rerun continues unfinished runs; delete a run's folder to start it over",
    "resume": "the sweep resumes interrupted runs itself",
    "stop-at": "runs are stopped with Ctrl-C (or Slurm's signals) and resumed by a rerun",
    "write-data": "write dataset files with bin/train itself",
    "help": "",
    "threads": "set [resources] threads or pass --threads-per-run",
}


class GridError(Exception):
    """Bad input: the message names the file, the line where known, and the fix."""


@dataclass
class Run:
    name: str
    flags: dict     # flag -> value text, in the grid's order (flags first, then axes)
    axes: dict      # axis -> value, as written in the grid

    def argv(self):
        return [a for k, v in self.flags.items() for a in (f"--{k}", v)]


@dataclass
class Grid:
    path: str
    name: str
    out: str            # the sweep's folder
    flags: dict
    axes: dict
    resources: dict
    report: dict
    runs: list


def _line_of(text, key):
    """The line (1-based) where `key = ...` is written, for messages; 0 if not found."""
    pattern = re.compile(r'^\s*"?' + re.escape(key) + r'"?\s*=')
    for i, line in enumerate(text.splitlines(), 1):
        if pattern.match(line):
            return i
    return 0


def _where(path, text, key):
    line = _line_of(text, key)
    return f"{path}:{line}" if line else path


def train_flags():
    """The flags bin/train takes, from its --help (the flag table is the one source)."""
    if not os.access(TRAIN, os.X_OK):
        raise GridError(f"{TRAIN} is missing; build it first with `make`")
    text = subprocess.run([TRAIN, "--help"], capture_output=True, text=True, check=True).stdout
    return re.findall(r"^  --([a-z0-9-]+)", text, re.M)


def _check_names(path, text, table, names, known):
    for key in names:
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise GridError(f"{_where(path, text, key)}: '{key}' is not a key of {table}; {hint}"
                        f"allowed: {', '.join(sorted(known))}")


def _value_text(path, text, key, value):
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise GridError(f"{_where(path, text, key)}: '{key}' takes a string or a number, "
                        f"not {value!r}")
    return value if isinstance(value, str) else repr(value)


def _slug(value):
    return re.sub(r"[^A-Za-z0-9.+-]+", "", str(value)) or "x"


def run_name(axes, flags):
    digest = hashlib.sha1(json.dumps(sorted(flags.items())).encode()).hexdigest()[:8]
    parts = [f"{_slug(k)}-{_slug(v)}" for k, v in axes.items()]
    return "_".join(parts + [digest])


def _check_flag_values(path, text, flags, axes):
    """Task and preset names as bin/train knows them (its --help checks both), so that a typo
    fails here and not in every run; other values bin/train checks when a run starts."""
    combos = set()
    tasks = axes.get("task", [flags.get("task")])
    presets = axes.get("preset", [flags.get("preset")])
    for task, preset in itertools.product(tasks, presets):
        combos.add((task, preset))
    for task, preset in sorted(combos, key=str):
        argv = [TRAIN, "--help"]
        if task is not None:
            argv[1:1] = ["--task", str(task)]
        if preset is not None:
            argv[1:1] = ["--preset", str(preset)]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            key = "preset" if "preset" in done.stderr else "task"
            raise GridError(f"{_where(path, text, key)}: {done.stderr.strip()}")
        if task == tasks[0] and preset == presets[0]:
            pes = re.findall(r"^  ([a-z0-9]+) ", done.stdout.split("positional encodings")[1]
                             .split("\n\n")[0], re.M)
    for pe in axes.get("pe", [flags.get("pe")]):
        if pe is not None and pe not in pes:
            raise GridError(f"{_where(path, text, 'pe')}: unknown encoding '{pe}'; choose from "
                            f"{', '.join(pes)}")


def load(path, out=None):
    """Reads and checks a grid file; raises GridError naming the problem and its line."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise GridError(f"cannot read grid file {path}: {e.strerror}")
    text = raw.decode("utf-8", errors="replace")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        at = re.search(r"at line (\d+)", str(e))
        raise GridError(f"{path}{':' + at.group(1) if at else ''}: malformed TOML: {e}; see "
                        "docs/sweeps.md for the grid file's form")
    _check_names(path, text, "the grid file", data, TOP_KEYS)
    name = data.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise GridError(f"{_where(path, text, 'name')}: the grid needs a name = \"...\" of "
                        "letters, digits, '.', '_' and '-' (it names the sweep's folder)")
    for table in ("flags", "axes", "resources", "report"):
        if not isinstance(data.get(table, {}), dict):
            raise GridError(f"{_where(path, text, table)}: '{table}' must be a table [{table}]")

    known = train_flags()
    allowed = [k for k in known if k not in OWN_FLAGS]
    flags_in = data.get("flags", {})
    axes_in = data.get("axes", {})
    for table, keys in (("[flags]", flags_in), ("[axes]", axes_in)):
        for key in keys:
            if key in OWN_FLAGS:
                raise GridError(f"{_where(path, text, key)}: '{key}' in {table}: the sweep sets "
                                f"--{key} itself; {OWN_FLAGS[key]}".rstrip("; "))
        _check_names(path, text, f"{table} (bin/train's flags)", keys, allowed)
    flags = {k: _value_text(path, text, k, v) for k, v in flags_in.items()}
    axes = {}
    for key, values in axes_in.items():
        if not isinstance(values, list):
            raise GridError(f"{_where(path, text, key)}: axis '{key}' must be a list, "
                            f"e.g. {key} = [{values!r}]")
        if not values:
            raise GridError(f"{_where(path, text, key)}: axis '{key}' is an empty list, so the "
                            "grid expands to zero runs; give it at least one value")
        if key in flags:
            raise GridError(f"{_where(path, text, key)}: '{key}' is both in [flags] and in "
                            "[axes]; keep one")
        axes[key] = [_value_text(path, text, key, v) for v in values]
        if len(set(axes[key])) != len(axes[key]):
            raise GridError(f"{_where(path, text, key)}: axis '{key}' repeats a value")

    resources = data.get("resources", {})
    _check_names(path, text, "[resources]", resources, RESOURCE_KEYS)
    threads = resources.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise GridError(f"{_where(path, text, 'threads')}: threads must be a whole number >= 1")
    for key in ("memory", "time"):
        if key in resources and not isinstance(resources[key], str):
            raise GridError(f"{_where(path, text, key)}: {key} is Slurm's text, e.g. "
                            + ('memory = "4G"' if key == "memory" else 'time = "02:00:00"'))
    sbatch = resources.get("sbatch", [])
    if not (isinstance(sbatch, list) and all(isinstance(s, str) for s in sbatch)):
        raise GridError(f"{_where(path, text, 'sbatch')}: sbatch is a list of extra sbatch "
                        'options, e.g. sbatch = ["--partition=cpu"]')

    report = dict(data.get("report", {}))
    _check_names(path, text, "[report]", report, REPORT_KEYS)
    report.setdefault("metrics", ["token_error"])
    for m in report["metrics"]:
        if m not in METRICS:
            raise GridError(f"{_where(path, text, 'metrics')}: unknown metric '{m}'; choose "
                            f"from {', '.join(METRICS)}")
    x = report.setdefault("x", "pe" if "pe" in axes else next(
        (a for a in axes if a != "seed"), "seed"))
    if axes and x not in axes:
        raise GridError(f"{_where(path, text, 'x')}: x = '{x}' is not an axis of the grid; "
                        f"choose from {', '.join(axes)}")

    _check_flag_values(path, text, flags, axes)
    runs = []
    for values in itertools.product(*axes.values()):
        point = dict(zip(axes, values))
        run_flags = {**flags, **point}
        runs.append(Run(run_name(point, run_flags), run_flags, point))
    return Grid(path=path, name=name, out=out or data.get("out") or os.path.join("sweeps", name),
                flags=flags, axes=axes, resources=resources, report=report, runs=runs)
