// Evaluation on a task's fixed splits: error rate per scored token and per sequence, and loss.
//
// The evaluation sequences are drawn once, from seeds fixed per split (independent of --seed),
// so every run of a task at a given length sees the same data and runs compare directly.
// Asking for more sequences extends the set: the first n are always the same.
#ifndef PELAB_EVALUATE_H
#define PELAB_EVALUATE_H

#include <stdint.h>
#include <stdio.h>

#include "../model/gpt.h"
#include "../tasks/task.h"

typedef struct {
    int n_splits, n_seqs, T;
    int32_t *inputs, *targets;  // [n_splits, n_seqs, T]
} EvalSets;

typedef struct {
    long scored, token_errors;  // scored positions; those whose argmax prediction is wrong
    long seqs, seq_errors;      // sequences; those with at least one wrong prediction
    double loss;                // mean cross-entropy over the scored positions
} SplitResult;

static inline double token_error_rate(const SplitResult *r) {
    return r->scored ? (double)r->token_errors / (double)r->scored : 0.0;
}
static inline double seq_error_rate(const SplitResult *r) {
    return r->seqs ? (double)r->seq_errors / (double)r->seqs : 0.0;
}

// Returns 0, or -1 when out of memory.
int eval_sets_build(EvalSets *sets, const Task *task, const TaskOptions *opt, int n_seqs);
void eval_sets_free(EvalSets *sets);

// Runs every split through the model without dropout, in batches of model->max_batch;
// results: [sets->n_splits].
void evaluate(GPT *model, const EvalSets *sets, SplitResult *results);

// The end-of-run table: one row per split with its description, scored tokens, token and
// sequence error in percent, and loss.
void eval_print_table(FILE *out, const Task *task, const SplitResult *results);

#endif
