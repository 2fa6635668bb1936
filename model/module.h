// Attention modules: what replaces a layer's attention as a whole, beside the PE's hooks.
//
// The core GPT (model/gpt.c) computes a layer's attention itself, with the encoding's qk and
// score hooks, unless the config turns a module on; then the module's forward and backward take
// the layer's qkv [B, T, 3C] (before any qk transform) and produce its output [B, T, C]. A module
// may own, per layer, learned tensors (declared like a PE's, allocated, initialised,
// checkpointed and optimised by the model like any other), activations, and a share of one
// scratch area; it may add a term to the training objective, computed from sums over the whole
// batch so that data-parallel shards agree (GPT.module_sums, gpt_forward_sums).
//
// The modules are listed in model/module_table.c; at most one is on in a model. MoICE
// (model/moice.c) is one. Ms-PoE is not: it changes no training and plugs in at evaluation time
// through the model's qk override (gpt.h).
#ifndef PELAB_MODULE_H
#define PELAB_MODULE_H

#include <stddef.h>

#include "pe.h"

struct GPTConfig;
struct AttentionSetup;

// The modules' knobs, held in the model config (and so in checkpoints) as the encodings' are in
// PEOptions; each module reads only its own.
#define MOICE_MAX_BASES 16
// MoICE (model/moice.h): every attention head of a rope model attends once per rope base and
// mixes the results with per-token weights from a router of its layer. n_bases 0: off.
typedef struct {
    int n_bases;                   // N experts
    float bases[MOICE_MAX_BASES];  // bases[0] is the model's --rope-base and also rotates the
                                   // router's input; entries past n_bases are 0
    int top_k;                     // K of the N weights kept per (token, head), renormalised
    float aux_weight;              // of the load-balancing loss in the training objective
    float router_std;              // init std of the router's W1 and W3; 0: 1/sqrt(head dim)
} MoICEOptions;

// The most doubles a module sums over a forward pass.
#define MODULE_MAX_SUMS (1 + 2 * MOICE_MAX_BASES)

// One layer's view of the module's memory, for one forward or backward call at (B, T).
typedef struct {
    const struct GPTConfig *config;
    int layer, B, T;
    const float *params;  // this layer's module tensors, contiguous in declared order
    float *grads;         // their gradients (accumulated), NULL when frozen
    float *acts;          // this layer's act_size(B, T) floats
    float *att;           // att_blocks [B, H, T, T] softmax probabilities
    float *scratch;       // scratch_size(B, T) floats shared by every layer
    const struct AttentionSetup *setup;  // the core attention's setup for this layer
} ModuleLayer;

typedef struct AttentionModule {
    const char *name;
    // Whether the config turns the module on.
    int (*active)(const struct GPTConfig *c);
    // NULL if the module's options suit the config (checked whether on or off), else a message
    // naming the problem and the fix.
    const char *(*check)(const struct GPTConfig *c);
    // Per-layer learned tensors ("%d" in the name is the layer): fills specs, returns how many.
    int (*tensors)(const struct GPTConfig *c, PETensorSpec *specs);
    // [B, H, T, T] blocks of attention probabilities a layer keeps (the core keeps 1).
    int (*att_blocks)(const struct GPTConfig *c);
    // Floats of activations per layer, and of scratch shared by all layers, at (B, T).
    size_t (*act_size)(const struct GPTConfig *c, int B, int T);
    size_t (*scratch_size)(const struct GPTConfig *c, int B, int T);
    // out: [B, T, C] from qkv: [B, T, 3C] before any qk transform. Adds this layer's share of
    // the forward's sums to sums (in a fixed order: same bits for every thread count).
    void (*forward)(float *out, const float *qkv, const ModuleLayer *ml, double *sums);
    // dout: [B, T, C]. Accumulates the module tensors' gradients; with need_dqkv overwrites
    // dqkv ([B, T, 3C], w.r.t. qkv), else may skip everything that leads only there. aux_grad:
    // what objective_grad filled.
    void (*backward)(float *dqkv, const float *dout, const float *qkv, const ModuleLayer *ml,
                     const float *aux_grad, int need_dqkv);
    // The module's term of the objective from the whole batch's sums: returns the unweighted
    // term (reported as aux_loss) and sets *weighted to what the objective adds. May be NULL.
    double (*objective)(const struct GPTConfig *c, const double *sums, double *weighted);
    // Fills aux_grad (MODULE_MAX_SUMS floats) with what backward needs of the objective term's
    // gradient; returns 0 when the objective has no term of the module's. May be NULL.
    int (*objective_grad)(const struct GPTConfig *c, const double *sums, float *aux_grad);
    // The attention a head effectively applies, dst: [B, H, T, T] with zeros above the diagonal
    // (for attention maps), from the latest forward.
    void (*effective_attention)(float *dst, const ModuleLayer *ml);
    // FLOPs one forward + backward adds to the core's count at (B, T) (gpt_flops_per_step),
    // given the core attention's own count.
    double (*flops)(const struct GPTConfig *c, int B, int T, double attention_flops);
} AttentionModule;

// The registry (model/module_table.c).
int module_count(void);
const AttentionModule *module_at(int i);
// The module the config turns on, or NULL.
const AttentionModule *module_of(const struct GPTConfig *c);

#endif
