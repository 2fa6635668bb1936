#include "dataset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DATASET_SEED 0x5EEDULL
#define TRAIN_SET_KEY 0x545241494E534554ULL  // "TRAINSET": far from any split index

uint64_t dataset_seed(int split) {
    return hash_mix(DATASET_SEED, split < 0 ? TRAIN_SET_KEY : (uint64_t)split);
}

int sequence_set_alloc(SequenceSet *set, int n, int width) {
    memset(set, 0, sizeof *set);
    size_t cells = (size_t)n * width;
    set->inputs = calloc(cells ? cells : 1, sizeof(int32_t));
    set->targets = malloc((cells ? cells : 1) * sizeof(int32_t));
    set->lengths = calloc(n ? n : 1, sizeof(int32_t));
    if (!set->inputs || !set->targets || !set->lengths) {
        sequence_set_free(set);
        return -1;
    }
    for (size_t i = 0; i < cells; i++) set->targets[i] = -1;
    set->n = n;
    set->width = width;
    return 0;
}

void sequence_set_free(SequenceSet *set) {
    free(set->inputs);
    free(set->targets);
    free(set->lengths);
    memset(set, 0, sizeof *set);
}

int sequence_set_generate(SequenceSet *set, const Task *task, const TaskOptions *opt,
                          const TaskLayout *layout, int split, int n, uint64_t seed) {
    int width = split < 0 ? layout->train_len : layout->split[split].seq_len;
    if (sequence_set_alloc(set, n, width) != 0) return -1;
    if (split < 0) {
        snprintf(set->name, sizeof set->name, "train");
        snprintf(set->summary, sizeof set->summary, "the training set");
    } else {
        snprintf(set->name, sizeof set->name, "%s", layout->split[split].name);
        snprintf(set->summary, sizeof set->summary, "%s", layout->split[split].summary);
        set->extrapolates = layout->split[split].extrapolates;
    }
    Rng rng;
    rng_seed(&rng, seed);
    for (int s = 0; s < n; s++) sequence_set_draw(set, s, task, opt, split, &rng);
    return 0;
}

void sequence_set_draw(SequenceSet *set, int row, const Task *task, const TaskOptions *opt,
                       int split, Rng *rng) {
    int32_t *inputs = set->inputs + (size_t)row * set->width;
    int32_t *targets = set->targets + (size_t)row * set->width;
    int n = task->sample(opt, split, rng, inputs, targets);
    for (int t = n; t < set->width; t++) {
        inputs[t] = 0;
        targets[t] = -1;
    }
    set->lengths[row] = n;
}

int batches_per_epoch(int n, int B, BatchOrder how) {
    return how == ORDER_SHUFFLE ? (n + B - 1) / B : n / B;
}

int epoch_batch_size(int n, int B, BatchOrder how, int k) {
    return how == ORDER_SHUFFLE && (k + 1) * B > n ? n - k * B : B;
}

static int ascending(const void *pa, const void *pb) {
    int64_t a = *(const int64_t *)pa, b = *(const int64_t *)pb;
    return (a > b) - (a < b);
}

static void shuffle(int *x, int n, Rng *rng) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rng_below(rng, (uint32_t)(i + 1));
        int tmp = x[i];
        x[i] = x[j];
        x[j] = tmp;
    }
}

void epoch_order(int *order, int64_t *work, const int32_t *lengths, int n, int B, BatchOrder how,
                 uint64_t seed, long epoch) {
    Rng rng;
    rng_seed(&rng, hash_mix(seed, (uint64_t)epoch));
    for (int i = 0; i < n; i++) order[i] = i;
    shuffle(order, n, &rng);
    if (how == ORDER_SHUFFLE) return;
    int nb = batches_per_epoch(n, B, how), used = nb * B, pool = EPOCH_POOL * B;
    // Sort keys: length, then row id, so that equal lengths still have one order (qsort is not
    // stable).
    for (int i = 0; i < used; i++) work[i] = (int64_t)lengths[order[i]] << 32 | order[i];
    for (int first = 0; first < used; first += pool)
        qsort(work + first, (size_t)(used - first < pool ? used - first : pool), sizeof *work, ascending);
    for (int i = 0; i < used; i++) order[i] = (int)(work[i] & 0xFFFFFFFF);
    // Shuffle whole batches, so that the step sees short and long batches in no set pattern.
    for (int k = nb - 1; k > 0; k--) {
        int j = (int)rng_below(&rng, (uint32_t)(k + 1));
        for (int b = 0; b < B; b++) {
            int tmp = order[k * B + b];
            order[k * B + b] = order[j * B + b];
            order[j * B + b] = tmp;
        }
    }
}

int sequence_set_batch(const SequenceSet *set, const int *indices, int B, int32_t *inputs,
                       int32_t *targets) {
    int T = 1;
    for (int b = 0; b < B; b++)
        if (set->lengths[indices[b]] > T) T = set->lengths[indices[b]];
    for (int b = 0; b < B; b++) {
        size_t from = (size_t)indices[b] * set->width, to = (size_t)b * T;
        memcpy(inputs + to, set->inputs + from, (size_t)T * sizeof(int32_t));
        memcpy(targets + to, set->targets + from, (size_t)T * sizeof(int32_t));
    }
    return T;
}
