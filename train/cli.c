// The flag table drives everything: parsing, range checks, --help, preset application and the
// comparison of flags against a checkpoint's config, so a new flag is one row.
#include "cli.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../model/moice.h"
#include "checkpoint.h"
#include "run_lock.h"
#include "../data/run_data.h"

static const char *const scope_titles[] = {
    "model", "MoICE (rope models; --init may add it to a trained model)", "task", "training", "run"};

#define PATH_LEN FLAGS_PATH_LEN
#define AT(member) offsetof(CliArgs, member)
// Seeds and step counts go through JSON numbers in checkpoints, which are exact up to 2^53:
// a larger value would be saved in a config that does not read back.
#define MAX_EXACT 9007199254740991.0

typedef Option Flag;

_Static_assert(sizeof(NormPlacement) == sizeof(int) && sizeof(Activation) == sizeof(int) &&
                   sizeof(Schedule) == sizeof(int) && sizeof(KvPositions) == sizeof(int) &&
                   sizeof(TrainableSet) == sizeof(int) && sizeof(InitScheme) == sizeof(int) &&
                   sizeof(BatchOrder) == sizeof(int),
               "choice flags store their enum as an int");

// The program's own rows. The rows of the registered encodings, of MoICE and of the tasks live
// in their own files; gather_flags() puts them after the model's rows and the task's.
static const Flag model_flags[] = {
    {"pe", "NAME", KIND_PE, AT(run.model.pe), SCOPE_MODEL,
     .help = "positional encoding (list below)"},
    {"layers", "N", KIND_INT, AT(run.model.n_layer), SCOPE_MODEL, 1, GPT_MAX_LAYERS,
     .help = "transformer blocks"},
    {"dim", "N", KIND_INT, AT(run.model.n_embd), SCOPE_MODEL, 1, 65536, .help = "model width"},
    {"heads", "N", KIND_INT, AT(run.model.n_head), SCOPE_MODEL, 1, 65536,
     .help = "attention heads; must divide --dim"},
    {"ffn", "N", KIND_INT, AT(run.model.ffn_dim), SCOPE_MODEL, 1, 1 << 20,
     .help = "MLP hidden width", .default_text = "4 x --dim"},
    {"norm", "pre|post", KIND_CHOICE, AT(run.model.norm), SCOPE_MODEL, .choices = norm_names,
     .help = "LayerNorm before each sublayer or after each residual add"},
    {"act", "gelu|relu", KIND_CHOICE, AT(run.model.act), SCOPE_MODEL, .choices = act_names,
     .help = "MLP activation (gelu: tanh approximation)"},
    {"init-scheme", "gpt2|torch", KIND_CHOICE, AT(run.model.init), SCOPE_MODEL,
     .choices = init_names,
     .help = "Linear layers: gpt2 N(0, --init-std), zero biases; torch: PyTorch's default "
             "U(+-1/sqrt(fan_in)) weights and biases (the CoPE paper's trainer)"},
    {"init-std", "X", KIND_FLOAT, AT(run.model.init_std), SCOPE_MODEL, 0, INFINITY, 1,
     .help = "gpt2 init: N(0, X) of the matrices (residual projections X/sqrt(2L))"},
    {"emb-std", "X", KIND_FLOAT, AT(run.model.emb_std), SCOPE_MODEL, 0, INFINITY, 1,
     .help = "init N(0, X) of the embeddings wte (and wpe of abs)"},

};

static const Flag task_flags[] = {
    {"task", "NAME", KIND_TASK, AT(run.task), SCOPE_TASK, .help = "synthetic task (list below)"},
    {"preset", "NAME", KIND_PRESET, AT(run.preset), SCOPE_TASK,
     .help = "the task's named defaults (list below)", .default_text = "the task's first"},
    {"seq-len", "N", KIND_INT, AT(run.task_opt.seq_len), SCOPE_TASK, 2, 1 << 20,
     .help = "flipflop: tokens per sequence; other tasks: the context (their longest sequence)"},
};

