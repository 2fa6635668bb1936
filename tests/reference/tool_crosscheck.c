// bin/crosscheck: runs a small random GPT through three training steps and dumps everything the
// PyTorch reference (tests/reference/reference.py) needs to check it; tests/reference/test_crosscheck.py drives it.
//
//   bin/crosscheck --pe abs --norm pre --act gelu --out DIR [--layers 2 --dim 32 --heads 4
//                  --ffn 4*dim --seq-len 16 --batch 3 --vocab 7 --seed 1 --rope-base 10000
//                  --rel-npos 0 --cope-npos 0 --moice-bases none --moice-topk 2
//                  --moice-aux 0.2 --train-only all]
//
// DIR/model.h5 is the initial model written by the real checkpoint writer, so the test also
// proves that a checkpoint loads into the reference. DIR/dump.h5 holds, for steps k = 1, 2, 3:
//   step{k}/inputs, step{k}/targets  [B_k, T_k] int32 (-1: not scored)
//   step{k}/logits [B_k, T_k, V], attributes loss (cross-entropy), aux_loss (MoICE's
//                                   load-balancing loss) and objective: the forward at the
//                                   parameters before step k
//   step{k}/grads/<name>            gradients of the objective, before clipping (0 if frozen)
//   step{k}/params/<name>           parameters after the update of step k
//   attributes grad_norm (before clipping) and max_norm (<= 0: no clipping)
// and at the root the AdamW settings (lr, beta1, beta2, eps, weight_decay) and, per tensor,
// step1/grads/<name> carries attributes weight_decay (what the C optimiser decays) and
// trainable (0: frozen by --train-only routers).
// Step 2 uses a shorter batch (fewer sequences, fewer positions) than the buffers were built
// for, so code that confuses the batch's B, T with the maximum shows up.
//
// With --mspoe MIN:MAX [--mspoe-skip N] [--mspoe-order score|plain|official] (rope only) the dump holds
// one forward with Ms-PoE instead, which has no backward: group mspoe/ with inputs, targets
// (right-padded sequences of different lengths, so each has its own last scored row), logits,
// attribute loss, ratios [L, B, H] (the r each layer, sequence and head used; 0 for the skipped
// layers) and attributes ratio_min, ratio_max, skip_layers, order.
#include <errno.h>
#include <hdf5.h>
#include <hdf5_hl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../tool_common.h"
#include "../../model/gpt.h"
#include "../../model/moice.h"
#include "../../model/mspoe.h"
#include "../../common/rng.h"
#include "../../train/adamw.h"
#include "../../train/checkpoint.h"
#include "../../train/config.h"

#define N_STEPS 3
#define MSPOE_QUERY_GAIN 8.0f

typedef struct {
    const char *pe, *norm, *act, *out;
    int layers, dim, heads, ffn, seq_len, batch, vocab;
    long seed;
    PEOptions pe_opt;
    int mspoe;  // --mspoe given
    MsPoEConfig mspoe_cfg;
    const char *moice_bases;
    int moice_topk;
    float moice_aux;
    TrainableSet train_only;
} Args;


static const char *usage =
    "usage: bin/crosscheck --pe NAME --norm pre|post --act gelu|relu --out DIR\n"
    "       [--layers 2] [--dim 32] [--heads 4] [--ffn 4*dim] [--seq-len 16] [--batch 3]\n"
    "       [--vocab 7] [--seed 1] [--rope-base 10000] [--rel-npos 0 (T)] [--cope-npos 0 (T+1)]\n"
    "       [--mspoe MIN:MAX [--mspoe-skip 2] [--mspoe-order score|plain|official]]\n"
    "       [--moice-bases none|LIST] [--moice-topk 2] [--moice-aux 0.2] [--train-only all|routers]\n";

static TrainableSet parse_train_only(const char *v) {
    if (strcmp(v, "all") == 0) return TRAIN_ALL;
    if (strcmp(v, "routers") == 0) return TRAIN_MODULE;
    die(1, "--train-only must be all or routers, got %s", v);
    return TRAIN_ALL;
}

