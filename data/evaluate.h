// Evaluation on a task's fixed splits: error rate per scored token and per sequence, and loss;
// for tasks with a position sweep also accuracy per position bin, the middle bins' mean and the
// gap between the best end bin and the worst middle bin.
//
// The evaluation sequences are drawn once, from seeds fixed per split (independent of --seed),
// so every run of a task with the same options sees the same data and runs compare directly.
// Asking for more sequences extends the set: the first n are always the same.
#ifndef PELAB_EVALUATE_H
#define PELAB_EVALUATE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dataset.h"
#include "../model/gpt.h"
#include "../tasks/task.h"

typedef struct {
    TaskLayout layout;                    // split names, descriptions and lengths
    SequenceSet split[TASK_MAX_SPLITS];   // one set per split of the layout
    // The task's Task.second_answer for its probe splits (drawn sets only); NULL: none.
    int32_t (*second_answer)(const int32_t *inputs, int t);
} EvalSets;

typedef struct {
    long scored, token_errors;  // scored positions; those whose argmax prediction is wrong
    long seqs, seq_errors;      // sequences; those with at least one wrong prediction
    double loss;                // mean cross-entropy over the scored positions
    // Probe splits (TaskSplit.probe) only: wrong predictions that gave the position's other
    // valid answer (Task.second_answer); the rest of token_errors gave neither.
    long second_answers;
} SplitResult;

// A 95 % confidence interval of a proportion.
typedef struct {
    double lo, hi;
} Interval;

// The Wilson score interval of the proportion k / n at 95 % (z = 1.96): unlike the normal
// approximation p +- z sqrt(p (1 - p) / n) it stays inside [0, 1] and does not shrink to a point
// at k = 0, which is where the interesting error rates (a handful of glitches in thousands of
// reads) lie. It treats the n outcomes as independent draws; n = 0 gives [0, 1].
Interval wilson_interval(long k, long n);

// The position sweep of one evaluation. Ends are the first and the last bin, the middle is
// every bin in between.
typedef struct {
    int bins;
    double accuracy[TASK_MAX_BINS];  // token accuracy per bin, first to last
    double middle_mean;              // mean accuracy of the middle bins
    double end_middle_gap;           // best end bin's accuracy - worst middle bin's
} SweepResult;

static inline double token_error_rate(const SplitResult *r) {
    return r->scored ? (double)r->token_errors / (double)r->scored : 0.0;
}
static inline double seq_error_rate(const SplitResult *r) {
    return r->seqs ? (double)r->seq_errors / (double)r->seqs : 0.0;
}

// Builds the sets of the task's layout for opt (which must have passed task->check).
// The model's prediction: the first index of the largest logit (ties go to the lower token id).
int logits_argmax(const float *logits, int V);

// Draws every split of the task's layout: n_seqs sequences each, or the first n_seqs of a split
// whose size the task fixes (all of it when it is smaller), as --eval-seqs limits the splits of
// a dataset file. Returns 0, or -1 when out of memory.
int eval_sets_build(EvalSets *sets, const Task *task, const TaskOptions *opt, int n_seqs);
// Takes sets read from a file instead of drawing them: splits[s] is split s of the layout. The
// sets are moved, not copied (splits[] is left empty).
void eval_sets_adopt(EvalSets *sets, const TaskLayout *layout, SequenceSet *splits);
void eval_sets_free(EvalSets *sets);

// Runs every split through the model without dropout, in batches of model->max_batch cut to
// their longest sequence; results: [sets->layout.n_splits]. Returns 0, or -1 out of memory.
int evaluate(GPT *model, const EvalSets *sets, SplitResult *results);
// The same over every parts-th of those batches from batch `part` on (one rank's share; the
// parts' counts add up to evaluate's, their losses weighted by their scored counts).
int evaluate_part(GPT *model, const EvalSets *sets, SplitResult *results, int part, int parts);

// The sweep from the results of the layout's bins; bins = 0 when the task has none.
SweepResult eval_sweep(const TaskLayout *layout, const SplitResult *results);

// The end-of-run table: one row per split with its description, scored tokens, token error in
// percent with its 95 % interval, sequences, sequence error in percent with its interval, and
// loss; then the position sweep, if the task has one, and the probe splits' answers, if any.
void eval_print_table(FILE *out, const EvalSets *sets, const SplitResult *results);

#endif