static const Flag run_flags[] = {
    {"data", "PATH", KIND_PATH, AT(run.data), SCOPE_TASK,
     .help = "train and evaluate on a dataset file (.h5 from --write-data) or a folder of the "
             "official counting generator (train/valid/test.jsonl); the context fits its longest "
             "sample unless --seq-len or a named --preset gives one, which cuts longer JSON-lines "
             "samples from the left",
     .default_text = "drawn from the task"},
    {"train-seqs", "N", KIND_INT, AT(run.train_seqs), SCOPE_TASK, 0, 1 << 24,
     .help = "train in epochs on a fixed set of N sequences (0: the task's own: counting 10000, "
             "the others an endless stream)"},
    {"write-data", "FILE", KIND_PATH, AT(write_data), SCOPE_RUN,
     .help = "write the run's sets (training set if fixed, evaluation splits) to an HDF5 "
             "dataset file and exit", .default_text = "-"},

    {"batch", "N", KIND_INT, AT(run.batch), SCOPE_TRAIN, 1, 1 << 20, .help = "sequences per step"},
    {"batch-order", "pooled|shuffle", KIND_CHOICE, AT(run.batch_order), SCOPE_TRAIN,
     .choices = batch_order_names,
     .help = "epochs of a fixed training set: batches of similar length (drops n mod B), or a "
             "uniform shuffle keeping the short last batch (the CoPE paper's trainer)"},
    {"lr", "X", KIND_FLOAT, AT(run.lr), SCOPE_TRAIN, 0, INFINITY, 1,
     .help = "peak learning rate (AdamW)"},
    {"min-lr", "X", KIND_FLOAT, AT(run.min_lr), SCOPE_TRAIN, 0, INFINITY,
     .help = "learning rate the cosine schedule ends at", .default_text = "--lr / 10"},
    {"schedule", "cosine|constant", KIND_CHOICE, AT(run.schedule), SCOPE_TRAIN,
     .choices = schedule_names, .help = "learning rate after the warmup"},
    {"warmup", "N", KIND_LONG, AT(run.warmup), SCOPE_TRAIN, 0, MAX_EXACT,
     .help = "steps of linear warmup from 0 to --lr"},
    {"weight-decay", "X", KIND_FLOAT, AT(run.adamw.weight_decay), SCOPE_TRAIN, 0, INFINITY,
     .help = "AdamW decoupled decay of matrices and embeddings"},
    {"beta1", "X", KIND_FLOAT, AT(run.adamw.beta1), SCOPE_TRAIN, 0, 1, 0, 1,
     .help = "AdamW first-moment decay"},
    {"beta2", "X", KIND_FLOAT, AT(run.adamw.beta2), SCOPE_TRAIN, 0, 1, 0, 1,
     .help = "AdamW second-moment decay"},
    {"eps", "X", KIND_FLOAT, AT(run.adamw.eps), SCOPE_TRAIN, 0, INFINITY, 1,
     .help = "AdamW epsilon, added to the root of the second moment"},
    {"clip", "X", KIND_FLOAT, AT(run.clip), SCOPE_TRAIN, 0, INFINITY,
     .help = "max global gradient norm; 0 turns clipping off"},
    {"dropout", "P", KIND_FLOAT, AT(run.model.dropout), SCOPE_TRAIN, 0, 1, 0, 1,
     .help = "dropout on embeddings, attention and residual branches"},
    {"ffn-dropout", "P", KIND_FLOAT, AT(run.model.ffn_dropout), SCOPE_TRAIN, 0, 1, 0, 1,
     .help = "dropout on the MLP's hidden activations (the CoPE paper's trainer: as --dropout)"},
    {"seed", "N", KIND_SEED, AT(run.seed), SCOPE_TRAIN, 0, MAX_EXACT,
     .help = "initialisation, data stream and dropout"},
    {"train-only", "all|routers", KIND_CHOICE, AT(run.train_only), SCOPE_TRAIN,
     .choices = train_only_names, .help = "routers: train MoICE's routers, freeze the rest"},

    {"steps", "N", KIND_LONG, AT(run.steps), SCOPE_RUN, 1, MAX_EXACT,
     .help = "optimiser steps in all (with --resume: may extend the run)"},
    {"threads", "N", KIND_INT, AT(run.threads), SCOPE_RUN, 1, 4096,
     .help = "OpenMP/OpenBLAS threads (all cores); equal runs need equal counts"},
    {"eval-every", "N", KIND_LONG, AT(run.eval_every), SCOPE_RUN, 0, MAX_EXACT,
     .help = "evaluate every N steps (0: only at the end)"},
    {"eval-seqs", "N", KIND_INT, AT(run.eval_seqs), SCOPE_RUN, 1, 1 << 24,
     .help = "sequences per evaluation split (--data: the first N of each of its splits)"},
    {"save-every", "N", KIND_LONG, AT(run.save_every), SCOPE_RUN, 0, MAX_EXACT,
     .help = "save every N steps (0: only at the end and on Ctrl-C)"},
    {"stop-at", "STEP", KIND_LONG, AT(stop_at), SCOPE_RUN, 0, MAX_EXACT,
     .help = "stop and save after this step as if interrupted (0: never)"},
    {"attention-maps", "N", KIND_INT, AT(attention_maps), SCOPE_RUN, 0, 64,
     .help = "at the end, write N sequences per split's attention to <out>/attention.h5"},
    {"out", "DIR", KIND_PATH, AT(out), SCOPE_RUN,
     .help = "output folder (--resume: FILE's folder; --init: the default + \"-ft\")",
     .default_text = "checkpoints/<task>-<pe>-s<seed>"},
    {"force", NULL, KIND_SWITCH, AT(force), SCOPE_RUN,
     .help = "replace the run already in --out (or the file of --write-data)"},
    {"allow-data-change", NULL, KIND_SWITCH, AT(allow_data_change), SCOPE_RUN,
     .help = "--resume on a --data file that changed since the checkpoint was saved"},
    {"resume", "FILE", KIND_PATH, AT(resume), SCOPE_RUN,
     .help = "continue the run saved in FILE exactly (its config applies)", .default_text = "-"},
    {"init", "FILE", KIND_PATH, AT(init), SCOPE_RUN,
     .help = "start a new run from FILE's weights (its model and context apply)",
     .default_text = "-"},
    {"dry-run", NULL, KIND_SWITCH, AT(dry_run), SCOPE_RUN,
     .help = "print the resolved configuration as JSON, each flag with where its value came "
             "from, and exit without training"},
    {"help", NULL, KIND_SWITCH, AT(help), SCOPE_RUN, .help = "print this help and exit"},
};

