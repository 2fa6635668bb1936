// MoICE, Mixture of In-Context Experts (docs/design.md), for models trained with rope.
//
// Each layer has a router shared by its heads. For the (token, head) pair with query q (before
// any rotation) the router sees q~ = q rotated with the first base:
//   u1 = W1 q~, u3 = W3 q~ (W1, W3 [N, d]), h = silu(u1) * u3, r = W2 h (W2 [N, N], no biases),
//   p = softmax(r), S = the K largest p (ties: lower index), w_n = p_n / sum_{m in S} p_m on S,
//   0 elsewhere.
// Attention runs once per base n (q and k rotated by base n, the same v), and the head's output
// is o_i = sum_n w_n o_i^(n). The load-balancing loss (Switch style) pools the routings of all
// layers: aux = N sum_n f_n P_n, f_n the fraction of routings whose top K holds n, P_n the mean
// of p_n; f carries no gradient, so d aux / d p_n = N f_n / R for each of the R routings.
//
// MoICE is an attention module (model/module.h): moice_module replaces the attention of every
// layer of a model whose --moice-bases names bases, and owns the routers' tensors
// ("blocks.L.attn.router.w1/w3/w2.weight"), activations and the load-balancing term.
#ifndef PELAB_MOICE_H
#define PELAB_MOICE_H

#include <stddef.h>

#include "../common/option.h"
#include "layers.h"

extern const AttentionModule moice_module;

// --moice-bases text: "none" (off), a comma-separated list whose first entry is the rope base,
// or a named set scaled to rope_base: "short" (pelab's default for sequences of tens to a few
// hundred tokens) or "official" (the paper's 10000, 17500, ..., 25000 for base 10000). Sets
// n_bases and bases; returns 0, or -1 with a message naming the problem and the fix.
// MoICE's command-line options, offsets into MoICEOptions.
extern const Option moice_options[];
extern const int moice_n_options;

// MoICE off (no bases), its other options as their rows declare them.
MoICEOptions moice_defaults(void);

int moice_parse_bases(MoICEOptions *o, const char *text, float rope_base, char *err, size_t errlen);
// "none" or the bases comma-separated, each as its shortest decimal.
void moice_format_bases(char *buf, size_t len, const MoICEOptions *o);
// NULL when the MoICE options fit the model, else a message naming the problem and the fix.
const char *moice_check(const struct GPTConfig *c);

// The router of one layer over `rows` (token, head) pairs. x: [rows, d]; u1, u3, h, probs,
// weights: [rows, N] (see MoICEActs in moice.c).
void router_forward(float *u1, float *u3, float *h, float *probs, float *weights, const float *x,
                    const float *w1, const float *w3, const float *w2, int rows, int d, int N,
                    int K);
// dweights: [rows, N] gradient w.r.t. the mixing weights, overwritten with work; aux_grad: [N]
// gradient of the objective w.r.t. each routing's p_n. Accumulates into dx ([rows, d], may be
// NULL: nothing upstream) and dw1, dw3, dw2 (NULL when frozen). work: 2 * rows * N floats.
void router_backward(float *dx, float *dw1, float *dw3, float *dw2, float *dweights,
                     const float *aux_grad, const float *x, const float *u1, const float *u3,
                     const float *h, const float *probs, const float *weights, const float *w1,
                     const float *w3, const float *w2, float *work, int rows, int d, int N);

// out[b,t, head h] = sum_n weights[(b,t,h), n] base_out[n][b,t, head h]. base_out: [N, BT, C].
void moice_mix_forward(float *out, const float *base_out, const float *weights, int BT, int C,
                       int H, int N);
// dweights[(b,t,h), n] = dout[b,t, head h] . base_out[n][b,t, head h] (overwrites).
void moice_mix_backward(float *dweights, const float *dout, const float *base_out, int BT, int C,
                        int H, int N);

// The attention a head effectively applies: sum_n w_n(i) a^(n)_ij, from att's N [B, H, T, T]
// blocks and the router weights; dst: [B, H, T, T] with zeros above the diagonal.
void moice_mixed_attention(float *dst, const float *att, const float *weights, int B, int T,
                           int H, int N);

#endif
