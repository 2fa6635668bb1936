#include "evaluate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int eval_sets_build(EvalSets *sets, const Task *task, const TaskOptions *opt, int n_seqs) {
    memset(sets, 0, sizeof *sets);
    task->layout(opt, &sets->layout);
    sets->second_answer = task->second_answer;
    for (int split = 0; split < sets->layout.n_splits; split++) {
        int size = sets->layout.split[split].size;
        int n = size && size < n_seqs ? size : n_seqs;
        if (sequence_set_generate(&sets->split[split], task, opt, &sets->layout, split, n,
                                  dataset_seed(split)) != 0) {
            eval_sets_free(sets);
            return -1;
        }
    }
    return 0;
}

void eval_sets_adopt(EvalSets *sets, const TaskLayout *layout, SequenceSet *splits) {
    memset(sets, 0, sizeof *sets);
    sets->layout = *layout;
    for (int s = 0; s < layout->n_splits; s++) {
        sets->split[s] = splits[s];
        memset(&splits[s], 0, sizeof splits[s]);
    }
}

void eval_sets_free(EvalSets *sets) {
    for (int s = 0; s < TASK_MAX_SPLITS; s++) sequence_set_free(&sets->split[s]);
}

int logits_argmax(const float *logits, int V) {
    int best = 0;
    for (int v = 1; v < V; v++)
        if (logits[v] > logits[best]) best = v;
    return best;
}

Interval wilson_interval(long k, long n) {
    if (n <= 0) return (Interval){0.0, 1.0};
    const double z = 1.959963984540054;  // the 97.5 % quantile of the standard normal
    double p = (double)k / (double)n, z2n = z * z / (double)n;
    double centre = (p + z2n / 2.0) / (1.0 + z2n);
    double half = z / (1.0 + z2n) * sqrt(p * (1.0 - p) / (double)n + z2n / (4.0 * (double)n));
    // At k = 0 (k = n) the lower (upper) end is 0 (1) exactly; rounding would miss it.
    return (Interval){k == 0 ? 0.0 : centre - half, k == n ? 1.0 : centre + half};
}

// Adds one forwarded batch of `B` sequences to the split's counts; second_answer: the task's,
// for a probe split, else NULL.
static void score_batch(const GPT *model, const int32_t *inputs, const int32_t *targets, int B,
                        int T, int32_t (*second_answer)(const int32_t *, int), SplitResult *r,
                        double *loss_sum) {
    int V = model->config.vocab_size;
    for (int b = 0; b < B; b++) {
        int wrong = 0;
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)b * T + t;
            if (targets[i] < 0) continue;
            r->scored++;
            int32_t predicted = logits_argmax(model->acts.logits + i * V, V);
            wrong += predicted != targets[i];
            if (second_answer && predicted != targets[i])
                r->second_answers += predicted == second_answer(inputs + (size_t)b * T, t);
            *loss_sum += model->acts.losses[i];
        }
        r->token_errors += wrong;
        r->seq_errors += wrong > 0;
        r->seqs++;
    }
}

int evaluate(GPT *model, const EvalSets *sets, SplitResult *results) {
    return evaluate_part(model, sets, results, 0, 1);
}

int evaluate_part(GPT *model, const EvalSets *sets, SplitResult *results, int part, int parts) {
    int width = task_layout_longest(&sets->layout), B = model->max_batch;
    int32_t *inputs = malloc((size_t)B * width * sizeof(int32_t));
    int32_t *targets = malloc((size_t)B * width * sizeof(int32_t));
    int *rows = malloc((size_t)B * sizeof(int));
    if (!inputs || !targets || !rows) {
        free(inputs);
        free(targets);
        free(rows);
        return -1;
    }
    for (int split = 0; split < sets->layout.n_splits; split++) {
        const SequenceSet *set = &sets->split[split];
        SplitResult *r = &results[split];
        memset(r, 0, sizeof *r);
        double loss_sum = 0.0;
        for (int first = part * B; first < set->n; first += parts * B) {
            int n = set->n - first < B ? set->n - first : B;
            for (int b = 0; b < n; b++) rows[b] = first + b;
            int T = sequence_set_batch(set, rows, n, inputs, targets);
            gpt_forward(model, inputs, targets, n, T, 0, 0);
            score_batch(model, inputs, targets, n, T,
                        sets->layout.split[split].probe ? sets->second_answer : NULL, r,
                        &loss_sum);
        }
        r->loss = r->scored ? loss_sum / (double)r->scored : 0.0;
    }
    free(inputs);
    free(targets);
    free(rows);
    return 0;
}

