// rel: a learned relative position embedding R [npos, d], one table shared by every layer and
// head (the "Relative PE" baseline of the CoPE paper, as its official code does it):
//   s_ij += q_i . R[min(i - j, npos - 1)] / sqrt(d).
// The products q_i . R[r] for the distances r <= i are sgemms by row blocks (layers.h,
// position_logits); the score term is then a gather, and its backward a scatter into dZ
// followed by the products' backward.
#include <math.h>
#include <string.h>

#include "gpt.h"
#include "layers.h"

static int rel_npos(const GPTConfig *c) { return c->pe_opt.rel_npos > 0 ? c->pe_opt.rel_npos : c->seq_len; }
static void rel_keep_tables(GPTConfig *c) { c->pe_opt.rel_npos = rel_npos(c); }

static int rel_tensors(const GPTConfig *c, PETensorSpec *specs) {
    int d = c->n_embd / c->n_head;
    specs[0] = (PETensorSpec){.name = "pe.rel.weight", .per_layer = 0, .ndim = 2,
                              .shape = {rel_npos(c), d}, .init = PE_INIT_NORMAL,
                              .init_std = 1.0f / sqrtf((float)d), .weight_decay = 1};
    return 1;
}

static void rel_score_forward(float *S, const float *q, const float *k, int head,
                              const PEContext *ctx, float *act, float *scratch) {
    (void)k, (void)head, (void)act;
    const GPTConfig *c = ctx->config;
    int T = ctx->T, npos = rel_npos(c), d = c->n_embd / c->n_head;
    float scale = 1.0f / sqrtf((float)d);
    position_logits(scratch, q, ctx->params, T, npos, d, ctx->qkv_stride, 0);
    for (int i = 0; i < T; i++) {
        const float *z = scratch + (size_t)i * npos;
        float *row = S + (size_t)i * T;
        for (int j = 0; j <= i; j++) row[j] += z[i - j < npos ? i - j : npos - 1] * scale;
    }
}

static void rel_score_backward(float *dS, const float *q, float *dq, float *dparams, int head,
                               const PEContext *ctx, const float *act, float *scratch) {
    (void)head, (void)act;
    const GPTConfig *c = ctx->config;
    int T = ctx->T, npos = rel_npos(c), d = c->n_embd / c->n_head, ld = ctx->qkv_stride;
    float scale = 1.0f / sqrtf((float)d);
    float *dZ = scratch;
    memset(dZ, 0, (size_t)T * npos * sizeof(float));
    for (int i = 0; i < T; i++) {
        const float *g = dS + (size_t)i * T;
        float *dz = dZ + (size_t)i * npos;
        for (int j = 0; j <= i; j++) dz[i - j < npos ? i - j : npos - 1] += g[j] * scale;
    }
    position_logits_backward(dq, dparams, dZ, q, ctx->params, T, npos, d, ld, 0);
}

// q R^T over the distances each query can need.
static double rel_score_flops(const GPTConfig *c, int T) {
    return pe_position_product_flops(T, rel_npos(c), 0, c->n_embd / c->n_head);
}

static size_t rel_scratch_size(const GPTConfig *c, int T) { return (size_t)T * rel_npos(c); }

static const char *rel_check(const GPTConfig *c) {
    return c->pe_opt.rel_npos < 0 ? "--rel-npos must be positive (or 0 for the default)" : NULL;
}

static const Option rel_options[] = {
    {"rel-npos", "N", KIND_INT, offsetof(PEOptions, rel_npos), SCOPE_MODEL, 0, 1 << 20,
     .help = "rel: table rows, longer distances share the last; 0 means --seq-len"},
};

const PositionalEncoding pe_rel = {
    .name = "rel", OPTION_ROWS(rel_options),
    .summary = "learned relative embedding R[i-j] dotted with the query, one table for all layers",
    .check = rel_check, .keep_tables = rel_keep_tables, .tensors = rel_tensors,
    .score_forward = rel_score_forward, .score_backward = rel_score_backward,
    .score_scratch_size = rel_scratch_size, .score_flops = rel_score_flops,
};
