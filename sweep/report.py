"""The report of a sweep, from the per-run summaries alone: runs that differ only in their seed
are one group, and each group's final metrics per split are aggregated over its finished runs
(mean, std, min, max, n). Unfinished runs are listed, never averaged in. Each run's own final
errors are listed too, each with the count it rests on and its 95 % interval (docs/formats.md,
metrics; summaries of runs older than those fields show the value alone).

    report.md / report.json   the tables and the numbers
    error-<metric>.png        the metric by the x axis (default pe), one panel per split and
                              value of the other axes, bars = mean, whiskers = min..max, dots = runs
    curves-<metric>.png       the metric over training steps, mean line and min..max band
    report.html               all of it on one page, pictures embedded
"""
import base64
import html
import json
import os
import statistics

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from . import runs as R  # noqa: E402


def aggregate(values):
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def _group_key(run):
    return tuple((k, v) for k, v in run.axes.items() if k != "seed")


def collect(grid, summaries_dir):
    """({group key: [summary, ...]} of finished runs in grid order, [unfinished run, ...])."""
    groups, missing = {}, []
    for run in grid.runs:
        path = os.path.join(summaries_dir, run.name + ".json")
        if os.path.exists(path):
            groups.setdefault(_group_key(run), []).append(R.read_json(path))
        else:
            missing.append(run)
    return groups, missing


def _splits(grid, groups):
    found = []
    for summaries in groups.values():
        for s in summaries:
            found += [k for k in s["final"]["eval"] if k not in found]
    wanted = grid.report.get("splits")
    return [s for s in wanted if s in found] if wanted else found


# The count an error rate rests on, in a split's metrics: token_error is a share of the scored
# tokens, seq_error of the sequences; both come with "<metric>_ci95".
COUNTS = {"token_error": "scored", "seq_error": "seqs"}


def _run_value(split_metrics, metric):
    """One run's final value of metric, with n and ci95 where its metrics have them."""
    cell = {"value": split_metrics[metric]}
    if COUNTS.get(metric) in split_metrics and metric + "_ci95" in split_metrics:
        cell["n"] = split_metrics[COUNTS[metric]]
        cell["ci95"] = split_metrics[metric + "_ci95"]
    return cell


def tables(grid, groups, splits):
    """The JSON rows: one per group, {axes, runs, seeds, metrics: {metric: {split: aggregate}},
    per_run: {metric: {split: [{value, n, ci95} per run, in the order of runs]}}}."""
    rows = []
    for key, summaries in groups.items():
        metrics, per_run = {}, {}
        for m in grid.report["metrics"]:
            have = [sp for sp in splits if all(sp in s["final"]["eval"] for s in summaries)]
            metrics[m] = {sp: aggregate([s["final"]["eval"][sp][m] for s in summaries])
                          for sp in have}
            per_run[m] = {sp: [_run_value(s["final"]["eval"][sp], m) for s in summaries]
                          for sp in have}
        rows.append({"axes": dict(key), "runs": [s["name"] for s in summaries],
                     "seeds": [s["axes"].get("seed", s["flags"].get("seed")) for s in summaries],
                     "metrics": metrics, "per_run": per_run})
    return rows


def _cell(a, percent):
    f = (lambda v: f"{100 * v:.2f}") if percent else (lambda v: f"{v:.4f}")
    if a["n"] == 1:
        return f"{f(a['mean'])} (n=1)"
    return f"{f(a['mean'])} ± {f(a['std'])} [{f(a['min'])}, {f(a['max'])}] (n={a['n']})"


def _run_cell(c, percent):
    f = (lambda v: f"{100 * v:.2f}") if percent else (lambda v: f"{v:.4f}")
    if "ci95" not in c:
        return f(c["value"])
    return f"{f(c['value'])} [{f(c['ci95'][0])}, {f(c['ci95'][1])}] (n={c['n']})"