SweepResult eval_sweep(const TaskLayout *layout, const SplitResult *results) {
    SweepResult sw = {.bins = layout->sweep_bins};
    if (!sw.bins) return sw;
    double worst_middle = 1.0, sum_middle = 0.0;
    for (int b = 0; b < sw.bins; b++) {
        sw.accuracy[b] = 1.0 - token_error_rate(&results[layout->sweep_first + b]);
        if (b == 0 || b == sw.bins - 1) continue;
        sum_middle += sw.accuracy[b];
        if (sw.accuracy[b] < worst_middle) worst_middle = sw.accuracy[b];
    }
    double best_end = sw.accuracy[0] > sw.accuracy[sw.bins - 1] ? sw.accuracy[0]
                                                                 : sw.accuracy[sw.bins - 1];
    sw.middle_mean = sum_middle / (sw.bins - 2);
    sw.end_middle_gap = best_end - worst_middle;
    return sw;
}

static void print_sweep(FILE *out, const TaskLayout *layout, const SweepResult *sw) {
    fprintf(out, "\nposition sweep (accuracy of the scored token by where the relevant part sits)\n");
    fprintf(out, "%-8s  %-44s  %9s\n", "bin", "description", "accuracy%");
    for (int b = 0; b < sw->bins; b++) {
        const TaskSplit *split = &layout->split[layout->sweep_first + b];
        fprintf(out, "%-8s  %-44s  %9.2f\n", split->name, split->summary, 100.0 * sw->accuracy[b]);
    }
    fprintf(out, "middle bins' mean accuracy %.2f%% | best end - worst middle bin %+.2f points\n",
            100.0 * sw->middle_mean, 100.0 * sw->end_middle_gap);
}

// A rate in percent with its 95 % interval, as "12.34 [10.20, 14.80]".
static void format_rate(char *buf, size_t len, long k, long n) {
    Interval ci = wilson_interval(k, n);
    snprintf(buf, len, "%.3f [%.3f, %.3f]", n ? 100.0 * (double)k / (double)n : 0.0,
             100.0 * ci.lo, 100.0 * ci.hi);
}

// The probe splits: how many scored predictions gave the target, the second valid answer or
// neither, each with its share and 95 % interval.
static void print_probes(FILE *out, const TaskLayout *layout, int desc_width,
                         const SplitResult *results) {
    fprintf(out, "\nprobe splits (two valid answers: which one the model gives; %% of scored, "
                 "95%% Wilson interval)\n");
    fprintf(out, "%-8s  %-*s  %7s  %-26s  %-26s  %s\n", "split", desc_width, "description",
            "scored", "target", "second answer", "neither");
    for (int s = 0; s < layout->n_splits; s++) {
        if (!layout->split[s].probe) continue;
        const SplitResult *r = &results[s];
        long target = r->scored - r->token_errors;
        long neither = r->token_errors - r->second_answers;
        char a[48], b[48], c[48];
        format_rate(a, sizeof a, target, r->scored);
        format_rate(b, sizeof b, r->second_answers, r->scored);
        format_rate(c, sizeof c, neither, r->scored);
        fprintf(out, "%-8s  %-*s  %7ld  %-26s  %-26s  %s\n", layout->split[s].name, desc_width,
                layout->split[s].summary, r->scored, a, b, c);
    }
}

void eval_print_table(FILE *out, const EvalSets *sets, const SplitResult *results) {
    const TaskLayout *layout = &sets->layout;
    int desc_width = 11, probes = 0;
    for (int s = 0; s < layout->n_splits; s++) {
        int len = (int)strlen(layout->split[s].summary);
        if (len > desc_width) desc_width = len;
        probes += layout->split[s].probe;
    }
    fprintf(out, "%-8s  %-*s  %10s  %-28s  %8s  %-28s  %7s\n", "split", desc_width,
            "description", "scored", "token err% [95% interval]", "seqs",
            "seq err% [95% interval]", "loss");
    for (int s = 0; s < layout->n_splits; s++) {
        const SplitResult *r = &results[s];
        char token[48], seq[48];
        format_rate(token, sizeof token, r->token_errors, r->scored);
        format_rate(seq, sizeof seq, r->seq_errors, r->seqs);
        fprintf(out, "%-8s  %-*s  %10ld  %-28s  %8ld  %-28s  %7.4f\n", layout->split[s].name,
                desc_width, layout->split[s].summary, r->scored, token, r->seqs, seq, r->loss);
    }
    SweepResult sw = eval_sweep(layout, results);
    if (sw.bins) print_sweep(out, layout, &sw);
    if (probes) print_probes(out, layout, desc_width, results);
}
