// The GPT of pelab: configuration, parameter and activation layout, forward and backward.
//
// Parameters, their gradients and the activations each live in one contiguous buffer; the
// structs below are named pointers into them. Every learned tensor is also listed in a table
// (TensorInfo) under its PyTorch state_dict key, which is what checkpoints, the optimiser and
// the PyTorch cross-check iterate over.
#ifndef PELAB_GPT_H
#define PELAB_GPT_H

#include <stddef.h>
#include <stdint.h>

#include "module.h"
#include "pe.h"

#define GPT_MAX_LAYERS 64
#define GPT_MAX_TENSORS (16 * GPT_MAX_LAYERS + 16)

typedef enum { NORM_PRE = 0, NORM_POST = 1 } NormPlacement;

#define GPT2_INIT_STD 0.02f  // GPT-2's init of matrices and embeddings: the default of both
typedef enum { ACT_GELU = 0, ACT_RELU = 1 } Activation;
// How gpt_init draws the Linear layers (the attention and MLP matrices and their biases):
//   gpt2:  weights N(0, init_std), residual projections N(0, init_std / sqrt(2L)), biases 0;
//   torch: PyTorch's nn.Linear default, as the CoPE paper's trainer keeps it: weights and
//          biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)), the residual projections' weights divided
//          by sqrt(2L) in pre-norm models only.
// Embeddings are N(0, emb_std) in both; PE tables as each encoding declares.
typedef enum { INIT_GPT2 = 0, INIT_TORCH = 1 } InitScheme;

typedef struct GPTConfig {
    int vocab_size;  // V, set by the task
    int seq_len;     // T, the context: longest sequence a batch may hold
    int n_layer;     // L
    int n_embd;      // C
    int n_head;      // H; head dim d = C / H
    int ffn_dim;     // F, MLP width (default 4C)
    float dropout;   // p on embeddings, attention probabilities and both residual branches
    float ffn_dropout;  // p on the MLP's hidden activations, after act (the CoPE trainer's)
    NormPlacement norm;
    Activation act;
    const PositionalEncoding *pe;
    PEOptions pe_opt;
    MoICEOptions moice;  // the attention modules' options (model/module.h); MoICE's n_bases 0: off
    // gpt_init's scheme for the Linear layers, and its standard deviations: matrices (gpt2
    // scheme only; residual projections divided by sqrt(2L)), and the embedding tables wte and
    // wpe. GPT-2 uses 0.02 for both; larger values shorten the plateau before a content lookup
    // forms (docs/results, kvret).
    InitScheme init;
    float init_std, emb_std;
} GPTConfig;

// Checks a config; returns NULL when it is valid, else a message naming the problem and fix.
const char *gpt_config_check(const GPTConfig *c);

typedef enum { TENSOR_CONST, TENSOR_NORMAL, TENSOR_UNIFORM } TensorInit;

typedef struct {
    char name[64];   // state_dict key, e.g. "blocks.0.attn.qkv.weight"
    size_t offset;   // into the parameter (and gradient, and optimiser) buffers
    size_t size;
    int ndim;
    int shape[3];
    int weight_decay;  // AdamW decays matrices and embeddings, not biases or LayerNorm gains
    int trainable;     // 0: frozen (no gradient products, no update, no optimiser state)
    TensorInit init;   // how gpt_init draws it, with init_scale
    float init_scale;  // the constant, the normal's standard deviation or the uniform's bound
    size_t field;      // byte offset of its named pointer in ParameterTensors, or (size_t)-1
    int module;        // 1: one of the attention module's tensors (model/module.h)
} TensorInfo;

typedef struct {
    float *ln1w, *ln1b;          // [C]
    float *qkvw, *qkvb;          // [3C, C], [3C]: rows q, then k, then v
    float *attprojw, *attprojb;  // [C, C], [C]
    float *ln2w, *ln2b;          // [C]
    float *fcw, *fcb;            // [F, C], [F]
    float *fcprojw, *fcprojb;    // [C, F], [C]
    float *pe;                   // this layer's PE tensor(s) (per-layer encodings), else NULL
    float *module;               // this layer's attention-module tensors (contiguous), else NULL
} LayerParams;

typedef struct {
    float *wte;         // [V, C], also the output head (tied)
    float *pe_shared;   // the PE's shared tensor(s) (abs: wpe [T, C]), else NULL
    float *lnfw, *lnfb; // [C], pre-norm only, else NULL
    LayerParams layer[GPT_MAX_LAYERS];
} ParameterTensors;

