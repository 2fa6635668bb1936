// bin/bench: times training steps of the C model at a task preset and prints one JSON object:
// the model config and the batch (so tests/bench/bench.py can time the same step in PyTorch), the
// seconds of every timed step, gpt_flops_per_step() and peak memory. Steps are timed one by
// one so that tests/bench/bench.py can take the median: a busy machine slows some steps, not all.
//
//   bin/bench [--timed-steps 20] [--warmup-steps 2] [--ceiling N] --pe abs [--task flipflop]
//             [--preset classroom] [--threads N] [...any bin/train flag]
//
// The run is resolved by bin/train's own flag parser (cli_parse), so a preset's every setting
// (its flag text too: the counting paper preset's FFN dropout, batch order, ...) shapes the
// timed model and batches as it shapes training.
// A step is what the trainer does per batch: forward, zero_grad, backward, gradient clipping
// and the AdamW update. backward_seconds times gpt_backward alone, which is what router-only
// training (--train-only routers) shortens. The batches are the trainer's, drawn before the
// timed loop (timing the generator is not the point): B sequences of the stream, used for every
// step, or for a task with a fixed training set (counting) the first batches of its first epoch,
// one per step, each cut to its longest sequence as the trainer does. Each batch is in the JSON
// with its length T and its real (not padding) tokens, so that bench.py can time the same steps
// in PyTorch and report real tokens/s.
//
// After the steps (and after peak memory is read), --ceiling N times a bare N x N x N sgemm on
// the same threads, so that bench.py can state a step's GFLOP/s as a share of what OpenBLAS
// reaches on this machine at that moment (0: skip).
#include <cblas.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "../tool_common.h"
#include "../../model/gpt.h"
#include "../../data/dataset.h"
#include "../../tasks/task.h"
#include "../../train/adamw.h"
#include "../../train/cli.h"
#include "../../train/config.h"


static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *usage =
    "usage: bin/bench [--timed-steps 20] [--warmup-steps 2] [--ceiling 2048] [bin/train flags]\n"
    "  bin/train flags choose the run as for training (--pe, --task, --preset, --threads,\n"
    "  --moice-bases, --train-only, ...); the step is timed on that run's model and batches.\n";

// Seconds of each of `reps` N x N x N sgemm products (after one untimed), on OpenMP's threads.
static void time_sgemm(int N, int reps, double *seconds) {
    size_t n2 = (size_t)N * N;
    float *a = malloc(n2 * sizeof(float)), *b = malloc(n2 * sizeof(float)), *c = malloc(n2 * sizeof(float));
    if (!a || !b || !c) die(1, "out of memory for the sgemm ceiling");
    for (size_t i = 0; i < n2; i++) a[i] = b[i] = (float)(i % 17) / 17.0f - 0.5f;
    for (int r = -1; r < reps; r++) {
        double start = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, a, N, b, N, 0.0f, c, N);
        if (r >= 0) seconds[r] = now_s() - start;
    }
    free(a), free(b), free(c);
}