#define COUNT(rows) ((int)(sizeof rows / sizeof rows[0]))

// The one flag table, in parsing order: --rope-base before --moice-bases (the first base),
// --task before --preset and the task's options.
static FlagTable table;

static void add_flags(const Option *rows, int n, size_t base) { flags_add(&table, rows, n, base); }

static void gather_flags(void) {
    if (table.n) return;
    add_flags(model_flags, COUNT(model_flags), 0);
    for (int i = 0; i < pe_count(); i++)
        add_flags(pe_at(i)->options, pe_at(i)->n_options, AT(run.model.pe_opt));
    add_flags(moice_options, moice_n_options, AT(run.model.moice));
    add_flags(task_flags, COUNT(task_flags), 0);
    for (int i = 0; i < task_count(); i++)
        add_flags(task_at(i)->options, task_at(i)->n_options, AT(run.task_opt));
    add_flags(run_flags, COUNT(run_flags), 0);
}

// A preset field and the flag it stands for; values go through the flag's own parser, so
// presets are checked like user input and need no second copy of the conversions.
typedef enum { PRESET_INT, PRESET_FLOAT, PRESET_NAME } PresetFieldType;
static const struct {
    const char *flag;
    size_t offset;
    PresetFieldType type;
} preset_fields[] = {
    {"layers", offsetof(Preset, n_layer), PRESET_INT},
    {"dim", offsetof(Preset, n_embd), PRESET_INT},
    {"heads", offsetof(Preset, n_head), PRESET_INT},
    {"seq-len", offsetof(Preset, seq_len), PRESET_INT},
    {"batch", offsetof(Preset, batch), PRESET_INT},
    {"steps", offsetof(Preset, steps), PRESET_INT},
    {"warmup", offsetof(Preset, warmup), PRESET_INT},
    {"eval-every", offsetof(Preset, eval_every), PRESET_INT},
    {"eval-seqs", offsetof(Preset, eval_seqs), PRESET_INT},
    {"lr", offsetof(Preset, lr), PRESET_FLOAT},
    {"dropout", offsetof(Preset, dropout), PRESET_FLOAT},
    {"weight-decay", offsetof(Preset, weight_decay), PRESET_FLOAT},
    {"norm", offsetof(Preset, norm), PRESET_NAME},
    {"act", offsetof(Preset, act), PRESET_NAME},
};

#define N_PRESET_FIELDS COUNT(preset_fields)


// ----------------------------------------------------------------------------------------------
// values, through the table (train/flags.h)

static const Flag *find_flag(const char *name) { return flags_find(&table, name); }

static int parse_value(const Flag *f, const char *text, CliArgs *a, char *err, size_t errlen) {
    FlagContext ctx = {.task = a->run.task, .rope_base = a->run.model.pe_opt.rope_base};
    return flags_parse(&table, f, text, a, &ctx, err, errlen);
}

