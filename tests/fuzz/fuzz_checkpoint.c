// libFuzzer target: a checkpoint read as --resume reads it: its config (train/config.h), a
// model built from that config, then weights, AdamW moments and the training state into it.
// Models past a small size are skipped: a config may ask for any size, and building it is an
// allocation, not a read.
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "../../train/adamw.h"
#include "../../train/checkpoint.h"
#include "../../train/config.h"
#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int small(const GPTConfig *c) {
    double C = c->n_embd, weights = (double)c->vocab_size * C +
                                    (double)c->n_layer * (4.0 * C * C + 2.0 * C * c->ffn_dim);
    return weights < 4e6 && c->seq_len <= 4096 && (double)c->seq_len * c->seq_len * c->n_head < 4e7;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size);
    char err[1024], *json = NULL;
    RunConfig rc;
    if (checkpoint_read_config(path, &json, err, sizeof err) != 0) return 0;
    int parsed = run_config_from_json(json, &rc, err, sizeof err);
    free(json);
    if (parsed != 0 || !small(&rc.model)) return 0;
    GPT model;
    AdamW opt;
    TrainState state;
    if (gpt_build(&model, &rc.model, 1, err, sizeof err) != 0) return 0;
    gpt_set_trainable(&model, rc.train_only);
    if (adamw_init(&opt, &model) == 0) {
        checkpoint_load(path, &model, &opt, &state, err, sizeof err);
        adamw_free(&opt);
    }
    gpt_free(&model);
    return 0;
}
