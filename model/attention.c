// Causal multi-head attention, one sgemm per (batch, head, row block).
//
// Rows are processed in blocks of ROW_BLOCK queries; a block only multiplies against the keys
// it can see (0 .. end of the block), so the masked upper triangle is mostly never computed:
// at T = 512 the products do 56% of the full-square work. Inside the diagonal block the
// entries j > i are kept at zero so that the products need no masking.
//
// Hand-written register-blocked kernels for these products (4 rows at a time, 8- and
// 16-float vectors) were measured against sgemm and lost or tied: 5 % slower on a paper
// step (T 512, d 64), within noise on classroom heads (T 64, d 16) once the softmax rows below
// stopped stalling on partial loads (docs/speed.md). OpenBLAS keeps the products.
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "layers.h"
#include "../common/rng.h"
#include "vecmath.h"

#define ROW_BLOCK 64

static inline int block_end(int r0, int T) { return r0 + ROW_BLOCK < T ? r0 + ROW_BLOCK : T; }

size_t attention_work_size(int T) { return 2 * (size_t)T * T; }

static float *pe_scratch(const AttentionSetup *s, int thread, int T) {
    return s->work + (size_t)thread * s->work_per_thread + attention_work_size(T);
}

// A row's entries j0 .. as one vector, lanes past the diagonal `fill` (vec_load_masked).
static inline vfloat row_load(const float *row, int j0, int last, int end, float fill) {
    return vec_load_masked(row + j0, j0, last, end, fill);
}

static inline void row_store(float *row, int j0, int end, vfloat x) {
    vec_store_partial(row + j0, x, (size_t)(end - j0));
}

// Zeros from the vector after the diagonal's to the end of row i's block (the vectors up to
// the diagonal's were written whole, their lanes past i as zeros).
static void row_clear_tail(float *row, int i, int T) {
    int end = block_end(i - i % ROW_BLOCK, T), vend = (i + VEC_WIDTH) / VEC_WIDTH * VEC_WIDTH;
    if (vend < end) memset(row + vend, 0, (size_t)(end - vend) * sizeof(float));
}

// Softmax of row i over its entries 0 .. i in place; zeros after them to the block's end.
static void softmax_row(float *row, int i, int T) {
    int end = block_end(i - i % ROW_BLOCK, T);
    vfloat mv = vec_splat(-__builtin_inff()), sum = vec_splat(0.0f);
    for (int j0 = 0; j0 <= i; j0 += VEC_WIDTH) mv = vec_max(mv, row_load(row, j0, i, end, -__builtin_inff()));
    float m = vec_hmax(mv);
    for (int j0 = 0; j0 <= i; j0 += VEC_WIDTH) {
        vfloat e = vec_exp(row_load(row, j0, i, end, -__builtin_inff()) - m);  // e^-inf = 0
        row_store(row, j0, end, e);
        sum += e;
    }
    float inv = 1.0f / vec_sum(sum);
    for (int j0 = 0; j0 <= i; j0 += VEC_WIDTH) row_store(row, j0, end, row_load(row, j0, i, end, 0.0f) * inv);
    row_clear_tail(row, i, T);
}

// Softmax backward of row i in place: g_j = p_j (g_j - sum_k p_k g_k) over j <= i; zeros after
// i to the block's end (whatever g held there).
static void softmax_backward_row(float *g, const float *p, int i, int T) {
    int end = block_end(i - i % ROW_BLOCK, T);
    vfloat acc = vec_splat(0.0f);
    for (int j0 = 0; j0 <= i; j0 += VEC_WIDTH)
        acc += row_load(p, j0, i, end, 0.0f) * row_load(g, j0, i, end, 0.0f);
    float dot = vec_sum(acc);
    for (int j0 = 0; j0 <= i; j0 += VEC_WIDTH)
        row_store(g, j0, end, row_load(p, j0, i, end, 0.0f) * (row_load(g, j0, i, end, 0.0f) - dot));
    row_clear_tail(g, i, T);
}

// Dropout of one (batch, head)'s [T, T] matrix (probabilities, or their gradient; dst may be
// src), with the element index of the whole [B, H, T, T] tensor so that forward and backward
// draw the same mask (and a shard of a batch the mask of its rows in the whole batch).
static void attention_dropout(float *dst, const float *src, int T, size_t bh,
                              const AttentionSetup *s) {
    uint32_t threshold = dropout_threshold(s->dropout);
    float scale = 1.0f / (1.0f - s->dropout);
    size_t base = (s->dropout_first_bh + bh) * (size_t)T * T;
    for (int i = 0; i < T; i++) {
        int jend = block_end(i - i % ROW_BLOCK, T);
        for (int j = 0; j < jend; j++) {
            size_t idx = (size_t)i * T + j;
            dst[idx] = dropout_keep(s->dropout_key, base + idx, threshold) ? src[idx] * scale : 0.0f;
        }
    }
}

