#include "evaluate.h"

#include <stdlib.h>
#include <string.h>

// Each split's stream seed: a constant, not --seed, so the sets are the same for every run.
#define EVAL_SEED 0x5EEDULL

int eval_sets_build(EvalSets *sets, const Task *task, const TaskOptions *opt, int n_seqs) {
    int T = opt->seq_len;
    size_t n = (size_t)task->n_splits * n_seqs * T;
    sets->n_splits = task->n_splits;
    sets->n_seqs = n_seqs;
    sets->T = T;
    sets->inputs = malloc(n * sizeof(int32_t));
    sets->targets = malloc(n * sizeof(int32_t));
    if (!sets->inputs || !sets->targets) {
        eval_sets_free(sets);
        return -1;
    }
    for (int split = 0; split < task->n_splits; split++) {
        Rng rng;
        rng_seed(&rng, hash_mix(EVAL_SEED, (uint64_t)split));
        for (int s = 0; s < n_seqs; s++) {
            size_t at = ((size_t)split * n_seqs + s) * T;
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

// First index of the largest logit: ties go to the lower token id, deterministically.
static int argmax(const float *logits, int V) {
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
            wrong += argmax(model->acts.logits + i * V, V) != targets[i];
            *loss_sum += model->acts.losses[i];
        }
        r->token_errors += wrong;
        r->seq_errors += wrong > 0;
        r->seqs++;
    }
}

void evaluate(GPT *model, const EvalSets *sets, SplitResult *results) {
    int T = sets->T;
    for (int split = 0; split < sets->n_splits; split++) {
        SplitResult *r = &results[split];
        memset(r, 0, sizeof *r);
        double loss_sum = 0.0;
        for (int s = 0; s < sets->n_seqs; s += model->max_batch) {
            int B = sets->n_seqs - s < model->max_batch ? sets->n_seqs - s : model->max_batch;
            size_t at = ((size_t)split * sets->n_seqs + s) * T;
            gpt_forward(model, sets->inputs + at, sets->targets + at, B, T, 0, 0);
            score_batch(model, sets->targets + at, B, T, r, &loss_sum);
        }
        r->loss = r->scored ? loss_sum / (double)r->scored : 0.0;
    }
}

void eval_print_table(FILE *out, const Task *task, const SplitResult *results) {
    int desc_width = 11;
    for (int s = 0; s < task->n_splits; s++) {
        int len = (int)strlen(task->split_summaries[s]);
        if (len > desc_width) desc_width = len;
    }
    fprintf(out, "%-8s  %-*s  %10s  %11s  %9s  %7s\n", "split", desc_width, "description",
            "scored", "token err%", "seq err%", "loss");
    for (int s = 0; s < task->n_splits; s++) {
        const SplitResult *r = &results[s];
        fprintf(out, "%-8s  %-*s  %10ld  %11.3f  %9.2f  %7.4f\n", task->split_names[s], desc_width,
                task->split_summaries[s], r->scored, 100.0 * token_error_rate(r),
                100.0 * seq_error_rate(r), r->loss);
    }
}
