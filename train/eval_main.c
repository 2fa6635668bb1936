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
#include "../common/savefile.h"
#include "run_lock.h"

enum { EXIT_RUN_FAILED = 1, EXIT_BAD_INPUT = 2 };

#define UNSET (-1)
#define MAX_TASK_FLAGS 16


typedef struct {
    const char *checkpoint;
    const char *json;  // append the results here, or NULL
    // UNSET: the checkpoint's value
    int eval_seqs, batch, threads, mspoe_skip_layers;
    // Options of the tasks that change only their evaluation splits (Option.eval), as given.
    const Option *task_flag[MAX_TASK_FLAGS];
    const Task *task_flag_owner[MAX_TASK_FLAGS];
    int task_flag_value[MAX_TASK_FLAGS], n_task_flags;
    const char *mspoe;        // "MIN:MAX", or NULL: Ms-PoE off
    const char *mspoe_order;  // or NULL: score
    int help;
} EvalArgs;

// The flags: --help prints this table; integers are parsed with their range.
typedef struct {
    const char *name, *metavar, *help;
    size_t offset;  // of the value in EvalArgs
    int is_int;
    long lo, hi;
} Flag;

#define AT(member) offsetof(EvalArgs, member)

static const Flag flags[] = {
    {"checkpoint", "FILE", "checkpoint to evaluate (or give FILE as the only argument)",
     AT(checkpoint), 0, 0, 0},
    {"eval-seqs", "N", "sequences per split [the run's --eval-seqs]", AT(eval_seqs), 1, 1, 1 << 24},
    {"batch", "N", "sequences per forward pass [the run's --batch]", AT(batch), 1, 1, 1 << 20},
    {"threads", "N", "OpenMP/OpenBLAS threads [the run's --threads]", AT(threads), 1, 1, 4096},
    {"mspoe", "MIN:MAX",
     "Ms-PoE on a rope model: head ratios r from MIN to MAX (official 1.2:1.8) [off]", AT(mspoe),
     0, 0, 0},
    {"mspoe-skip-layers", "N", "Ms-PoE: the first N layers keep plain rope [2, at most layers - 1]",
     AT(mspoe_skip_layers), 1, 0, GPT_MAX_LAYERS},
    {"mspoe-order", "score|plain|official",
     "Ms-PoE: ratios by position-awareness score (least aware head gets MAX), by head index, or "
     "by the official code's indexing of the score order [score]",
     AT(mspoe_order), 0, 0, 0},
    {"json", "FILE", "append the results to FILE as one JSON line", AT(json), 0, 0, 0},
    {"help", NULL, "print this help and exit", AT(help), 0, 0, 0},
};

#define N_FLAGS ((int)(sizeof flags / sizeof flags[0]))

static void print_flag(const char *name, const char *metavar, const char *help,
                       const char *suffix) {
    char left[48];
    snprintf(left, sizeof left, "--%s%s%s", name, metavar ? " " : "", metavar ? metavar : "");
    printf("  %-30s %s%s\n", left, help, suffix);
}

// The task option called name (length len) that bin/eval may set, from every registered task.
static const Option *find_task_flag(const char *name, size_t len, const Task **owner) {
    for (int t = 0; t < task_count(); t++)
        for (int i = 0; i < task_at(t)->n_options; i++) {
            const Option *o = &task_at(t)->options[i];
            if (o->eval && strlen(o->name) == len && strncmp(o->name, name, len) == 0) {
                *owner = task_at(t);
                return o;
            }
        }
    return NULL;
}

static void print_help(void) {
    printf(
        "usage: %s CHECKPOINT [--flag value ...]\n\n"
        "Evaluates a checkpoint written by bin/train on its task's fixed evaluation splits and\n"
        "prints one row per split (token and sequence error, loss) and the task's position\n"
        "sweep, if any. Task, options and model come from the checkpoint; defaults [in brackets] are the\n"
        "run's own. Exit status: 0 done, 1 failure while running, 2 bad input.\n\n",
        program_name);
    for (int i = 0; i < N_FLAGS; i++) print_flag(flags[i].name, flags[i].metavar, flags[i].help, "");
    for (int t = 0; t < task_count(); t++)
        for (int i = 0; i < task_at(t)->n_options; i++) {
            const Option *o = &task_at(t)->options[i];
            if (o->eval) print_flag(o->name, o->metavar, o->help, " [the run's]");
        }
}

