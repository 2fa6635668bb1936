// rope: rotary position embedding. q and k of every head are rotated by position-dependent
// angles before the dot product, so q_i . k_j depends on i - j only through the rotation.
// Pairing is rotate-half: dimension m pairs with m + d/2, angle = t * base^(-2m/d).
// Backward rotates the gradient by the opposite angle (a rotation's inverse is its transpose).
#include <math.h>

#include "layers.h"

// Rotates q (and k: parts = 2) of every head of B T vectors of stride ld by `sign` * angle,
// angle = (t / r) theta_m, theta_m = base^(-2m/d). r is the position ratio of the (sequence,
// head), position_ratio[b H + h] (Ms-PoE, model/mspoe.c), or 1 for all when position_ratio is
// NULL: plain rope, where one (cos, sin) per (position, frequency) serves every vector that
// shares it (r = 1 gives the same bits). MoICE calls it with each of its bases, and on its
// router's input (parts = 1).
void rope_rotate(float *x, int ld, int parts, int B, int T, int C, int H, double base, float sign,
                 const double *position_ratio) {
    int d = C / H, half = d / 2;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        for (int m = 0; m < half; m++) {
            double theta = pow(base, -2.0 * m / d);
            float cs = (float)cos(t * theta), sn = sign * (float)sin(t * theta);
            for (int b = 0; b < B; b++) {
                float *row = x + ((size_t)b * T + t) * ld;
                for (int h = 0; h < H; h++) {
                    if (position_ratio) {
                        double angle = t / position_ratio[b * H + h] * theta;
                        cs = (float)cos(angle);
                        sn = sign * (float)sin(angle);
                    }
                    for (int part = 0; part < parts; part++) {  // q, then k
                        float *v = row + part * C + h * d;
                        float x1 = v[m], x2 = v[m + half];
                        v[m] = x1 * cs - x2 * sn;
                        v[m + half] = x2 * cs + x1 * sn;
                    }
                }
            }
        }
    }
}

static const char *rope_check(const GPTConfig *c) {
    if ((c->n_embd / c->n_head) % 2) return "--pe rope rotates pairs of dimensions, so the head size --dim/--heads must be even";
    if (!(c->pe_opt.rope_base > 1.0f)) return "--rope-base must be greater than 1 (the usual value is 10000)";
    return NULL;
}

static void rope_qk_forward(float *qkv, const GPTConfig *c, int B, int T) {
    rope_rotate(qkv, 3 * c->n_embd, 2, B, T, c->n_embd, c->n_head, c->pe_opt.rope_base, 1.0f, NULL);
}

static void rope_qk_backward(float *dqkv, const GPTConfig *c, int B, int T) {
    rope_rotate(dqkv, 3 * c->n_embd, 2, B, T, c->n_embd, c->n_head, c->pe_opt.rope_base, -1.0f, NULL);
}

static const Option rope_options[] = {
    {"rope-base", "X", KIND_FLOAT, offsetof(PEOptions, rope_base), SCOPE_MODEL, 0, INFINITY, 1,
     .help = "rope: theta_m = base^(-2m/d)", .def = 10000},
};

const PositionalEncoding pe_rope = {
    .name = "rope", OPTION_ROWS(rope_options),
    .summary = "rotary embedding: q and k rotated by position (rotate-half, --rope-base)",
    .check = rope_check, .qk_forward = rope_qk_forward, .qk_backward = rope_qk_backward,
};
