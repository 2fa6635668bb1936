// MoICE: the router, the per-base attention and the mixing (the math is in moice.h).
#include "moice.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/rng.h"

// ----------------------------------------------------------------------------------------------
// options

// Named sets as multiples of the rope base. "official": the paper's bases for base 10000.
// "short": the same set for our sequences. The rope frequencies that shape attention over a
// context of L tokens are those with theta_m L ~ 1, i.e. 2m/d ~ ln L / ln base: ~0.90 at the
// paper's L = 4096, ~0.53 at our longest (131 tokens). Raising the base by a factor k scales
// theta_m by k^(-2m/d), so at our lengths the official factors move those frequencies far less
// than the paper intended; raising each factor to 0.90 / 0.53 = 1.7 restores the same scaling:
// 1.75 -> 2.6, 1.8 -> 2.7, 1.9 -> 3.0, 2.0 -> 3.25, 2.25 -> 4.0, 2.5 -> 4.8.
static const struct {
    const char *name;
    int n;
    float factor[7];
} named_sets[] = {
    {"short", 7, {1.0f, 2.6f, 2.7f, 3.0f, 3.25f, 4.0f, 4.8f}},
    {"official", 7, {1.0f, 1.75f, 1.8f, 1.9f, 2.0f, 2.25f, 2.5f}},
};

static int bases_error(char *err, size_t errlen, const char *text, const char *why) {
    snprintf(err, errlen,
             "--moice-bases '%s' %s; give none, short, official or bases like 10000,26000,40000",
             text, why);
    return -1;
}

// The official recipe (the MoICE authors' run script): their 7 bases all kept, load-balancing
// weight 0.3, router-only training for 7 steps of 128 sequences at a constant lr 1e-4 with
// HuggingFace's AdamW defaults (beta2 0.999, no decay, clipping at 1), routers drawn N(0, 0.02).
static const char *const recipe_names[] = {"official", NULL};
static const char *const recipe_flags[] = {
    "--moice-bases official --moice-topk 7 --moice-aux 0.3 --moice-router-std 0.02 "
    "--train-only routers --steps 7 --batch 128 --lr 1e-4 --beta2 0.999 --weight-decay 0 "
    "--schedule constant --warmup 0 --clip 1"};

const Option moice_options[] = {
    {"moice-recipe", "official", KIND_RECIPE, 0, SCOPE_MOICE, .choices = recipe_names,
     .expands = recipe_flags,
     .help = "the MoICE authors' fine-tuning recipe (their bases, top-K 7, aux 0.3, routers "
             "only, 7 steps of 128, lr 1e-4); flags given too win",
     .default_text = "-"},
    {"moice-bases", "LIST", KIND_BASES, 0, SCOPE_MOICE,
     .help = "rope bases to mix, the first = --rope-base; short, official or none"},
    {"moice-topk", "K", KIND_INT, offsetof(MoICEOptions, top_k), SCOPE_MOICE, 1, MOICE_MAX_BASES,
     .help = "bases kept per token and head (router weights renormalised)", .def = 3},
    {"moice-aux", "X", KIND_FLOAT, offsetof(MoICEOptions, aux_weight), SCOPE_MOICE, 0, INFINITY,
     .help = "weight of the load-balancing loss in the objective", .def = 0.2},
    {"moice-router-std", "S", KIND_FLOAT, offsetof(MoICEOptions, router_std), SCOPE_MOICE, 0,
     INFINITY, .help = "init std of the routers' W1 and W3 (0: 1/sqrt(head dim); official: 0.02)",
     .added_later = 1},
};
const int moice_n_options = sizeof moice_options / sizeof moice_options[0];

MoICEOptions moice_defaults(void) {
    MoICEOptions o = {0};
    option_defaults(moice_options, moice_n_options, &o);
    return o;
}

int moice_parse_bases(MoICEOptions *o, const char *text, float rope_base, char *err,
                      size_t errlen) {
    memset(o->bases, 0, sizeof o->bases);
    o->n_bases = 0;
    if (strcmp(text, "none") == 0) return 0;
    for (size_t i = 0; i < sizeof named_sets / sizeof named_sets[0]; i++) {
        if (strcmp(text, named_sets[i].name) != 0) continue;
        o->n_bases = named_sets[i].n;
        for (int n = 0; n < o->n_bases; n++) o->bases[n] = rope_base * named_sets[i].factor[n];
        return 0;
    }
    const char *p = text;
    for (;;) {
        if (o->n_bases == MOICE_MAX_BASES) {
            char why[64];
            snprintf(why, sizeof why, "has more than %d bases", MOICE_MAX_BASES);
            return bases_error(err, errlen, text, why);
        }
        char *end;
        float base = strtof(p, &end);
        if (end == p || (*end != ',' && *end != '\0'))
            return bases_error(err, errlen, text, "is not a list of numbers");
        o->bases[o->n_bases++] = base;
        if (*end == '\0') return 0;
        p = end + 1;
    }
}