// One layer's activations. What ln1/ln2 normalise depends on the norm placement:
//   pre:  ln1 = LN(x), res2 = x + attn(ln1), ln2 = LN(res2), res3 = res2 + mlp(ln2), out = res3
//   post: res2 = x + attn(x), ln1 = LN(res2), res3 = ln1 + mlp(ln1), ln2 = LN(res3), out = ln2
typedef struct {
    float *ln1, *ln1_mean, *ln1_rstd;  // [B, T, C], [B, T], [B, T]
    float *qkv;                        // [B, T, 3C] after the PE's qk transform
    float *att;                        // [B, H, T, T] softmax probabilities (before dropout)
    float *atty;                       // [B, T, C] attention output, heads concatenated
    float *attproj;                    // [B, T, C] after the projection and dropout
    float *res2;                       // [B, T, C]
    float *ln2, *ln2_mean, *ln2_rstd;  // [B, T, C], [B, T], [B, T]
    float *fch;                        // [B, T, F] before the activation
    float *fch_act;                    // [B, T, F]
    float *fcproj;                     // [B, T, C] after the projection and dropout
    float *res3;                       // [B, T, C]
    float *pe;                         // [B, H, score_act_size] PE score activations, or NULL
    // With an attention module (model/module.h), else NULL: its act_size floats; att above
    // then holds its att_blocks [B, H, T, T] blocks.
    float *module;
} LayerActs;

typedef struct {
    float *encoded;                    // [B, T, C] embeddings (+ PE) after dropout
    LayerActs layer[GPT_MAX_LAYERS];
    float *lnf, *lnf_mean, *lnf_rstd;  // [B, T, C], [B, T], [B, T] (pre-norm only)
    float *logits;                     // [B, T, V]
    float *probs;                      // [B, T, V] softmax of the logits
    float *losses;                     // [B, T] per-position loss, 0 where not scored
} ActivationTensors;

// Gradients of activations that backward needs, reused by every layer.
typedef struct {
    float *dres;     // [B, T, C] w.r.t. the residual stream at the current layer boundary
    float *dbranch;  // [B, T, C] w.r.t. a branch output (attproj or fcproj)
    float *dnorm;    // [B, T, C] w.r.t. a LayerNorm output (pre-norm blocks)
    float *datty;    // [B, T, C] w.r.t. the attention output before its projection
    float *dqkv;     // [B, T, 3C]
    float *dfch;     // [B, T, F]
    float *dlogits;  // [B, T, V]
    float *module;   // the attention module's scratch_size floats (forward too), else NULL
} GradScratch;

struct GPT;
// An evaluation-time replacement of the PE's qk transform in some layers (Ms-PoE, model/mspoe.h):
// where applies() says so, forward() transforms q and k of the layer's qkv [B, T, 3C] in place
// instead of the encoding's qk hook. Forward only: gpt_backward refuses to run while one is set.
// release() frees state and clears the override (gpt_free calls it).
typedef struct {
    int (*applies)(const struct GPT *m, int layer);
    void (*forward)(struct GPT *m, int layer, float *qkv);
    void (*release)(struct GPT *m);
    void *state;
} QKOverride;

