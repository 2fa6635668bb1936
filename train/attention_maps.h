// Attention introspection: what each layer and head attends to on a few evaluation sequences.
//
//   /                            attributes pe, task, split_names (comma-separated),
//                                token_names (comma-separated, indexed by token id)
// (T is the split's own sequence length)
//   /<split>/tokens              int32 [n, T]   the input tokens
//   /<split>/targets             int32 [n, T]   next-token targets, -1 where not scored
//   /<split>/predictions         int32 [n, T]   the model's argmax prediction at every position
//   /<split>/attention/layer<l>  float32 [n, H, T, T]  softmax probabilities, 0 above the diagonal
//   /<split>/positions/layer<l>  float32 [n, H, T, T]  the positions the encoding assigned
//                                (cope's p_ij); only for encodings that compute them
//
// train/plot_attention.py draws it as a grid of heatmaps.
#ifndef PELAB_ATTENTION_MAPS_H
#define PELAB_ATTENTION_MAPS_H

#include <stddef.h>

#include "../model/gpt.h"
#include "../tasks/task.h"
#include "../data/evaluate.h"

// Runs the first n sequences (at most the model's batch) of every split through the model and
// writes path atomically. 0, or -1 with one line in err.
int attention_maps_write(const char *path, GPT *model, const Task *task, const EvalSets *sets,
                         int n, char *err, size_t errlen);

#endif