void moice_format_bases(char *buf, size_t len, const MoICEOptions *o) {
    if (!o->n_bases) {
        snprintf(buf, len, "none");
        return;
    }
    size_t at = 0;
    buf[0] = '\0';
    for (int n = 0; n < o->n_bases && at < len; n++) {
        // the shortest decimal that reads back as the same float
        char text[32];
        for (int digits = 6; digits <= 9; digits++) {
            snprintf(text, sizeof text, "%.*g", digits, (double)o->bases[n]);
            if ((float)strtod(text, NULL) == o->bases[n]) break;
        }
        at += (size_t)snprintf(buf + at, len - at, "%s%s", n ? "," : "", text);
    }
}

const char *moice_check(const GPTConfig *c) {
    static _Thread_local char msg[256];
    const MoICEOptions *o = &c->moice;
    if (!o->n_bases) return NULL;
    if (c->pe != pe_find("rope"))
        return "MoICE mixes rope bases, so --moice-bases needs --pe rope (or --init from a rope "
               "checkpoint)";
    if (o->n_bases < 2) return "--moice-bases needs at least 2 bases to mix (or none)";
    for (int n = 0; n < o->n_bases; n++)
        if (!(o->bases[n] > 1.0f) || !isfinite(o->bases[n])) {
            snprintf(msg, sizeof msg, "--moice-bases: base %g is not a number greater than 1",
                     (double)o->bases[n]);
            return msg;
        }
    if (o->bases[0] != c->pe_opt.rope_base) {
        snprintf(msg, sizeof msg,
                 "--moice-bases must start with the model's --rope-base %g (the base it learned, "
                 "which also rotates the router's input), not %g",
                 (double)c->pe_opt.rope_base, (double)o->bases[0]);
        return msg;
    }
    if (o->top_k < 1 || o->top_k > o->n_bases) {
        snprintf(msg, sizeof msg, "--moice-topk must be from 1 to the %d bases, got %d",
                 o->n_bases, o->top_k);
        return msg;
    }
    if (!(o->aux_weight >= 0.0f) || !isfinite(o->aux_weight))
        return "--moice-aux must be a number >= 0 (the MoICE paper uses 0.1 to 0.3)";
    return NULL;
}

// ----------------------------------------------------------------------------------------------
// router

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

void router_forward(float *u1, float *u3, float *h, float *probs, float *weights, const float *x,
                    const float *w1, const float *w3, const float *w2, int rows, int d, int N,
                    int K) {
    matmul_forward(u1, x, w1, NULL, rows, d, N);
    matmul_forward(u3, x, w3, NULL, rows, d, N);
    size_t n_all = (size_t)rows * N;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n_all; i++) h[i] = u1[i] * sigmoidf(u1[i]) * u3[i];
    matmul_forward(probs, h, w2, NULL, rows, N, N);  // the logits, made probabilities below
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        float *p = probs + (size_t)r * N, *w = weights + (size_t)r * N;
        float top = p[0];
        for (int n = 1; n < N; n++) top = p[n] > top ? p[n] : top;
        float sum = 0.0f;
        for (int n = 0; n < N; n++) {
            p[n] = expf(p[n] - top);
            sum += p[n];
        }
        for (int n = 0; n < N; n++) {
            p[n] /= sum;
            w[n] = 0.0f;
        }
        // K passes of the largest remaining probability; strict > keeps the lower index on ties.
        // Picked entries are marked by a negative weight until the renormalisation.
        float kept = 0.0f;
        for (int k = 0; k < K; k++) {
            int best = -1;
            for (int n = 0; n < N; n++)
                if (w[n] == 0.0f && (best < 0 || p[n] > p[best])) best = n;
            w[best] = -1.0f;
            kept += p[best];
        }
        for (int n = 0; n < N; n++) w[n] = w[n] < 0.0f ? p[n] / kept : 0.0f;
    }
}