int main(int argc, char **argv) {
    program_name = "bench";
    long steps = 20, warmup = 2, ceiling = 0;
    // bin/bench's own flags; the rest, with --dry-run (nothing is written), are bin/train's.
    char **train_argv = malloc(sizeof(char *) * (argc + 2));
    if (!train_argv) die(1, "out of memory");
    int train_argc = 0;
    train_argv[train_argc++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (strcmp(f, "--help") == 0) {
            fputs(usage, stdout);
            return 0;
        }
        int own = strcmp(f, "--timed-steps") == 0 || strcmp(f, "--warmup-steps") == 0 ||
                  strcmp(f, "--ceiling") == 0;
        if (!own) {
            train_argv[train_argc++] = argv[i];
            continue;
        }
        if (i + 1 >= argc) die(1, "%s needs a value", f);
        const char *v = argv[++i];
        if (strcmp(f, "--timed-steps") == 0) steps = parse_int(f, v, 1);
        else if (strcmp(f, "--warmup-steps") == 0) warmup = parse_int(f, v, 0);
        else ceiling = parse_int(f, v, 0);
    }
    train_argv[train_argc++] = "--dry-run";
    static CliArgs args;  // static: it holds path buffers
    char err[1024];
    if (cli_parse(train_argc, train_argv, &args, err, sizeof err)) die(2, "%s", err);
    free(train_argv);
    const RunConfig *rc = &args.run;
    if (rc->data[0]) die(2, "bin/bench draws its batches from the task; leave --data out");
    omp_set_num_threads(rc->threads);
    openblas_set_num_threads(rc->threads);
    const Task *task = rc->task;
    GPTConfig cfg = rc->model;
    TaskOptions topt = rc->task_opt;
    const char *task_name = task->name, *preset_name = rc->preset->name;
    int B = rc->batch, T = topt.seq_len;
    TaskLayout layout;
    task->layout(&topt, &layout);
    if (layout.train_len > T) die(1, "preset %s: training sequences of %d tokens exceed its context %d", preset_name, layout.train_len, T);
    long n_batches = warmup + steps;
    SequenceSet set;
    int *order;
    if (layout.train_size) {
        if (sequence_set_generate(&set, task, &topt, &layout, -1, layout.train_size, dataset_seed(-1)))
            die(1, "out of memory for the training set");
        if (n_batches > batches_per_epoch(set.n, B, rc->batch_order))
            die(1, "--timed-steps too many for one epoch of the training set");
        order = malloc(sizeof(int) * set.n);
        int64_t *work = malloc(sizeof(int64_t) * set.n);
        if (!order || !work) die(1, "out of memory for the epoch order");
        epoch_order(order, work, set.lengths, set.n, B, rc->batch_order, rc->seed, 0);
        free(work);
    } else {
        // One stream batch serves every step: its values do not change the work.
        if (sequence_set_generate(&set, task, &topt, &layout, -1, B, 1)) die(1, "out of memory for the batch");
        order = malloc(sizeof(int) * B * n_batches);
        if (!order) die(1, "out of memory for the batches");
        for (long k = 0; k < B * n_batches; k++) order[k] = (int)(k % B);
    }
    GPT model;
    if (gpt_build(&model, &cfg, B, err, sizeof err) != 0) die(1, "%s", err);
    gpt_set_trainable(&model, rc->train_only);
    gpt_init(&model, rc->seed);
    AdamW opt;
    if (adamw_init(&opt, &model) != 0) die(1, "out of memory for the optimiser");
    // The optimiser is tests/bench/bench.py's for both sides (its PyTorch step mirrors this one),
    // whatever the run's: hyperparameters do not change the work.
    AdamWConfig ocfg = {.beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f};
    int32_t *inputs = malloc(sizeof(int32_t) * B * T * n_batches);
    int32_t *targets = malloc(sizeof(int32_t) * B * T * n_batches);
    int *lengths = malloc(sizeof(int) * n_batches), *real = malloc(sizeof(int) * n_batches);
    if (!inputs || !targets || !lengths || !real) die(1, "out of memory for the batches");
    for (long k = 0; k < n_batches; k++) {
        const int *rows = order + k * B;
        lengths[k] = sequence_set_batch(&set, rows, B, inputs + k * B * T, targets + k * B * T);
        real[k] = 0;
        for (int b = 0; b < B; b++) real[k] += set.lengths[rows[b]];
    }

    double *seconds = malloc(sizeof(double) * steps), *backward = malloc(sizeof(double) * steps);
    if (!seconds || !backward) die(1, "out of memory for the timings");
    for (long s = 0; s < warmup + steps; s++) {
        double start = now_s();
        const int32_t *in = inputs + s * B * T, *tg = targets + s * B * T;
        gpt_forward(&model, in, tg, B, lengths[s], 1, (uint64_t)s);
        gpt_zero_grad(&model);
        double backward_start = now_s();
        gpt_backward(&model);
        double backward_end = now_s();
        clip_grad_norm(&model, 1.0f);
        adamw_update(&opt, &model, rc->lr, &ocfg);
        if (s >= warmup) {
            seconds[s - warmup] = now_s() - start;
            backward[s - warmup] = backward_end - backward_start;
        }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    enum { CEILING_REPS = 5 };
    double ceiling_s[CEILING_REPS];
    if (ceiling) time_sgemm((int)ceiling, CEILING_REPS, ceiling_s);

    cJSON *out = cJSON_CreateObject();
    cJSON_AddItemToObject(out, "model", gpt_config_to_json(&cfg));
    cJSON_AddStringToObject(out, "task", task_name);
    cJSON_AddStringToObject(out, "preset", preset_name);
    cJSON_AddNumberToObject(out, "batch", B);
    cJSON *batches = cJSON_AddArrayToObject(out, "batches");
    for (long k = 0; k < n_batches; k++) {
        cJSON *one = cJSON_CreateObject();
        cJSON_AddNumberToObject(one, "T", lengths[k]);
        cJSON_AddNumberToObject(one, "real_tokens", real[k]);
        cJSON_AddNumberToObject(one, "flops", gpt_flops_per_step(&cfg, B, lengths[k]));
        cJSON_AddItemToObject(one, "inputs", cJSON_CreateIntArray(inputs + k * B * T, B * lengths[k]));
        cJSON_AddItemToObject(one, "targets", cJSON_CreateIntArray(targets + k * B * T, B * lengths[k]));
        cJSON_AddItemToArray(batches, one);
    }
    cJSON_AddNumberToObject(out, "warmup", (double)warmup);
    cJSON_AddNumberToObject(out, "threads", model.n_threads);
    cJSON_AddNumberToObject(out, "parameters", (double)model.num_parameters);
    cJSON_AddItemToObject(out, "step_seconds", cJSON_CreateDoubleArray(seconds, (int)steps));
    cJSON_AddItemToObject(out, "backward_seconds", cJSON_CreateDoubleArray(backward, (int)steps));
    cJSON_AddStringToObject(out, "train_only", train_only_names[rc->train_only]);
    cJSON_AddNumberToObject(out, "peak_rss_mib", (double)ru.ru_maxrss / 1024.0);  // KiB on Linux
    if (ceiling) {
        cJSON_AddNumberToObject(out, "ceiling_n", (double)ceiling);
        cJSON_AddItemToObject(out, "ceiling_seconds", cJSON_CreateDoubleArray(ceiling_s, CEILING_REPS));
    }
    char *text = cJSON_PrintUnformatted(out);
    if (!text) die(1, "out of memory for the output");
    puts(text);
    free(text);
    cJSON_Delete(out);
    free(seconds);
    free(backward);
    free(inputs);
    free(targets);
    free(lengths);
    free(real);
    free(order);
    sequence_set_free(&set);
    adamw_free(&opt);
    gpt_free(&model);
    return 0;
}