typedef struct GPT {
    GPTConfig config;
    const AttentionModule *module;  // module_of(&config), or NULL
    int max_batch;  // B the buffers were sized for (T up to config.seq_len)

    TensorInfo tensors[GPT_MAX_TENSORS];
    int n_tensors;
    size_t num_parameters;
    float *params_memory;
    float *grads_memory;
    ParameterTensors params;
    ParameterTensors grads;

    size_t num_activations;
    float *acts_memory;
    ActivationTensors acts;

    float *scratch_memory;
    GradScratch scratch;
    // Attention work space: per thread, two [T, T] matrices (dropped probabilities, score
    // gradients), and a private copy of the PE tensor gradients for the score hooks.
    float *att_work;
    size_t att_work_per_thread;
    float *pe_grad_work;
    size_t pe_grad_size;
    int n_threads;

    // Set by gpt_forward, read by gpt_backward and the evaluators.
    int B, T;
    const int32_t *inputs;   // [B, T]
    const int32_t *targets;  // [B, T], -1 where not scored
    int n_scored;
    double loss_sum;         // cross-entropy summed over the scored positions
    float mean_loss;         // cross-entropy: mean over the scored positions (0 if none)
    // The attention module's term of the objective (0 without one; MoICE: its load-balancing
    // loss), the objective that gpt_backward differentiates (mean_loss + the weighted term), and
    // the module's sums over the forward that it is computed from.
    float aux_loss;
    float objective;
    double module_sums[MODULE_MAX_SUMS];
    int training;            // dropout on
    uint64_t dropout_key;
    // The row of the whole batch this batch starts at: a data-parallel shard of rows
    // [batch_row0, batch_row0 + B) draws the dropout masks a single process draws for them.
    // 0 unless the caller sets it.
    int batch_row0;
    // gpt_backward stops below this layer: the lowest one with a trainable tensor, -1 when a
    // tensor outside the blocks (wte, shared PE tables) trains.
    int grad_floor;

    QKOverride qk_override;  // forward NULL: none

    // Data parallelism across threads (gpt_build, when n_threads > 1 and no attention module
    // is on): a batch of B >= 2 sequences is cut into one shard of rows per thread, and thread k
    // forwards and backwards rows [B k / n, B (k + 1) / n) on replicas[k], a copy of this model
    // that shares its parameters and sees slices of its activations (so after gpt_forward the
    // activations hold the whole batch, as without threads) but accumulates its gradients in
    // replica_grads (replica 0: in grads_memory); gpt_backward adds them up in replica order.
    // One parallel region a pass replaces a few hundred small ones, and each shard's products
    // run on one thread. The qk override runs in each replica (on its rows, see shard_row0). Same threads, same bits; another thread count splits the products
    // differently, so its results differ in the last bits.
    struct GPT *replicas;  // n_threads of them, or NULL
    float *replica_grads;  // (n_threads - 1) x num_parameters
    int team_size;         // threads of the latest forward's team; 0: the forward had none
    int shard_row0;        // a replica's first row in its model's batch (0 in the model itself):
                           // per-row state that users keep at max_batch rows (Ms-PoE) goes there
} GPT;

// Allocates every buffer for batches of up to max_batch sequences of up to config.seq_len.
// Returns 0, or -1 with a message in err.
int gpt_build(GPT *model, const GPTConfig *config, int max_batch, char *err, size_t errlen);
void gpt_free(GPT *model);

// Draws every tensor as its TensorInfo says, in table order from one stream: the Linear layers
// by the config's InitScheme, N(0, emb_std) embeddings, unit LayerNorm gains and zero LayerNorm
// biases, PE tensors as they declare.
void gpt_init(GPT *model, uint64_t seed);

// Looks a tensor up by state_dict key; NULL if absent.
const TensorInfo *gpt_tensor(const GPT *model, const char *name);

// Which tensors train: all (gpt_build's default), or only the attention module's (MoICE's
// router-only fine-tuning). Frozen tensors get no gradient products, no update and no optimiser
// state; gradients still flow through their activations to the module tensors of lower layers.
typedef enum { TRAIN_ALL = 0, TRAIN_MODULE = 1 } TrainableSet;
void gpt_set_trainable(GPT *model, TrainableSet set);

// Forward over a batch of B sequences of length T (B <= max_batch, T <= seq_len). targets -1
// are not scored; mean_loss is the mean cross-entropy over scored positions (0 if none), and
// aux_loss and objective are set. training turns dropout on, with masks drawn
// from dropout_key (same key, same masks). Returns mean_loss.
float gpt_forward(GPT *model, const int32_t *inputs, const int32_t *targets, int B, int T,
                  int training, uint64_t dropout_key);
// Data parallelism: every process forwards a shard of the batch, but the loss and the module's
// objective term are functions of the whole batch's sums. gpt_forward_sums gives this forward's
// GPT_SUMS sums; gpt_set_batch_sums takes the whole batch's (every shard's added up) and sets
// n_scored, mean_loss, aux_loss and objective from them, so that gpt_backward yields this
// shard's share of the whole batch's gradient and the shards' gradients add up to it. With the
// forward's own sums it changes nothing.
enum { GPT_SUM_SCORED, GPT_SUM_LOSS, GPT_SUM_MODULE, GPT_SUMS = GPT_SUM_MODULE + MODULE_MAX_SUMS };
void gpt_forward_sums(const GPT *model, double *sums);
void gpt_set_batch_sums(GPT *model, const double *sums);
void gpt_zero_grad(GPT *model);
// Accumulates d(objective)/d(parameters) into grads_memory (frozen tensors excluded).
void gpt_backward(GPT *model);

// The attention a head of layer l effectively applied in the latest forward, dst: [B, H, T, T]
// with zeros above the diagonal (the softmax probabilities, or the module's mixture of them).
void gpt_effective_attention(const GPT *model, int l, float *dst);

// Analytic FLOPs of one forward + backward at (B, T), matrix products and attention; used by
// the benchmark to report achieved GFLOP/s.
double gpt_flops_per_step(const GPTConfig *c, int B, int T);

#endif
