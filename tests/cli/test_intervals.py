"""Every reported error carries its count and a 95 % interval (docs/formats.md, metrics).

- metrics.jsonl rows and bin/eval --json rows give, per split, `scored` and `seqs` next to the
  error rates, and `token_error_ci95` / `seq_error_ci95`: the Wilson score interval, recomputed
  here from the counts with the textbook formula; the old fields keep their meaning.
- The end-of-run table of bin/train and bin/eval's table print the same counts and intervals.
- kvret's duplicate-key probe (--kv-duplicate-probe, an evaluation option): bin/eval adds the
  splits dup<a>-<b> and reports, for each, how many predictions gave the earlier value (the
  target), the later one, or neither, with shares and intervals that add up.
"""
import json
import math
import re

import pytest

from harness import EVAL, TRAIN, run

TINY = ["--layers", "1", "--dim", "16", "--heads", "2", "--batch", "8", "--threads", "1",
        "--eval-every", "0", "--lr", "0.003"]
Z = 1.959963984540054


def wilson(k, n):
    p = k / n
    d = 1 + Z * Z / n
    centre = (p + Z * Z / (2 * n)) / d
    half = Z / d * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return centre - half, centre + half


def check_split(name, e):
    assert isinstance(e["scored"], int) and e["scored"] > 0, name
    assert isinstance(e["seqs"], int) and e["seqs"] > 0, name
    for rate, n in (("token_error", e["scored"]), ("seq_error", e["seqs"])):
        k = round(e[rate] * n)
        assert abs(k - e[rate] * n) < 1e-6, f"{name}: {rate} is not a count over {n}"
        lo, hi = e[rate + "_ci95"]
        assert (lo, hi) == pytest.approx(wilson(k, n), abs=1e-12), (name, rate)
        assert lo <= e[rate] <= hi, (name, rate)


@pytest.fixture(scope="module")
def kvret(tmp_path_factory):
    out = tmp_path_factory.mktemp("intervals") / "kvret"
    done = run(TRAIN, *TINY, "--task", "kvret", "--kv-pairs", "8", "--position-bins", "4",
               "--steps", "60", "--eval-seqs", "48", "--out", out)
    assert done.returncode == 0, done.stderr
    return out, done.stdout


def test_metrics_rows_carry_counts_and_wilson_intervals(tmp_path):
    out = tmp_path / "flip"
    done = run(TRAIN, *TINY, "--task", "flipflop", "--seq-len", "32", "--steps", "20",
               "--eval-seqs", "40", "--out", out)
    assert done.returncode == 0, done.stderr
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert list(row["eval"]) == ["in", "sparse", "dense"]
    for name, e in row["eval"].items():
        assert {"token_error", "seq_error", "loss"} <= set(e)  # the old fields stay
        check_split(name, e)
        assert e["seqs"] == 40
        assert "probe" not in e
        # the table: scored, the rate and its interval in percent, the sequences
        lo, hi = e["token_error_ci95"]
        line = re.search(rf"^{name} .*$", done.stdout, re.M).group(0)
        assert (f" {e['scored']} " in line and f"{100 * e['token_error']:.3f} "
                f"[{100 * lo:.3f}, {100 * hi:.3f}]" in line and " 40 " in line), line


def test_eval_json_and_table_carry_them_too(kvret, tmp_path):
    out, train_stdout = kvret
    rows = tmp_path / "rows.jsonl"
    done = run(EVAL, out / "model.h5", "--json", rows)
    assert done.returncode == 0, done.stderr
    row = json.loads(rows.read_text())
    for name, e in row["eval"].items():
        check_split(name, e)
    assert "token err% [95% interval]" in done.stdout and "seq err% [95% interval]" in done.stdout
    table = re.findall(r"^(?:in|bin\d) .*$", done.stdout, re.M)
    assert table and table == re.findall(r"^(?:in|bin\d) .*$", train_stdout, re.M)


def test_duplicate_key_probe_counts_earlier_later_neither(kvret, tmp_path):
    out, _ = kvret
    rows = tmp_path / "rows.jsonl"
    done = run(EVAL, out / "model.h5", "--kv-duplicate-probe", "2", "--eval-seqs", "64",
               "--json", rows)
    assert done.returncode == 0, done.stderr
    row = json.loads(rows.read_text())
    assert list(row["eval"]) == ["in", "bin0", "bin1", "bin2", "bin3", "dup0-0", "dup0-1",
                                 "dup1-1"]
    assert "probe splits (two valid answers" in done.stdout
    for name in ("dup0-0", "dup0-1", "dup1-1"):
        e = row["eval"][name]
        check_split(name, e)
        assert e["scored"] == e["seqs"] == 64  # one query a sequence
        p = e["probe"]
        counts = {k: p[k]["count"] for k in ("target", "second", "neither")}
        assert sum(counts.values()) == e["scored"], name
        assert counts["target"] == round((1 - e["token_error"]) * e["scored"]), name
        for k, c in counts.items():
            assert p[k]["share"] == pytest.approx(c / e["scored"]), (name, k)
            assert p[k]["ci95"] == pytest.approx(list(wilson(c, e["scored"])), abs=1e-12)
        line = re.search(rf"^{name} .*$", done.stdout.split("probe splits")[1], re.M).group(0)
        lo, hi = p["second"]["ci95"]
        assert f"{100 * p['second']['share']:.3f} [{100 * lo:.3f}, {100 * hi:.3f}]" in line
    # The probe changes only what is evaluated: the other splits' numbers stay.
    plain = tmp_path / "plain.jsonl"
    assert run(EVAL, out / "model.h5", "--eval-seqs", "64", "--json", plain).returncode == 0
    before = json.loads(plain.read_text())["eval"]
    assert {k: v for k, v in row["eval"].items() if k in before} == before


def test_duplicate_key_probe_too_many_bins_is_refused(kvret):
    out, _ = kvret
    done = run(EVAL, out / "model.h5", "--kv-duplicate-probe", "5")
    assert done.returncode == 2
    assert "--kv-duplicate-probe" in done.stderr and done.stdout == ""