def run_rows(grid, rows, splits, metric):
    """(header, cell rows) of the per-run table of an error metric: one row per finished run."""
    axes = [a for a in grid.axes if a != "seed"]
    header = axes + ["seed"] + splits
    out = []
    for row in rows:
        for k, seed in enumerate(row["seeds"]):
            cells = [row["axes"][a] for a in axes] + [str(seed)]
            cells += [_run_cell(row["per_run"][metric][sp][k], True)
                      if sp in row["per_run"][metric] else "-" for sp in splits]
            out.append(cells)
    return header, out


def markdown(grid, rows, splits, missing, unfinished_states):
    axes = [a for a in grid.axes if a != "seed"]
    out = [f"# Sweep {grid.name}", "",
           f"Grid `{os.path.basename(grid.path)}`; flags of every run: "
           + (" ".join(f"--{k} {v}" for k, v in grid.flags.items()) or "none") + ".",
           "Cells: mean ± std [min, max] (n = finished runs, over seeds); errors in %.", ""]
    for m in grid.report["metrics"]:
        percent = m != "loss"
        out += [f"## {m}" + (" (%)" if percent else ""), ""]
        header = axes + splits
        out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in rows:
            cells = [row["axes"][a] for a in axes]
            cells += [_cell(row["metrics"][m][sp], percent) if sp in row["metrics"][m] else "-"
                      for sp in splits]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
        if not percent:
            continue
        header, cells = run_rows(grid, rows, splits, m)
        out += [f"Per run: final {m} % [95 % Wilson interval] (n = the count it rests on)", "",
                "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(c) + " |" for c in cells]
        out.append("")
    out += ["## Unfinished runs (not in the tables)", ""]
    if missing:
        out += [f"- {r.name}: {unfinished_states.get(r.name, 'no summary')}" for r in missing]
    else:
        out.append("none")
    return "\n".join(out) + "\n"


def _panels(grid, groups):
    """The panels of the plots: one per value of the axes other than x and seed."""
    x = grid.report["x"]
    panels = {}
    for key, summaries in groups.items():
        rest = tuple((k, v) for k, v in key if k != x)
        xval = dict(key).get(x, "")
        panels.setdefault(rest, {})[xval] = summaries
    return panels


def _title(rest, split):
    return ", ".join([f"{k} {v}" for k, v in rest] + [split])


def _bars(ax, by_x, split, metric, scale):
    """Final values by x: bar = mean, whiskers = min..max, dots = the runs."""
    for k, (xval, summaries) in enumerate(by_x.items()):
        vals = [scale * s["final"]["eval"][split][metric] for s in summaries
                if split in s["final"]["eval"]]
        if not vals:
            continue
        mean = statistics.fmean(vals)
        ax.bar(k, mean, color=f"C{k % 10}", alpha=0.6)
        ax.errorbar(k, mean, yerr=[[mean - min(vals)], [max(vals) - mean]], color="k", capsize=3)
        ax.plot([k] * len(vals), vals, "k.", ms=4)
    ax.set_xticks(range(len(by_x)), list(by_x), rotation=45 if len(by_x) > 4 else 0)


def _curves(ax, by_x, split, metric, scale):
    """Values over steps, one line per x: mean over seeds, band min..max."""
    for k, (xval, summaries) in enumerate(by_x.items()):
        # the steps every run of the group evaluated at
        steps = sorted(set.intersection(*[{r["step"] for r in s["metrics"]} for s in summaries]))
        per_step = [[scale * next(r for r in s["metrics"] if r["step"] == st)["eval"][split]
                     [metric] for s in summaries] for st in steps]
        ax.plot(steps, [statistics.fmean(v) for v in per_step], color=f"C{k % 10}", label=xval)
        if len(summaries) > 1:
            ax.fill_between(steps, [min(v) for v in per_step], [max(v) for v in per_step],
                            color=f"C{k % 10}", alpha=0.2)
    ax.set_xlabel("step", fontsize=8)
    ax.legend(fontsize=7)


PLOTS = {"error": (_bars, "final {metric} by {x} (bar mean, whiskers min..max, dots runs)"),
         "curves": (_curves, "{metric} while training (mean over seeds, band min..max)")}


def plot(grid, groups, splits, metric, kind, path):
    """One figure: a panel per split (columns) and per value of the other axes (rows)."""
    draw, title = PLOTS[kind]
    panels = _panels(grid, groups)
    rows, cols = len(panels), len(splits)
    fig, axs = plt.subplots(rows, cols, figsize=(3.3 * cols + 0.5, 2.8 * rows + 0.4),
                            squeeze=False)
    scale = 1.0 if metric == "loss" else 100.0
    for i, (rest, by_x) in enumerate(panels.items()):
        for j, split in enumerate(splits):
            draw(axs[i][j], by_x, split, metric, scale)
            axs[i][j].set_title(_title(rest, split), fontsize=9)
            axs[i][j].set_ylabel(metric + ("" if metric == "loss" else " %"), fontsize=8)
    fig.suptitle(f"{grid.name}: " + title.format(metric=metric, x=grid.report["x"]), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _html(grid, md_text, rows, splits, images):
    """One page: the tables as HTML and the pictures as base64 data."""
    axes = [a for a in grid.axes if a != "seed"]
    parts = [f"<!doctype html><meta charset='utf-8'><title>Sweep {html.escape(grid.name)}"
             "</title><style>body{font-family:sans-serif;max-width:1200px;margin:auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 6px}"
             "</style>", f"<h1>Sweep {html.escape(grid.name)}</h1>",
             "<p>" + html.escape(md_text.split("\n")[2]) + "<br>" +
             html.escape(md_text.split("\n")[3]) + "</p>"]
    for m in grid.report["metrics"]:
        percent = m != "loss"
        parts.append(f"<h2>{html.escape(m)}</h2><table><tr>" +
                     "".join(f"<th>{html.escape(h)}</th>" for h in axes + splits) + "</tr>")
        for row in rows:
            cells = [row["axes"][a] for a in axes] + [
                _cell(row["metrics"][m][sp], percent) if sp in row["metrics"][m] else "-"
                for sp in splits]
            parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
        if not percent:
            continue
        header, cells = run_rows(grid, rows, splits, m)
        parts.append(f"<p>Per run: final {html.escape(m)} % [95 % Wilson interval] (n = the "
                     "count it rests on)</p><table><tr>" +
                     "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                  for r in cells]
        parts.append("</table>")
    for path in images:
        with open(path, "rb") as f:
            data = base64.b64encode(f.read()).decode()
        parts.append(f"<h3>{html.escape(os.path.basename(path))}</h3>"
                     f"<img src='data:image/png;base64,{data}'>")
    unfinished = md_text.split("## Unfinished runs (not in the tables)\n\n")[1]
    parts.append("<h2>Unfinished runs (not in the tables)</h2><pre>" + html.escape(unfinished)
                 + "</pre>")
    return "\n".join(parts) + "\n"


def write(grid, summaries_dir, out_dir, unfinished_states):
    """Writes the report files; returns (paths written, number of finished, unfinished)."""
    groups, missing = collect(grid, summaries_dir)
    os.makedirs(out_dir, exist_ok=True)
    splits = _splits(grid, groups)
    rows = tables(grid, groups, splits)
    md_text = markdown(grid, rows, splits, missing, unfinished_states)
    written = []

    def save_text(name, text):
        path = os.path.join(out_dir, name)
        R.write_text(path, text)
        written.append(path)

    save_text("report.md", md_text)
    save_text("report.json", json.dumps(
        {"name": grid.name, "flags": grid.flags, "axes": grid.axes, "splits": splits,
         "groups": rows, "unfinished": [r.name for r in missing]}, indent=1) + "\n")
    images = []
    if groups:
        for m in grid.report["metrics"]:
            for kind in PLOTS:
                path = os.path.join(out_dir, f"{kind}-{m}.png")
                plot(grid, groups, splits, m, kind, path)
                images.append(path)
    written += images
    save_text("report.html", _html(grid, md_text, rows, splits, images))
    return written, sum(len(s) for s in groups.values()), missing