static int parse_int(const char *name, const char *text, long lo, long hi, int *out, char *err,
                     size_t errlen) {
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (end == text || *end != '\0') {
        snprintf(err, errlen, "--%s needs an integer, got '%s'", name, text);
        return -1;
    }
    if (errno == ERANGE || value < lo || value > hi) {
        snprintf(err, errlen, "--%s must be an integer from %ld to %ld, got %s", name, lo, hi, text);
        return -1;
    }
    *out = (int)value;
    return 0;
}

static int parse_flag(const Flag *f, const char *text, EvalArgs *a, char *err, size_t errlen) {
    void *slot = (char *)a + f->offset;
    if (!f->is_int) {
        *(const char **)slot = text;
        return 0;
    }
    return parse_int(f->name, text, f->lo, f->hi, slot, err, errlen);
}

// A task's option: its value now, whether the checkpoint's task has it once that is read.
static int parse_task_flag(const Option *o, const Task *owner, const char *text, EvalArgs *a,
                           char *err, size_t errlen) {
    if (a->n_task_flags == MAX_TASK_FLAGS) {
        snprintf(err, errlen, "more than %d task options given", MAX_TASK_FLAGS);
        return -1;
    }
    int k = a->n_task_flags++;
    a->task_flag[k] = o, a->task_flag_owner[k] = owner;
    return parse_int(o->name, text, (long)o->lo, (long)o->hi, &a->task_flag_value[k], err, errlen);
}

static int parse_args(int argc, char **argv, EvalArgs *a, char *err, size_t errlen) {
    *a = (EvalArgs){.eval_seqs = UNSET, .batch = UNSET, .threads = UNSET,
                    .mspoe_skip_layers = UNSET};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0) arg = "--help";
        if (strncmp(arg, "--", 2) != 0) {
            if (a->checkpoint) {
                snprintf(err, errlen, "unexpected argument '%s'; give one checkpoint (see --help)",
                         arg);
                return -1;
            }
            a->checkpoint = arg;
            continue;
        }
        const char *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
        const Flag *f = NULL;
        for (int k = 0; k < N_FLAGS && !f; k++)
            if (strlen(flags[k].name) == len && strncmp(flags[k].name, arg + 2, len) == 0)
                f = &flags[k];
        const Task *owner = NULL;
        const Option *task_flag = f ? NULL : find_task_flag(arg + 2, len, &owner);
        if (!f && !task_flag) {
            snprintf(err, errlen, "unknown flag %.*s; see --help for the list", (int)len + 2, arg);
            return -1;
        }
        if (task_flag) {
            const char *value = eq ? eq + 1 : i + 1 < argc ? argv[++i] : NULL;
            if (!value) {
                snprintf(err, errlen, "--%s needs a value (%s)", task_flag->name, task_flag->metavar);
                return -1;
            }
            if (parse_task_flag(task_flag, owner, value, a, err, errlen)) return -1;
            continue;
        }
        if (!f->metavar) {  // --help
            a->help = 1;
            return 0;
        }
        const char *value = eq ? eq + 1 : i + 1 < argc ? argv[++i] : NULL;
        if (!value) {
            snprintf(err, errlen, "--%s needs a value (%s)", f->name, f->metavar);
            return -1;
        }
        if (parse_flag(f, value, a, err, errlen)) return -1;
    }
    if (!a->checkpoint) {
        snprintf(err, errlen,
                 "no checkpoint given; pass one, for example checkpoints/flipflop-rope-s1/model.h5");
        return -1;
    }
    if (!a->mspoe && (a->mspoe_skip_layers != UNSET || a->mspoe_order)) {
        snprintf(err, errlen, "--mspoe-skip-layers and --mspoe-order set up Ms-PoE; add --mspoe MIN:MAX");
        return -1;
    }
    return 0;
}

// ----------------------------------------------------------------------------------------------

