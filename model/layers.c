#include "layers.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "../common/rng.h"
#include "vecmath.h"

size_t carve_floats(float *at, float **const *slots, const size_t *sizes, int n) {
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        *slots[i] = at && sizes[i] ? at + total : NULL;
        total += sizes[i];
    }
    return total;
}

void embedding_forward(float *out, const int32_t *inp, const float *wte, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) memcpy(out + (size_t)n * C, wte + (size_t)inp[n] * C, C * sizeof(float));
}

void embedding_backward(float *dwte, const float *dout, const int32_t *inp, int N, int C) {
    // A scatter-add: rows of one token collide, so threads split the channels instead of the
    // positions; each channel is then summed in position order, whatever the thread count.
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++)
        for (int n = 0; n < N; n++) dwte[(size_t)inp[n] * C + c] += dout[(size_t)n * C + c];
}

// Row sums go through vector accumulators (a float sum the compiler may not reorder stays a
// chain of dependent scalar adds, 4 cycles each); lanes past C load as a value that adds 0.
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *weight, const float *bias, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *y = out + (size_t)n * C;
        vfloat acc = vec_splat(0.0f);
        for (int c = 0; c < C; c += VEC_WIDTH) acc += vec_load_partial(x + c, C - c, 0.0f);
        float m = vec_sum(acc) / C;
        acc = vec_splat(0.0f);
        for (int c = 0; c < C; c += VEC_WIDTH) {
            vfloat d = vec_load_partial(x + c, C - c, m) - m;
            acc += d * d;
        }
        float s = 1.0f / sqrtf(vec_sum(acc) / C + 1e-5f);
        for (int c = 0; c < C; c += VEC_WIDTH) {
            vfloat v = (vec_load_partial(x + c, C - c, m) - m) * s * vec_load_partial(weight + c, C - c, 0.0f) +
                       vec_load_partial(bias + c, C - c, 0.0f);
            vec_store_partial(y + c, v, C - c);
        }
        mean[n] = m;
        rstd[n] = s;
    }
}

// Column blocks for reductions over rows: each block is owned by one thread and summed in row
// order, so the result does not depend on the thread count.
#define COLUMN_BLOCK 32

void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, const float *mean,
                        const float *rstd, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *dy = dout + (size_t)n * C, *x = inp + (size_t)n * C;
        float m = mean[n], s = rstd[n];
        vfloat acc_dnorm = vec_splat(0.0f), acc_dnorm_norm = vec_splat(0.0f);
        for (int c = 0; c < C; c += VEC_WIDTH) {
            vfloat dnorm = vec_load_partial(weight + c, C - c, 0.0f) * vec_load_partial(dy + c, C - c, 0.0f);
            acc_dnorm += dnorm;
            acc_dnorm_norm += dnorm * (vec_load_partial(x + c, C - c, m) - m) * s;
        }
        float dnorm_mean = vec_sum(acc_dnorm) / C, dnorm_norm_mean = vec_sum(acc_dnorm_norm) / C;
        float *dx = dinp + (size_t)n * C;
        for (int c = 0; c < C; c += VEC_WIDTH) {
            vfloat norm = (vec_load_partial(x + c, C - c, m) - m) * s;
            vfloat dnorm = vec_load_partial(weight + c, C - c, 0.0f) * vec_load_partial(dy + c, C - c, 0.0f);
            vfloat v = vec_load_partial(dx + c, C - c, 0.0f) + (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
            vec_store_partial(dx + c, v, C - c);
        }
    }
    if (!dweight) return;
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += COLUMN_BLOCK) {
        int c1 = c0 + COLUMN_BLOCK < C ? c0 + COLUMN_BLOCK : C;
        float dw[COLUMN_BLOCK] = {0}, db[COLUMN_BLOCK] = {0};
        for (int n = 0; n < N; n++) {
            const float *dy = dout + (size_t)n * C, *x = inp + (size_t)n * C;
            for (int c = c0; c < c1; c++) {
                dw[c - c0] += dy[c] * (x[c] - mean[n]) * rstd[n];
                db[c - c0] += dy[c];
            }
        }
        for (int c = c0; c < c1; c++) {
            dweight[c] += dw[c - c0];
            dbias[c] += db[c - c0];
        }
    }
}

void matmul_forward(float *out, const float *inp, const float *weight, const float *bias,
                    int N, int C, int OC) {
    float beta = 0.0f;
    if (bias) {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) memcpy(out + (size_t)n * OC, bias, OC * sizeof(float));
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, weight, C,
                beta, out, OC);
}

void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                     const float *inp, const float *weight, int N, int C, int OC) {
    if (dinp)  // dinp[N, C] += dout[N, OC] weight[OC, C]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, weight,
                    C, 1.0f, dinp, C);
    if (dweight)  // dweight[OC, C] += dout^T inp
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C,
                    1.0f, dweight, C);
    if (dbias) {
#pragma omp parallel for schedule(static)
        for (int o0 = 0; o0 < OC; o0 += COLUMN_BLOCK) {
            int o1 = o0 + COLUMN_BLOCK < OC ? o0 + COLUMN_BLOCK : OC;
            float acc[COLUMN_BLOCK] = {0};
            for (int n = 0; n < N; n++)
                for (int o = o0; o < o1; o++) acc[o - o0] += dout[(size_t)n * OC + o];
            for (int o = o0; o < o1; o++) dbias[o] += acc[o - o0];
        }
    }
}

#define GELU_SCALE 0.7978845608028654f  // sqrt(2 / pi)
#define GELU_CUBIC 0.044715f