static Args parse_args(int argc, char **argv) {
    Args a = {.layers = 2, .dim = 32, .heads = 4, .seq_len = 16, .batch = 3, .vocab = 7, .seed = 1,
              .pe_opt = {.rope_base = 10000.0f}, .moice_bases = "none", .moice_topk = 2,
              .moice_aux = 0.2f, .mspoe_cfg = {.skip_layers = 2}};
    char err[256];
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (strcmp(f, "--help") == 0) {
            fputs(usage, stdout);
            exit(0);
        }
        if (i + 1 >= argc) die(1, "%s needs a value", f);
        const char *v = argv[++i];
        if (strcmp(f, "--pe") == 0) a.pe = v;
        else if (strcmp(f, "--norm") == 0) a.norm = v;
        else if (strcmp(f, "--act") == 0) a.act = v;
        else if (strcmp(f, "--out") == 0) a.out = v;
        else if (strcmp(f, "--layers") == 0) a.layers = (int)parse_int(f, v, 1);
        else if (strcmp(f, "--dim") == 0) a.dim = (int)parse_int(f, v, 1);
        else if (strcmp(f, "--heads") == 0) a.heads = (int)parse_int(f, v, 1);
        else if (strcmp(f, "--ffn") == 0) a.ffn = (int)parse_int(f, v, 1);
        else if (strcmp(f, "--seq-len") == 0) a.seq_len = (int)parse_int(f, v, 2);
        else if (strcmp(f, "--batch") == 0) a.batch = (int)parse_int(f, v, 2);
        else if (strcmp(f, "--vocab") == 0) a.vocab = (int)parse_int(f, v, 2);
        else if (strcmp(f, "--seed") == 0) a.seed = parse_int(f, v, 0);
        else if (strcmp(f, "--rope-base") == 0) a.pe_opt.rope_base = (float)parse_int(f, v, 2);
        else if (strcmp(f, "--rel-npos") == 0) a.pe_opt.rel_npos = (int)parse_int(f, v, 0);
        else if (strcmp(f, "--cope-npos") == 0) a.pe_opt.cope_npos = (int)parse_int(f, v, 0);
        else if (strcmp(f, "--mspoe") == 0) {
            if (mspoe_parse_ratios(v, &a.mspoe_cfg, err, sizeof err)) die(1, "%s", err);
            a.mspoe = 1;
        } else if (strcmp(f, "--mspoe-skip") == 0) a.mspoe_cfg.skip_layers = (int)parse_int(f, v, 0);
        else if (strcmp(f, "--mspoe-order") == 0) {
            if (strcmp(v, "score") == 0) a.mspoe_cfg.order = MSPOE_ORDER_SCORE;
            else if (strcmp(v, "plain") == 0) a.mspoe_cfg.order = MSPOE_ORDER_PLAIN;
            else if (strcmp(v, "official") == 0) a.mspoe_cfg.order = MSPOE_ORDER_OFFICIAL;
            else die(1, "--mspoe-order must be score, plain or official, got %s", v);
        }
        else if (strcmp(f, "--moice-bases") == 0) a.moice_bases = v;
        else if (strcmp(f, "--moice-topk") == 0) a.moice_topk = (int)parse_int(f, v, 1);
        else if (strcmp(f, "--moice-aux") == 0) a.moice_aux = parse_float(f, v, 0.0f);
        else if (strcmp(f, "--train-only") == 0) a.train_only = parse_train_only(v);
        else die(1, "unknown flag %s; see --help", f);
    }
    if (!a.pe || !a.norm || !a.act || !a.out) die(1, "--pe, --norm, --act and --out are required\n%s", usage);
    if (!a.ffn) a.ffn = 4 * a.dim;
    return a;
}

// ----------------------------------------------------------------------------------------------
// HDF5 output

static void check_h5(herr_t status, const char *what) {
    if (status < 0) die(1, "HDF5 failed to write %s", what);
}

static hid_t make_group(hid_t parent, const char *name) {
    hid_t g = H5Gcreate2(parent, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) die(1, "HDF5 failed to create group %s", name);
    return g;
}

