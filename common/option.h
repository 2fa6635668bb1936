// Command-line options declared by the module they belong to: one row per flag (name, type,
// built-in value, range, help text). An encoding, a task or MoICE lists its rows in its
// own file with offsets into its own options struct (PEOptions, TaskOptions, MoICEOptions);
// train/cli.c gathers the rows of every registered module into the one flag table that parses,
// range-checks, documents (--help) and compares flags against a checkpoint's config.
#ifndef PELAB_OPTION_H
#define PELAB_OPTION_H

#include <math.h>
#include <stddef.h>

typedef enum {
    KIND_INT,     // int
    KIND_LONG,    // long
    KIND_FLOAT,   // float
    KIND_SEED,    // uint64_t
    KIND_CHOICE,  // an enum stored as an int, by name from Option.choices
    KIND_PE,      // const PositionalEncoding *
    KIND_TASK,    // const Task *
    KIND_PRESET,  // const Preset * of the task chosen so far
    KIND_PATH,    // char[PATH_LEN] of the program's arguments
    KIND_SWITCH,  // int, set by the flag alone
    KIND_BASES,   // MoICEOptions' n_bases and bases (moice_parse_bases)
    KIND_RECIPE,  // stores nothing: choices[i] applies the flag text expands[i] to a new run,
                  // as a preset does (explicit flags still win)
    KIND_RATIOS,  // MsPoEConfig's ratio_min and ratio_max from "MIN:MAX" (mspoe_parse_ratios)
} OptionKind;

// What an option belongs to decides whether it may differ from a checkpoint's config: --resume
// keeps model, MoICE, task and training fixed; --init keeps the model but may add MoICE to it.
typedef enum { SCOPE_MODEL, SCOPE_MOICE, SCOPE_TASK, SCOPE_TRAIN, SCOPE_RUN } OptionScope;

typedef struct {
    const char *name;     // without the leading "--"
    const char *metavar;  // NULL for switches
    OptionKind kind;
    size_t offset;        // of the value in the owner's options struct
    OptionScope scope;
    double lo, hi;        // valid range of a number...
    int lo_open, hi_open; // ...with these ends excluded
    const char *const *choices;  // KIND_CHOICE, KIND_RECIPE: the names, NULL-terminated
    const char *const *expands;  // KIND_RECIPE: the flag text of each choice
    const char *help;
    const char *default_text;    // shown instead of the value where the default is derived
    // The built-in value of a number, or the index of a choice (0 when left out). The option's
    // owner applies it (option_defaults) before presets and flags.
    double def;
    // 1: checkpoints written before the option existed lack it in their config; they read as
    // the built-in value, which is what the module did before the option existed.
    int added_later;
    // 1: bin/eval may set it on a checkpoint, because it changes only the evaluation splits
    // (an integer option of a task).
    int eval;
} Option;

// Writes every row's built-in value (Option.def) into owner, the struct the rows' offsets point
// into. Kinds without a number (paths, names, switches, lists) are left as they are.
void option_defaults(const Option *rows, int n, void *owner);

// A registration's ".options = rows, .n_options = their count" for a static array of rows.
#define OPTION_ROWS(rows) .options = (rows), .n_options = (int)(sizeof(rows) / sizeof((rows)[0]))

#endif