void router_backward(float *dx, float *dw1, float *dw3, float *dw2, float *dweights,
                     const float *aux_grad, const float *x, const float *u1, const float *u3,
                     const float *h, const float *probs, const float *weights, const float *w1,
                     const float *w3, const float *w2, float *work, int rows, int d, int N) {
    float *dr = dweights;  // becomes the logits' gradient in place
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *p = probs + (size_t)r * N, *w = weights + (size_t)r * N;
        float *g = dr + (size_t)r * N;
        // w_n = p_n / Z on the top K: dp_m = (dw_m - sum_n dw_n w_n) / Z there, 0 elsewhere.
        // A probability that underflowed to 0 has weight 0 and no gradient either way.
        float kept = 0.0f, dot = 0.0f;
        for (int n = 0; n < N; n++)
            if (w[n] > 0.0f) {
                kept += p[n];
                dot += g[n] * w[n];
            }
        for (int n = 0; n < N; n++) g[n] = (w[n] > 0.0f ? (g[n] - dot) / kept : 0.0f) + aux_grad[n];
        // softmax: dr_m = p_m (dp_m - sum_n p_n dp_n)
        float pdp = 0.0f;
        for (int n = 0; n < N; n++) pdp += p[n] * g[n];
        for (int n = 0; n < N; n++) g[n] = p[n] * (g[n] - pdp);
    }
    size_t n_all = (size_t)rows * N;
    float *dh = work, *du1 = work + n_all;
    memset(dh, 0, n_all * sizeof(float));
    matmul_backward(dh, dw2, NULL, dr, h, w2, rows, N, N);
    // h = silu(u1) u3: du1 = dh u3 silu'(u1), du3 = dh silu(u1) (into dh)
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n_all; i++) {
        float s = sigmoidf(u1[i]);
        du1[i] = dh[i] * u3[i] * s * (1.0f + u1[i] * (1.0f - s));
        dh[i] *= u1[i] * s;
    }
    matmul_backward(dx, dw1, NULL, du1, x, w1, rows, d, N);
    matmul_backward(dx, dw3, NULL, dh, x, w3, rows, d, N);
}

// ----------------------------------------------------------------------------------------------
// mixing

void moice_mix_forward(float *out, const float *base_out, const float *weights, int BT, int C,
                       int H, int N) {
    int d = C / H;
    size_t plane = (size_t)BT * C;
#pragma omp parallel for schedule(static)
    for (int bt = 0; bt < BT; bt++)
        for (int h = 0; h < H; h++) {
            const float *w = weights + ((size_t)bt * H + h) * N;
            float *o = out + (size_t)bt * C + h * d;
            for (int i = 0; i < d; i++) o[i] = 0.0f;
            for (int n = 0; n < N; n++) {
                if (w[n] == 0.0f) continue;
                const float *src = base_out + n * plane + (size_t)bt * C + h * d;
                for (int i = 0; i < d; i++) o[i] += w[n] * src[i];
            }
        }
}

void moice_mix_backward(float *dweights, const float *dout, const float *base_out, int BT, int C,
                        int H, int N) {
    int d = C / H;
    size_t plane = (size_t)BT * C;
#pragma omp parallel for schedule(static)
    for (int bt = 0; bt < BT; bt++)
        for (int h = 0; h < H; h++) {
            const float *g = dout + (size_t)bt * C + h * d;
            for (int n = 0; n < N; n++) {
                const float *src = base_out + n * plane + (size_t)bt * C + h * d;
                float dot = 0.0f;
                for (int i = 0; i < d; i++) dot += g[i] * src[i];
                dweights[((size_t)bt * H + h) * N + n] = dot;
            }
        }
}

void moice_mixed_attention(float *dst, const float *att, const float *weights, int B, int T,
                           int H, int N) {
    size_t block = (size_t)B * H * T * T;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                size_t row = (((size_t)b * H + h) * T + i) * T;
                const float *w = weights + (((size_t)b * T + i) * H + h) * N;
                for (int j = 0; j < T; j++) {
                    float sum = 0.0f;
                    for (int n = 0; n < N && j <= i; n++) sum += w[n] * att[n * block + row + j];
                    dst[row + j] = sum;
                }
            }
}