// One dataset per tensor, named by its state_dict key, from a buffer in the parameter layout.
static void write_tensors(hid_t group, const GPT *m, const float *buf) {
    for (int i = 0; i < m->n_tensors; i++) {
        const TensorInfo *t = &m->tensors[i];
        hsize_t dims[3];
        for (int d = 0; d < t->ndim; d++) dims[d] = (hsize_t)t->shape[d];
        check_h5(H5LTmake_dataset_float(group, t->name, t->ndim, dims, buf + t->offset), t->name);
    }
}

static void set_attr_float(hid_t loc, const char *obj, const char *name, float v) {
    check_h5(H5LTset_attribute_float(loc, obj, name, &v, 1), name);
}

// ----------------------------------------------------------------------------------------------

// Random tokens; about a third of the targets unscored, and at least one scored per batch so
// the loss is defined.
static void draw_batch(Rng *rng, int B, int T, int V, int32_t *inputs, int32_t *targets) {
    for (int i = 0; i < B * T; i++) {
        inputs[i] = (int32_t)rng_below(rng, (uint32_t)V);
        targets[i] = rng_below(rng, 3) == 0 ? -1 : (int32_t)rng_below(rng, (uint32_t)V);
    }
    if (targets[0] < 0) targets[0] = 0;
}

// The Ms-PoE forward: sequence b is right-padded (input 0, target -1) from length T - 3b on,
// with its last real position scored, so every sequence ranks its heads at another row.
static void dump_mspoe(GPT *model, const Args *a, Rng *rng, int32_t *inputs, int32_t *targets) {
    char err[256];
    if (mspoe_enable(model, &a->mspoe_cfg, err, sizeof err) != 0) die(1, "%s", err);
    int B = a->batch, T = a->seq_len, L = a->layers, H = a->heads, V = a->vocab;
    draw_batch(rng, B, T, V, inputs, targets);
    for (int b = 0; b < B; b++) {
        int length = T - 3 * b > 1 ? T - 3 * b : 1;
        for (int t = length; t < T; t++) {
            inputs[b * T + t] = 0;
            targets[b * T + t] = -1;
        }
        targets[b * T + length - 1] = (int32_t)rng_below(rng, (uint32_t)V);
    }
    float loss = gpt_forward(model, inputs, targets, B, T, 0, 0);
    double *ratios = calloc((size_t)L * B * H, sizeof(double));
    if (!ratios) die(1, "out of memory for the ratios");
    for (int l = 0; l < L; l++)
        if (mspoe_layer_ratios(model, l))
            memcpy(ratios + (size_t)l * B * H, mspoe_layer_ratios(model, l), (size_t)B * H * sizeof(double));

    char path[4096];
    snprintf(path, sizeof path, "%s/dump.h5", a->out);
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) die(1, "cannot create %s", path);
    hid_t g = make_group(file, "mspoe");
    hsize_t dims[3] = {(hsize_t)B, (hsize_t)T, (hsize_t)V};
    check_h5(H5LTmake_dataset_int(g, "inputs", 2, dims, inputs), "inputs");
    check_h5(H5LTmake_dataset_int(g, "targets", 2, dims, targets), "targets");
    check_h5(H5LTmake_dataset_float(g, "logits", 3, dims, model->acts.logits), "logits");
    hsize_t ratio_dims[3] = {(hsize_t)L, (hsize_t)B, (hsize_t)H};
    check_h5(H5LTmake_dataset_double(g, "ratios", 3, ratio_dims, ratios), "ratios");
    set_attr_float(g, ".", "loss", loss);
    set_attr_float(g, ".", "ratio_min", a->mspoe_cfg.ratio_min);
    set_attr_float(g, ".", "ratio_max", a->mspoe_cfg.ratio_max);
    check_h5(H5LTset_attribute_int(g, ".", "skip_layers", &a->mspoe_cfg.skip_layers, 1), "skip_layers");
    check_h5(H5LTset_attribute_string(g, ".", "order", mspoe_order_names[a->mspoe_cfg.order]), "order");
    H5Gclose(g);
    H5Fclose(file);
    printf("crosscheck: %s with Ms-PoE %g:%g (skip %d, %s order), loss %.6f; wrote %s/model.h5 "
           "and %s\n",
           a->pe, (double)a->mspoe_cfg.ratio_min, (double)a->mspoe_cfg.ratio_max,
           a->mspoe_cfg.skip_layers, mspoe_order_names[a->mspoe_cfg.order], loss, a->out, path);
    free(ratios);
}

