// HDF5 checkpoints: one file per run holding the weights, the AdamW moments, the run config and
// the trainer's state, so that --resume continues bit for bit and h5py users can load the
// weights into the PyTorch reference with a few lines (layout: checkpoints/README.md).
//
//   /                 attributes format = "pelab-checkpoint", version = 1, config (JSON text),
//                     step (int64), tokens_seen (int64)
//   /model/<key>      float32, one dataset per TensorInfo, named by its state_dict key
//   /optim/m/<key>    float32 AdamW first moments, trainable tensors only
//   /optim/v/<key>    float32 AdamW second moments; /optim has attribute step (int64)
//   /state/...        data_rng (uint64[4]) and the rest of TrainState; attributes data_sha256
//                     and data_bytes identify the --data the run trains on (absent: drawn data)
//
// The file starts with pelab's checksum record (common/h5file.h), checked before libhdf5 reads
// it. Loading checks everything against everything: tensors against the model (names, shapes,
// float type), every value finite (second moments also >= 0), counts in range, the data stream's
// generator a uint64[4] that is not all zero.
// /optim and /state are only present when the writer passed them. Every function returns 0, or
// -1 with one line in err that names the file, the problem and, where there is one, the fix.
// HDF5's own error printing is turned off; its errors become these messages.
#ifndef PELAB_CHECKPOINT_H
#define PELAB_CHECKPOINT_H

#include <stddef.h>

#include "../model/gpt.h"
#include "../common/rng.h"
#include "adamw.h"

#define CHECKPOINT_FORMAT "pelab-checkpoint"
#define CHECKPOINT_VERSION 1

// Everything besides weights and moments that a resumed run needs to continue exactly.
typedef struct {
    long step;              // optimiser steps taken
    long tokens_seen;       // training tokens consumed (B * T per step)
    Rng data_rng;           // the training stream's generator, positioned after `step` batches
    double loss_sum;        // training loss summed since the last metrics row...
    long loss_count;        // ...over this many steps (the next row reports their mean)
    double elapsed_s;       // training wall time so far, across resumes
    // The --data the run trains on: its bytes' SHA-256 (64 hex digits) and count; "" and 0 for
    // data drawn from the task (and in checkpoints from before the record).
    char data_sha256[65];
    long long data_bytes;
} TrainState;

// Writes path atomically: everything goes to "<path>.tmp.<pid>", which is renamed over path only
// once complete, so an existing checkpoint survives any failure. config_json is stored verbatim
// as the root attribute `config`; the trainer's form is {"model": {...}, "task": {...},
// "train": {...}} (train/config.h), and a tool that has only a model may store
// {"model": gpt_config_to_json(...)}, which is all the PyTorch reference reads. opt and state
// may be NULL (weights only; step and tokens_seen are then 0).
int checkpoint_save(const char *path, const GPT *model, const AdamW *opt, const char *config_json,
                    const TrainState *state, char *err, size_t errlen);

// Reads the root attribute `config` into *config_json (malloc'd, the caller frees). Also checks
// that path is a pelab checkpoint of a version this build reads.
int checkpoint_read_config(const char *path, char **config_json, char *err, size_t errlen);

// Loads the weights into a model built with the checkpoint's config (names and shapes must match
// one to one; the message names the first tensor that does not). opt and state may be NULL to
// skip them (--init loads weights only); when given, the file must hold them.
int checkpoint_load(const char *path, GPT *model, AdamW *opt, TrainState *state, char *err,
                    size_t errlen);

// The weights that start a new run (--init): as checkpoint_load without optimiser and state,
// except that MoICE routers the file lacks keep the model's values, so that a rope model's
// checkpoint starts a MoICE model whose routers come from gpt_init.
int checkpoint_load_init(const char *path, GPT *model, char *err, size_t errlen);

#endif
