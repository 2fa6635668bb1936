// Flip-Flop language modelling (Liu et al. 2023, "Exposing Attention Glitches with Flip-Flop
// Language Modeling"): a sequence of instruction-bit pairs over a one-bit memory. w writes the
// bit that follows it, r must read back the most recently written bit, i is to be ignored.
// Only the bits after r are scored, so the task measures whether attention retrieves the last
// write reliably however many ignores lie in between.
#include <stdio.h>
#include <string.h>

#include "task.h"

// Token ids as in the official data [paper, dataset card].
enum { TOK_W = 0, TOK_R = 1, TOK_I = 2, TOK_0 = 3, TOK_1 = 4 };

static const char *const token_names[] = {"w", "r", "i", "0", "1"};

// Evaluation splits [paper, data card]: FFL(p_i) with the training p_i, many ignores (long gaps
// between a write and its read, where glitches show) and few ignores (frequent writes and
// reads), of the data card's sizes (val 16K, val_sparse 160K, val_dense 4K sequences): the
// sparse split is large because its reads are rare (about one in a hundred instructions) and
// the errors to count rarer still. --eval-seqs N takes the first N of each.
static const char *const split_names[] = {"in", "sparse", "dense"};
static const char *const split_summaries[] = {
    "FFL(0.8): the training distribution",
    "FFL(0.98): rare writes and reads, long gaps (out of distribution)",
    "FFL(0.1): frequent writes and reads (out of distribution)",
};
static const float split_p_ignore[] = {0.8f, 0.98f, 0.1f};
static const int split_size[] = {16000, 160000, 4000};
_Static_assert(sizeof split_p_ignore / sizeof split_p_ignore[0] ==
                       sizeof split_names / sizeof split_names[0] &&
                   sizeof split_size / sizeof split_size[0] ==
                       sizeof split_names / sizeof split_names[0],
               "one p_i and one size per evaluation split");

static const Preset presets[] = {
    // Our choice: big enough to learn the task, small enough for a 2-core laptop in minutes.
    // Sized by measurement on 2 cores: with rope, in-distribution error falls from ~25% to
    // under 1% between steps 500 and 1000 (about a minute); at 64 pairs and width 128 the
    // same drop takes several times longer. Learned absolute positions learn it more slowly.
    {.name = "classroom",
     .summary = "2 layers, width 64, 32 pairs: rope learns in-distribution Flip-Flop in minutes",
     .n_layer = 2, .n_embd = 64, .n_head = 4, .seq_len = 64, .batch = 32, .steps = 1500,
     .warmup = 100, .eval_every = 250, .eval_seqs = 512, .lr = 3e-3f},
    // The data card [paper, data card]: 256 instruction-bit pairs = 512 tokens, training on
    // FFL(0.8), the three splits at their full sizes (--eval-seqs 160000 is the largest: every
    // split whole). Evaluating all 180K sequences costs about as much forward work as the whole
    // training run, so only the final evaluation runs (--eval-every 0); pass --eval-seqs N and
    // --eval-every to subsample. The card's training set is 1.6M fixed sequences; the stream
    // used here draws 160K fresh ones (10000 steps of 16), so neither repeats a sequence.
    // Our choice, not checked against either paper's text: the model (4 layers, width 256, 4
    // heads, the size pelab uses for every paper preset), batch 16, lr 3e-4, steps and warmup.
    {.name = "paper",
     .summary = "data card: 512 tokens, FFL(0.8) training; in 16K, sparse 160K, dense 4K; 4 "
                "layers, width 256",
     .n_layer = 4, .n_embd = 256, .n_head = 4, .seq_len = 512, .batch = 16, .steps = 10000,
     .warmup = 500, .eval_seqs = 160000, .lr = 3e-4f, .flags = "--eval-every 0"},
};

static const char *flipflop_check(const TaskOptions *opt) {
    static char msg[160];
    if (opt->seq_len < 4 || opt->seq_len % 2 != 0) {
        snprintf(msg, sizeof msg,
                 "flipflop needs an even --seq-len of at least 4 (instruction-bit pairs, first w "
                 "and last r), got %d",
                 opt->seq_len);
        return msg;
    }
    // Written as a negation so that NaN is rejected too.
    if (!(opt->flipflop_p_train >= 0.0f && opt->flipflop_p_train <= 1.0f)) {
        snprintf(msg, sizeof msg, "flipflop's training p_i must lie in [0, 1], got %g",
                 (double)opt->flipflop_p_train);
        return msg;
    }
    return NULL;
}

// Every split and the training stream have the sequence length --seq-len.
static void flipflop_layout(const TaskOptions *opt, TaskLayout *layout) {
    memset(layout, 0, sizeof *layout);
    layout->train_len = opt->seq_len;
    layout->n_splits = sizeof split_names / sizeof split_names[0];
    for (int s = 0; s < layout->n_splits; s++) {
        TaskSplit *split = &layout->split[s];
        snprintf(split->name, sizeof split->name, "%s", split_names[s]);
        snprintf(split->summary, sizeof split->summary, "%s", split_summaries[s]);
        split->seq_len = opt->seq_len;
        split->size = split_size[s];
    }
}

static int flipflop_sample(const TaskOptions *opt, int split, Rng *rng, int32_t *inputs,
                           int32_t *targets) {
    float p_ignore = split < 0 ? opt->flipflop_p_train : split_p_ignore[split];
    int n_pairs = opt->seq_len / 2;
    int32_t bit = TOK_0;  // always overwritten: the first instruction is a write
    for (int k = 0; k < n_pairs; k++) {
        int32_t instr;
        if (k == 0) {
            instr = TOK_W;
        } else if (k == n_pairs - 1) {
            instr = TOK_R;
        } else {
            float u = rng_float(rng);
            instr = u < p_ignore ? TOK_I : (u < p_ignore + 0.5f * (1.0f - p_ignore) ? TOK_W : TOK_R);
        }
        int32_t b = instr == TOK_R ? bit : TOK_0 + (int32_t)rng_below(rng, 2);
        if (instr == TOK_W) bit = b;
        inputs[2 * k] = instr;
        inputs[2 * k + 1] = b;
        targets[2 * k] = instr == TOK_R ? b : -1;
        targets[2 * k + 1] = -1;
    }
    return 2 * n_pairs;
}

const Task task_flipflop = {
    .name = "flipflop",
    .summary = "Flip-Flop: write/read/ignore a one-bit memory; the bits after a read are scored",
    .vocab_size = 5,
    .token_names = token_names,
    .presets = presets,
    .n_presets = sizeof presets / sizeof presets[0],
    .check = flipflop_check,
    .layout = flipflop_layout,
    .sample = flipflop_sample,
};