// GELU's tanh form, 0.5 x (1 + tanh(u)) with u = sqrt(2/pi) (x + 0.044715 x^3), computed as
// x sigmoid(2u) (the same function: 0.5 (1 + tanh u) = 1 / (1 + e^-2u)) so that one vector exp
// serves; vecmath.h gives its error against libm's tanhf. Returns sigmoid(2u) and e^-2u.
static inline vfloat gelu_sigmoid(vfloat x, vfloat *e) {
    vfloat u = GELU_SCALE * (x + GELU_CUBIC * x * x * x);
    // e^80 keeps e^-2u finite (so s^2 e below is not 0 * inf) where s is already below 2e-35;
    // the clamp's first argument is 80 so that a NaN passes through.
    *e = vec_exp(vec_min(vec_splat(80.0f), -2.0f * u));
    return 1.0f / (1.0f + *e);
}

// The elementwise loops go 8 at a time; the last, shorter group through padded vectors, so
// every element is computed by the same code whatever the thread split.
#define VEC_GROUPS(n) (((n) + VEC_WIDTH - 1) / VEC_WIDTH)

void activation_forward(float *out, const float *inp, size_t n, Activation act) {
    if (act == ACT_RELU) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
        return;
    }
#pragma omp parallel for schedule(static)
    for (size_t g = 0; g < VEC_GROUPS(n); g++) {
        size_t i = g * VEC_WIDTH;
        vfloat x = vec_load_partial(inp + i, n - i, 0.0f), e;
        vec_store_partial(out + i, x * gelu_sigmoid(x, &e), n - i);
    }
}

void activation_backward(float *dinp, const float *dout, const float *inp, size_t n,
                         Activation act) {
    if (act == ACT_RELU) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) dinp[i] = dout[i] * (inp[i] > 0.0f ? 1.0f : 0.0f);
        return;
    }
    // d/dx = 0.5 (1 + tanh u) + 0.5 x sech^2(u) u' with 0.5 (1 + tanh u) = s = sigmoid(2u) and
    // 0.5 sech^2(u) = 2 s (1 - s) = 2 s^2 e^-2u (no cancellation in 1 - s where s nears 1).
#pragma omp parallel for schedule(static)
    for (size_t g = 0; g < VEC_GROUPS(n); g++) {
        size_t i = g * VEC_WIDTH;
        vfloat x = vec_load_partial(inp + i, n - i, 0.0f), e;
        vfloat dy = vec_load_partial(dout + i, n - i, 0.0f);
        vfloat s = gelu_sigmoid(x, &e);
        vfloat grad = s + x * 2.0f * s * s * e * GELU_SCALE * (1.0f + 3.0f * GELU_CUBIC * x * x);
        vec_store_partial(dinp + i, dy * grad, n - i);
    }
}

void dropout_apply(float *x, size_t n, float p, uint64_t key, uint64_t first) {
    if (p <= 0.0f) return;
    uint32_t threshold = dropout_threshold(p);
    float scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) x[i] = dropout_keep(key, first + i, threshold) ? x[i] * scale : 0.0f;
}

int crossentropy_forward(float *losses, float *probs, const float *logits,
                         const int32_t *targets, int N, int V) {
    int scored = 0;
#pragma omp parallel for schedule(static) reduction(+ : scored)
    for (int n = 0; n < N; n++) {
        const float *z = logits + (size_t)n * V;
        float *p = probs + (size_t)n * V;
        float zmax = vec_max_of(z, V);
        float sum = vec_exp_sum(p, z, V, zmax);
        for (int v = 0; v < V; v++) p[v] /= sum;
        int t = targets[n];
        // -log softmax computed from the logits, not log(p), so a confident wrong answer
        // does not turn into log(0).
        losses[n] = t >= 0 ? logf(sum) + zmax - z[t] : 0.0f;
        scored += t >= 0;
    }
    return scored;
}

void crossentropy_backward(float *dlogits, const float *probs, const int32_t *targets, int N,
                           int V, float scale) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *d = dlogits + (size_t)n * V;
        const float *p = probs + (size_t)n * V;
        int t = targets[n];
        for (int v = 0; v < V; v++) d[v] = t >= 0 ? (p[v] - (v == t)) * scale : 0.0f;
    }
}

#define POSITION_ROW_BLOCK 64

// The positions rows r0 .. r1 - 1 can need.
static int positions_needed(int r1, int npos, int reach) { return r1 + reach < npos ? r1 + reach : npos; }

void position_logits(float *Z, const float *q, const float *E, int T, int npos, int d, int ld,
                     int reach) {
    for (int r0 = 0; r0 < T; r0 += POSITION_ROW_BLOCK) {
        int r1 = r0 + POSITION_ROW_BLOCK < T ? r0 + POSITION_ROW_BLOCK : T;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, positions_needed(r1, npos, reach),
                    d, 1.0f, q + (size_t)r0 * ld, ld, E, d, 0.0f, Z + (size_t)r0 * npos, npos);
    }
}

void position_logits_backward(float *dq, float *dE, const float *dZ, const float *q,
                              const float *E, int T, int npos, int d, int ld, int reach) {
    for (int r0 = 0; r0 < T; r0 += POSITION_ROW_BLOCK) {
        int r1 = r0 + POSITION_ROW_BLOCK < T ? r0 + POSITION_ROW_BLOCK : T;
        int n = positions_needed(r1, npos, reach);
        const float *dz = dZ + (size_t)r0 * npos;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, d, n, 1.0f, dz, npos, E, d,
                    1.0f, dq + (size_t)r0 * ld, ld);
        if (dE)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, d, r1 - r0, 1.0f, dz, npos,
                        q + (size_t)r0 * ld, ld, 1.0f, dE, d);
    }
}
