// cope: contextual position encoding (Golovneva et al. 2024). Positions are counted by gates
// the model chooses, not by tokens:
//   g_ij = sigmoid(q_i.k_j / sqrt(d))                (j <= i)
//   p_ij = min(sum_{k=j..i} g_ik, npos - 1)          (a reverse cumulative sum along the keys)
//   z_i[n] = q_i . E[n]                              (one sgemm: Z = Q E^T)
//   e_ij = w z_i[ceil p_ij] + (1 - w) z_i[floor p_ij],  w = p_ij - floor p_ij
//   s_ij = (q_i.k_j + e_ij) / sqrt(d)
// E [npos, d] is per layer, shared by its heads, initialised to zero. Per query row: the gates
// (one vector pass), their reverse cumulative sum (a vector at a time), the interpolation; the
// gates are kept for backward and the positions recomputed from them.
//
// Backward: de = ds / sqrt(d) scatters into dZ (-> dq and dE by sgemm); dw = de (z_ceil -
// z_floor) is the gradient of p unless p was clamped; the cumulative sum's adjoint is a prefix
// sum over keys; through the sigmoid this becomes a gradient of the raw score, which is added
// to dS so the attention's own products carry it into q and k.
#include <math.h>
#include <string.h>

#include "gpt.h"
#include "layers.h"
#include "vecmath.h"

static int cope_npos(const GPTConfig *c) { return c->pe_opt.cope_npos > 0 ? c->pe_opt.cope_npos : c->seq_len + 1; }
static void cope_keep_tables(GPTConfig *c) { c->pe_opt.cope_npos = cope_npos(c); }

static int cope_tensors(const GPTConfig *c, PETensorSpec *specs) {
    specs[0] = (PETensorSpec){.name = "blocks.%d.attn.cope.weight", .per_layer = 1, .ndim = 2,
                              .shape = {cope_npos(c), c->n_embd / c->n_head}, .init = PE_INIT_ZERO,
                              .weight_decay = 1};
    return 1;
}

// Interpolation of one position: floor index, ceil index and weight of the ceil.
typedef struct {
    int lo, hi;
    float w;
} Interp;

static inline Interp interp_at(float p) {
    int lo = (int)p;  // p >= 0
    float w = p - (float)lo;
    return (Interp){lo, w > 0.0f ? lo + 1 : lo, w};
}

// Query i can reach positions 0 .. i + 1 at most (i + 1 gates of at most 1 each): reach 1.
#define COPE_REACH 1

// Row i's positions p[j] = min(sum_{k=j..i} g[k], pmax) for j <= i (p and g hold >= i + 1
// entries; p's entries past i up to the end of the diagonal's vector, when there are n > i + 1,
// are overwritten). The running sum goes from the diagonal down a vector at a time: suffix sums
// inside each vector plus the sum of the vectors above it, so no scalar addition chain of length
// i; forward, backward and the score positions all call this, so they agree to the bit.
static void cope_row_positions(float *p, const float *g, int i, int n, float pmax) {
    float carry = 0.0f;
    for (int j0 = i - i % VEC_WIDTH; j0 >= 0; j0 -= VEC_WIDTH) {
        vfloat v = vec_suffix_sums(vec_load_masked(g + j0, j0, i, n, 0.0f)) + carry;
        carry = v[0];
        vec_store_partial(p + j0, vec_min(v, vec_splat(pmax)), (size_t)(n - j0));
    }
}

static void cope_score_forward(float *S, const float *q, const float *k, int head,
                               const PEContext *ctx, float *gates, float *scratch) {
    (void)k, (void)head;
    const GPTConfig *c = ctx->config;
    int T = ctx->T, npos = cope_npos(c), d = c->n_embd / c->n_head;
    float scale = 1.0f / sqrtf((float)d), pmax = (float)(npos - 1);
    float *Z = scratch, *p = Z + (size_t)T * npos;
    position_logits(Z, q, ctx->params, T, npos, d, ctx->qkv_stride, COPE_REACH);
    for (int i = 0; i < T; i++) {
        float *row = S + (size_t)i * T, *g = gates + (size_t)i * T;
        const float *z = Z + (size_t)i * npos;
        vec_sigmoid(g, row, (size_t)i + 1);
        cope_row_positions(p, g, i, T, pmax);
        // The interpolation a vector at a time; the lookups of z lane by lane.
        for (int j0 = 0; j0 <= i; j0 += VEC_WIDTH) {
            vfloat pv = vec_load_partial(p + j0, (size_t)(T - j0), 0.0f), zlo, zhi;
            vint lo = __builtin_convertvector(pv, vint);  // p >= 0: truncation is the floor
            vfloat w = pv - __builtin_convertvector(lo, vfloat);
            vint hi = lo - (w > 0.0f);  // a true comparison is -1
            for (int l = 0; l < VEC_WIDTH; l++) zlo[l] = z[lo[l]], zhi[l] = z[hi[l]];
            size_t n = (size_t)(i + 1 - j0);
            vec_store_partial(row + j0, vec_load_partial(row + j0, n, 0.0f) + (zlo + w * (zhi - zlo)) * scale, n);
        }
    }
}

