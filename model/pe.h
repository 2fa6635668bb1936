// Positional encodings: one interface, one file per encoding, one table (pe_table.c).
//
// An encoding may act at any of three places of the model, by filling the matching hooks:
//   embed: adds a [T, C] position signal to the token embeddings (abs, sin);
//   qk:    transforms q and k in place before the dot product (rope);
//   score: adds its term to the [T, T] score matrix of one (batch, head) before the softmax
//          (rel, t5, alibi, cope); it sees q and k, may keep per-(batch, head) activations
//          for its backward, and its backward may add to dq and dk (cope's gate path).
// Hooks left NULL are skipped. Learned tables are declared as tensors (shared by all layers or
// one per layer) so that the model allocates, initialises, checkpoints and optimises them
// like every other parameter.
#ifndef PELAB_PE_H
#define PELAB_PE_H

#include <stddef.h>
#include <stdint.h>

#include "../common/option.h"

struct GPTConfig;

// Knobs of the encodings that have any; each encoding reads only its own.
typedef struct {
    float rope_base;  // rope, MoICE first base: theta_m = base^(-2m/d)
    int rel_npos;     // rel: table rows; distances >= rel_npos use the last row
    int cope_npos;    // cope: positions clamp to cope_npos - 1; 0 means T + 1
} PEOptions;

typedef enum { PE_INIT_ZERO, PE_INIT_NORMAL } PEInit;

typedef struct {
    const char *name;  // state_dict key; "%d" is replaced by the layer for per-layer tensors
    int per_layer;     // 1: one tensor per layer ("blocks.%d...."), 0: one shared tensor
    int ndim;
    int shape[3];
    PEInit init;
    float init_std;    // for PE_INIT_NORMAL
    int weight_decay;  // 1 if AdamW's decoupled decay applies
} PETensorSpec;

// What a score hook needs to know about the layer it runs in.
typedef struct {
    const struct GPTConfig *config;
    int layer;
    int T;              // sequence length of this batch (<= config->seq_len)
    int qkv_stride;     // floats between consecutive positions of q (and of k): 3C
    const float *params;  // this layer's PE tensor (per-layer) or the shared one; NULL if none
} PEContext;

#define PE_MAX_TENSORS 4

typedef struct PositionalEncoding {
    const char *name;
    const char *summary;
    // The encoding's command-line options, offsets into PEOptions (NULL, 0: none).
    const Option *options;
    int n_options;

    // Learned tensors: fills specs, returns how many (0..PE_MAX_TENSORS).
    int (*tensors)(const struct GPTConfig *c, PETensorSpec *specs);
    // Longest sequence the encoding can represent (abs: its table); 0 means unlimited.
    int (*max_len)(const struct GPTConfig *c);
    // NULL if the encoding can work with this config, else a message naming problem and fix.
    const char *(*check)(const struct GPTConfig *c);
    // Pins every tensor size the encoding derives from the context (seq_len) to its value now,
    // so that a trained model can run a longer context with the same tensors (bin/eval's
    // longer splits). NULL: no size depends on the context.
    void (*keep_tables)(struct GPTConfig *c);

    // embed site. h0: [B, T, C] token embeddings to add to; params: the shared tensor or NULL.
    void (*embed_forward)(float *h0, const float *params, const struct GPTConfig *c, int B, int T);
    // dparams += the gradient of the added signal; dh0: [B, T, C].
    void (*embed_backward)(float *dparams, const float *dh0, const struct GPTConfig *c, int B, int T);

    // qk site. qkv: [B, T, 3C]; rotates (or otherwise transforms) q and k in place.
    void (*qk_forward)(float *qkv, const struct GPTConfig *c, int B, int T);
    // dqkv: [B, T, 3C] gradient w.r.t. the transformed q, k; turns it into the gradient w.r.t.
    // the untransformed ones in place.
    void (*qk_backward)(float *dqkv, const struct GPTConfig *c, int B, int T);

    // score site, for one (batch, head). S: [T, T] row-major, row i holds q_i.k_j / sqrt(d) for
    // j <= i; the hook adds its term there (j > i is ignored). q, k: the head's vectors with
    // stride ctx->qkv_stride. act: this (batch, head)'s activation area of score_act_size
    // floats; scratch: the calling thread's score_scratch_size floats.
    void (*score_forward)(float *S, const float *q, const float *k, int head,
                          const PEContext *ctx, float *act, float *scratch);
    // dS: [T, T] gradient w.r.t. the scores (row i, j <= i). Adds to dq (same stride as q) and
    // to dparams (a private per-thread copy of the PE tensor's gradient, or NULL). A hook whose
    // term depends on the raw scores q.k / sqrt(d) (cope's gates) adds that gradient to dS
    // itself, and the attention turns it into dq and dk with the score path's products.
    void (*score_backward)(float *dS, const float *q, float *dq, float *dparams, int head,
                           const PEContext *ctx, const float *act, float *scratch);
    // For introspection: the position the encoding assigned to each (query i, key j <= i) of one
    // (batch, head), from its kept activations (cope's p_ij). NULL when positions are just i - j.
    void (*score_positions)(float *P, const float *act, const PEContext *ctx);
    // Floats one (batch, head) needs at length T: kept for backward, and scratch per thread.
    size_t (*score_act_size)(const struct GPTConfig *c, int T);
    size_t (*score_scratch_size)(const struct GPTConfig *c, int T);
    // FLOPs of the score hooks' own matrix products, forward and backward, for one (batch, head,
    // layer) at length T, counted as gpt_flops_per_step counts the core's: 2 per multiply-add,
    // the backward twice the forward, only the entries causality needs. NULL: none (elementwise
    // work is not counted, the core's neither).
    double (*score_flops)(const struct GPTConfig *c, int T);
} PositionalEncoding;

// The score_flops of products q_i . E[p] of d-vectors for the positions p = 0 .. min(i + reach,
// npos - 1) that query i can need (rel: distances up to i, reach 0; cope: counts up to i + 1).
static inline double pe_position_product_flops(int T, int npos, int reach, int d) {
    double pairs = 0.0;
    for (int i = 0; i < T; i++) pairs += i + 1 + reach < npos ? i + 1 + reach : npos;
    return 3.0 * 2.0 * pairs * d;
}

const PositionalEncoding *pe_find(const char *name);
// The registry in table order, for whatever must cover every encoding (tests, --help).
int pe_count(void);
const PositionalEncoding *pe_at(int i);  // 0 <= i < pe_count()
// Every encoding's options as their rows declare them (Option.def).
PEOptions pe_defaults(void);
// "none, abs, sin, ..." for messages and --help.
const char *pe_names(void);

#endif