static void format_value(const Flag *f, const CliArgs *a, char *buf, size_t len) {
    flags_format(&table, f, a, buf, len);
}

static int same_value(const Flag *f, const CliArgs *a, const CliArgs *b) {
    return flags_same(&table, f, a, b);
}

// ----------------------------------------------------------------------------------------------
// defaults and presets

static void set_defaults(CliArgs *a) {
    memset(a, 0, sizeof *a);
    RunConfig *r = &a->run;
    r->model = (GPTConfig){.n_layer = 2, .n_embd = 128, .n_head = 4, .norm = NORM_PRE,
                           .act = ACT_GELU, .pe = pe_find("rope"),
                           .pe_opt = pe_defaults(), .moice = moice_defaults(),
                           .init_std = GPT2_INIT_STD, .emb_std = GPT2_INIT_STD};
    r->task = task_find("flipflop");
    r->preset = &r->task->presets[0];
    r->task_opt = task_defaults();
    r->batch = 32;
    r->steps = 1000;
    r->lr = 1e-3f;
    r->min_lr = 0.0f;  // derived: --lr / 10 unless given (derive)
    r->schedule = SCHEDULE_COSINE;
    r->warmup = 100;
    r->adamw = (AdamWConfig){.beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f};
    r->clip = 1.0f;
    r->seed = 1;
    r->threads = omp_get_num_procs();
    r->eval_every = 250;
    r->eval_seqs = 512;
    r->save_every = 1000;
}

// The preset's value of field i as flag text, or NULL where the preset keeps the default.
static const char *preset_text(const Preset *p, int i, char *buf, size_t len) {
    const void *field = (const char *)p + preset_fields[i].offset;
    switch (preset_fields[i].type) {
    case PRESET_INT:
        if (!*(const int *)field) return NULL;
        snprintf(buf, len, "%d", *(const int *)field);
        return buf;
    case PRESET_FLOAT:
        if (*(const float *)field == 0.0f) return NULL;
        format_float(buf, len, *(const float *)field);
        return buf;
    case PRESET_NAME:
        return *(const char *const *)field;
    }
    return NULL;
}

// Flag text of a preset or recipe: "--name value" pairs, each through its flag's own parser.
static int apply_flag_text(CliArgs *a, const char *flag_text, char *err, size_t errlen) {
    char text[512];
    snprintf(text, sizeof text, "%s", flag_text);
    char *save;
    for (char *name = strtok_r(text, " ", &save); name; name = strtok_r(NULL, " ", &save)) {
        const Flag *f = strncmp(name, "--", 2) == 0 ? find_flag(name + 2) : NULL;
        const char *value = strtok_r(NULL, " ", &save);
        if (!f || !value) return flags_error(err, errlen, "'%s' is not a flag with a value", name);
        if (parse_value(f, value, a, err, errlen)) return -1;
    }
    return 0;
}

static int apply_preset(CliArgs *a, const Preset *p, char *err, size_t errlen) {
    int failed = 0;
    for (int i = 0; i < N_PRESET_FIELDS && !failed; i++) {
        char buf[32];
        const char *text = preset_text(p, i, buf, sizeof buf);
        failed = text && parse_value(find_flag(preset_fields[i].flag), text, a, err, errlen);
    }
    if (!failed && p->flags) failed = apply_flag_text(a, p->flags, err, errlen);
    if (failed) {
        char why[256];
        snprintf(why, sizeof why, "%s", err);
        return flags_error(err, errlen, "preset %s is broken: %s", p->name, why);
    }
    a->run.preset = p;
    return 0;
}

// ----------------------------------------------------------------------------------------------
// --help

// Prints each name of a "a, b, c" list with the summary lookup gives it.
static void print_catalogue(const char *names, const char *(*summary)(const char *name)) {
    char copy[256];
    snprintf(copy, sizeof copy, "%s", names);
    for (char *save, *name = strtok_r(copy, ", ", &save); name; name = strtok_r(NULL, ", ", &save))
        printf("  %-10s %s\n", name, summary(name));
}

static const char *pe_summary(const char *name) { return pe_find(name)->summary; }
static const char *task_summary(const char *name) { return task_find(name)->summary; }