typedef struct {
    RunConfig run;     // the checkpoint's, with the evaluation's overrides
    MsPoEConfig mspoe;
} Evaluation;

static int read_run(const char *path, RunConfig *rc, char *err, size_t errlen) {
    char *json, why[512];
    if (checkpoint_read_config(path, &json, err, errlen)) return -1;
    int failed = run_config_from_json(json, rc, why, sizeof why);
    free(json);
    if (failed)
        snprintf(err, errlen,
                 "checkpoint %s has no usable run config (%s); bin/eval needs a checkpoint written "
                 "by bin/train",
                 path, why);
    return failed ? -1 : 0;
}

// The task options the flags change, which must be options of the checkpoint's task.
static int apply_task_flags(const EvalArgs *a, RunConfig *r, char *err, size_t errlen) {
    for (int k = 0; k < a->n_task_flags; k++) {
        if (a->task_flag_owner[k] != r->task) {
            snprintf(err, errlen, "--%s is an option of task %s, and checkpoint %s is of task %s; "
                     "leave it out", a->task_flag[k]->name, a->task_flag_owner[k]->name,
                     a->checkpoint, r->task->name);
            return -1;
        }
        *(int *)((char *)&r->task_opt + a->task_flag[k]->offset) = a->task_flag_value[k];
    }
    const char *problem = r->task->check(&r->task_opt);
    if (problem) {
        snprintf(err, errlen, "%s", problem);
        return -1;
    }
    return 0;
}

// Splits longer than the model's context (kvret's `long` with more pairs than the run had) run
// in a wider context. Only encodings without a table of positions can: abs is refused, like
// bin/train refuses it length generalisation; rel and cope size their tables by the context
// when their npos is 0, so that size is pinned to the trained one first.
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
    if (!model->pe_opt.rel_npos) model->pe_opt.rel_npos = model->seq_len;
    if (!model->pe_opt.cope_npos) model->pe_opt.cope_npos = model->seq_len + 1;
    model->seq_len = longest;
    const char *problem = gpt_config_check(model);
    if (problem) {
        snprintf(err, errlen, "the model cannot run the task's %d-token sequences: %s", longest,
                 problem);
        return -1;
    }
    return 0;
}

static int set_up(const EvalArgs *a, Evaluation *e, char *err, size_t errlen) {
    RunConfig *r = &e->run;
    if (read_run(a->checkpoint, r, err, errlen)) return -1;
    if (a->eval_seqs != UNSET) r->eval_seqs = a->eval_seqs;
    if (a->batch != UNSET) r->batch = a->batch;
    if (a->threads != UNSET) r->threads = a->threads;
    if (apply_task_flags(a, r, err, errlen) || fit_context(r, &r->model, err, errlen)) return -1;
    if (!a->mspoe) return 0;
    e->mspoe = (MsPoEConfig){.skip_layers = a->mspoe_skip_layers != UNSET
                                                ? a->mspoe_skip_layers
                                                : mspoe_default_skip_layers(r->model.n_layer)};
    if (mspoe_parse_ratios(a->mspoe, &e->mspoe, err, errlen)) return -1;
    if (a->mspoe_order) {
        int k = 0;
        while (mspoe_order_names[k] && strcmp(mspoe_order_names[k], a->mspoe_order) != 0) k++;
        if (!mspoe_order_names[k]) {
            snprintf(err, errlen, "--mspoe-order must be score, plain or official, got '%s'",
                     a->mspoe_order);
            return -1;
        }
        e->mspoe.order = (MsPoEOrder)k;
    }
    const char *problem = mspoe_check(&e->mspoe, &r->model);
    if (problem) {
        snprintf(err, errlen, "%s", problem);
        return -1;
    }
    return 0;
}