// Base n's share of the output gradient: w_n times dout, head by head.
static void base_share(float *dst, const float *dout, const float *weights, int n, int BT, int C,
                       int H, int N) {
    int d = C / H;
#pragma omp parallel for schedule(static)
    for (int bt = 0; bt < BT; bt++)
        for (int h = 0; h < H; h++) {
            float w = weights[((size_t)bt * H + h) * N + n];
            size_t at = (size_t)bt * C + h * d;
            for (int i = 0; i < d; i++) dst[at + i] = w * dout[at + i];
        }
}

// ----------------------------------------------------------------------------------------------
// the layer

// One layer's activations, laid out in its act_size floats at (B, T). The router's rows are the
// B*T*H (token, head) pairs in [B, T, H] order.
typedef struct {
    float *base_out;  // [N, B, T, C] each base's attention output
    float *router_in; // [B, T, C] = [B*T*H, d]: each head's q rotated by the first base
    float *u1;        // [B*T*H, N] W1 q
    float *u3;        // [B*T*H, N] W3 q
    float *h;         // [B*T*H, N] silu(u1) * u3
    float *probs;     // [B*T*H, N] softmax(W2 h)
    float *weights;   // [B*T*H, N] top-K probabilities renormalised, 0 outside the top K
} MoICEActs;

// The scratch shared by the layers: qkv_base also serves the forward pass.
typedef struct {
    float *qkv_base;    // [B, T, 3C] q and k rotated by one base, v as is
    float *dqkv_base;   // [B, T, 3C]
    float *datty_base;  // [B, T, C] one base's share of dout, then the router input's gradient
    float *drouter;     // [3, B*T*H, N] mixing weights', logits' and hidden gradients
} MoICEScratch;

static size_t acts_layout(MoICEActs *a, float *at, const GPTConfig *c, int B, int T) {
    size_t BTC = (size_t)B * T * c->n_embd, routed = (size_t)B * T * c->n_head * c->moice.n_bases;
    return carve_floats(at, (float **const[]){&a->base_out, &a->router_in, &a->u1, &a->u3, &a->h, &a->probs, &a->weights},
                 (size_t[]){BTC * c->moice.n_bases, BTC, routed, routed, routed, routed, routed}, 7);
}

static size_t scratch_layout(MoICEScratch *s, float *at, const GPTConfig *c, int B, int T) {
    size_t BTC = (size_t)B * T * c->n_embd, routed = (size_t)B * T * c->n_head * c->moice.n_bases;
    return carve_floats(at, (float **const[]){&s->qkv_base, &s->dqkv_base, &s->datty_base, &s->drouter},
                 (size_t[]){3 * BTC, 3 * BTC, BTC, 3 * routed}, 4);
}

// The router's matrices, contiguous in the order moice_tensors declares them.
typedef struct {
    const float *w1, *w3, *w2;
} RouterWeights;
static RouterWeights router_weights(const float *at, const GPTConfig *c) {
    size_t Nd = (size_t)c->moice.n_bases * (c->n_embd / c->n_head);
    return (RouterWeights){at, at + Nd, at + 2 * Nd};
}

// One layer's call: its sizes, and its activations, scratch and router weights laid out.
typedef struct {
    const GPTConfig *c;
    const MoICEOptions *o;
    int B, T, C, H, d, N, BT, rows;
    MoICEActs a;
    MoICEScratch s;
    RouterWeights w;
} LayerView;

static LayerView view_of(const ModuleLayer *ml) {
    const GPTConfig *c = ml->config;
    LayerView v = {.c = c, .o = &c->moice, .B = ml->B, .T = ml->T, .C = c->n_embd, .H = c->n_head,
                   .d = c->n_embd / c->n_head, .N = c->moice.n_bases, .BT = ml->B * ml->T};
    v.rows = v.BT * v.H;
    acts_layout(&v.a, ml->acts, c, v.B, v.T);
    scratch_layout(&v.s, ml->scratch, c, v.B, v.T);
    v.w = router_weights(ml->params, c);
    return v;
}

// The forward's sums: routings counted, then per base the routings whose top K holds it, then
// per base the sum of its probabilities.
enum { SUM_ROUTINGS = 0, SUM_PICKS = 1 };
#define SUM_PROBS(N) (SUM_PICKS + (N))

// qkv with q and k rotated by `base` (v copied as is) into dst.
static void rotate_copy(float *dst, const float *qkv, int B, int T, int C, int H, float base) {
    memcpy(dst, qkv, (size_t)B * T * 3 * C * sizeof(float));
    rope_rotate(dst, 3 * C, 2, B, T, C, H, base, 1.0f, NULL);
}

