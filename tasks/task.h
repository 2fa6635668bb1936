// Synthetic tasks: one interface, one file per task, one table (task_table.c).
//
// A task knows its vocabulary, its layout (how long its training sequences are, and which fixed
// evaluation splits it has with their own lengths), how to draw one sequence of its training
// distribution or of one of its splits, which target positions are scored, and its presets
// (model and training sizes that make sense for it).
#ifndef PELAB_TASK_H
#define PELAB_TASK_H

#include <stdint.h>

#include "../common/option.h"
#include "../common/rng.h"

// kvret: the position of the queried pair in training sequences (tasks/kvret.c defines them).
typedef enum { KV_UNIFORM = 0, KV_ENDS = 1 } KvPositions;
extern const char *const kv_positions_names[];  // "uniform", "ends", NULL

#define KV_MAX_PAIRS 128  // kvret's key symbols: pairs per sequence, eval pairs included
#define KV_MAX_QUERIES 64  // kvret --kv-queries
#define TASK_MAX_BINS 32  // kvret --position-bins

// Task knobs from the command line; each task reads the ones it has.
typedef struct {
    int seq_len;             // the model's context: every sequence of the task fits in it
    float flipflop_p_train;  // flipflop: p_i of the training stream (paper: 0.8)
    int kv_pairs;            // kvret: key-value pairs per training (and in, bin) sequence
    int kv_eval_pairs;       // kvret: pairs per sequence of the `long` split; 0: no such split
    int kv_keys;             // kvret: key symbols sequences draw from (the first kv_keys)
    int kv_min_pairs;        // kvret: training sequences draw their pairs from here to kv_pairs
    int kv_queries;          // kvret: queries (each value scored) per training/in/long sequence
    KvPositions kv_positions;  // kvret: training distribution of the queried pair
    float kv_middle_share;     // kvret, ends: probability of a query between the two ends
    int position_bins;       // kvret: bins of the position sweep
    int kv_duplicate_probe;  // kvret: bins of the duplicate-key probe's two positions; 0: none
    int sel_data;            // selcopy: data tokens per sequence
    int sel_blanks;          // selcopy: blanks per training (and in) sequence
    int count_vars;          // counting: variables (official: 1, 3 or 5)
    int count_statements;    // counting: most statements per sample (official: 512)
} TaskOptions;

// A named set of defaults (for example "classroom", "paper"); 0 fields mean "keep the default".
typedef struct {
    const char *name;
    const char *summary;
    int n_layer, n_embd, n_head, seq_len, batch, steps, warmup, eval_every, eval_seqs;
    float lr, dropout, weight_decay;
    const char *norm;  // "pre"/"post" or NULL
    const char *act;   // "gelu"/"relu" or NULL
    int kv_pairs, kv_min_pairs, kv_keys, kv_queries;
    int sel_data, sel_blanks, count_vars, count_statements;
    // More settings as command-line text ("--warmup 0 --schedule constant"), applied after the
    // fields: what they cannot say (zeros, flags without a field). NULL: none.
    const char *flags;
} Preset;

#define TASK_MAX_SPLITS (TASK_MAX_BINS + 8)

typedef struct {
    char name[16];
    char summary[112];
    int seq_len;      // tokens per sequence of this split (the longest, when lengths vary)
    // Sequences in the split (counting's 1000, Flip-Flop's data card sizes), of which --eval-seqs
    // N takes the first N; 0: as many as --eval-seqs asks for.
    int size;
    // Longer than the training sequences on purpose (length generalisation): an encoding with a
    // table of positions (abs) never trained the rows it would need, so it may not run it.
    int extrapolates;
    // A probe: every scored position has a second valid answer besides its target
    // (Task.second_answer), and the evaluation counts which of the two the model gives.
    int probe;
} TaskSplit;

typedef struct {
    int train_len;  // tokens per training sequence (the longest, when lengths vary)
    // Sequences in the training set; 0: an endless stream drawn fresh for every batch. A finite
    // set is drawn once from a fixed seed and trained on in epochs (counting: 10k).
    int train_size;
    int n_splits;
    TaskSplit split[TASK_MAX_SPLITS];
    // Splits sweep_first .. sweep_first + sweep_bins - 1 hold the relevant information in
    // successive position bins (first to last); 0 bins: the task has no position sweep.
    int sweep_first, sweep_bins;
} TaskLayout;

typedef struct Task {
    const char *name;
    const char *summary;
    // The task's command-line options, offsets into TaskOptions (NULL, 0: none).
    const Option *options;
    int n_options;
    int vocab_size;
    const char *const *token_names;  // [vocab_size], for printing sequences
    const Preset *presets;           // the first one is the default
    int n_presets;
    // NULL if the options suit the task, else a message naming the problem and the fix. Whether
    // the sequences fit opt->seq_len is checked by the caller, against the layout.
    const char *(*check)(const TaskOptions *opt);
    // The lengths and evaluation splits for valid options.
    void (*layout)(const TaskOptions *opt, TaskLayout *layout);
    // Writes one sequence: inputs[t] is the token at t, targets[t] the token at t+1 where that
    // position is scored, else -1; both have room for the layout's length of the split
    // (train_len for split < 0, the training distribution; split >= 0 is evaluation split
    // `split`). Returns the sequence's length n (1 <= n <= that room) and writes positions
    // 0 .. n-1 only: the caller pads the rest (input 0, target -1), which a causal model never
    // lets the earlier positions see.
    int (*sample)(const TaskOptions *opt, int split, Rng *rng, int32_t *inputs, int32_t *targets);
    // Whether a sequence's tokens (its answer last) still hold all that its answer follows
    // from, for sequences cut from the left to fit a context; NULL: the task cannot tell.
    int (*answer_known)(const int32_t *tokens, int len);
    // For the probe splits of the layout: the second valid answer at scored position t of a
    // sequence, from its inputs 0..t (kvret's duplicate key: the later of the key's two values,
    // the target being the earlier); NULL: the task has no probe splits.
    int32_t (*second_answer)(const int32_t *inputs, int t);
} Task;

// Built-in option values (before presets and flags); also what a checkpoint's config means by
// the options of other tasks that it does not list.
extern const TaskOptions task_default_options;

const Task *task_find(const char *name);
// The registry in table order, for whatever must cover every task (tests, --help).
int task_count(void);
const Task *task_at(int i);  // 0 <= i < task_count()
const char *task_names(void);
const Preset *task_preset(const Task *task, const char *name);
// The longest sequence of a layout, training included: the context the task needs.
int task_layout_longest(const TaskLayout *layout);
// The index of the split called name, or -1.
int task_layout_find(const TaskLayout *layout, const char *name);

#endif
