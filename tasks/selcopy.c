// Selective copy (as in Mamba and the CoPE paper, docs/tasks.md): n_data data tokens scattered
// at random among n_blank blanks, a separator, then the data tokens again in their order, which
// are the scored tokens:
//
//   _ d3 _ _ d7 _ d3 _ | d3 d7 d3          (n_data = 3, n_blank = 5: 2 n_data + n_blank + 1)
//
// The model must skip the blanks and count data tokens, not positions: the splits change how
// many blanks lie between them. `in` has --sel-blanks blanks as in training, `dense` half as
// many (rounded down), `sparse` twice as many; the context is the sparse length, so an encoding
// with a position table (abs) meets rows in `sparse` that training never reached.
#include <stdio.h>
#include <string.h>

#include "task.h"

enum { N_SYMBOLS = 16, BLANK = N_SYMBOLS, SEPARATOR = N_SYMBOLS + 1, VOCAB = N_SYMBOLS + 2 };

static const char *const token_names[VOCAB] = {"d0", "d1", "d2",  "d3",  "d4",  "d5",
                                               "d6", "d7", "d8",  "d9",  "d10", "d11",
                                               "d12", "d13", "d14", "d15", "_",  "|"};

static const char *const split_names[] = {"in", "dense", "sparse"};
static const char *const split_descriptions[] = {"as in training", "half the blanks",
                                                 "twice the blanks"};

static int blanks_of(const TaskOptions *opt, int split) {
    if (split == 1) return opt->sel_blanks / 2;
    if (split == 2) return opt->sel_blanks * 2;
    return opt->sel_blanks;
}

static int length_of(const TaskOptions *opt, int split) {
    return 2 * opt->sel_data + blanks_of(opt, split) + 1;
}

static const Preset presets[] = {
    // Our choice, sized by measurement (README, Tasks): 8 data tokens among 24 blanks (41
    // tokens; sparse 65).
    {.name = "classroom",
     .summary = "2 layers, width 64, 8 data tokens among 24 blanks (41 tokens, sparse 65)",
     .n_layer = 2, .n_embd = 64, .n_head = 4, .batch = 32, .steps = 2000, .warmup = 100,
     .eval_every = 250, .eval_seqs = 256, .lr = 3e-3f, .flags = "--sel-data 8 --sel-blanks 24"},
    // UNCONFIRMED sizes: 128 data tokens with 128 / 64 / 256 blanks come from a secondary
    // source, not from the CoPE paper's text. The model is the paper's small GPT for synthetic
    // tasks (4 layers, width 256, 4 heads); optimiser settings and budget are ours.
    {.name = "paper",
     .summary = "UNCONFIRMED sizes: 128 data tokens, 128 blanks (dense 64, sparse 256); 4 layers, "
                "width 256",
     .n_layer = 4, .n_embd = 256, .n_head = 4, .batch = 32, .steps = 10000, .warmup = 500,
     .eval_every = 1000, .eval_seqs = 256, .lr = 3e-4f,
     .flags = "--sel-data 128 --sel-blanks 128"},
};

static const char *selcopy_check(const TaskOptions *opt) {
    static char msg[160];
    if (opt->sel_data < 1 || opt->sel_blanks < 2) {
        snprintf(msg, sizeof msg,
                 "selcopy needs --sel-data of at least 1 and --sel-blanks of at least 2 (the dense "
                 "split halves them), got %d and %d",
                 opt->sel_data, opt->sel_blanks);
        return msg;
    }
    return NULL;
}

static void selcopy_layout(const TaskOptions *opt, TaskLayout *layout) {
    memset(layout, 0, sizeof *layout);
    layout->train_len = length_of(opt, -1);
    layout->n_splits = sizeof split_names / sizeof split_names[0];
    for (int s = 0; s < layout->n_splits; s++) {
        TaskSplit *split = &layout->split[s];
        snprintf(split->name, sizeof split->name, "%s", split_names[s]);
        snprintf(split->summary, sizeof split->summary, "%d data tokens among %d blanks (%s)",
                 opt->sel_data, blanks_of(opt, s), split_descriptions[s]);
        split->seq_len = length_of(opt, s);
    }
}

static int selcopy_sample(const TaskOptions *opt, int split, Rng *rng, int32_t *inputs,
                          int32_t *targets) {
    int n_data = opt->sel_data, prefix = n_data + blanks_of(opt, split);
    int len = length_of(opt, split), copied = 0;
    // Selection sampling (Knuth's algorithm S): each prefix position holds data with probability
    // (data still to place) / (positions left), which picks a uniform subset of positions in
    // order, without a buffer.
    for (int t = 0; t < prefix; t++) {
        int is_data = (int)rng_below(rng, (uint32_t)(prefix - t)) < n_data - copied;
        inputs[t] = is_data ? (int32_t)rng_below(rng, N_SYMBOLS) : BLANK;
        if (is_data) inputs[prefix + 1 + copied++] = inputs[t];
    }
    inputs[prefix] = SEPARATOR;
    // The separator and each copied token but the last predict the next copied token.
    for (int t = 0; t < len; t++) targets[t] = t >= prefix && t < len - 1 ? inputs[t + 1] : -1;
    return len;
}

static const Option selcopy_options[] = {
    {"sel-data", "N", KIND_INT, offsetof(TaskOptions, sel_data), SCOPE_TASK, 1, 1 << 16,
     .help = "selcopy: data tokens to copy", .def = 8},
    {"sel-blanks", "N", KIND_INT, offsetof(TaskOptions, sel_blanks), SCOPE_TASK, 2, 1 << 16,
     .help = "selcopy: blanks among them in training and split in (dense: half, sparse: twice)",
     .def = 24},
};

const Task task_selcopy = {
    .name = "selcopy", OPTION_ROWS(selcopy_options), TASK_PRESETS(presets),
    .summary = "selective copy: data tokens among blanks, copied after a separator (scored)",
    .vocab_size = VOCAB, .token_names = token_names, .check = selcopy_check,
    .layout = selcopy_layout, .sample = selcopy_sample,
};