static AttentionSetup base_setup(const AttentionSetup *setup, int n) {
    AttentionSetup s = *setup;
    s.dropout_key = hash_mix(setup->dropout_key, (uint64_t)n);
    return s;
}

// out: [B, T, C]; ml->att: N [B, H, T, T] blocks. Base n's attention dropout draws its masks
// from hash(key, n).
static void moice_forward(float *out, const float *qkv, const ModuleLayer *ml, double *sums) {
    LayerView v = view_of(ml);
    const MoICEOptions *o = v.o;
    int B = v.B, T = v.T, C = v.C, H = v.H, d = v.d, N = v.N, BT = v.BT, rows = v.rows;
    MoICEActs a = v.a;
    MoICEScratch s = v.s;
    RouterWeights w = v.w;
    for (int bt = 0; bt < BT; bt++)
        memcpy(a.router_in + (size_t)bt * C, qkv + (size_t)bt * 3 * C, C * sizeof(float));
    rope_rotate(a.router_in, C, 1, B, T, C, H, o->bases[0], 1.0f, NULL);
    router_forward(a.u1, a.u3, a.h, a.probs, a.weights, a.router_in, w.w1, w.w3, w.w2, rows, d, N,
                   o->top_k);
    // in row order, so the sums are the same for every thread count
    for (int r = 0; r < rows; r++)
        for (int n = 0; n < N; n++) {
            sums[SUM_PICKS + n] += a.weights[(size_t)r * N + n] > 0.0f;
            sums[SUM_PROBS(N) + n] += a.probs[(size_t)r * N + n];
        }
    sums[SUM_ROUTINGS] += (double)rows;
    size_t plane = (size_t)BT * C, att_block = (size_t)B * H * T * T;
    for (int n = 0; n < N; n++) {
        rotate_copy(s.qkv_base, qkv, B, T, C, H, o->bases[n]);
        AttentionSetup bs = base_setup(ml->setup, n);
        attention_forward(a.base_out + n * plane, ml->att + n * att_block, NULL, s.qkv_base, B, T,
                          C, H, &bs);
    }
    moice_mix_forward(out, a.base_out, a.weights, BT, C, H, N);
}

// Accumulates the router gradients; with need_dqkv overwrites dqkv ([B, T, 3C], w.r.t. the
// unrotated qkv) with the gradient through every base's attention and the router's input, else
// skips all of it (nothing below the router trains).
static void moice_backward(float *dqkv, const float *dout, const float *qkv, const ModuleLayer *ml,
                           const float *aux_grad, int need_dqkv) {
    LayerView v = view_of(ml);
    const MoICEOptions *o = v.o;
    int B = v.B, T = v.T, C = v.C, H = v.H, d = v.d, N = v.N, BT = v.BT, rows = v.rows;
    MoICEActs a = v.a;
    MoICEScratch s = v.s;
    RouterWeights w = v.w;
    float *g1 = NULL, *g3 = NULL, *g2 = NULL;
    if (ml->grads) {
        RouterWeights g = router_weights(ml->grads, v.c);
        g1 = (float *)g.w1, g3 = (float *)g.w3, g2 = (float *)g.w2;
    }
    size_t plane = (size_t)BT * C, att_block = (size_t)B * H * T * T, n_qkv = plane * 3;
    float *dweights = s.drouter, *router_work = s.drouter + (size_t)rows * N;
    moice_mix_backward(dweights, dout, a.base_out, BT, C, H, N);
    if (need_dqkv) {
        memset(dqkv, 0, n_qkv * sizeof(float));
        for (int n = 0; n < N; n++) {
            base_share(s.datty_base, dout, a.weights, n, BT, C, H, N);
            rotate_copy(s.qkv_base, qkv, B, T, C, H, o->bases[n]);
            AttentionSetup bs = base_setup(ml->setup, n);
            attention_backward(s.dqkv_base, s.datty_base, ml->att + n * att_block, NULL, s.qkv_base,
                               B, T, C, H, &bs);
            rope_rotate(s.dqkv_base, 3 * C, 2, B, T, C, H, o->bases[n], -1.0f, NULL);
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < n_qkv; i++) dqkv[i] += s.dqkv_base[i];
        }
        memset(s.datty_base, 0, plane * sizeof(float));  // now the router input's gradient
    }
    router_backward(need_dqkv ? s.datty_base : NULL, g1, g3, g2, dweights, aux_grad, a.router_in,
                    a.u1, a.u3, a.h, a.probs, a.weights, w.w1, w.w3, w.w2, router_work, rows, d, N);
    if (!need_dqkv) return;
    rope_rotate(s.datty_base, C, 1, B, T, C, H, o->bases[0], -1.0f, NULL);
