#include "evaluate.h"

#include <stdlib.h>
#include <string.h>

// Each split's stream seed: a constant, not --seed, so the sets are the same for every run.
#define EVAL_SEED 0x5EEDULL

int eval_sets_build(EvalSets *sets, const Task *task, const TaskOptions *opt, int n_seqs) {
    memset(sets, 0, sizeof *sets);
    task->layout(opt, &sets->layout);
    sets->n_seqs = n_seqs;
    size_t n = 0;
    for (int s = 0; s < sets->layout.n_splits; s++) {
        sets->offset[s] = n;
        n += (size_t)n_seqs * sets->layout.split[s].seq_len;
    }
    sets->inputs = malloc(n * sizeof(int32_t));
    sets->targets = malloc(n * sizeof(int32_t));
    if (!sets->inputs || !sets->targets) {
        eval_sets_free(sets);
        return -1;
    }
    for (int split = 0; split < sets->layout.n_splits; split++) {
        Rng rng;
        rng_seed(&rng, hash_mix(EVAL_SEED, (uint64_t)split));
        int T = sets->layout.split[split].seq_len;
        for (int s = 0; s < n_seqs; s++) {
            size_t at = sets->offset[split] + (size_t)s * T;
            task->sample(opt, split, &rng, sets->inputs + at, sets->targets + at);
        }
    }
    return 0;
}

void eval_sets_free(EvalSets *sets) {
    free(sets->inputs);
    free(sets->targets);
    sets->inputs = sets->targets = NULL;
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

void evaluate(GPT *model, const EvalSets *sets, SplitResult *results) {
    for (int split = 0; split < sets->layout.n_splits; split++) {
        int T = sets->layout.split[split].seq_len;
        SplitResult *r = &results[split];
        memset(r, 0, sizeof *r);
        double loss_sum = 0.0;
        for (int s = 0; s < sets->n_seqs; s += model->max_batch) {
            int B = sets->n_seqs - s < model->max_batch ? sets->n_seqs - s : model->max_batch;
            size_t at = sets->offset[split] + (size_t)s * T;
            gpt_forward(model, sets->inputs + at, sets->targets + at, B, T, 0, 0);
            score_batch(model, sets->targets + at, B, T, r, &loss_sum);
        }
        r->loss = r->scored ? loss_sum / (double)r->scored : 0.0;
    }
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