static void cope_score_backward(float *dS, const float *q, float *dq, float *dparams, int head,
                                const PEContext *ctx, const float *gates, float *scratch) {
    (void)head;
    const GPTConfig *c = ctx->config;
    int T = ctx->T, npos = cope_npos(c), d = c->n_embd / c->n_head, ld = ctx->qkv_stride;
    float scale = 1.0f / sqrtf((float)d), pmax = (float)(npos - 1);
    float *Z = scratch, *dZ = Z + (size_t)T * npos, *p = dZ + (size_t)T * npos, *dp = p + T;
    position_logits(Z, q, ctx->params, T, npos, d, ld, COPE_REACH);
    memset(dZ, 0, (size_t)T * npos * sizeof(float));
    for (int i = 0; i < T; i++) {
        float *ds = dS + (size_t)i * T;
        const float *g = gates + (size_t)i * T, *z = Z + (size_t)i * npos;
        float *dz = dZ + (size_t)i * npos;
        cope_row_positions(p, g, i, T, pmax);
        for (int j = i; j >= 0; j--) {
            Interp it = interp_at(p[j]);
            float de = ds[j] * scale;
            dz[it.lo] += (1.0f - it.w) * de;
            dz[it.hi] += it.w * de;
            dp[j] = p[j] < pmax ? de * (z[it.hi] - z[it.lo]) : 0.0f;  // clamped: no gradient
        }
        // p_ij sums the gates g_ik for k >= j, so dg_ik collects dp_ij for every j <= k: a
        // prefix sum over the keys, a vector at a time as the positions' suffix sum.
        float carry = 0.0f;
        for (int k0 = 0; k0 <= i; k0 += VEC_WIDTH) {
            size_t n = (size_t)(i + 1 - k0);
            vfloat acc = vec_prefix_sums(vec_load_partial(dp + k0, n, 0.0f)) + carry;
            carry = acc[VEC_WIDTH - 1];
            vfloat gk = vec_load_partial(g + k0, n, 0.0f);
            vec_store_partial(ds + k0, vec_load_partial(ds + k0, n, 0.0f) + acc * gk * (1.0f - gk), n);
        }
    }
    position_logits_backward(dq, dparams, dZ, q, ctx->params, T, npos, d, ld, COPE_REACH);
}

static void cope_score_positions(float *P, const float *gates, const PEContext *ctx) {
    int T = ctx->T;
    float pmax = (float)(cope_npos(ctx->config) - 1);
    for (int i = 0; i < T; i++) {
        float *row = P + (size_t)i * T;
        cope_row_positions(row, gates + (size_t)i * T, i, T, pmax);
        for (int j = i + 1; j < T; j++) row[j] = 0.0f;
    }
}

static size_t cope_act_size(const GPTConfig *c, int T) {
    (void)c;
    return (size_t)T * T;  // the gates
}

static size_t cope_scratch_size(const GPTConfig *c, int T) { return 2 * (size_t)T * cope_npos(c) + 2 * (size_t)T; }

// Z = q E^T over the reachable positions (the recomputation in backward is not counted).
static double cope_score_flops(const GPTConfig *c, int T) {
    return pe_position_product_flops(T, cope_npos(c), COPE_REACH, c->n_embd / c->n_head);
}

static const char *cope_check(const GPTConfig *c) {
    return c->pe_opt.cope_npos < 0 ? "--cope-npos must be positive (or 0 for the default)" : NULL;
}

static const Option cope_options[] = {
    {"cope-npos", "N", KIND_INT, offsetof(PEOptions, cope_npos), SCOPE_MODEL, 0, 1 << 20,
     .help = "cope: positions clamp to N-1; 0 means --seq-len + 1"},
};

const PositionalEncoding pe_cope = {
    .name = "cope", OPTION_ROWS(cope_options),
    .summary = "contextual positions: gated counts of past tokens, interpolated position logits",
    .check = cope_check, .keep_tables = cope_keep_tables, .tensors = cope_tensors,
    .score_forward = cope_score_forward, .score_backward = cope_score_backward,
    .score_positions = cope_score_positions, .score_act_size = cope_act_size,
    .score_scratch_size = cope_scratch_size, .score_flops = cope_score_flops,
};