int main(int argc, char **argv) {
    program_name = "crosscheck";
    Args a = parse_args(argc, argv);
    GPTConfig cfg = {.vocab_size = a.vocab, .seq_len = a.seq_len, .n_layer = a.layers,
                     .n_embd = a.dim, .n_head = a.heads, .ffn_dim = a.ffn, .dropout = 0.0f,
                     .pe = pe_find(a.pe), .pe_opt = a.pe_opt, .init_std = GPT2_INIT_STD,
                     .emb_std = GPT2_INIT_STD,
                     .moice = {.top_k = a.moice_topk, .aux_weight = a.moice_aux}};
    char err[256];
    if (moice_parse_bases(&cfg.moice, a.moice_bases, a.pe_opt.rope_base, err, sizeof err) != 0)
        die(1, "%s", err);
    if (!cfg.pe) die(1, "unknown --pe %s; known: %s", a.pe, pe_names());
    if (strcmp(a.norm, "pre") == 0) cfg.norm = NORM_PRE;
    else if (strcmp(a.norm, "post") == 0) cfg.norm = NORM_POST;
    else die(1, "--norm must be pre or post, got %s", a.norm);
    if (strcmp(a.act, "gelu") == 0) cfg.act = ACT_GELU;
    else if (strcmp(a.act, "relu") == 0) cfg.act = ACT_RELU;
    else die(1, "--act must be gelu or relu, got %s", a.act);
    const char *bad = gpt_config_check(&cfg);
    if (bad) die(1, "%s", bad);
    if (mkdir(a.out, 0777) != 0 && errno != EEXIST) die(1, "cannot create %s: %s", a.out, strerror(errno));

    GPT model;
    if (gpt_build(&model, &cfg, a.batch, err, sizeof err) != 0) die(1, "%s", err);
    gpt_set_trainable(&model, a.train_only);
    gpt_init(&model, (uint64_t)a.seed);
    // gpt_init's N(0, 0.02) weights leave attention nearly uniform, and its zero biases and
    // unit gains would hide a bias or gain applied at the wrong place: move every parameter by
    // N(0, 0.1) so that scores spread over about one unit and every vector is non-constant.
    Rng rng;
    rng_seed(&rng, hash_mix((uint64_t)a.seed, 1));
    for (size_t i = 0; i < model.num_parameters; i++) model.params_memory[i] += 0.1f * rng_normal(&rng);
    // Ms-PoE ranks heads by how many keys get more than 3x the mean weight, and attention this
    // flat has none (every head would score 0 and keep its index's rank): sharper queries give
    // the heads scores that differ.
    for (int l = 0; l < cfg.n_layer && a.mspoe; l++) {
        LayerParams *p = &model.params.layer[l];
        for (int i = 0; i < cfg.n_embd * cfg.n_embd; i++) p->qkvw[i] *= MSPOE_QUERY_GAIN;  // q rows
        for (int i = 0; i < cfg.n_embd; i++) p->qkvb[i] *= MSPOE_QUERY_GAIN;
    }

    char path[4096];
    snprintf(path, sizeof path, "%s/model.h5", a.out);
    // The form a model-only tool stores (train/checkpoint.h): all the reference reads.
    cJSON *json = cJSON_CreateObject();
    cJSON_AddItemToObject(json, "model", gpt_config_to_json(&cfg));
    char *config_json = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    if (!config_json) die(1, "out of memory for the config");
    if (checkpoint_save(path, &model, NULL, config_json, NULL, err, sizeof err) != 0) die(1, "%s", err);
    free(config_json);
    int32_t *inputs = malloc(sizeof(int32_t) * a.batch * a.seq_len);
    int32_t *targets = malloc(sizeof(int32_t) * a.batch * a.seq_len);
    if (!inputs || !targets) die(1, "out of memory for the batch");
    if (a.mspoe) {
        dump_mspoe(&model, &a, &rng, inputs, targets);
        free(inputs);
        free(targets);
        gpt_free(&model);
        return 0;
    }

    snprintf(path, sizeof path, "%s/dump.h5", a.out);
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) die(1, "cannot create %s", path);
    // A large lr makes the updates large against the float32 rounding of the parameters.
    const float lr = 1e-2f;
    AdamWConfig ocfg = {.beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f};
    set_attr_float(file, "/", "lr", lr);
    set_attr_float(file, "/", "beta1", ocfg.beta1);
    set_attr_float(file, "/", "beta2", ocfg.beta2);
    set_attr_float(file, "/", "eps", ocfg.eps);
    set_attr_float(file, "/", "weight_decay", ocfg.weight_decay);

    AdamW opt;
    if (adamw_init(&opt, &model) != 0) die(1, "out of memory for the optimiser");
    float first_loss = 0.0f, first_norm = 0.0f;
    for (int step = 1; step <= N_STEPS; step++) {
        int B = step == 2 ? a.batch - 1 : a.batch;
        int T = step == 2 ? a.seq_len - a.seq_len / 4 : a.seq_len;
        draw_batch(&rng, B, T, a.vocab, inputs, targets);
        float loss = gpt_forward(&model, inputs, targets, B, T, 1, 0);
        gpt_zero_grad(&model);
        gpt_backward(&model);

        char name[32];
        snprintf(name, sizeof name, "step%d", step);
        hid_t g = make_group(file, name);
        hsize_t dims[3] = {(hsize_t)B, (hsize_t)T, (hsize_t)a.vocab};
        check_h5(H5LTmake_dataset_int(g, "inputs", 2, dims, inputs), "inputs");
        check_h5(H5LTmake_dataset_int(g, "targets", 2, dims, targets), "targets");
        check_h5(H5LTmake_dataset_float(g, "logits", 3, dims, model.acts.logits), "logits");
        set_attr_float(g, ".", "loss", loss);
        set_attr_float(g, ".", "aux_loss", model.aux_loss);
        set_attr_float(g, ".", "objective", model.objective);
        hid_t gg = make_group(g, "grads");
        write_tensors(gg, &model, model.grads_memory);
        if (step == 1)
            for (int i = 0; i < model.n_tensors; i++) {
                check_h5(H5LTset_attribute_int(gg, model.tensors[i].name, "weight_decay",
                                               &model.tensors[i].weight_decay, 1),
                         "weight_decay");
                check_h5(H5LTset_attribute_int(gg, model.tensors[i].name, "trainable",
                                               &model.tensors[i].trainable, 1),
                         "trainable");
            }
        H5Gclose(gg);

        // Clip on step 1 (half the norm), not on step 2 (twice the norm), none on step 3, so
        // both branches of the clipping are compared.
        float norm = grad_global_norm(&model);
        if (step == 1) {
            first_loss = loss;
            first_norm = norm;
        }
        float max_norm = step == 1 ? 0.5f * norm : step == 2 ? 2.0f * norm : 0.0f;
        set_attr_float(g, ".", "grad_norm", clip_grad_norm(&model, max_norm));
        set_attr_float(g, ".", "max_norm", max_norm);
        adamw_update(&opt, &model, lr, &ocfg);
        hid_t gp = make_group(g, "params");
        write_tensors(gp, &model, model.params_memory);
        H5Gclose(gp);
        H5Gclose(g);
    }
    H5Fclose(file);
    printf("crosscheck: %s, %s-norm, %s: %d tensors, %zu parameters, first loss %.6f, grad norm "
           "%.4g; wrote %s/model.h5 and %s/dump.h5\n",
           a.pe, a.norm, a.act, model.n_tensors, model.num_parameters, first_loss, first_norm,
           a.out, a.out);
    free(inputs);
    free(targets);
    adamw_free(&opt);
    gpt_free(&model);
    return 0;
}