static void print_help(const char *program, const CliArgs *d) {
    printf(
        "usage: %s [--flag value ...]\n\n"
        "Trains a small GPT on a synthetic task, evaluating it on the task's fixed splits as it\n"
        "goes, and writes <out>/model.h5 (checkpoint) and <out>/metrics.jsonl (one row per\n"
        "evaluation). Ctrl-C saves and stops; a second Ctrl-C aborts. Exit status: 0 done,\n"
        "1 failure while running, 2 bad input, 130 interrupted (after saving).\n\n"
        "Defaults [in brackets] are those of --task %s --preset %s: explicit flags\n"
        "override the preset, which overrides the built-in defaults.\n",
        program, d->run.task->name, d->run.preset->name);
    for (int scope = SCOPE_MODEL; scope <= SCOPE_RUN; scope++) {
        printf("\n%s:\n", scope_titles[scope]);
        for (int i = 0; i < table.n; i++)
            if (table.row[i].scope == (OptionScope)scope) flags_print_row(&table, &table.row[i], d, NULL);
    }
    printf("\npositional encodings (--pe):\n");
    print_catalogue(pe_names(), pe_summary);
    printf("\ntasks (--task):\n");
    print_catalogue(task_names(), task_summary);
    printf("\npresets of %s (--preset):\n", d->run.task->name);
    for (int p = 0; p < d->run.task->n_presets; p++) {
        const Preset *preset = &d->run.task->presets[p];
        printf("  %-10s %s\n", preset->name, preset->summary);
        int column = 0;
        for (int i = 0; i < N_PRESET_FIELDS; i++) {
            char buf[32], setting[64];
            const char *text = preset_text(preset, i, buf, sizeof buf);
            if (!text) continue;
            int len = snprintf(setting, sizeof setting, " --%s %s", preset_fields[i].flag, text);
            if (column > 0 && column + len > 92) {
                printf("\n");
                column = 0;
            }
            if (column == 0) column = printf("%13s", "");
            column += printf("%s", setting);
        }
        if (preset->flags) printf("\n%13s %s", "", preset->flags);
        printf("\n");
    }
}

// ----------------------------------------------------------------------------------------------
// the command line

static const char *given_text(const char **given, const char *name) {
    return given[find_flag(name) - table.row];
}

static int read_checkpoint_config(const char *path, RunConfig *rc, char *err, size_t errlen) {
    char *json;
    if (checkpoint_read_config(path, &json, err, errlen)) return -1;
    char why[512];
    int failed = run_config_from_json(json, rc, why, sizeof why);
    free(json);
    if (failed) return flags_error(err, errlen, "checkpoint %s is damaged: %s", path, why);
    // A model without MoICE stores no MoICE options: the defaults, should --init add it.
    if (!rc->model.moice.n_bases) rc->model.moice = moice_defaults();
    return 0;
}

// Task and preset of a new run, then the preset's values; --init keeps the data length the
// model was trained on unless --seq-len says otherwise.
static int start_new_run(CliArgs *a, const char **given, const RunConfig *init_from, char *err,
                         size_t errlen) {
    const char *task = given_text(given, "task"), *preset = given_text(given, "preset");
    if (task && parse_value(find_flag("task"), task, a, err, errlen)) return -1;
    if (!task && init_from) a->run.task = init_from->task;
    a->run.preset = &a->run.task->presets[0];
    if (preset && parse_value(find_flag("preset"), preset, a, err, errlen)) return -1;
    if (apply_preset(a, a->run.preset, err, errlen)) return -1;
    if (init_from) {
        a->run.model = init_from->model;
        a->run.task_opt.seq_len = init_from->task_opt.seq_len;
    }
    // Recipes after the preset and the model of --init, since they may set parts of both.
    for (int i = 0; i < table.n; i++) {
        if (table.row[i].kind != KIND_RECIPE || !given[i]) continue;
        int k = flags_choice(&table.row[i], given[i], err, errlen);
        if (k < 0) return -1;
        const char *text = table.row[i].expands[k];
        if (apply_flag_text(a, text, err, errlen)) {
            char why[256];
            snprintf(why, sizeof why, "%s", err);
            return flags_error(err, errlen, "--%s %s is broken: %s", table.row[i].name, given[i], why);
        }
    }
    return 0;
}

// A flag given with a value other than the checkpoint's, in a scope the checkpoint fixes.
static int check_against_checkpoint(const CliArgs *a, const char **given, const RunConfig *ckpt,
                                    const char *path, int fixed_scope_max, const char *why,
                                    char *err, size_t errlen) {
    CliArgs saved;
    memset(&saved, 0, sizeof saved);
    saved.run = *ckpt;
    for (int i = 0; i < table.n; i++) {
        const Flag *f = &table.row[i];
        if (!given[i] || (int)f->scope > fixed_scope_max || same_value(f, a, &saved)) continue;
        char theirs[64], ours[64];
        format_value(f, &saved, theirs, sizeof theirs);
        format_value(f, a, ours, sizeof ours);
        return flags_error(err, errlen,
                     "checkpoint %s was trained with --%s %s, not %s; %sdrop the flag or pass "
                     "--%s %s",
                     path, f->name, theirs, ours, why, f->name, theirs);
    }
    return 0;
}

