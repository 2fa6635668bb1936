// bin/eval: evaluates a checkpoint on its task's fixed splits (and its position sweep, if any), optionally with Ms-PoE, prints the table bin/train prints at the end of a run and can
// append the results as one JSON line (bin/eval --help).
//
// Everything about the run comes from the checkpoint's config: the task and its options, the
// model (built by gpt_build, so any encoding and any tensors a checkpoint's config describes
// load), and the defaults of the evaluation (sequences per split, batch, threads). With the same
// batch, threads and sequences the numbers are bit for bit those of bin/train's final table.
//
// Exit status: 0 done, 1 failure while running, 2 bad input.
#include <errno.h>
#include <omp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../model/gpt.h"
#include "../model/mspoe.h"
#include "../tasks/task.h"
#include "checkpoint.h"
#include "config.h"
#include "../data/evaluate.h"
#include "metrics.h"
#include "program.h"
#include "../data/run_data.h"
#include "flags.h"
#include "../common/savefile.h"
#include "run_lock.h"

enum { EXIT_RUN_FAILED = 1, EXIT_BAD_INPUT = 2 };

// The values the flags set. run and mspoe start as the checkpoint's config and Ms-PoE's
// defaults; the flags given then change them.
typedef struct {
    char checkpoint[FLAGS_PATH_LEN];
    char json[FLAGS_PATH_LEN];  // append the results here, or ""
    int help;
    RunConfig run;
    MsPoEConfig mspoe;
    int use_mspoe;  // --mspoe given
} EvalArgs;

#define AT(member) offsetof(EvalArgs, member)

// bin/eval's own rows; after them the rows of Ms-PoE (model/mspoe.c) and the task options that
// change only the evaluation splits (Option.eval, in each task's file).
static const Option eval_flags[] = {
    {"checkpoint", "FILE", KIND_PATH, AT(checkpoint), SCOPE_RUN,
     .help = "checkpoint to evaluate (or give FILE as the only argument)", .default_text = "-"},
    {"eval-seqs", "N", KIND_INT, AT(run.eval_seqs), SCOPE_RUN, 1, 1 << 24,
     .help = "sequences per split", .default_text = "the run's --eval-seqs"},
    {"batch", "N", KIND_INT, AT(run.batch), SCOPE_RUN, 1, 1 << 20,
     .help = "sequences per forward pass", .default_text = "the run's --batch"},
    {"threads", "N", KIND_INT, AT(run.threads), SCOPE_RUN, 1, 4096,
     .help = "OpenMP/OpenBLAS threads", .default_text = "the run's --threads"},
    {"json", "FILE", KIND_PATH, AT(json), SCOPE_RUN,
     .help = "append the results to FILE as one JSON line", .default_text = "-"},
    {"help", NULL, KIND_SWITCH, AT(help), SCOPE_RUN, .help = "print this help and exit"},
};

static FlagTable table;
static int first_task_row;  // rows from here on are task options

static void gather_flags(void) {
    flags_add(&table, eval_flags, (int)(sizeof eval_flags / sizeof eval_flags[0]), 0);
    flags_add(&table, mspoe_options, mspoe_n_options, AT(mspoe));
    first_task_row = table.n;
    for (int t = 0; t < task_count(); t++)
        for (int i = 0; i < task_at(t)->n_options; i++)
            if (task_at(t)->options[i].eval) flags_add(&table, &task_at(t)->options[i], 1, AT(run.task_opt));
}

static void print_help(void) {
    printf(
        "usage: %s CHECKPOINT [--flag value ...]\n\n"
        "Evaluates a checkpoint written by bin/train on its task's fixed evaluation splits and\n"
        "prints one row per split (token and sequence error, loss) and the task's position\n"
        "sweep, if any. Task, options and model come from the checkpoint; defaults [in brackets] are the\n"
        "run's own. Exit status: 0 done, 1 failure while running, 2 bad input.\n\n",
        program_name);
    for (int i = 0; i < table.n; i++)
        flags_print_row(&table, &table.row[i], NULL, i >= first_task_row ? "the run's" : NULL);
}

static int read_run(const char *path, RunConfig *rc, char *err, size_t errlen) {
    char *json, why[512];
    if (checkpoint_read_config(path, &json, err, errlen)) return -1;
    int failed = run_config_from_json(json, rc, why, sizeof why);
    free(json);
    if (failed)
        snprintf(err, errlen,
                 "checkpoint %.400s has no usable run config (%.400s); bin/eval needs a checkpoint written "
                 "by bin/train",
                 path, why);
    return failed ? -1 : 0;
}

// A task option must belong to the checkpoint's task.
static int check_task_flag(const Option *f, const EvalArgs *a, char *err, size_t errlen) {
    const Task *own = a->run.task;
    for (int i = 0; i < own->n_options; i++)
        if (strcmp(own->options[i].name, f->name) == 0) return 0;
    const Task *owner = NULL;
    for (int t = 0; t < task_count() && !owner; t++)
        for (int i = 0; i < task_at(t)->n_options; i++)
            if (strcmp(task_at(t)->options[i].name, f->name) == 0) owner = task_at(t);
    snprintf(err, errlen,
             "--%s is an option of task %s, and checkpoint %.512s is of task %s; leave it out",
             f->name, owner->name, a->checkpoint, own->name);
    return -1;
}

