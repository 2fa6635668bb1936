// bin/train: trains a GPT on a synthetic task, evaluates it on the task's fixed splits, logs
// metrics and writes HDF5 checkpoints that --resume continues bit for bit (bin/train --help).
//
// Exit status: 0 done (or stopped at --stop-at), 1 failure while running, 2 bad input,
// 130 interrupted (the checkpoint was saved).
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../model/gpt.h"
#include "../model/moice.h"
#include "../common/rng.h"
#include "../tasks/task.h"
#include "adamw.h"
#include "attention_maps.h"
#include "checkpoint.h"
#include "cli.h"
#include "config.h"
#include "../data/evaluate.h"
#include "dist.h"
#include "metrics.h"
#include "program.h"
#include "../data/run_data.h"
#include "run_lock.h"

enum { EXIT_RUN_FAILED = 1, EXIT_BAD_INPUT = 2, EXIT_INTERRUPTED = 130 };

// Streams drawn from --seed; far above any step number, so no dropout key (seed, step) meets them.
#define INIT_STREAM 0x494E495400000000ULL  // "INIT"
#define DATA_STREAM 0x4441544100000000ULL  // "DATA"


static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Set by Ctrl-C (or SIGTERM); the loop saves and stops. SA_RESETHAND restores the default
// action, so a second Ctrl-C ends the program at once.
static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig) { interrupted = sig; }