// Tasks whose options fix their lengths (kvret, selcopy) get the context their longest sequence
// needs; for flipflop and counting the longest sequence is --seq-len itself. Sets read from
// --data get theirs once they are read (cli_check_data). Invalid options are left to validate.
static void derive_context(RunConfig *r) {
    if (r->data[0] || r->task->check(&r->task_opt)) return;
    TaskLayout layout;
    r->task->layout(&r->task_opt, &layout);
    r->task_opt.seq_len = task_layout_longest(&layout);
}

// Values that default to something derived from other flags, and the model's vocabulary and
// context, which follow from the task.
static int derive(CliArgs *a, const char **given, const RunConfig *init_from, char *err,
                  size_t errlen) {
    RunConfig *r = &a->run;
    // A preset's warmup suits its own --steps; a short trial run gets a tenth of its steps.
    if (!given_text(given, "warmup") && r->warmup > r->steps / 10) r->warmup = r->steps / 10;
    if (!r->model.ffn_dim) r->model.ffn_dim = 4 * r->model.n_embd;
    if (!given_text(given, "min-lr")) r->min_lr = (float)(r->lr / 10.0);
    if (!given_text(given, "seq-len")) derive_context(r);
    // --data without a context from --seq-len, a preset named on purpose or --init: the
    // longest sample's, so that nothing is cut unasked.
    a->fit_context = r->data[0] && !init_from && !given_text(given, "seq-len") &&
                     !(given_text(given, "preset") && r->preset->seq_len);
    if (!init_from) {
        r->model.vocab_size = r->task->vocab_size;
        r->model.seq_len = r->task_opt.seq_len;
        return 0;
    }
    if (r->task->vocab_size != r->model.vocab_size)
        return flags_error(err, errlen,
                     "checkpoint %s has a vocabulary of %d tokens, task %s has %d; --init needs a "
                     "task with the same tokens",
                     a->init, r->model.vocab_size, r->task->name, r->task->vocab_size);
    // Shorter sequences run in the model's context as they are; a longer context would change
    // the shape of position tables (abs, and rel or cope sized by it).
    if (r->task_opt.seq_len > r->model.seq_len)
        return flags_error(err, errlen,
                     "checkpoint %s was built for a context of %d tokens, which --init keeps; pass "
                     "--seq-len %d or less",
                     a->init, r->model.seq_len, r->model.seq_len);
    return 0;
}

// The task's sequences against the context, and length generalisation against encodings that
// learn one row per position: rows past the training length would be used untrained.
static int check_layout(const RunConfig *r, const TaskLayout *layout, int train_size,
                        int writes_data, char *err, size_t errlen) {
    int longest = task_layout_longest(layout);
    if (longest > r->task_opt.seq_len)
        return flags_error(err, errlen,
                     "%s %s%s has sequences of %d tokens, more than --seq-len %d; raise --seq-len "
                     "or leave it out (it defaults to the longest sequence)",
                     r->data[0] ? "dataset" : "task", r->data[0] ? r->data : r->task->name,
                     r->data[0] ? "" : " with these options", longest, r->task_opt.seq_len);
    if (r->data[0] && !train_size && !writes_data)
        return flags_error(err, errlen,
                     "dataset %s has no training set; write one with bin/train --task %s "
                     "--train-seqs N --write-data FILE",
                     r->data, r->task->name);
    if (train_size && train_size < r->batch && !writes_data)
        return flags_error(err, errlen,
                     "the training set has %d sequences, fewer than --batch %d; lower --batch or "
                     "use more sequences",
                     train_size, r->batch);
    for (int s = 0; s < layout->n_splits; s++) {
        const TaskSplit *split = &layout->split[s];
        if (!split->extrapolates || !r->model.pe->max_len) continue;
        return flags_error(err, errlen,
                     "split %s of task %s tests length generalisation (%d tokens, training %d), "
                     "which --pe %s cannot: it learns one embedding per position and none past "
                     "the training length; use another --pe or leave the split out (kvret: "
                     "--kv-eval-pairs 0)",
                     split->name, r->task->name, split->seq_len, layout->train_len,
                     r->model.pe->name);
    }
    return 0;
}

