// Synthetic tasks: one interface, one file per task, one table (task_table.c).
//
// A task knows its vocabulary, how to draw one sequence of its training distribution or of one
// of its fixed evaluation splits, which target positions are scored, and its presets (model and
// training sizes that make sense for it).
#ifndef PELAB_TASK_H
#define PELAB_TASK_H

#include <stdint.h>

#include "../model/rng.h"

// Task knobs from the command line; each task reads the ones it has.
typedef struct {
    int seq_len;          // tokens per sequence = the model's T
    float flipflop_p_train; // flipflop: p_i of the training stream (paper: 0.8)
} TaskOptions;

// A named set of defaults (for example "classroom", "paper"); 0 fields mean "keep the default".
typedef struct {
    const char *name;
    const char *summary;
    int n_layer, n_embd, n_head, seq_len, batch, steps, warmup, eval_every, eval_seqs;
    float lr, dropout, weight_decay;
    const char *norm;  // "pre"/"post" or NULL
    const char *act;   // "gelu"/"relu" or NULL
} Preset;

#define TASK_MAX_SPLITS 8

typedef struct Task {
    const char *name;
    const char *summary;
    int vocab_size;
    const char *const *token_names;  // [vocab_size], for printing sequences
    int n_splits;                    // fixed evaluation splits
    const char *const *split_names;  // [n_splits]
    const char *const *split_summaries;
    const Preset *presets;           // the first one is the default
    int n_presets;
    // NULL if the options suit the task, else a message naming the problem and the fix.
    const char *(*check)(const TaskOptions *opt);
    // Writes one sequence: inputs[t] is the token at t, targets[t] the token at t+1 where that
    // position is scored, else -1; both have opt->seq_len entries. split < 0 draws from the
    // training distribution, split >= 0 from evaluation split `split`.
    void (*sample)(const TaskOptions *opt, int split, Rng *rng, int32_t *inputs, int32_t *targets);
} Task;

const Task *task_find(const char *name);
const char *task_names(void);
const Preset *task_preset(const Task *task, const char *name);

#endif
