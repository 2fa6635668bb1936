// abs: a learned absolute position embedding wpe [T, C] added to the token embeddings.
#include "gpt.h"

static int abs_tensors(const GPTConfig *c, PETensorSpec *specs) {
    specs[0] = (PETensorSpec){.name = "wpe.weight", .per_layer = 0, .ndim = 2,
                              .shape = {c->seq_len, c->n_embd}, .init = PE_INIT_NORMAL,
                              .init_std = c->emb_std, .weight_decay = 1};
    return 1;
}

// The table has one row per position of the context: nothing beyond it can be represented.
static int abs_max_len(const GPTConfig *c) { return c->seq_len; }

static void abs_embed_forward(float *h0, const float *wpe, const GPTConfig *c, int B, int T) {
    int C = c->n_embd;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *h = h0 + ((size_t)b * T + t) * C;
            const float *p = wpe + (size_t)t * C;
            for (int i = 0; i < C; i++) h[i] += p[i];
        }
}

static void abs_embed_backward(float *dwpe, const float *dh0, const GPTConfig *c, int B, int T) {
    int C = c->n_embd;
    // Parallel over positions, each summing its batch rows in order: deterministic.
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++) {
            const float *g = dh0 + ((size_t)b * T + t) * C;
            float *dp = dwpe + (size_t)t * C;
            for (int i = 0; i < C; i++) dp[i] += g[i];
        }
}

const PositionalEncoding pe_abs = {
    .name = "abs",
    .summary = "learned absolute position embedding added to the tokens (cannot run past T)",
    .tensors = abs_tensors, .max_len = abs_max_len, .embed_forward = abs_embed_forward,
    .embed_backward = abs_embed_backward,
};
