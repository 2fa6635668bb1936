// t5: the T5 bucketed relative bias, b [H, 32] shared by all layers: s_ij += b[h, bucket(i-j)]
// (not divided by sqrt(d)). Causal buckets as in T5: distances below 16 get a bucket each,
// distances 16..127 share 16 log-spaced buckets, everything further the last one.
#include <math.h>

#include "gpt.h"

#define T5_BUCKETS 32
#define T5_EXACT 16
#define T5_MAX_DISTANCE 128

static int t5_bucket(int distance) {
    if (distance < T5_EXACT) return distance;
    // float arithmetic as T5's reference implementation does it, so buckets agree exactly
    int b = T5_EXACT + (int)(logf((float)distance / T5_EXACT) / logf((float)T5_MAX_DISTANCE / T5_EXACT) *
                             (T5_BUCKETS - T5_EXACT));
    return b < T5_BUCKETS - 1 ? b : T5_BUCKETS - 1;
}

static int t5_tensors(const GPTConfig *c, PETensorSpec *specs) {
    specs[0] = (PETensorSpec){.name = "pe.t5.weight", .per_layer = 0, .ndim = 2,
                              .shape = {c->n_head, T5_BUCKETS}, .init = PE_INIT_NORMAL,
                              .init_std = 0.02f, .weight_decay = 0};
    return 1;
}

// scratch holds bucket(n) for every distance n < T, as floats-sized ints.
static const int *t5_buckets(float *scratch, int T) {
    int *bucket = (int *)scratch;
    for (int n = 0; n < T; n++) bucket[n] = t5_bucket(n);
    return bucket;
}

static void t5_score_forward(float *S, const float *q, const float *k, int head,
                             const PEContext *ctx, float *act, float *scratch) {
    (void)q, (void)k, (void)act;
    int T = ctx->T;
    const float *bias = ctx->params + head * T5_BUCKETS;
    const int *bucket = t5_buckets(scratch, T);
    for (int i = 0; i < T; i++) {
        float *row = S + (size_t)i * T;
        for (int j = 0; j <= i; j++) row[j] += bias[bucket[i - j]];
    }
}

static void t5_score_backward(float *dS, const float *q, float *dq, float *dparams, int head,
                              const PEContext *ctx, const float *act, float *scratch) {
    (void)q, (void)dq, (void)act;
    if (!dparams) return;
    int T = ctx->T;
    float *dbias = dparams + head * T5_BUCKETS;
    const int *bucket = t5_buckets(scratch, T);
    for (int i = 0; i < T; i++) {
        const float *g = dS + (size_t)i * T;
        for (int j = 0; j <= i; j++) dbias[bucket[i - j]] += g[j];
    }
}

static size_t t5_scratch_size(const GPTConfig *c, int T) {
    (void)c;
    return (size_t)T;  // one int per distance; sizeof(int) == sizeof(float) on our targets
}

const PositionalEncoding pe_t5 = {
    .name = "t5",
    .summary = "T5 relative bias: a learned scalar per head and log-spaced distance bucket",
    .tensors = t5_tensors, .score_forward = t5_score_forward,
    .score_backward = t5_score_backward, .score_scratch_size = t5_scratch_size,
};