static int validate(const CliArgs *a, char *err, size_t errlen) {
    const RunConfig *r = &a->run;
    for (int i = 0; i < table.n; i++)
        if (flags_check_range(&table, &table.row[i], a, err, errlen)) return -1;
    if (r->min_lr > r->lr)
        return flags_error(err, errlen,
                     "--min-lr %g is above --lr %g; the schedule decays from --lr down to --min-lr",
                     (double)r->min_lr, (double)r->lr);
    if (r->warmup > r->steps)
        return flags_error(err, errlen, "--warmup %ld is longer than --steps %ld; pick a shorter warmup",
                     r->warmup, r->steps);
    if (a->stop_at > r->steps)
        return flags_error(err, errlen, "--stop-at %ld is beyond --steps %ld", a->stop_at, r->steps);
    if (r->train_only == TRAIN_MODULE && !r->model.moice.n_bases)
        return flags_error(err, errlen,
                     "--train-only routers trains MoICE's routers, and this model has none; add "
                     "--moice-bases (e.g. short)");
    const char *problem = r->task->check(&r->task_opt);
    if (!problem) problem = gpt_config_check(&r->model);
    if (problem) return flags_error(err, errlen, "%s", problem);
    if (r->data[0] && r->train_seqs)
        return flags_error(err, errlen,
                     "--train-seqs does not apply to --data %s: the file's training set is used; "
                     "drop --train-seqs",
                     r->data);
    if (r->data[0]) return 0;  // checked once read: cli_check_data
    TaskLayout layout;
    r->task->layout(&r->task_opt, &layout);
    int train_size = r->train_seqs ? r->train_seqs : layout.train_size;
    return check_layout(r, &layout, train_size, a->write_data[0] != 0, err, errlen);
}

DataSource cli_data_source(const CliArgs *a) {
    DataSource src = run_config_data(&a->run);
    if (a->fit_context) src.cut_to = 0;
    return src;
}