// Flags, then the checkpoint's config, then the flags' values over it, range-checked.
static int parse_args(int argc, char **argv, EvalArgs *a, char *err, size_t errlen) {
    const char *given[FLAGS_MAX] = {0}, *positional = NULL;
    memset(a, 0, sizeof *a);
    gather_flags();
    if (flags_scan(&table, argc, argv, given, &positional, err, errlen)) return -1;
    if (given[flags_find(&table, "help") - table.row]) {
        a->help = 1;
        return 0;
    }
    const char *checkpoint = given[flags_find(&table, "checkpoint") - table.row];
    if (positional && checkpoint) {
        snprintf(err, errlen, "unexpected argument '%s'; give one checkpoint (see --help)",
                 positional);
        return -1;
    }
    if (!checkpoint) checkpoint = positional;
    if (!checkpoint) {
        snprintf(err, errlen,
                 "no checkpoint given; pass one, for example checkpoints/flipflop-rope-s1/model.h5");
        return -1;
    }
    const Option *mspoe = flags_find(&table, "mspoe");
    if (!given[mspoe - table.row] && (given[flags_find(&table, "mspoe-skip-layers") - table.row] ||
                                      given[flags_find(&table, "mspoe-order") - table.row])) {
        snprintf(err, errlen, "--mspoe-skip-layers and --mspoe-order set up Ms-PoE; add --mspoe MIN:MAX");
        return -1;
    }
    if (flags_parse(&table, flags_find(&table, "checkpoint"), checkpoint, a, NULL, err, errlen) ||
        read_run(a->checkpoint, &a->run, err, errlen))
        return -1;
    a->mspoe.skip_layers = mspoe_default_skip_layers(a->run.model.n_layer);
    for (int i = 0; i < table.n; i++) {
        const Option *f = &table.row[i];
        if (!given[i] || f == flags_find(&table, "checkpoint")) continue;
        if (i >= first_task_row && check_task_flag(f, a, err, errlen)) return -1;
        if (flags_parse(&table, f, given[i], a, NULL, err, errlen) ||
            flags_check_range(&table, f, a, err, errlen))
            return -1;
    }
    a->use_mspoe = given[mspoe - table.row] != NULL;
    return 0;
}

// ----------------------------------------------------------------------------------------------

// Splits longer than the model's context (kvret's `long` with more pairs than the run had) run
// in a wider context. Only encodings without a table of positions can: abs is refused, like
// bin/train refuses it length generalisation; encodings that size a table by the context (rel and
// cope when their npos is 0) pin that size to the trained one first (keep_tables).
static int fit_context(const RunConfig *r, GPTConfig *model, char *err, size_t errlen) {
    TaskLayout layout;
    r->task->layout(&r->task_opt, &layout);
    for (int s = 0; s < layout.n_splits; s++) {
        const TaskSplit *split = &layout.split[s];
        if (!split->extrapolates || !model->pe->max_len) continue;
        snprintf(err, errlen,
                 "split %s tests length generalisation (%d tokens, training %d), which --pe %s "
                 "cannot: it learns one embedding per position; leave the split out (kvret: "
                 "--kv-eval-pairs 0)",
                 split->name, split->seq_len, layout.train_len, model->pe->name);
        return -1;
    }
    int longest = task_layout_longest(&layout);
    if (longest <= model->seq_len) return 0;
    if (model->pe->keep_tables) model->pe->keep_tables(model);
    model->seq_len = longest;
    const char *problem = gpt_config_check(model);
    if (problem) {
        snprintf(err, errlen, "the model cannot run the task's %d-token sequences: %s", longest,
                 problem);
        return -1;
    }
    return 0;
}

// The task's options as changed, the context the splits need, and Ms-PoE against the model.
static int set_up(EvalArgs *a, char *err, size_t errlen) {
    RunConfig *r = &a->run;
    const char *problem = r->task->check(&r->task_opt);
    if (!problem && fit_context(r, &r->model, err, errlen)) return -1;
    if (!problem && a->use_mspoe) problem = mspoe_check(&a->mspoe, &r->model);
    if (problem) {
        snprintf(err, errlen, "%s", problem);
        return -1;
    }
    return 0;
}

