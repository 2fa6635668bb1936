// The layers of the GPT as forward/backward pairs over plain float pointers.
// Backward functions ACCUMULATE (+=) into every gradient they are given, so a tensor that
// feeds two places gets the sum of both; a NULL weight gradient skips that product (frozen).
#ifndef PELAB_LAYERS_H
#define PELAB_LAYERS_H

#include <stddef.h>
#include <stdint.h>

#include "gpt.h"

// Points *slots[i] at consecutive stretches of sizes[i] floats from `at` (NULL: only counts;
// a zero size gets NULL); returns the floats used. How buffers are carved into named tensors.
size_t carve_floats(float *at, float **const *slots, const size_t *sizes, int n);

// out[b,t,:] = wte[inp[b,t], :]
void embedding_forward(float *out, const int32_t *inp, const float *wte, int N, int C);
void embedding_backward(float *dwte, const float *dout, const int32_t *inp, int N, int C);

// out = (inp - mean) * rstd * weight + bias over the last axis; inp, out: [N, C]
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *weight, const float *bias, int N, int C);
void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, const float *mean,
                        const float *rstd, int N, int C);

// out[N, OC] = inp[N, C] weight[OC, C]^T + bias[OC] (bias may be NULL)
void matmul_forward(float *out, const float *inp, const float *weight, const float *bias,
                    int N, int C, int OC);
// dinp may be NULL (nothing upstream), dweight/dbias NULL when frozen or absent.
void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                     const float *inp, const float *weight, int N, int C, int OC);

// out = act(inp), elementwise over n values
void activation_forward(float *out, const float *inp, size_t n, Activation act);
// dinp = dout * act'(inp) (overwrites; dinp may alias dout)
void activation_backward(float *dinp, const float *dout, const float *inp, size_t n,
                         Activation act);

// Inverted dropout in place: x *= keep / (1 - p), keep drawn from (key, element index). The
// same call is the backward, because the mask depends only on (key, index). x[i] is element
// first + i of the site's tensor: a data-parallel shard passes its offset in the whole batch
// and draws the same mask as a single process does for those rows.
void dropout_apply(float *x, size_t n, float p, uint64_t key, uint64_t first);

// Per-position softmax cross-entropy. logits, probs: [N, V]; targets -1 are not scored and get
// loss 0. Returns the number of scored positions; losses: [N].
int crossentropy_forward(float *losses, float *probs, const float *logits,
                         const int32_t *targets, int N, int V);
// dlogits = (probs - onehot(target)) * scale at scored positions, 0 elsewhere (overwrites).
void crossentropy_backward(float *dlogits, const float *probs, const int32_t *targets, int N,
                           int V, float scale);

// Rotary embedding (rope's qk transform, MoICE's bases): each row of x (B*T rows of ld floats)
// holds `parts` consecutive C-wide vectors (qkv: q then k, parts = 2), each split into H heads
// of d = C/H; head dimension m pairs with m + d/2 and turns by sign * t * base^(-2m/d) at
// position t / r, r = position_ratio[b H + h] per sequence and head (Ms-PoE), or 1 for all when
// position_ratio is NULL. sign -1 is the inverse rotation, which is also the backward (the
// transpose).
void rope_rotate(float *x, int ld, int parts, int B, int T, int C, int H, double base, float sign,
                 const double *position_ratio);

// Products of one (batch, head)'s queries with a table of position vectors E [npos, d] (rel's
// relative distances, cope's counts): Z [T, npos] = q E^T, q with row stride ld, for the
// positions each query can need, 0 .. min(i + reach, npos - 1). Rows go by blocks of 64, each
// against what its last row can need: about half the [T, npos] products at npos ~ T. Entries
// past a block's positions are left as they are.
void position_logits(float *Z, const float *q, const float *E, int T, int npos, int d, int ld,
                     int reach);
// dq += dZ E; dE += dZ^T q (dE NULL: skipped), over the same blocks (dZ zero elsewhere).
void position_logits_backward(float *dq, float *dE, const float *dZ, const float *q,
                              const float *E, int T, int npos, int d, int ld, int reach);

// Causal multi-head attention of one layer.
//   out: [B, T, C] heads concatenated; att: [B, H, T, T] softmax probabilities (row i holds
//   j <= i, zeros after it to the end of its block of 64 rows); pe_act: [B, H, pe_act_size]
//   (may be NULL); qkv: [B, T, 3C]. work: per thread attention_work_size(T) floats, then the
//   PE's score_scratch_size.
typedef struct AttentionSetup {
    const PositionalEncoding *pe;
    PEContext ctx;
    size_t pe_act_size;   // floats per (batch, head)
    float *pe_grad;       // gradient of ctx.params (accumulated), or NULL
    float *pe_grad_work;  // per thread pe_grad_size floats
    size_t pe_grad_size;
    float dropout;
    uint64_t dropout_key;
    size_t dropout_first_bh;  // the batch's first (batch, head) in the whole batch (shards)
    float *work;            // per thread: two [T, T] matrices, then the PE's scratch
    size_t work_per_thread;
    int n_threads;        // the work areas exist for this many threads
} AttentionSetup;

size_t attention_work_size(int T);

void attention_forward(float *out, float *att, float *pe_act, const float *qkv, int B, int T,
                       int C, int H, const AttentionSetup *setup);
// dqkv is overwritten; dout: [B, T, C].
void attention_backward(float *dqkv, const float *dout, const float *att, const float *pe_act,
                        const float *qkv, int B, int T, int C, int H,
                        const AttentionSetup *setup);

#endif