int cli_check_data(CliArgs *a, const RunData *d, char *err, size_t errlen) {
    RunConfig *r = &a->run;
    if (a->fit_context) {
        r->model.seq_len = r->task_opt.seq_len = task_layout_longest(&d->evals.layout);
        a->source[find_flag("seq-len") - table.row] = FROM_DERIVED;
    }
    return check_layout(r, &d->evals.layout, d->train.n, a->write_data[0] != 0, err, errlen);
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// --write-data replaces an existing file only with --force, and never anything but a file.
static int check_write_data(const CliArgs *a, char *err, size_t errlen) {
    struct stat st;
    if (stat(a->write_data, &st) != 0) return 0;
    if (!S_ISREG(st.st_mode))
        return flags_error(err, errlen, "--write-data %s exists and is not a regular file; give the path "
                     "of a new file", a->write_data);
    if (!a->force)
        return flags_error(err, errlen, "--write-data %s already exists; pass --force to replace it, or "
                     "another path", a->write_data);
    return 0;
}

static int same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

// The output folder and its guard: a run already there is only replaced with --force, or
// continued by resuming its own checkpoint.
static int choose_out(CliArgs *a, char *err, size_t errlen) {
    if (!a->out[0] && a->resume[0]) {
        char copy[PATH_LEN];
        snprintf(copy, sizeof copy, "%s", a->resume);
        snprintf(a->out, PATH_LEN, "%s", dirname(copy));
    } else if (!a->out[0]) {
        snprintf(a->out, PATH_LEN, "checkpoints/%s-%s-s%llu%s", a->run.task->name,
                 a->run.model.pe->name, (unsigned long long)a->run.seed, a->init[0] ? "-ft" : "");
    }
    char model[PATH_LEN + 16], metrics[PATH_LEN + 16];
    snprintf(model, sizeof model, "%s/model.h5", a->out);
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", a->out);
    long holder = run_lock_holder(a->out);
    if (holder) return run_lock_busy("--out", a->out, holder, err, errlen);
    if (a->force || (a->resume[0] && same_file(a->resume, model))) return 0;
    if (exists(model) || exists(metrics))
        return flags_error(err, errlen,
                     "%s already holds a run; pass --resume %s to continue it, --force to replace "
                     "it, or another --out",
                     a->out, model);
    return 0;
}

// Each flag's source, from snapshots of the values after the built-in defaults and after the
// preset (or the checkpoint) were applied. The checkpoint fixes the scopes up to fixed_scope_max
// (as check_against_checkpoint does: training for --resume, the model for --init; -1: none).
static void record_sources(CliArgs *a, const char **given, const CliArgs *defaults,
                           const CliArgs *preset, int fixed_scope_max) {
    for (int i = 0; i < table.n; i++) {
        const Flag *f = &table.row[i];
        a->source[i] = given[i]                         ? FROM_FLAG
                       : !same_value(f, a, preset)      ? FROM_DERIVED
                       : (int)f->scope <= fixed_scope_max ? FROM_CHECKPOINT
                       : !same_value(f, preset, defaults) ? FROM_PRESET
                                                          : FROM_DEFAULT;
    }
}

void cli_print_resolved(const CliArgs *a, FILE *out) {
    static const char *const names[] = {"default", "preset", "flag", "checkpoint", "derived"};
    char *config = run_config_to_json(&a->run);
    cJSON *root = cJSON_CreateObject(), *flags_json = cJSON_CreateObject();
    cJSON_AddRawToObject(root, "config", config ? config : "null");
    cJSON_AddItemToObject(root, "flags", flags_json);
    for (int i = 0; i < table.n; i++) {
        const Flag *f = &table.row[i];
        if (f->kind == KIND_SWITCH) continue;
        char value[4200];
        format_value(f, a, value, sizeof value);
        cJSON *row = cJSON_AddObjectToObject(flags_json, f->name);
        cJSON_AddStringToObject(row, "value", value);
        cJSON_AddStringToObject(row, "from", names[a->source[i]]);
    }
    char *text = cJSON_Print(root);
    fprintf(out, "%s\n", text ? text : "{}");
    free(text), free(config);
    cJSON_Delete(root);
}

int cli_parse(int argc, char **argv, CliArgs *a, char *err, size_t errlen) {
    const char *given[FLAGS_MAX] = {0};
    static CliArgs defaults, preset;  // static: CliArgs holds path buffers
    gather_flags();
    set_defaults(a);
    defaults = *a;
    if (flags_scan(&table, argc, argv, given, NULL, err, errlen)) return -1;
    if (given_text(given, "help")) {
        if (start_new_run(a, given, NULL, err, errlen)) return -1;
        derive_context(&a->run);
        print_help(argv[0], a);
        a->help = 1;
        return 0;
    }
    const char *resume = given_text(given, "resume"), *init = given_text(given, "init");
    if (resume && init)
        return flags_error(err, errlen,
                     "--resume and --init exclude each other: --resume continues a run, --init "
                     "starts a new one from its weights");
    RunConfig ckpt;
    if ((resume || init) && read_checkpoint_config(resume ? resume : init, &ckpt, err, errlen))
        return -1;
    for (int i = 0; i < table.n && resume; i++)
        if (table.row[i].kind == KIND_RECIPE && given[i])
            return flags_error(err, errlen,
                         "--%s sets up a new run and --resume continues one as it was; drop --%s",
                         table.row[i].name, table.row[i].name);
    if (resume) a->run = ckpt;
    else if (start_new_run(a, given, init ? &ckpt : NULL, err, errlen)) return -1;
    preset = *a;

    // Explicit flags last, in table order, so that --preset reads the final --task. Each is
    // range-checked as it is read, so that nothing is derived from a value out of range
    // (fuzz_flags found --dim 642222222, whose 4x, the default --ffn, overflowed an int);
    // validate() checks every value again once the derived ones are in.
    for (int i = 0; i < table.n; i++)
        if (given[i] && (parse_value(&table.row[i], given[i], a, err, errlen) ||
                         flags_check_range(&table, &table.row[i], a, err, errlen)))
            return -1;
    if (resume && check_against_checkpoint(a, given, &ckpt, resume, SCOPE_TRAIN, "", err, errlen))
        return -1;
    if (init && check_against_checkpoint(a, given, &ckpt, init, SCOPE_MODEL,
                                         "--init keeps the model's shape: ", err, errlen))
        return -1;
    if (resume && given_text(given, "threads") && a->run.threads != ckpt.threads)
        fprintf(stderr,
                "note: checkpoint %s was trained with --threads %d; with %d the rest of the run "
                "differs from the uninterrupted one in rounding\n",
                resume, ckpt.threads, a->run.threads);
    // A resumed config is complete already: deriving again could only change it.
    if (!resume && derive(a, given, init ? &ckpt : NULL, err, errlen)) return -1;
    if (validate(a, err, errlen)) return -1;
    record_sources(a, given, &defaults, &preset, resume ? SCOPE_TRAIN : init ? SCOPE_MODEL : -1);
    if (a->dry_run) return 0;
    return a->write_data[0] ? check_write_data(a, err, errlen) : choose_out(a, err, errlen);
}