void attention_forward(float *out, float *att, float *pe_act, const float *qkv, int B, int T,
                       int C, int H, const AttentionSetup *s) {
    int d = C / H, ld = 3 * C;
    float scale = 1.0f / sqrtf((float)d);
#pragma omp parallel for collapse(2) schedule(static) num_threads(s->n_threads)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            size_t bh = (size_t)b * H + h;
            const float *q = qkv + (size_t)b * T * ld + h * d, *k = q + C, *v = q + 2 * C;
            float *S = att + bh * T * T;
            for (int r0 = 0; r0 < T; r0 += ROW_BLOCK) {
                int r1 = block_end(r0, T);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, r1, d, scale,
                            q + (size_t)r0 * ld, ld, k, ld, 0.0f, S + (size_t)r0 * T, T);
            }
            if (s->pe && s->pe->score_forward)
                s->pe->score_forward(S, q, k, h, &s->ctx, pe_act ? pe_act + bh * s->pe_act_size : NULL,
                                     pe_scratch(s, omp_get_thread_num(), T));
            for (int i = 0; i < T; i++) softmax_row(S + (size_t)i * T, i, T);
            const float *P = S;
            if (s->dropout > 0.0f) {
                float *dropped = s->work + (size_t)omp_get_thread_num() * s->work_per_thread;
                attention_dropout(dropped, S, T, bh, s);
                P = dropped;
            }
            float *o = out + (size_t)b * T * C + h * d;
            for (int r0 = 0; r0 < T; r0 += ROW_BLOCK) {
                int r1 = block_end(r0, T);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, d, r1, 1.0f,
                            P + (size_t)r0 * T, T, v, ld, 0.0f, o + (size_t)r0 * C, C);
            }
        }
    }
}

void attention_backward(float *dqkv, const float *dout, const float *att, const float *pe_act,
                        const float *qkv, int B, int T, int C, int H,
                        const AttentionSetup *s) {
    int d = C / H, ld = 3 * C;
    float scale = 1.0f / sqrtf((float)d);
    memset(dqkv, 0, (size_t)B * T * ld * sizeof(float));
    int score_grads = s->pe && s->pe->score_backward && s->pe_grad;
    if (score_grads)
        memset(s->pe_grad_work, 0, (size_t)s->n_threads * s->pe_grad_size * sizeof(float));
#pragma omp parallel for collapse(2) schedule(static) num_threads(s->n_threads)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            size_t bh = (size_t)b * H + h;
            int tid = omp_get_thread_num();
            float *work = s->work + (size_t)tid * s->work_per_thread;
            float *dS = work + (size_t)T * T;
            const float *q = qkv + (size_t)b * T * ld + h * d, *k = q + C, *v = q + 2 * C;
            float *dq = dqkv + (size_t)b * T * ld + h * d, *dk = dq + C, *dv = dq + 2 * C;
            const float *P = att + bh * T * T;
            const float *Pd = P;
            if (s->dropout > 0.0f) {
                attention_dropout(work, P, T, bh, s);
                Pd = work;
            }
            const float *dO = dout + (size_t)b * T * C + h * d;
            for (int r0 = 0; r0 < T; r0 += ROW_BLOCK) {
                int r1 = block_end(r0, T);
                // dv[0:r1] += Pd[r0:r1, 0:r1]^T dO[r0:r1]
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1, d, r1 - r0, 1.0f,
                            Pd + (size_t)r0 * T, T, dO + (size_t)r0 * C, C, 1.0f, dv, ld);
                // dPd[r0:r1, 0:r1] = dO[r0:r1] v[0:r1]^T
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, r1, d, 1.0f,
                            dO + (size_t)r0 * C, C, v, ld, 0.0f, dS + (size_t)r0 * T, T);
            }
            // The mask of the probabilities is also the mask of their gradient.
            if (s->dropout > 0.0f) attention_dropout(dS, dS, T, bh, s);
            // softmax backward: dS_ij = P_ij (dP_ij - sum_k P_ik dP_ik)
            for (int i = 0; i < T; i++) softmax_backward_row(dS + (size_t)i * T, P + (size_t)i * T, i, T);
            if (s->pe && s->pe->score_backward)
                s->pe->score_backward(dS, q, dq,
                                      score_grads ? s->pe_grad_work + (size_t)tid * s->pe_grad_size : NULL,
                                      h, &s->ctx, pe_act ? pe_act + bh * s->pe_act_size : NULL,
                                      pe_scratch(s, tid, T));
            for (int r0 = 0; r0 < T; r0 += ROW_BLOCK) {
                int r1 = block_end(r0, T);
                // dq[r0:r1] += scale dS[r0:r1, 0:r1] k[0:r1]
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, d, r1, scale,
                            dS + (size_t)r0 * T, T, k, ld, 1.0f, dq + (size_t)r0 * ld, ld);
                // dk[0:r1] += scale dS[r0:r1, 0:r1]^T q[r0:r1]
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1, d, r1 - r0, scale,
                            dS + (size_t)r0 * T, T, q + (size_t)r0 * ld, ld, 1.0f, dk, ld);
            }
        }
    }
    if (score_grads) {
        // Per-thread partial gradients summed in thread order: deterministic per thread count.
        for (int t = 0; t < s->n_threads; t++) {
            const float *src = s->pe_grad_work + (size_t)t * s->pe_grad_size;
            for (size_t i = 0; i < s->pe_grad_size; i++) s->pe_grad[i] += src[i];
        }
    }
}
