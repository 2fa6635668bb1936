#include "evaluate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int eval_sets_build(EvalSets *sets, const Task *task, const TaskOptions *opt, int n_seqs) {
    memset(sets, 0, sizeof *sets);
    task->layout(opt, &sets->layout);
    for (int split = 0; split < sets->layout.n_splits; split++) {
        int n = sets->layout.split[split].size ? sets->layout.split[split].size : n_seqs;
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

// Adds one forwarded batch of `B` sequences to the split's counts.
static void score_batch(const GPT *model, const int32_t *targets, int B, int T, SplitResult *r,
                        double *loss_sum) {
    int V = model->config.vocab_size;
    for (int b = 0; b < B; b++) {
        int wrong = 0;
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)b * T + t;
            if (targets[i] < 0) continue;
            r->scored++;
            wrong += logits_argmax(model->acts.logits + i * V, V) != targets[i];
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
            score_batch(model, targets, n, T, r, &loss_sum);
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

void eval_print_table(FILE *out, const EvalSets *sets, const SplitResult *results) {
    const TaskLayout *layout = &sets->layout;
    int desc_width = 11;
    for (int s = 0; s < layout->n_splits; s++) {
        int len = (int)strlen(layout->split[s].summary);
        if (len > desc_width) desc_width = len;
    }
    fprintf(out, "%-8s  %-*s  %10s  %11s  %9s  %7s\n", "split", desc_width, "description",
            "scored", "token err%", "seq err%", "loss");
    for (int s = 0; s < layout->n_splits; s++) {
        const SplitResult *r = &results[s];
        fprintf(out, "%-8s  %-*s  %10ld  %11.3f  %9.2f  %7.4f\n", layout->split[s].name,
                desc_width, layout->split[s].summary, r->scored, 100.0 * token_error_rate(r),
                100.0 * seq_error_rate(r), r->loss);
    }
    SweepResult sw = eval_sweep(layout, results);
    if (sw.bins) print_sweep(out, layout, &sw);
}
