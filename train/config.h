// The run config: everything that defines a training run (model, task, optimiser, schedule,
// evaluation), and its JSON form, which checkpoints store so that --resume and --init can
// rebuild the run and h5py users can rebuild the model:
//
//   {"model": {"vocab_size", "seq_len", "n_layer", "n_embd", "n_head", "ffn_dim", "dropout",
//              "ffn_dropout", "norm": "pre"|"post", "act": "gelu"|"relu", "pe", "rope_base",
//              "rel_npos", "cope_npos", "init_scheme": "gpt2"|"torch", "init_std", "emb_std", "tied": true,
//              "moice": {"bases": [...], "top_k", "aux_weight"} (only when MoICE is on)},
//    "task":  {"name", "preset", "seq_len", "flipflop_p_train", "kv_pairs", "kv_eval_pairs",
//              "kv_keys", "kv_queries", "kv_min_pairs", "kv_positions": "uniform"|"ends",
//              "position_bins", "sel_data", "sel_blanks", "data" (path or ""), "train_seqs"},
//    "train": {"batch", "batch_order": "pooled"|"shuffle", "steps", "lr", "min_lr", "schedule": "cosine"|"constant", "warmup",
//              "weight_decay", "beta1", "beta2", "eps", "clip", "seed", "threads",
//              "eval_every", "eval_seqs", "save_every", "train_only": "all"|"routers"}}
//
// task.seq_len is the context the run's sequences must fit (the longest of the task's layout
// unless --seq-len asked for more); the model's context (model.seq_len) is larger where --init
// started a run on shorter sequences than the model was built for. The options of other tasks
// than task.name are written too but only required for their own task.
#ifndef PELAB_CONFIG_H
#define PELAB_CONFIG_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "../data/dataset.h"
#include "../model/gpt.h"
#include "../tasks/task.h"
#include "adamw.h"

typedef struct {
    GPTConfig model;
    const Task *task;
    const Preset *preset;
    TaskOptions task_opt;
    // Where the sequences come from: "" draws them from the task (fixed seeds); else a dataset
    // file (.h5, data/dataset_file.h) or a folder of the official counting generator's JSON lines.
    char data[4096];
    int train_seqs;      // >0: train in epochs on a fixed set of this many sequences; 0: the task's
    int batch;
    BatchOrder batch_order;  // how a fixed training set's epochs are cut into batches
    long steps;
    float lr, min_lr;
    Schedule schedule;
    long warmup;
    AdamWConfig adamw;
    float clip;          // max global gradient norm; 0: no clipping
    uint64_t seed;       // initialisation, data stream and dropout
    int threads;
    long eval_every;     // 0: evaluate at the end only
    int eval_seqs;       // sequences per evaluation split
    long save_every;     // 0: save at the end (and on Ctrl-C) only
    TrainableSet train_only;  // all tensors, or only MoICE's routers
} RunConfig;

// Names of the enums as the CLI and the JSON spell them: indexed by value, NULL-terminated.
extern const char *const norm_names[];      // "pre", "post"
extern const char *const act_names[];       // "gelu", "relu"
extern const char *const schedule_names[];  // "cosine", "constant"
extern const char *const train_only_names[];  // "all", "routers"
extern const char *const init_names[];        // "gpt2", "torch"
extern const char *const batch_order_names[];  // "pooled", "shuffle"

// The shortest decimal that reads back as the same float ("0.001", not "0.00100000005").
void format_float(char *buf, size_t len, float value);

// The model part of the JSON above (a new object the caller owns).
cJSON *gpt_config_to_json(const GPTConfig *c);
// Reads and checks (gpt_config_check) a model config; 0, or -1 with a message in err.
int gpt_config_from_json(const cJSON *json, GPTConfig *c, char *err, size_t errlen);

// The whole run config as compact JSON text (malloc'd, the caller frees; NULL if out of memory).
char *run_config_to_json(const RunConfig *rc);
// Parses JSON text made by run_config_to_json; 0, or -1 with a message in err.
int run_config_from_json(const char *json, RunConfig *rc, char *err, size_t errlen);

#endif
