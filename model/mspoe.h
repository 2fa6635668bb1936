// Ms-PoE (Zhang et al. 2024, "Found in the Middle"), an evaluation-time change to a rope model
// that needs no training: in every layer from `skip_layers` on, head h rotates q and k by the
// positions t / r_h instead of t, so that different heads see the context at different scales.
//
// Ratios. The head of rank j (0-based, of H) gets r = r_min + (r_max - r_min) * j / H, so the
// ratios run from r_min up to (not including) r_max (official defaults 1.2 and 1.8).
//
// Orders (--mspoe-order). Each head gets a position-awareness score, computed from the layer's
// q and k BEFORE any rotation (attention without PE): in the causal softmax row of one query,
// the fraction of its keys whose weight exceeds 3 times the row's mean weight (as the official
// code's current version counts; an early commit used 4 times). order = the heads sorted by
// score, highest first, equal scores in head-index order.
//   score (the default, the paper's intent): the head at position j of the order gets the ratio
//          of index j, so the most position-aware head keeps the smallest ratio and the least
//          position-aware head gets the largest;
//   official: exactly the official code (VITA-Group/Ms-PoE), which indexes its ratio table by
//          the order, cos[order]: head h gets the ratio of index order[h]. That is the inverse
//          permutation of `score`'s assignment; the two agree only where the order is its own
//          inverse (10 of the 24 orders of 4 heads);
//   plain: head h gets the ratio of index h, no score. (The official code's commented-out
//          alternative gives head h the ratio of index H - 1 - h instead.)
//
// "The prompt" and its last query row, for teacher-forced evaluation of right-padded sequences
// with several or one scored position: per sequence, the prompt is the sequence up to its LAST
// SCORED position (the last position whose prediction counts; padding is never scored), and the
// scored row is that position, which attends to every real token before the last answer. For
// kvret this is the queried key k_q, the position that predicts the queried value: the prompt
// is then everything the answer is retrieved from, as for an LLM; for Flip-Flop it is the final
// read, which sees the whole context. A sequence with nothing scored uses its last row (its ratios change nothing
// that is counted). Each sequence and each affected layer gets its own order, computed from that
// layer's input in the same forward pass, as the official code computes one order per layer from
// the prompt's forward.
#ifndef PELAB_MSPOE_H
#define PELAB_MSPOE_H

#include <stddef.h>

#include "../common/option.h"
#include "gpt.h"

typedef enum { MSPOE_ORDER_SCORE = 0, MSPOE_ORDER_PLAIN = 1, MSPOE_ORDER_OFFICIAL = 2 } MsPoEOrder;
extern const char *const mspoe_order_names[];  // "score", "plain", "official", NULL

// Layers left with plain rope unless told: the official script's 2, but at most L - 1 so that a
// small model keeps a layer to rescale.
int mspoe_default_skip_layers(int n_layer);
#define MSPOE_OUTLIER_FACTOR 3.0f    // a key counts when its weight exceeds this times the mean

typedef struct {
    float ratio_min, ratio_max;
    int skip_layers;  // layers 0 .. skip_layers - 1 keep plain rope
    MsPoEOrder order;
} MsPoEConfig;

// Ms-PoE's state in a model: the state of its qk override (GPT.qk_override), set by mspoe_enable.
struct MsPoE {
    MsPoEConfig config;
    double *ratios;    // [L, max_batch, H]: r of each (layer >= skip, sequence, head), latest forward
    float *scores;     // [max_batch, H]: position-awareness scores of the layer being computed
    int *ranks;        // [max_batch, H]: and the heads' ranks
    float *row_work;   // [max_batch, H, T]: one attention row per (sequence, head)
    int *query_rows;   // [max_batch]: the scored row of each sequence (see above)
};

// Ms-PoE's command-line options (bin/eval), offsets into MsPoEConfig: --mspoe MIN:MAX turns it
// on, --mspoe-skip-layers and --mspoe-order set it up.
extern const Option mspoe_options[];
extern const int mspoe_n_options;

// NULL when the settings suit the model, else a message naming the problem and the fix:
// the model must use rope, 0 < r_min <= r_max, and at least one layer must be left to rescale.
const char *mspoe_check(const MsPoEConfig *config, const GPTConfig *model);

// Turns Ms-PoE on for every later forward, as the model's qk override (replacing an earlier
// one). Forward only: with it on, gpt_backward refuses to run. Returns 0, or -1 with a message
// in err. mspoe_disable turns it off (gpt_free does too).
int mspoe_enable(GPT *model, const MsPoEConfig *config, char *err, size_t errlen);
void mspoe_disable(GPT *model);

// Whether layer l's attention uses Ms-PoE's rotation instead of the encoding's qk hook.
int mspoe_applies(const GPT *model, int layer);
// The qk hook of an affected layer: ranks the heads of every sequence of the batch (B, T, targets
// of the current forward), records their ratios and rotates q and k of qkv [B, T, 3C] in place.
void mspoe_qk_forward(GPT *model, int layer, float *qkv);
// The ratios [B, H] that layer l used in the latest forward; NULL for a layer Ms-PoE skips.
const double *mspoe_layer_ratios(const GPT *model, int layer);

// The parts, exposed for tests:
// r of rank j of H heads.
double mspoe_ratio(const MsPoEConfig *config, int rank, int H);
// The position-awareness score of one head: the fraction of keys 0..row whose causal softmax
// weight in row `row` exceeds MSPOE_OUTLIER_FACTOR times the row's mean. q, k: the head's
// unrotated vectors with `stride` floats between positions; work: row + 1 floats.
float mspoe_position_score(const float *q, const float *k, int stride, int d, int row,
                           float *work);
// rank[h] of each head: 0 for the highest score; equal scores keep head-index order.
void mspoe_rank_heads(const float *scores, int H, int *rank);

// Parses "MIN:MAX" (for example "1.2:1.8") into config's ratios; 0, or -1 with a message in err.
int mspoe_parse_ratios(const char *text, MsPoEConfig *config, char *err, size_t errlen);

#endif