static void print_header(const EvalArgs *a, const Evaluation *e, const GPT *model) {
    const RunConfig *r = &e->run;
    const GPTConfig *m = &r->model;
    printf("pelab eval | %s | task %s (preset %s) | pe %s | layers %d, dim %d, heads %d | %.2fM "
           "parameters\n",
           a->checkpoint, r->task->name, r->preset->name, m->pe->name, m->n_layer, m->n_embd,
           m->n_head, model->num_parameters / 1e6);
    printf("%d sequences per split | batch %d | %d threads\n", r->eval_seqs, r->batch, r->threads);
    if (a->mspoe)
        printf("Ms-PoE: layers %d-%d rotate head h by positions t / r_h, r from %g to %g by %s\n",
               e->mspoe.skip_layers, m->n_layer - 1, (double)e->mspoe.ratio_min,
               (double)e->mspoe.ratio_max,
               e->mspoe.order == MSPOE_ORDER_SCORE      ? "position-awareness score (least aware head: largest r)"
               : e->mspoe.order == MSPOE_ORDER_OFFICIAL ? "the official code's indexing of the score order"
                                                        : "head index");
    printf("\n");
}

static void add_float(cJSON *obj, const char *key, float value) {
    char buf[32];
    format_float(buf, sizeof buf, value);
    cJSON_AddRawToObject(obj, key, buf);
}

static int append_json(FILE *out, const EvalArgs *a, const Evaluation *e, const EvalSets *sets,
                       const SplitResult *results) {
    const RunConfig *r = &e->run;
    cJSON *row = cJSON_CreateObject();
    cJSON_AddStringToObject(row, "checkpoint", a->checkpoint);
    cJSON_AddStringToObject(row, "task", r->task->name);
    cJSON_AddStringToObject(row, "pe", r->model.pe->name);
    cJSON_AddNumberToObject(row, "eval_seqs", r->eval_seqs);
    cJSON_AddNumberToObject(row, "batch", r->batch);
    cJSON_AddNumberToObject(row, "threads", r->threads);
    if (a->mspoe) {
        cJSON *mspoe = cJSON_AddObjectToObject(row, "mspoe");
        add_float(mspoe, "ratio_min", e->mspoe.ratio_min);
        add_float(mspoe, "ratio_max", e->mspoe.ratio_max);
        cJSON_AddNumberToObject(mspoe, "skip_layers", e->mspoe.skip_layers);
        cJSON_AddStringToObject(mspoe, "order", mspoe_order_names[e->mspoe.order]);
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
    EvalArgs args;
    Evaluation e = {0};
    char err[1024];
    if (parse_args(argc, argv, &args, err, sizeof err)) die(EXIT_BAD_INPUT, "%s", err);
    if (args.help) {
        print_help();
        return 0;
    }
    if (set_up(&args, &e, err, sizeof err)) die(EXIT_BAD_INPUT, "%s", err);
    // Opened before the work, so a path that cannot be written fails at once.
    int json_fd = args.json ? run_lock_open_append(args.json, "--json", err, sizeof err) : -1;
    if (args.json && json_fd < 0) die(EXIT_BAD_INPUT, "%s", err);
    FILE *json = args.json ? fdopen(json_fd, "a") : NULL;
    if (args.json && !json)
        die(EXIT_RUN_FAILED, "cannot open --json %s: %s", args.json, strerror(errno));

    RunConfig *r = &e.run;
    program_set_threads(r->threads);
    GPT model;
    if (gpt_build(&model, &r->model, r->batch, err, sizeof err)) die(EXIT_RUN_FAILED, "%s", err);
    if (checkpoint_load(args.checkpoint, &model, NULL, NULL, err, sizeof err))
        die(EXIT_BAD_INPUT, "%s", err);
    if (args.mspoe && mspoe_enable(&model, &e.mspoe, err, sizeof err))
        die(EXIT_RUN_FAILED, "%s", err);
    // The run's own splits: drawn from the task, or read from the dataset file it trained on.
    RunData data;
    DataSource src = run_config_data(r);
    if (run_data_load(&data, &src, 0, err, sizeof err)) die(EXIT_BAD_INPUT, "%s", err);
    const EvalSets *sets = &data.evals;
    SplitResult results[TASK_MAX_SPLITS];
    if (evaluate(&model, sets, results)) die(EXIT_RUN_FAILED, "out of memory for the evaluation batches");

    print_header(&args, &e, &model);
    eval_print_table(stdout, sets, results);
    int status = 0;
    if (json) {
        if (append_json(json, &args, &e, sets, results) != 0 || fflush(json) != 0 ||
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
