#include "attention_maps.h"

#include <hdf5_hl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/h5file.h"

typedef struct {
    GPT *model;
    const Task *task;
    const EvalSets *sets;
    int n;
    float *maps;                 // [n, H, T, T]
    int32_t *argmax;             // [n, T]
    int32_t *inputs, *targets;   // [n, T]
    int *rows;                   // [n]
} MapsJob;

static int write_names(hid_t file, const char *attr, const char *const *names, int count) {
    char joined[4096] = "";
    for (int i = 0; i < count; i++) {
        if (i) strncat(joined, ",", sizeof joined - strlen(joined) - 1);
        strncat(joined, names[i], sizeof joined - strlen(joined) - 1);
    }
    return H5LTset_attribute_string(file, "/", attr, joined) < 0 ? -1 : 0;
}

static int write_split(hid_t file, MapsJob *job, int split) {
    GPT *m = job->model;
    const GPTConfig *c = &m->config;
    const EvalSets *sets = job->sets;
    const SequenceSet *set = &sets->split[split];
    int n = job->n < set->n ? job->n : set->n, H = c->n_head, V = c->vocab_size;
    for (int b = 0; b < n; b++) job->rows[b] = b;
    const int32_t *inputs = job->inputs, *targets = job->targets;
    int T = sequence_set_batch(set, job->rows, n, job->inputs, job->targets);
    gpt_forward(m, inputs, targets, n, T, 0, 0);
    for (int p = 0; p < n * T; p++) job->argmax[p] = logits_argmax(m->acts.logits + (size_t)p * V, V);
    hid_t g = H5Gcreate2(file, sets->layout.split[split].name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return -1;
    hsize_t tok_dims[2] = {(hsize_t)n, (hsize_t)T};
    hsize_t map_dims[4] = {(hsize_t)n, (hsize_t)H, (hsize_t)T, (hsize_t)T};
    int rc = H5LTmake_dataset_int(g, "tokens", 2, tok_dims, inputs) < 0 ||
             H5LTmake_dataset_int(g, "targets", 2, tok_dims, targets) < 0 ||
             H5LTmake_dataset_int(g, "predictions", 2, tok_dims, job->argmax) < 0;
    const PositionalEncoding *pe = c->pe;
    for (int kind = 0; kind < 2 && !rc; kind++) {
        if (kind == 1 && !pe->score_positions) break;
        hid_t sub = H5Gcreate2(g, kind ? "positions" : "attention", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (sub < 0) {
            rc = -1;
            break;
        }
        for (int l = 0; l < c->n_layer && !rc; l++) {
            const LayerActs *la = &m->acts.layer[l];
            if (kind == 0) {
                gpt_effective_attention(m, l, job->maps);
            } else {
                PEContext ctx = {.config = c, .layer = l, .T = T};
                size_t act = c->pe->score_act_size(c, T);
                for (int bh = 0; bh < n * H; bh++)
                    pe->score_positions(job->maps + (size_t)bh * T * T, la->pe + bh * act, &ctx);
            }
            char name[32];
            snprintf(name, sizeof name, "layer%d", l);
            rc = H5LTmake_dataset_float(sub, name, 4, map_dims, job->maps) < 0;
        }
        H5Gclose(sub);
    }
    H5Gclose(g);
    return rc ? -1 : 0;
}

static int fill(hid_t file, const void *ctx) {
    MapsJob *job = (MapsJob *)ctx;
    const Task *task = job->task;
    const TaskLayout *layout = &job->sets->layout;
    const char *split_names[TASK_MAX_SPLITS];
    for (int s = 0; s < layout->n_splits; s++) split_names[s] = layout->split[s].name;
    if (H5LTset_attribute_string(file, "/", "pe", job->model->config.pe->name) < 0 ||
        H5LTset_attribute_string(file, "/", "task", task->name) < 0 ||
        write_names(file, "split_names", split_names, layout->n_splits) < 0 ||
        write_names(file, "token_names", task->token_names, task->vocab_size) < 0)
        return -1;
    for (int s = 0; s < layout->n_splits; s++)
        if (write_split(file, job, s) < 0) return -1;
    return 0;
}

int attention_maps_write(const char *path, GPT *model, const Task *task, const EvalSets *sets,
                         int n, char *err, size_t errlen) {
    if (n > model->max_batch) n = model->max_batch;
    // Buffers for the longest split; shorter ones use their first part.
    int T = task_layout_longest(&sets->layout), H = model->config.n_head;
    size_t tokens = (size_t)n * T * sizeof(int32_t);
    MapsJob job = {model, task, sets, n, malloc((size_t)n * H * T * T * sizeof(float)),
                   malloc(tokens), malloc(tokens), malloc(tokens), malloc((size_t)n * sizeof(int))};
    int rc;
    if (!job.maps || !job.argmax || !job.inputs || !job.targets || !job.rows) {
        snprintf(err, errlen, "out of memory for the attention maps; ask for fewer sequences");
        rc = -1;
    } else {
        rc = h5_write_atomic(path, "attention maps", fill, &job, err, errlen);
    }
    free(job.maps);
    free(job.argmax);
    free(job.inputs);
    free(job.targets);
    free(job.rows);
    return rc;
}