static void print_header(const EvalArgs *a, const GPT *model) {
    const RunConfig *r = &a->run;
    const GPTConfig *m = &r->model;
    printf("pelab eval | %s | task %s (preset %s) | pe %s | layers %d, dim %d, heads %d | %.2fM "
           "parameters\n",
           a->checkpoint, r->task->name, r->preset->name, m->pe->name, m->n_layer, m->n_embd,
           m->n_head, model->num_parameters / 1e6);
    printf("%d sequences per split | batch %d | %d threads\n", r->eval_seqs, r->batch, r->threads);
    if (a->use_mspoe)
        printf("Ms-PoE: layers %d-%d rotate head h by positions t / r_h, r from %g to %g by %s\n",
               a->mspoe.skip_layers, m->n_layer - 1, (double)a->mspoe.ratio_min,
               (double)a->mspoe.ratio_max,
               a->mspoe.order == MSPOE_ORDER_SCORE      ? "position-awareness score (least aware head: largest r)"
               : a->mspoe.order == MSPOE_ORDER_OFFICIAL ? "the official code's indexing of the score order"
                                                        : "head index");
    printf("\n");
}

static void add_float(cJSON *obj, const char *key, float value) {
    char buf[32];
    format_float(buf, sizeof buf, value);
    cJSON_AddRawToObject(obj, key, buf);
}

static int append_json(FILE *out, const EvalArgs *a, const EvalSets *sets,
                       const SplitResult *results) {
    const RunConfig *r = &a->run;
    cJSON *row = cJSON_CreateObject();
    cJSON_AddStringToObject(row, "checkpoint", a->checkpoint);
    cJSON_AddStringToObject(row, "task", r->task->name);
    cJSON_AddStringToObject(row, "pe", r->model.pe->name);
    cJSON_AddNumberToObject(row, "eval_seqs", r->eval_seqs);
    cJSON_AddNumberToObject(row, "batch", r->batch);
    cJSON_AddNumberToObject(row, "threads", r->threads);
    if (a->use_mspoe) {
        cJSON *mspoe = cJSON_AddObjectToObject(row, "mspoe");
        add_float(mspoe, "ratio_min", a->mspoe.ratio_min);
        add_float(mspoe, "ratio_max", a->mspoe.ratio_max);
        cJSON_AddNumberToObject(mspoe, "skip_layers", a->mspoe.skip_layers);
        cJSON_AddStringToObject(mspoe, "order", mspoe_order_names[a->mspoe.order]);
    } else {
        cJSON_AddNullToObject(row, "mspoe");
    }
    metrics_add_results(row, sets, results);
    char *text = cJSON_PrintUnformatted(row);
    cJSON_Delete(row);
    int failed = !text || fprintf(out, "%s\n", text) < 0;
    free(text);
    return failed ? -1 : 0;
}

int main(int argc, char **argv) {
    program_start(argc, argv, "bin/eval");
    static EvalArgs args;  // static: it holds path buffers
    char err[1024];
    if (parse_args(argc, argv, &args, err, sizeof err)) die(EXIT_BAD_INPUT, "%s", err);
    if (args.help) {
        print_help();
        return 0;
    }
    if (set_up(&args, err, sizeof err)) die(EXIT_BAD_INPUT, "%s", err);
    // Opened before the work, so a path that cannot be written fails at once.
    int json_fd = args.json[0] ? run_lock_open_append(args.json, "--json", err, sizeof err) : -1;
    if (args.json[0] && json_fd < 0) die(EXIT_BAD_INPUT, "%s", err);
    FILE *json = args.json[0] ? fdopen(json_fd, "a") : NULL;
    if (args.json[0] && !json)
        die(EXIT_RUN_FAILED, "cannot open --json %s: %s", args.json, strerror(errno));

    RunConfig *r = &args.run;
    program_set_threads(r->threads);
    GPT model;
    if (gpt_build(&model, &r->model, r->batch, err, sizeof err)) die(EXIT_RUN_FAILED, "%s", err);
    if (checkpoint_load(args.checkpoint, &model, NULL, NULL, err, sizeof err))
        die(EXIT_BAD_INPUT, "%s", err);
    if (args.use_mspoe && mspoe_enable(&model, &args.mspoe, err, sizeof err))
        die(EXIT_RUN_FAILED, "%s", err);
    // The run's own splits: drawn from the task, or read from the dataset file it trained on.
    RunData data;
    DataSource src = run_config_data(r);
    if (run_data_load(&data, &src, 0, err, sizeof err)) die(EXIT_BAD_INPUT, "%s", err);
    const EvalSets *sets = &data.evals;
    SplitResult results[TASK_MAX_SPLITS];
    if (evaluate(&model, sets, results)) die(EXIT_RUN_FAILED, "out of memory for the evaluation batches");

    print_header(&args, &model);
    eval_print_table(stdout, sets, results);
    int status = 0;
    if (json) {
        if (append_json(json, &args, sets, results) != 0 || fflush(json) != 0 ||
            fsync(fileno(json)) != 0 || fclose(json) != 0) {
            fprintf(stderr, "%s: cannot write to --json %s: %s\n", program_name, args.json,
                    savefile_why(errno));
            status = EXIT_RUN_FAILED;
        } else {
            printf("\nappended the results to %s\n", args.json);
        }
    }
    run_data_free(&data);
    gpt_free(&model);
    return status;
}