static void catch_interrupts(void) {
    struct sigaction sa = {.sa_handler = on_interrupt, .sa_flags = SA_RESETHAND};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static void format_duration(double seconds, char *buf, size_t len) {
    long s = (long)(seconds + 0.5);
    if (s < 60) snprintf(buf, len, "%lds", s);
    else if (s < 3600) snprintf(buf, len, "%ldm%02lds", s / 60, s % 60);
    else snprintf(buf, len, "%ldh%02ldm", s / 3600, s % 3600 / 60);
}

static void format_rate(double per_s, char *buf, size_t len) {
    if (per_s >= 1e6) snprintf(buf, len, "%.2fM", per_s / 1e6);
    else if (per_s >= 1e3) snprintf(buf, len, "%.1fk", per_s / 1e3);
    else snprintf(buf, len, "%.0f", per_s);
}

// mkdir -p
static int make_dirs(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(buf, 0777) != 0 && errno != EEXIST ? -1 : 0;
}

// ----------------------------------------------------------------------------------------------

typedef struct {
    CliArgs args;
    GPT model;
    AdamW opt;
    TrainState state;
    RunData data;
    // The training batch: rows of `source` (the fixed training set, or `stream`, redrawn every
    // step) copied into inputs/targets [B, T], T the longest sequence of the batch.
    SequenceSet stream;         // [B, train_len] for an endless stream, else empty
    int *rows;                  // [B] the rows of this step's batch (either source)
    int *epoch;                 // [train.n] the batches of the current epoch (fixed set)
    int64_t *epoch_work;        // [train.n]
    long epoch_ready;           // the epoch `epoch` holds, -1 before the first
    int32_t *inputs, *targets;  // [B, train_len]
    int train_len;              // the longest training sequence
    int batch_B, batch_T;       // the size and length of the latest batch
    EvalSets *evals;            // &data.evals
    SplitResult results[TASK_MAX_SPLITS];
    MetricsLog log;
    char *config_json;
    char checkpoint[4096 + 16];
    float lr;                   // of the latest step
    // Throughput since the last metrics row, since the last progress line and this session,
    // in real (not padding) tokens over training time only; evaluations are timed apart.
    double row_train_s, window_train_s, window_loss, window_aux, session_train_s, session_eval_s;
    long row_tokens, window_steps, window_tokens, session_tokens, session_evals;
    double last_eval_s;         // the latest evaluation's seconds, 0 before the first
    int stopping;               // interrupted, on any rank: every rank saves and stops together
} Trainer;

// Data parallelism: every rank takes an equal shard of each batch, so P must divide the batch
// (and leave every rank a row of shuffle's short last batch); and every rank must run the same
// configuration from the same step.
static void check_shards(Trainer *t) {
    const RunConfig *r = &t->args.run;
    int P = dist_size(), n = t->data.train.n;
    char step[32], err[256] = "";
    snprintf(step, sizeof step, "%ld", t->state.step);
    int same = dist_same(t->config_json) & dist_same(step);  // collectives: every rank calls both
    if (r->batch % P != 0)
        snprintf(err, sizeof err, "--batch %d does not split into %d equal shards, one per "
                 "process; pass a --batch divisible by %d", r->batch, P, P);
    else if (n && epoch_batch_size(n, r->batch, r->batch_order,
                                   batches_per_epoch(n, r->batch, r->batch_order) - 1) < P)
        snprintf(err, sizeof err, "the epoch's short last batch has fewer sequences than the %d "
                 "processes; change --batch or the training set size", P);
    else if (!same)
        snprintf(err, sizeof err, "the %d processes were started with different options or "
                 "checkpoints; start every rank with the same command", P);
    dist_check(err[0] ? EXIT_BAD_INPUT : 0, err);
}

static void setup(Trainer *t) {
    CliArgs *a = &t->args;
    const RunConfig *r = &a->run;
    char err[1024];
    // The data first: sets read from --data may still set the context the model is built for.
    DataSource src = cli_data_source(a);
    if (run_data_load(&t->data, &src, 1, err, sizeof err) != 0 ||
        cli_check_data(a, &t->data, err, sizeof err) != 0)
        die(EXIT_BAD_INPUT, "%s", err);
    program_set_threads(r->threads);
    if (gpt_build(&t->model, &r->model, r->batch, err, sizeof err) != 0)
        die(EXIT_RUN_FAILED, "%s", err);
    gpt_set_trainable(&t->model, r->train_only);  // before loading: optim/ holds trainable ones
    if (adamw_init(&t->opt, &t->model) != 0)
        die(EXIT_RUN_FAILED, "out of memory for the optimiser");
    rng_seed(&t->state.data_rng, hash_mix(r->seed, DATA_STREAM));  // a resume overwrites it
    char data_sha256[65] = "";
    long long data_bytes = 0;
    if (r->data[0] && run_data_identity(r->data, data_sha256, &data_bytes, err, sizeof err) != 0)
        die(EXIT_BAD_INPUT, "%s", err);
    if (a->resume[0]) {
        if (checkpoint_load(a->resume, &t->model, &t->opt, &t->state, err, sizeof err) != 0)
            die(EXIT_BAD_INPUT, "%s", err);
        const TrainState *s = &t->state;
        if (s->data_sha256[0] && !a->allow_data_change &&
            (strcmp(s->data_sha256, data_sha256) != 0 || s->data_bytes != data_bytes))
            die(EXIT_BAD_INPUT,
                "--data %s changed since checkpoint %s was saved (then %lld bytes, SHA-256 "
                "%.12s..., now %lld bytes, %.12s...); put the original back, or pass "
                "--allow-data-change to resume on it anyway",
                r->data, a->resume, s->data_bytes, s->data_sha256, data_bytes, data_sha256);
        if (t->state.step >= r->steps)
            die(EXIT_BAD_INPUT,
                "checkpoint %s is at step %ld, the end of --steps %ld; pass a larger --steps to "
                "train on",
                a->resume, t->state.step, r->steps);
        if (a->stop_at && a->stop_at <= t->state.step)
            die(EXIT_BAD_INPUT, "--stop-at %ld is not after the checkpoint's step %ld", a->stop_at,
                t->state.step);
    } else {
        // --init: what the file lacks (MoICE routers added to a rope model) starts from here
        gpt_init(&t->model, hash_mix(r->seed, INIT_STREAM));
        if (a->init[0] && checkpoint_load_init(a->init, &t->model, err, sizeof err) != 0)
            die(EXIT_BAD_INPUT, "%s", err);
    }

    memcpy(t->state.data_sha256, data_sha256, sizeof data_sha256);  // what this run trains on
    t->state.data_bytes = data_bytes;

    t->evals = &t->data.evals;
    t->train_len = t->evals->layout.train_len;
    size_t batch_tokens = (size_t)r->batch * t->train_len;
    int fixed = t->data.train.n;
    t->inputs = malloc(batch_tokens * sizeof(int32_t));
    t->targets = malloc(batch_tokens * sizeof(int32_t));
    t->rows = malloc((size_t)r->batch * sizeof(int));
    t->epoch = malloc((size_t)(fixed ? fixed : 1) * sizeof(int));
    t->epoch_work = malloc((size_t)(fixed ? fixed : 1) * sizeof(int64_t));
    t->epoch_ready = -1;
    t->config_json = run_config_to_json(r);
    if (!t->inputs || !t->targets || !t->rows || !t->epoch || !t->epoch_work || !t->config_json ||
        (!fixed && sequence_set_alloc(&t->stream, r->batch, t->train_len) != 0))
        die(EXIT_RUN_FAILED, "out of memory for the batches; lower --batch");
    check_shards(t);

    // Only rank 0 writes, and only now that the input has proven good: a bad command leaves no
    // folder behind.
    if (dist_rank() != 0) return;
    if (make_dirs(a->out) != 0)
        die(EXIT_BAD_INPUT, "cannot create --out %s: %s", a->out, strerror(errno));
    // Held until the program ends: no second run writes here meanwhile, and none was writing
    // here when the temporary files of dead runs' saves are cleared.
    if (run_lock_take(a->out, err, sizeof err) != 0) die(EXIT_BAD_INPUT, "%s", err);
    run_lock_clean_temps(a->out);
    snprintf(t->checkpoint, sizeof t->checkpoint, "%s/model.h5", a->out);
    // A resumed run's log keeps the rows up to its checkpoint, wherever that checkpoint lives.
    char previous[4096 + 32] = "";
    if (a->resume[0]) {
        char copy[4096];
        snprintf(copy, sizeof copy, "%s", a->resume);
        snprintf(previous, sizeof previous, "%s/metrics.jsonl", dirname(copy));
    }
    if (metrics_open(&t->log, a->out, previous[0] ? previous : NULL, t->state.step, err,
                     sizeof err) != 0)
        die(EXIT_RUN_FAILED, "%s", err);
}

static void teardown(Trainer *t) {
    metrics_close(&t->log);
    run_data_free(&t->data);
    sequence_set_free(&t->stream);
    free(t->config_json);
    free(t->inputs);
    free(t->targets);
    free(t->rows);
    free(t->epoch);
    free(t->epoch_work);
    adamw_free(&t->opt);
    gpt_free(&t->model);
}

// What the context did to sets read from --data: fitted to them, or samples cut from the left.
static void print_data_context(const Trainer *t) {
    const RunConfig *r = &t->args.run;
    const RunData *d = &t->data;
    if (!r->data[0]) return;
    if (t->args.fit_context) {
        printf("context %d: the longest sequence of %s (no context given; --seq-len N or a named "
               "--preset cuts longer samples from the left)\n",
               r->task_opt.seq_len, r->data);
    } else if (d->cut) {
        printf("context %d cuts %d of %d samples of %s from the left", r->task_opt.seq_len, d->cut,
               d->samples, r->data);
        if (d->lost >= 0)
            printf("; %d of them lost what their answer follows from", d->lost);
        printf("\n");
    } else if (d->samples) {
        printf("context %d holds every sample of %s whole\n", r->task_opt.seq_len, r->data);
    }
}

static void print_header(const Trainer *t) {
    const RunConfig *r = &t->args.run;
    const GPTConfig *m = &r->model;
    printf(
        "pelab | task %s (preset %s) | pe %s | layers %d, dim %d, heads %d, ffn %d, %s-norm, %s, "
        "dropout %g | %.2fM parameters\n",
        r->task->name, r->preset->name, m->pe->name, m->n_layer, m->n_embd, m->n_head, m->ffn_dim,
        norm_names[m->norm], act_names[m->act], (double)m->dropout, t->model.num_parameters / 1e6);
    printf("batch %d x %s%d tokens | %ld steps | lr %g -> %g (%s, warmup %ld) | seed %llu | %d "
           "threads\n",
           r->batch, t->data.train.n ? "up to " : "", t->train_len, r->steps, (double)r->lr,
           (double)r->min_lr, schedule_names[r->schedule], r->warmup, (unsigned long long)r->seed,
           r->threads);
    if (t->data.train.n)
        printf("training set: %d sequences%s%s, %d steps per epoch, %.1f epochs\n", t->data.train.n,
               r->data[0] ? " from " : "", r->data, batches_per_epoch(t->data.train.n, r->batch, r->batch_order),
               (double)r->steps / batches_per_epoch(t->data.train.n, r->batch, r->batch_order));
    print_data_context(t);
    if (dist_size() > 1)
        printf("data parallel: %d processes, %d sequences of each batch apiece\n", dist_size(),
               r->batch / dist_size());
    if (m->moice.n_bases) {
        char bases[256];
        moice_format_bases(bases, sizeof bases, &m->moice);
        printf("MoICE: bases %s, top %d, aux weight %g | training %s\n", bases, m->moice.top_k,
               (double)m->moice.aux_weight, train_only_names[r->train_only]);
    }
    if (t->args.resume[0])
        printf("resuming %s at step %ld\n", t->args.resume, t->state.step);
    else if (t->args.init[0])
        printf("starting from the weights of %s\n", t->args.init);
    printf("writing %s and %s\n", t->checkpoint, t->log.path);
    fflush(stdout);
}

// Fills inputs/targets with the batch of `step` and returns its length T: the step's batch of
// the fixed set's epoch order, or a fresh draw from the stream.
static int next_batch(Trainer *t, long step) {
    const RunConfig *r = &t->args.run;
    const SequenceSet *train = &t->data.train;
    int B = t->batch_B = r->batch;
    if (!train->n) {
        for (int b = 0; b < B; b++) {
            sequence_set_draw(&t->stream, b, r->task, &r->task_opt, -1, &t->state.data_rng);
            t->rows[b] = b;
        }
        return sequence_set_batch(&t->stream, t->rows, B, t->inputs, t->targets);
    }
    int per_epoch = batches_per_epoch(train->n, B, r->batch_order);
    long epoch = step / per_epoch;
    int k = (int)(step % per_epoch);
    if (epoch != t->epoch_ready) {
        epoch_order(t->epoch, t->epoch_work, train->lengths, train->n, B, r->batch_order,
                    hash_mix(r->seed, DATA_STREAM), epoch);
        t->epoch_ready = epoch;
    }
    t->batch_B = epoch_batch_size(train->n, B, r->batch_order, k);
    memcpy(t->rows, t->epoch + (size_t)k * B, (size_t)t->batch_B * sizeof(int));
    return sequence_set_batch(train, t->rows, t->batch_B, t->inputs, t->targets);
}

// One optimiser step on the next batch. `step` counts from 0. Every rank holds the whole batch
// and forwards its shard, rows [lo, hi); the loss is the whole batch's (the ranks' sums added
// up), so each rank's gradient is its share and their sum, the one all-reduce, the batch's.
static float train_step(Trainer *t, long step) {
    const RunConfig *r = &t->args.run;
    GPT *m = &t->model;
    int T = t->batch_T = next_batch(t, step);
    int lo = t->batch_B * dist_rank() / dist_size(), hi = t->batch_B * (dist_rank() + 1) / dist_size();
    m->batch_row0 = lo;
    gpt_forward(m, t->inputs + (size_t)lo * T, t->targets + (size_t)lo * T, hi - lo, T, 1,
                hash_mix(r->seed, (uint64_t)step));
    double sums[GPT_SUMS];
    gpt_forward_sums(m, sums);
    dist_sum(sums, GPT_SUMS);
    gpt_set_batch_sums(m, sums);
    gpt_zero_grad(m);
    gpt_backward(m);
    dist_sum_floats(m->grads_memory, m->num_parameters);
    clip_grad_norm(m, r->clip);
    t->lr = lr_at(step, r->warmup, r->steps, r->lr, r->min_lr, r->schedule);
    adamw_update(&t->opt, m, t->lr, &r->adamw);
    return m->mean_loss;
}

// Seconds to the end of --steps: the steps left at this session's training seconds per step,
// plus the evaluations left (the one due at this step included) at the latest evaluation's
// time, or before the first at a forward pass over the splits' tokens, a third of a training
// step's time per (real) token.
static double eta_seconds(const Trainer *t, long session_steps) {
    const RunConfig *r = &t->args.run;
    long step = t->state.step, ee = r->eval_every;
    long evals = ee ? r->steps / ee - (step - 1) / ee + (r->steps % ee != 0) : 1;
    double eval_s = t->last_eval_s;
    if (eval_s == 0.0) {
        double eval_tokens = 0.0;
        for (int s = 0; s < t->evals->layout.n_splits; s++)
            eval_tokens += (double)t->evals->split[s].n * t->evals->split[s].width;
        eval_s = t->session_train_s / (double)t->session_tokens * eval_tokens / 3.0;
    }
    return t->session_train_s / session_steps * (double)(r->steps - step) + evals * eval_s;
}

static void print_progress(Trainer *t, long session_steps) {
    const RunConfig *r = &t->args.run;
    char rate[32], eta[32];
    double tokens = (double)t->window_tokens;
    format_rate(t->window_train_s > 0 ? tokens / t->window_train_s : 0, rate, sizeof rate);
    format_duration(eta_seconds(t, session_steps), eta, sizeof eta);
    printf("step %ld/%ld | loss %.4f", t->state.step, r->steps, t->window_loss / t->window_steps);
    // MoICE: the load-balancing loss, which the objective adds with weight --moice-aux
    if (r->model.moice.n_bases) printf(" | aux %.4f", t->window_aux / t->window_steps);
    printf(" | lr %.1e | %s tok/s | eta %s\n", (double)t->lr, rate, eta);  // real tokens
    fflush(stdout);
    t->window_loss = t->window_aux = t->window_train_s = 0.0;
    t->window_steps = t->window_tokens = 0;
}

static void evaluate_and_log(Trainer *t) {
    const TaskLayout *layout = &t->evals->layout;
    double start = now();
    if (evaluate_part(&t->model, t->evals, t->results, dist_rank(), dist_size()) != 0)
        die(EXIT_RUN_FAILED, "out of memory for the evaluation batches");
    dist_sum_results(t->results, t->evals->layout.n_splits);
    MetricsRow row = {.step = t->state.step, .tokens = t->state.tokens_seen,
                      .loss = t->state.loss_sum / (double)t->state.loss_count, .lr = t->lr,
                      .tok_per_s = t->row_train_s > 0 ? t->row_tokens / t->row_train_s : 0,
                      .elapsed_s = t->state.elapsed_s};
    char err[1024];
    if (dist_rank() == 0 && metrics_append(&t->log, &row, t->evals, t->results, err, sizeof err) != 0)
        die(EXIT_RUN_FAILED, "%s", err);
    t->state.loss_sum = 0.0;
    t->state.loss_count = 0;
    t->row_train_s = 0.0;
    t->row_tokens = 0;
    printf("eval step %ld | token error", t->state.step);
    for (int s = 0; s < layout->n_splits; s++)
        printf(" %s %.3f%%", layout->split[s].name, 100.0 * token_error_rate(&t->results[s]));
    SweepResult sweep = eval_sweep(layout, t->results);
    if (sweep.bins)
        printf(" | sweep middle %.1f%%, gap %+.1f", 100.0 * sweep.middle_mean,
               100.0 * sweep.end_middle_gap);
    t->last_eval_s = now() - start;
    t->session_eval_s += t->last_eval_s;
    t->session_evals++;
    printf(" | %.1fs\n", t->last_eval_s);
    fflush(stdout);
}

// The loss is the whole batch's, the same on every rank, so every rank ends here together; from
// save(), rank 0 ends the others through die().
static _Noreturn void die_diverged(const Trainer *t, long step, const char *what) {
    die(EXIT_RUN_FAILED, "step %ld: %s, the run diverged; lower --lr (%g) or raise --warmup; "
        "nothing from this step on was saved", step, what, (double)t->args.run.lr);
}

// Periodic saves that fail only warn (the previous checkpoint is intact and training goes on);
// the caller decides what a failed final save means.
static int save(Trainer *t) {
    if (dist_rank() != 0) return 0;
    // A step can overflow the weights before any loss shows it; such a file could not be
    // resumed, and it would replace the last good one.
    for (size_t i = 0; i < t->model.num_parameters; i++)
        if (!isfinite(t->model.params_memory[i]))
            die_diverged(t, t->state.step, "the weights are no longer finite");
    char err[1024];
    if (checkpoint_save(t->checkpoint, &t->model, &t->opt, t->config_json, &t->state, err,
                        sizeof err) == 0)
        return 0;
    fprintf(stderr, "%s: %s\n", program_name, err);
    return -1;
}

// Adds a finished step to the state and to the throughput windows: tokens_seen counts the
// batch as computed (B * T), the rates its real tokens.
static void record_step(Trainer *t, float loss, double step_s, long real_tokens) {
    t->state.step++;
    t->state.tokens_seen += (long)t->batch_B * t->batch_T;
    t->state.loss_sum += loss;
    t->state.loss_count++;
    t->window_loss += loss;
    t->window_aux += t->model.aux_loss;
    t->window_steps++;
    t->window_tokens += real_tokens;
    t->window_train_s += step_s;
    t->row_train_s += step_s;
    t->row_tokens += real_tokens;
    t->session_train_s += step_s;
    t->session_tokens += real_tokens;
}

// The real (not padding) tokens of the latest batch.
static long batch_real_tokens(const Trainer *t) {
    const SequenceSet *set = t->data.train.n ? &t->data.train : &t->stream;
    long real = 0;
    for (int b = 0; b < t->batch_B; b++) real += set->lengths[t->rows[b]];
    return real;
}

// Says how the loop ended (the summary table at the end of --steps); returns the exit status.
static int report_end(const Trainer *t, long first_step, int saved) {
    const RunConfig *r = &t->args.run;
    FILE *note = dist_rank() == 0 ? stderr : stdout;  // rank 0 speaks for the run
    if (t->state.step == first_step) {
        fprintf(note, "%s: interrupted before the first step; nothing was saved\n", program_name);
        return EXIT_INTERRUPTED;
    }
    if (!saved) return EXIT_RUN_FAILED;
    if (t->state.step < r->steps && t->stopping) {
        fprintf(note, "%s: interrupted after step %ld; saved %s; continue with --resume %s\n",
                program_name, t->state.step, t->checkpoint, t->checkpoint);
        return EXIT_INTERRUPTED;
    }
    if (t->state.step < r->steps) {
        printf("stopped after step %ld of %ld (--stop-at); continue with --resume %s\n",
               t->state.step, r->steps, t->checkpoint);
        return 0;
    }
    char total[32], rate[32], train_s[32], eval_s[32];
    format_duration(t->state.elapsed_s, total, sizeof total);
    format_duration(t->session_train_s, train_s, sizeof train_s);
    format_duration(t->session_eval_s, eval_s, sizeof eval_s);
    format_rate(t->session_tokens / t->session_train_s, rate, sizeof rate);
    printf("\n");
    eval_print_table(stdout, t->evals, t->results);
    printf("\ntrained %ld steps (%ld tokens) in %s; this session %s tok/s (real tokens, %s of "
           "training), %ld evaluations in %s (",
           t->state.step, t->state.tokens_seen, total, rate, train_s, t->session_evals, eval_s);
    for (int s = 0; s < t->evals->layout.n_splits; s++)
        printf("%s%s %d", s ? ", " : "", t->evals->split[s].name, t->evals->split[s].n);
    printf(" sequences); saved %s and %s\n", t->checkpoint, t->log.path);
    return 0;
}

// The attention maps of the finished model (--attention-maps); returns the exit status.
static int write_attention_maps(Trainer *t) {
    if (dist_rank() != 0) return 0;
    char path[4096 + 16], err[1024];
    snprintf(path, sizeof path, "%s/attention.h5", t->args.out);
    if (attention_maps_write(path, &t->model, t->args.run.task, t->evals, t->args.attention_maps,
                             err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", program_name, err);
        return EXIT_RUN_FAILED;
    }
    printf("wrote %s; draw it with train/plot_attention.py %s\n", path, path);
    return 0;
}

// Trains up to --stop-at or --steps, or until interrupted; returns the exit status.
static int train(Trainer *t) {
    const RunConfig *r = &t->args.run;
    long stop = t->args.stop_at ? t->args.stop_at : r->steps;
    long first_step = t->state.step;
    long horizon = r->eval_every && r->eval_every < r->steps ? r->eval_every : r->steps;
    long print_every = horizon / 10 > 0 ? horizon / 10 : 1;
    double session_start = now(), elapsed_before = t->state.elapsed_s;
    int saved = 0;
    catch_interrupts();
    t->stopping = dist_any(interrupted);
    while (t->state.step < stop && !t->stopping) {
        double step_start = now();
        float loss = train_step(t, t->state.step);
        // The same on every rank (the whole batch's loss). Saving would put non-finite weights
        // over the last good checkpoint.
        if (!isfinite(loss)) die_diverged(t, t->state.step + 1, "the training loss is not finite");
        record_step(t, loss, now() - step_start, batch_real_tokens(t));
        long step = t->state.step;
        int last = step == r->steps;
        int eval_due = last || (r->eval_every && step % r->eval_every == 0);
        double session_s = now() - session_start;
        if (eval_due || step % print_every == 0) print_progress(t, step - first_step);
        t->state.elapsed_s = elapsed_before + session_s;
        if (eval_due) evaluate_and_log(t);
        t->stopping = dist_any(interrupted);
        if (last || step == stop || t->stopping || (r->save_every && step % r->save_every == 0))
            saved = save(t) == 0;
    }
    return report_end(t, first_step, saved);
}

// --write-data: the run's sets to a dataset file, no training; returns the exit status.
static int write_dataset(CliArgs *a) {
    const RunConfig *r = &a->run;
    RunData data;
    char err[1024];
    DataSource src = cli_data_source(a);
    if (run_data_load(&data, &src, 1, err, sizeof err) != 0 ||
        cli_check_data(a, &data, err, sizeof err) != 0)
        die(EXIT_BAD_INPUT, "%s", err);
    int rc = run_data_write(&data, r->task, a->write_data, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", program_name, err);
    } else {
        printf("wrote %s: task %s", a->write_data, r->task->name);
        if (data.train.n) printf(", train %d x %d", data.train.n, data.train.width);
        for (int s = 0; s < data.evals.layout.n_splits; s++)
            printf(", %s %d x %d", data.evals.split[s].name, data.evals.split[s].n,
                   data.evals.split[s].width);
        printf(" (sequences x longest)\n");
    }
    run_data_free(&data);
    return rc ? EXIT_RUN_FAILED : 0;
}

// --dry-run: the resolved configuration, the context fitted to --data's sets included.
static int dry_run(CliArgs *a) {
    RunData data;
    char err[1024];
    DataSource src = cli_data_source(a);
    if (a->run.data[0] && (run_data_load(&data, &src, 1, err, sizeof err) != 0 ||
                           cli_check_data(a, &data, err, sizeof err) != 0))
        die(EXIT_BAD_INPUT, "%s", err);
    if (a->run.data[0]) run_data_free(&data);
    cli_print_resolved(a, stdout);
    return 0;
}

int main(int argc, char **argv) {
    program_start(argc, argv, "bin/train");
    dist_init(&argc, &argv);
    static Trainer trainer;  // static: CliArgs holds path buffers that need not live on the stack
    char err[1024];
    int status = 0;
    dist_check(cli_parse(argc, argv, &trainer.args, err, sizeof err) != 0 ? EXIT_BAD_INPUT : 0, err);
    if (trainer.args.dry_run) {
        if (dist_rank() == 0) status = dry_run(&trainer.args);
    } else if (trainer.args.write_data[0]) {
        if (dist_rank() == 0) status = write_dataset(&trainer.args);
    } else if (!trainer.args.help) {
        setup(&trainer);
        print_header(&trainer);
        status = train(&trainer);
        if (status == 0 && trainer.args.attention_maps > 0) status = write_attention_maps(&trainer);
        teardown(&trainer);
    }
    dist_finalize();
    return status;
}
