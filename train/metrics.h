// The metrics log of a run: <out>/metrics.jsonl, one JSON object per evaluation,
//
//   {"step": 250, "tokens": 1024000, "loss": 0.41, "lr": 0.001, "tok_per_s": 31200,
//    "elapsed_s": 32.8, "eval": {"in": {"token_error": 0.01, "seq_error": 0.2, "loss": 0.05,
//    "scored": 8000, "seqs": 512, "token_error_ci95": [0.008, 0.012],
//    "seq_error_ci95": [0.17, 0.24]}, ...}}
//
// (the intervals: 95 % Wilson score intervals, evaluate.h); a probe split (kvret's duplicate
// key) adds "probe": {"target"|"second"|"neither": {"count", "share", "ci95"}};
// and, for a task with a position sweep (kvret), also
//
//    "sweep": {"accuracy": [0.99, 0.91, ...], "middle_mean": 0.93, "end_middle_gap": 0.08}
//
// (accuracy per bin, first to last; evaluate.h defines the summary).
// where loss is the mean training loss of the steps since the previous row, tok_per_s the
// training throughput over those steps (real, not padding, tokens per second of training time,
// evaluations excluded), and elapsed_s the run's wall time (across resumes).
// Each row is flushed as it is written, so the log can be plotted while the run goes on.
#ifndef PELAB_METRICS_H
#define PELAB_METRICS_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdio.h>

#include "../tasks/task.h"
#include "../data/evaluate.h"

typedef struct {
    FILE *file;
    char path[4096];
} MetricsLog;

typedef struct {
    long step, tokens;
    double loss, lr, tok_per_s, elapsed_s;
} MetricsRow;

// Starts <dir>/metrics.jsonl empty. When `previous` names a log (a resumed run's), the new log
// starts with its rows of step <= keep_through_step instead, so it matches the resumed run as if
// it had never stopped; a missing `previous` just starts empty. Returns 0, or -1 with err.
int metrics_open(MetricsLog *log, const char *dir, const char *previous, long keep_through_step,
                 char *err, size_t errlen);
// Appends one row with every split's result; 0, or -1 with err.
int metrics_append(MetricsLog *log, const MetricsRow *row, const EvalSets *sets,
                   const SplitResult *results, char *err, size_t errlen);
void metrics_close(MetricsLog *log);
// Adds a row's "eval" object and, for a task with a position sweep, its "sweep" object to obj
// (bin/eval's --json rows have the same form).
void metrics_add_results(cJSON *obj, const EvalSets *sets, const SplitResult *results);

#endif
