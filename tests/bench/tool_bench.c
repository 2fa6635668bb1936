// bin/bench: times training steps of the C model at a task preset and prints one JSON object:
// the model config and the batch (so tests/bench/bench.py can time the same step in PyTorch), the
// seconds of every timed step, gpt_flops_per_step() and peak memory. Steps are timed one by
// one so that tests/bench/bench.py can take the median: a busy machine slows some steps, not all.
//
//   bin/bench --pe abs [--task flipflop] [--preset classroom] [--steps 20] [--warmup 2]
//             [--threads N] [--moice-bases none|short|LIST --moice-topk 3 --train-only all]
//
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
#include "../../model/moice.h"
#include "../../data/dataset.h"
#include "../../tasks/task.h"
#include "../../train/adamw.h"
#include "../../train/config.h"


static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *usage =
    "usage: bin/bench --pe NAME [--task flipflop] [--preset classroom] [--steps 20] [--warmup 2]\n"
    "                 [--threads N (default: OpenMP's)] [--moice-bases none|short|official|LIST]\n"
    "                 [--moice-topk 3] [--train-only all|routers] [--ceiling 2048]\n";

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
    const char *pe = NULL, *task_name = "flipflop", *preset_name = "classroom";
    const char *moice_bases = "none", *train_only = "all";
    long steps = 20, warmup = 2, threads = 0, moice_topk = 3, ceiling = 0;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (strcmp(f, "--help") == 0) {
            fputs(usage, stdout);
            return 0;
        }
        if (i + 1 >= argc) die(1, "%s needs a value", f);
        const char *v = argv[++i];
        if (strcmp(f, "--pe") == 0) pe = v;
        else if (strcmp(f, "--task") == 0) task_name = v;
        else if (strcmp(f, "--preset") == 0) preset_name = v;
        else if (strcmp(f, "--steps") == 0) steps = parse_int(f, v, 1);
        else if (strcmp(f, "--warmup") == 0) warmup = parse_int(f, v, 0);
        else if (strcmp(f, "--threads") == 0) threads = parse_int(f, v, 1);
        else if (strcmp(f, "--moice-bases") == 0) moice_bases = v;
        else if (strcmp(f, "--moice-topk") == 0) moice_topk = parse_int(f, v, 1);
        else if (strcmp(f, "--train-only") == 0) train_only = v;
        else if (strcmp(f, "--ceiling") == 0) ceiling = parse_int(f, v, 0);
        else die(1, "unknown flag %s; see --help", f);
    }
    if (!pe) die(1, "--pe is required\n%s", usage);
    const Task *task = task_find(task_name);
    if (!task) die(1, "unknown --task %s; known: %s", task_name, task_names());
    const Preset *p = task_preset(task, preset_name);
    if (!p) die(1, "task %s has no preset %s", task_name, preset_name);
    if (threads) {
        omp_set_num_threads((int)threads);
        openblas_set_num_threads((int)threads);
    }

    GPTConfig cfg = {.vocab_size = task->vocab_size, .seq_len = p->seq_len, .n_layer = p->n_layer,
                     .n_embd = p->n_embd, .n_head = p->n_head, .ffn_dim = 4 * p->n_embd,
                     .dropout = p->dropout, .pe = pe_find(pe), .pe_opt = {.rope_base = 10000.0f},
                     .init_std = GPT2_INIT_STD, .emb_std = GPT2_INIT_STD,
                     .norm = p->norm && strcmp(p->norm, "post") == 0 ? NORM_POST : NORM_PRE,
                     .act = p->act && strcmp(p->act, "relu") == 0 ? ACT_RELU : ACT_GELU};
    if (!cfg.pe) die(1, "unknown --pe %s; known: %s", pe, pe_names());
    char err[256];
    cfg.moice.top_k = (int)moice_topk;
    cfg.moice.aux_weight = 0.2f;
    if (moice_parse_bases(&cfg.moice, moice_bases, cfg.pe_opt.rope_base, err, sizeof err) != 0)
        die(1, "%s", err);
    if (strcmp(train_only, "all") != 0 && strcmp(train_only, "routers") != 0)
        die(1, "--train-only must be all or routers, got %s", train_only);
    if (strcmp(train_only, "routers") == 0 && !cfg.moice.n_bases)
        die(1, "--train-only routers needs MoICE; add --moice-bases");
    TaskOptions topt = task_default_options;
    topt.seq_len = p->seq_len;
    if (p->kv_pairs) topt.kv_pairs = p->kv_pairs;
    if (p->kv_keys) topt.kv_keys = p->kv_keys;
    if (p->kv_min_pairs) topt.kv_min_pairs = p->kv_min_pairs;
    if (p->kv_queries) topt.kv_queries = p->kv_queries;
    if (p->sel_data) topt.sel_data = p->sel_data;
    if (p->sel_blanks) topt.sel_blanks = p->sel_blanks;
    if (p->count_vars) topt.count_vars = p->count_vars;
    if (p->count_statements) topt.count_statements = p->count_statements;
    if (!topt.seq_len) {  // a preset without a context (selcopy, kvret) gets its longest split's, as bin/train
        TaskLayout longest;
        task->layout(&topt, &longest);
        topt.seq_len = cfg.seq_len = task_layout_longest(&longest);
    }
    const char *bad = task->check(&topt);
    if (bad) die(1, "%s", bad);
    bad = gpt_config_check(&cfg);
    if (bad) die(1, "%s", bad);

    int B = p->batch, T = topt.seq_len;
    TaskLayout layout;
    task->layout(&topt, &layout);
    if (layout.train_len > T) die(1, "preset %s: training sequences of %d tokens exceed its context %d", preset_name, layout.train_len, T);
    long n_batches = warmup + steps;
    SequenceSet set;
    int *order;
    if (layout.train_size) {
        if (sequence_set_generate(&set, task, &topt, &layout, -1, layout.train_size, dataset_seed(-1)))
            die(1, "out of memory for the training set");
        if (n_batches > batches_per_epoch(set.n, B, ORDER_POOLED)) die(1, "--steps too many for one epoch of the training set");
        order = malloc(sizeof(int) * set.n);
        int64_t *work = malloc(sizeof(int64_t) * set.n);
        if (!order || !work) die(1, "out of memory for the epoch order");
        epoch_order(order, work, set.lengths, set.n, B, ORDER_POOLED, 1, 0);
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
    gpt_set_trainable(&model, strcmp(train_only, "routers") == 0 ? TRAIN_MODULE : TRAIN_ALL);
    gpt_init(&model, 1);
    AdamW opt;
    if (adamw_init(&opt, &model) != 0) die(1, "out of memory for the optimiser");
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
        adamw_update(&opt, &model, p->lr, &ocfg);
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
    cJSON_AddStringToObject(out, "train_only", train_only);
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