#pragma omp parallel for schedule(static)
    for (int bt = 0; bt < BT; bt++)
        for (int i = 0; i < C; i++) dqkv[(size_t)bt * 3 * C + i] += s.datty_base[(size_t)bt * C + i];
}

// ----------------------------------------------------------------------------------------------
// the module

static int moice_active(const GPTConfig *c) { return c->moice.n_bases > 0; }

static int moice_tensors(const GPTConfig *c, PETensorSpec *specs) {
    // W1 and W3 at 1/sqrt(d) (pelab's default) keep u1, u3 of the order of q's entries, so the
    // gated product h is not vanishingly small; W2 at 0.02 starts the routing near uniform (and
    // nearly load-balanced) while giving every weight a gradient from step one. The official
    // recipe draws all three at 0.02 (--moice-router-std 0.02).
    int N = c->moice.n_bases, d = c->n_embd / c->n_head;
    float in_std = c->moice.router_std > 0.0f ? c->moice.router_std : 1.0f / sqrtf((float)d);
    specs[0] = (PETensorSpec){"blocks.%d.attn.router.w1.weight", 1, 2, {N, d}, PE_INIT_NORMAL, in_std, 1};
    specs[1] = (PETensorSpec){"blocks.%d.attn.router.w3.weight", 1, 2, {N, d}, PE_INIT_NORMAL, in_std, 1};
    specs[2] = (PETensorSpec){"blocks.%d.attn.router.w2.weight", 1, 2, {N, N}, PE_INIT_NORMAL, 0.02f, 1};
    return 3;
}

static int moice_att_blocks(const GPTConfig *c) { return c->moice.n_bases; }

static size_t moice_act_size(const GPTConfig *c, int B, int T) {
    MoICEActs a;
    return acts_layout(&a, NULL, c, B, T);
}

static size_t moice_scratch_size(const GPTConfig *c, int B, int T) {
    MoICEScratch s;
    return scratch_layout(&s, NULL, c, B, T);
}

// aux = N sum_n f_n P_n over the routings of all layers
static double moice_objective(const GPTConfig *c, const double *sums, double *weighted) {
    int N = c->moice.n_bases;
    double aux = 0.0, R = sums[SUM_ROUTINGS];
    for (int n = 0; n < N; n++)
        aux += N * (sums[SUM_PICKS + n] / R) * (sums[SUM_PROBS(N) + n] / R);
    *weighted = c->moice.aux_weight * aux;
    return aux;
}

// d(aux_weight * aux)/d p_n of each of the R routings: aux_weight N f_n / R
static int moice_objective_grad(const GPTConfig *c, const double *sums, float *aux_grad) {
    int N = c->moice.n_bases;
    if (!(c->moice.aux_weight > 0.0f)) return 0;
    double R = sums[SUM_ROUTINGS];
    for (int n = 0; n < N; n++)
        aux_grad[n] = (float)(c->moice.aux_weight * N * (sums[SUM_PICKS + n] / R) / R);
    return 1;
}

static void moice_effective_attention(float *dst, const ModuleLayer *ml) {
    MoICEActs a;
    acts_layout(&a, ml->acts, ml->config, ml->B, ml->T);
    moice_mixed_attention(dst, ml->att, a.weights, ml->B, ml->T, ml->config->n_head,
                          ml->config->moice.n_bases);
}

// attention once per base (the core counts one), and the router's three products
static double moice_flops(const GPTConfig *c, int B, int T, double attention) {
    double N = c->moice.n_bases, d = (double)c->n_embd / c->n_head;
    double router = 2.0 * B * T * c->n_head * (2.0 * d * N + N * N) * c->n_layer;
    return 3.0 * ((N - 1.0) * attention + router);
}

const AttentionModule moice_module = {
    .name = "MoICE",
    .active = moice_active, .check = moice_check, .tensors = moice_tensors,
    .att_blocks = moice_att_blocks, .act_size = moice_act_size,
    .scratch_size = moice_scratch_size, .forward = moice_forward, .backward = moice_backward,
    .objective = moice_objective, .objective_grad = moice_objective_grad,
    .effective_attention = moice_effective_attention, .flops = moice_flops,
};
