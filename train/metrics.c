#include "metrics.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/savefile.h"

// The step of one log line, or -1 if the line is not a row (for example the torn last line of a
// run that was killed mid-write).
static long row_step(const char *line) {
    cJSON *row = cJSON_Parse(line);
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(row, "step");
    long value = cJSON_IsNumber(step) ? (long)step->valuedouble : -1;
    cJSON_Delete(row);
    return value;
}

// Saves the rows of `previous` with step <= keep_through_step as log->path (common/savefile.h:
// the old log stays whole until the new one is complete and on disk).
static int rewrite_log(const MetricsLog *log, FILE *previous, long keep_through_step, char *err,
                       size_t errlen) {
    char *kept = NULL, *line = NULL;
    size_t kept_len = 0, cap = 0;
    FILE *out = open_memstream(&kept, &kept_len);
    if (!out) {
        snprintf(err, errlen, "out of memory for the rows of %s", log->path);
        return -1;
    }
    while (getline(&line, &cap, previous) >= 0) {
        long step = row_step(line);
        if (step >= 0 && step <= keep_through_step)
            fprintf(out, "%s%s", line, line[strlen(line) - 1] == '\n' ? "" : "\n");
    }
    free(line);
    int failed = ferror(previous) || ferror(out);
    failed |= fclose(out) != 0;
    int rc = failed ? -1 : savefile_write(log->path, "metrics log", kept, kept_len, err, errlen);
    if (failed) snprintf(err, errlen, "cannot read the rows of %s", log->path);
    free(kept);
    return rc;
}

int metrics_open(MetricsLog *log, const char *dir, const char *previous, long keep_through_step,
                 char *err, size_t errlen) {
    log->file = NULL;
    if (snprintf(log->path, sizeof log->path, "%s/metrics.jsonl", dir) >= (int)sizeof log->path) {
        snprintf(err, errlen, "--out %s is too long", dir);
        return -1;
    }
    FILE *prev = previous ? fopen(previous, "r") : NULL;
    if (prev) {
        int rc = rewrite_log(log, prev, keep_through_step, err, errlen);
        fclose(prev);
        if (rc) return -1;
    }
    log->file = fopen(log->path, prev ? "a" : "w");
    if (!log->file || savefile_sync_folder(log->path) != 0) {
        snprintf(err, errlen, "cannot open %s: %s", log->path, strerror(errno));
        return -1;
    }
    return 0;
}

int metrics_append(MetricsLog *log, const MetricsRow *row, const EvalSets *sets,
                   const SplitResult *results, char *err, size_t errlen) {
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddNumberToObject(obj, "step", (double)row->step);
    cJSON_AddNumberToObject(obj, "tokens", (double)row->tokens);
    cJSON_AddNumberToObject(obj, "loss", row->loss);
    cJSON_AddNumberToObject(obj, "lr", row->lr);
    cJSON_AddNumberToObject(obj, "tok_per_s", row->tok_per_s);
    cJSON_AddNumberToObject(obj, "elapsed_s", row->elapsed_s);
    metrics_add_results(obj, sets, results);
    char *text = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    // On disk before the run goes on: a crash loses no row already reported, and a torn last
    // line is all it can leave (row_step skips it).
    int failed = !text || fprintf(log->file, "%s\n", text) < 0 || fflush(log->file) != 0 ||
                 fsync(fileno(log->file)) != 0;
    free(text);
    if (failed) {
        snprintf(err, errlen, "cannot write to %s: %s", log->path, savefile_why(errno));
        return -1;
    }
    return 0;
}

// key: [lo, hi], the 95 % interval of the rate k / n (evaluate.h).
static void add_interval(cJSON *obj, const char *key, long k, long n) {
    Interval ci = wilson_interval(k, n);
    cJSON *pair = cJSON_AddArrayToObject(obj, key);
    cJSON_AddItemToArray(pair, cJSON_CreateNumber(ci.lo));
    cJSON_AddItemToArray(pair, cJSON_CreateNumber(ci.hi));
}

// key: {"count": k, "share": k / n, "ci95": [lo, hi]}.
static void add_share(cJSON *obj, const char *key, long k, long n) {
    cJSON *share = cJSON_AddObjectToObject(obj, key);
    cJSON_AddNumberToObject(share, "count", (double)k);
    cJSON_AddNumberToObject(share, "share", n ? (double)k / (double)n : 0.0);
    add_interval(share, "ci95", k, n);
}

void metrics_add_results(cJSON *obj, const EvalSets *sets, const SplitResult *results) {
    cJSON *eval = cJSON_AddObjectToObject(obj, "eval");
    for (int s = 0; s < sets->layout.n_splits; s++) {
        const SplitResult *r = &results[s];
        cJSON *split = cJSON_AddObjectToObject(eval, sets->layout.split[s].name);
        cJSON_AddNumberToObject(split, "token_error", token_error_rate(r));
        cJSON_AddNumberToObject(split, "seq_error", seq_error_rate(r));
        cJSON_AddNumberToObject(split, "loss", r->loss);
        cJSON_AddNumberToObject(split, "scored", (double)r->scored);
        cJSON_AddNumberToObject(split, "seqs", (double)r->seqs);
        add_interval(split, "token_error_ci95", r->token_errors, r->scored);
        add_interval(split, "seq_error_ci95", r->seq_errors, r->seqs);
        if (!sets->layout.split[s].probe) continue;
        cJSON *probe = cJSON_AddObjectToObject(split, "probe");
        add_share(probe, "target", r->scored - r->token_errors, r->scored);
        add_share(probe, "second", r->second_answers, r->scored);
        add_share(probe, "neither", r->token_errors - r->second_answers, r->scored);
    }
    SweepResult sw = eval_sweep(&sets->layout, results);
    if (sw.bins) {
        cJSON *sweep = cJSON_AddObjectToObject(obj, "sweep");
        cJSON *accuracy = cJSON_AddArrayToObject(sweep, "accuracy");
        for (int b = 0; b < sw.bins; b++)
            cJSON_AddItemToArray(accuracy, cJSON_CreateNumber(sw.accuracy[b]));
        cJSON_AddNumberToObject(sweep, "middle_mean", sw.middle_mean);
        cJSON_AddNumberToObject(sweep, "end_middle_gap", sw.end_middle_gap);
    }
}

void metrics_close(MetricsLog *log) {
    if (log->file) fclose(log->file);
    log->file = NULL;
}
