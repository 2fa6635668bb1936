// The GPT: parameter table and layout, forward and backward of the whole model.
#include "gpt.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"
#include "module.h"
#include "../common/rng.h"

const char *gpt_config_check(const GPTConfig *c) {
    static _Thread_local char msg[256];
    if (c->vocab_size < 2) return "the vocabulary needs at least 2 tokens";
    if (c->seq_len < 1) return "--seq-len must be at least 1";
    if (c->n_layer < 1 || c->n_layer > GPT_MAX_LAYERS) {
        snprintf(msg, sizeof msg, "--layers must be between 1 and %d", GPT_MAX_LAYERS);
        return msg;
    }
    if (c->n_embd < 1 || c->n_head < 1 || c->ffn_dim < 1)
        return "--dim, --heads and --ffn must be positive";
    if (c->n_embd % c->n_head != 0) {
        snprintf(msg, sizeof msg, "--heads %d does not divide --dim %d; pick a head count that divides the width",
                 c->n_head, c->n_embd);
        return msg;
    }
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f)) return "--dropout must be in [0, 1)";
    if (!(c->ffn_dropout >= 0.0f && c->ffn_dropout < 1.0f)) return "--ffn-dropout must be in [0, 1)";
    if (!(c->init_std > 0.0f && c->emb_std > 0.0f))
        return "--init-std and --emb-std must be positive (GPT-2: 0.02)";
    if (!c->pe) return "no positional encoding given; pass --pe";
    const char *pe_problem = c->pe->check ? c->pe->check(c) : NULL;
    if (pe_problem) return pe_problem;
    for (int i = 0; i < module_count(); i++) {
        const char *module_problem = module_at(i)->check ? module_at(i)->check(c) : NULL;
        if (module_problem) return module_problem;
    }
    int max_len = c->pe->max_len ? c->pe->max_len(c) : 0;
    if (max_len && c->seq_len > max_len) {
        snprintf(msg, sizeof msg, "--pe %s supports sequences up to %d tokens, not %d", c->pe->name,
                 max_len, c->seq_len);
        return msg;
    }
    return NULL;
}

// ----------------------------------------------------------------------------------------------
// parameter table

// Where a tensor's pointer goes: a byte offset into ParameterTensors, so the same table binds
// both the parameter and the gradient structs.
#define FIELD(f) offsetof(ParameterTensors, f)
#define NO_FIELD ((size_t)-1)

static void add_tensor(GPT *m, const char *name, int ndim, const int *shape, int decay,
                       size_t field, TensorInit init, float init_scale) {
    TensorInfo *t = &m->tensors[m->n_tensors];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->size = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->size *= (size_t)shape[i];
    }
    t->offset = m->num_parameters;
    t->weight_decay = decay;
    t->trainable = 1;
    t->init = init;
    t->init_scale = init_scale;
    t->field = field;
    t->module = 0;
    m->num_parameters += t->size;
    m->n_tensors++;
}

// Adds the declared tensors that are shared (layer < 0) or belong to `layer`; the first one
// binds to `field`, the others follow it contiguously. module: they are the attention module's.
static void add_spec_tensors(GPT *m, const PETensorSpec *specs, int n, int layer, size_t field,
                             int module) {
    int first = 1;
    for (int i = 0; i < n; i++) {
        if (specs[i].per_layer != (layer >= 0)) continue;
        char name[64];
        snprintf(name, sizeof name, specs[i].name, layer);
        int normal = specs[i].init == PE_INIT_NORMAL;
        add_tensor(m, name, specs[i].ndim, specs[i].shape, specs[i].weight_decay,
                   first ? field : NO_FIELD, normal ? TENSOR_NORMAL : TENSOR_CONST,
                   normal ? specs[i].init_std : 0.0f);
        m->tensors[m->n_tensors - 1].module = module;
        first = 0;
    }
}

static void add_pe_tensors(GPT *m, int layer, size_t field) {
    PETensorSpec specs[PE_MAX_TENSORS];
    int n = m->config.pe->tensors ? m->config.pe->tensors(&m->config, specs) : 0;
    add_spec_tensors(m, specs, n, layer, field, 0);
}

// How a Linear layer of fan_in inputs is drawn (InitScheme): weight and bias, as (kind, scale)
// pairs; `residual` marks the projections that write into the residual stream.
typedef struct {
    TensorInit w_init, b_init;
    float w_scale, b_scale;
} LinearInit;

static LinearInit linear_init(const GPTConfig *c, int fan_in, int residual) {
    float depth = residual ? sqrtf(2.0f * c->n_layer) : 1.0f;
    if (c->init == INIT_TORCH) {
        // kaiming_uniform(a = sqrt(5)) reduces to the bound 1/sqrt(fan_in); the CoPE trainer
        // divides its residual projections' weights (not biases) by sqrt(2L) in pre-norm only
        float bound = 1.0f / sqrtf((float)fan_in);
        return (LinearInit){TENSOR_UNIFORM, TENSOR_UNIFORM,
                            c->norm == NORM_PRE ? bound / depth : bound, bound};
    }
    return (LinearInit){TENSOR_NORMAL, TENSOR_CONST, c->init_std / depth, 0.0f};
}

static void build_table(GPT *m) {
    const GPTConfig *c = &m->config;
    int V = c->vocab_size, C = c->n_embd, F = c->ffn_dim;
    LinearInit qkv = linear_init(c, C, 0), attproj = linear_init(c, C, 1),
               fc = linear_init(c, C, 0), fcproj = linear_init(c, F, 1);
    m->n_tensors = 0;
    m->num_parameters = 0;
    add_tensor(m, "wte.weight", 2, (int[]){V, C}, 1, FIELD(wte), TENSOR_NORMAL, c->emb_std);
    add_pe_tensors(m, -1, FIELD(pe_shared));
    for (int l = 0; l < c->n_layer; l++) {
        char name[64];
#define LAYER_TENSOR(key, ndim, shape, decay, f, init, scale)             \
    snprintf(name, sizeof name, "blocks.%d." key, l);                     \
    add_tensor(m, name, ndim, (int[])shape, decay, FIELD(layer[l].f), init, scale)
#define SHAPE(...) {__VA_ARGS__}
        LAYER_TENSOR("ln1.weight", 1, SHAPE(C), 0, ln1w, TENSOR_CONST, 1.0f);
        LAYER_TENSOR("ln1.bias", 1, SHAPE(C), 0, ln1b, TENSOR_CONST, 0.0f);
        LAYER_TENSOR("attn.qkv.weight", 2, SHAPE(3 * C, C), 1, qkvw, qkv.w_init, qkv.w_scale);
        LAYER_TENSOR("attn.qkv.bias", 1, SHAPE(3 * C), 0, qkvb, qkv.b_init, qkv.b_scale);
        LAYER_TENSOR("attn.proj.weight", 2, SHAPE(C, C), 1, attprojw, attproj.w_init, attproj.w_scale);
        LAYER_TENSOR("attn.proj.bias", 1, SHAPE(C), 0, attprojb, attproj.b_init, attproj.b_scale);
        LAYER_TENSOR("ln2.weight", 1, SHAPE(C), 0, ln2w, TENSOR_CONST, 1.0f);
        LAYER_TENSOR("ln2.bias", 1, SHAPE(C), 0, ln2b, TENSOR_CONST, 0.0f);
        LAYER_TENSOR("mlp.fc.weight", 2, SHAPE(F, C), 1, fcw, fc.w_init, fc.w_scale);
        LAYER_TENSOR("mlp.fc.bias", 1, SHAPE(F), 0, fcb, fc.b_init, fc.b_scale);
        LAYER_TENSOR("mlp.proj.weight", 2, SHAPE(C, F), 1, fcprojw, fcproj.w_init, fcproj.w_scale);
        LAYER_TENSOR("mlp.proj.bias", 1, SHAPE(C), 0, fcprojb, fcproj.b_init, fcproj.b_scale);
        if (m->module) {
            PETensorSpec specs[PE_MAX_TENSORS];
            int n = m->module->tensors ? m->module->tensors(c, specs) : 0;
            add_spec_tensors(m, specs, n, l, FIELD(layer[l].module), 1);
        }
#undef LAYER_TENSOR
#undef SHAPE
        add_pe_tensors(m, l, FIELD(layer[l].pe));
    }
    if (c->norm == NORM_PRE) {
        add_tensor(m, "ln_f.weight", 1, (int[]){C}, 0, FIELD(lnfw), TENSOR_CONST, 1.0f);
        add_tensor(m, "ln_f.bias", 1, (int[]){C}, 0, FIELD(lnfb), TENSOR_CONST, 0.0f);
    }
}

// Points the named parameter and gradient pointers into their buffers. Frozen tensors get a
// NULL gradient pointer, which is how backward knows to skip their weight products.
static void bind_pointers(GPT *m) {
    memset(&m->params, 0, sizeof m->params);
    memset(&m->grads, 0, sizeof m->grads);
    for (int i = 0; i < m->n_tensors; i++) {
        const TensorInfo *t = &m->tensors[i];
        if (t->field == NO_FIELD) continue;
        *(float **)((char *)&m->params + t->field) = m->params_memory + t->offset;
        *(float **)((char *)&m->grads + t->field) = t->trainable ? m->grads_memory + t->offset : NULL;
    }
}

// ----------------------------------------------------------------------------------------------
// activations

static size_t pe_act_size(const GPTConfig *c, int T) {
    return c->pe->score_act_size ? c->pe->score_act_size(c, T) : 0;
}

// Lays the activations out for (B, T); with ptr == NULL only counts. Returns the float count.
// Every tensor but the attention module's holds B rows of a fixed size each, one after the
// other; with row0 > 0 the pointers are those of rows row0.. of each tensor (a replica's
// slices, see GPT.replicas), which the module's tensors do not have (replicas need row0 == 0
// for them, so the team is off when a module is on).
static size_t layout_activations(ActivationTensors *a, float *ptr, const GPTConfig *c, int B,
                                 int T, int row0) {
    size_t C = c->n_embd, H = c->n_head, F = c->ffn_dim, V = c->vocab_size, TC = (size_t)T * C;
    size_t total = 0;
#define TAKE(dst, per_row)                                       \
    do {                                                         \
        (dst) = ptr ? ptr + total + (size_t)row0 * (per_row) : NULL; \
        total += (size_t)B * (per_row);                          \
    } while (0)
    TAKE(a->encoded, TC);
    size_t pe_per_row = H * pe_act_size(c, T);
    const AttentionModule *mod = module_of(c);
    size_t att_blocks = mod && mod->att_blocks ? (size_t)mod->att_blocks(c) : 1;
    size_t module_floats = mod && mod->act_size ? mod->act_size(c, B, T) : 0;
    for (int l = 0; l < c->n_layer; l++) {
        LayerActs *la = &a->layer[l];
        TAKE(la->ln1, TC);
        TAKE(la->ln1_mean, (size_t)T);
        TAKE(la->ln1_rstd, (size_t)T);
        TAKE(la->qkv, 3 * TC);
        TAKE(la->att, H * T * T * att_blocks);
        TAKE(la->atty, TC);
        TAKE(la->attproj, TC);
        TAKE(la->res2, TC);
        TAKE(la->ln2, TC);
        TAKE(la->ln2_mean, (size_t)T);
        TAKE(la->ln2_rstd, (size_t)T);
        TAKE(la->fch, (size_t)T * F);
        TAKE(la->fch_act, (size_t)T * F);
        TAKE(la->fcproj, TC);
        TAKE(la->res3, TC);
        TAKE(la->pe, pe_per_row);
        if (!pe_per_row) la->pe = NULL;
        la->module = ptr && module_floats ? ptr + total : NULL;
        total += module_floats;
    }
    TAKE(a->lnf, TC);
    TAKE(a->lnf_mean, (size_t)T);
    TAKE(a->lnf_rstd, (size_t)T);
    TAKE(a->logits, (size_t)T * V);
    TAKE(a->probs, (size_t)T * V);
    TAKE(a->losses, (size_t)T);
#undef TAKE
    return total;
}

// The backward's scratch for (B, T), rows row0.. of each tensor as above; the module's share
// is laid out whole after them.
static size_t layout_scratch(GradScratch *g, float *ptr, const GPTConfig *c, int B, int T,
                             int row0) {
    size_t TC = (size_t)T * c->n_embd;
    const AttentionModule *mod = module_of(c);
    size_t per_row[] = {TC, TC, TC, TC, 3 * TC, (size_t)T * c->ffn_dim, (size_t)T * c->vocab_size};
    float **const slots[] = {&g->dres, &g->dbranch, &g->dnorm, &g->datty, &g->dqkv, &g->dfch,
                             &g->dlogits};
    size_t total = 0;
    for (int i = 0; i < 7; i++) {
        *slots[i] = ptr ? ptr + total + (size_t)row0 * per_row[i] : NULL;
        total += (size_t)B * per_row[i];
    }
    size_t module_floats = mod && mod->scratch_size ? mod->scratch_size(c, B, T) : 0;
    g->module = ptr && module_floats ? ptr + total : NULL;
    return total + module_floats;
}

// The size of the PE tensors a score hook reads: one layer's, or the shared ones.
static size_t pe_score_params_size(const GPT *m) {
    PETensorSpec specs[PE_MAX_TENSORS];
    int n = m->config.pe->tensors ? m->config.pe->tensors(&m->config, specs) : 0;
    int any_per_layer = 0;
    for (int i = 0; i < n; i++) any_per_layer |= specs[i].per_layer;
    size_t size = 0;
    for (int i = 0; i < n; i++) {
        if (specs[i].per_layer != any_per_layer) continue;
        size_t s = 1;
        for (int k = 0; k < specs[i].ndim; k++) s *= (size_t)specs[i].shape[k];
        size += s;
    }
    return size;
}

// "12.0 MiB", "2.3 TiB": bytes in the largest binary unit that keeps a number >= 1.
static void format_bytes(char *buf, size_t len, double bytes) {
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int u = 0;
    while (bytes >= 1024.0 && u < 5) bytes /= 1024.0, u++;
    snprintf(buf, len, "%.1f %s", bytes, units[u]);
}

int gpt_build(GPT *m, const GPTConfig *config, int max_batch, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    const char *problem = gpt_config_check(config);
    if (problem) {
        snprintf(err, errlen, "%s", problem);
        return -1;
    }
    m->config = *config;
    m->module = module_of(config);
    m->max_batch = max_batch;
    build_table(m);
    int B = max_batch, T = config->seq_len;
    m->num_activations = layout_activations(&m->acts, NULL, config, B, T, 0);
    size_t scratch = layout_scratch(&m->scratch, NULL, config, B, T, 0);
    m->n_threads = omp_get_max_threads();
    m->att_work_per_thread = attention_work_size(T) +
                             (config->pe->score_scratch_size ? config->pe->score_scratch_size(config, T) : 0);
    m->pe_grad_size = pe_score_params_size(m);
    m->params_memory = calloc(m->num_parameters, sizeof(float));
    m->grads_memory = calloc(m->num_parameters, sizeof(float));
    m->acts_memory = calloc(m->num_activations, sizeof(float));
    m->scratch_memory = calloc(scratch, sizeof(float));
    m->att_work = calloc(m->att_work_per_thread * m->n_threads, sizeof(float));
    m->pe_grad_work = calloc(m->pe_grad_size * m->n_threads + 1, sizeof(float));
    int team = m->n_threads > 1 && !m->module;
    if (team) {
        m->replicas = calloc((size_t)m->n_threads, sizeof(GPT));
        m->replica_grads = calloc((m->n_threads - 1) * m->num_parameters, sizeof(float));
    }
    if (!m->params_memory || !m->grads_memory || !m->acts_memory || !m->scratch_memory ||
        !m->att_work || !m->pe_grad_work || (team && (!m->replicas || !m->replica_grads))) {
        // Named by size, so that the message blames what is large: weights or activations.
        double weights = (double)m->num_parameters * sizeof(float);
        double acts = (double)(m->num_activations + scratch) * sizeof(float);
        int grad_copies = team ? m->n_threads : 1;
        char w[32], g[32], per_thread[48] = "";
        format_bytes(w, sizeof w, weights);
        format_bytes(g, sizeof g, acts);
        if (grad_copies > 1) snprintf(per_thread, sizeof per_thread, " for each of %d threads", grad_copies);
        snprintf(err, errlen, "out of memory for the model: %zu parameters take %s (and their "
                 "gradients as much again%s), activations for --batch %d x %d tokens %s; lower %s",
                 m->num_parameters, w, per_thread, B, T, g,
                 (1 + grad_copies) * weights > acts ? "--dim, --ffn or --layers" : "--batch or --seq-len");
        gpt_free(m);
        return -1;
    }
    gpt_set_trainable(m, TRAIN_ALL);
    layout_scratch(&m->scratch, m->scratch_memory, config, B, T, 0);
    return 0;
}

void gpt_free(GPT *m) {
    if (m->qk_override.release) m->qk_override.release(m);
    free(m->params_memory);
    free(m->grads_memory);
    free(m->acts_memory);
    free(m->scratch_memory);
    free(m->att_work);
    free(m->pe_grad_work);
    free(m->replicas);
    free(m->replica_grads);
    memset(m, 0, sizeof *m);
}

void gpt_init(GPT *m, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    for (int i = 0; i < m->n_tensors; i++) {
        const TensorInfo *t = &m->tensors[i];
        float *p = m->params_memory + t->offset;
        for (size_t k = 0; k < t->size; k++)
            p[k] = t->init == TENSOR_NORMAL    ? t->init_scale * rng_normal(&rng)
                   : t->init == TENSOR_UNIFORM ? t->init_scale * (2.0f * rng_float(&rng) - 1.0f)
                                               : t->init_scale;
    }
}

const TensorInfo *gpt_tensor(const GPT *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

void gpt_set_trainable(GPT *m, TrainableSet set) {
    m->grad_floor = m->config.n_layer;
    for (int i = 0; i < m->n_tensors; i++) {
        TensorInfo *t = &m->tensors[i];
        t->trainable = set == TRAIN_ALL || t->module;
        if (!t->trainable) continue;
        // wte and shared PE tensors feed every block; ln_f sits above them all
        int layer = -1;
        if (sscanf(t->name, "blocks.%d.", &layer) != 1 && strncmp(t->name, "ln_f.", 5) == 0)
            layer = m->config.n_layer;
        if (layer < m->grad_floor) m->grad_floor = layer;
    }
    bind_pointers(m);
}

// ----------------------------------------------------------------------------------------------
// forward and backward

// Dropout sites: every (step key, layer, site) draws an independent mask.
enum { SITE_EMBEDDING, SITE_ATTENTION, SITE_ATTENTION_OUT, SITE_MLP_OUT, SITE_MLP_HIDDEN };

static uint64_t site_key(const GPT *m, int layer, int site) {
    return hash_mix(hash_mix(m->dropout_key, (uint64_t)(layer + 1)), (uint64_t)site);
}

// Dropout at a site over this batch's tensor x of per_row floats per sequence, its elements
// numbered from the batch's first row in the whole batch (batch_row0).
static void drop(const GPT *m, float *x, size_t per_row, float p, uint64_t key) {
    dropout_apply(x, (size_t)m->B * per_row, p, key, (uint64_t)m->batch_row0 * per_row);
}

static float active_dropout(const GPT *m) { return m->training ? m->config.dropout : 0.0f; }
static float active_ffn_dropout(const GPT *m) { return m->training ? m->config.ffn_dropout : 0.0f; }

static const float *layer_output(const GPT *m, int l) {
    const LayerActs *la = &m->acts.layer[l];
    return m->config.norm == NORM_PRE ? la->res3 : la->ln2;
}

static const float *layer_input(const GPT *m, int l) {
    return l == 0 ? m->acts.encoded : layer_output(m, l - 1);
}

static AttentionSetup attention_setup(const GPT *m, int l) {
    const GPTConfig *c = &m->config;
    int per_layer = m->params.layer[l].pe != NULL;
    return (AttentionSetup){
        .pe = c->pe,
        .ctx = {.config = c, .layer = l, .T = m->T, .qkv_stride = 3 * c->n_embd,
                .params = per_layer ? m->params.layer[l].pe : m->params.pe_shared},
        .pe_act_size = pe_act_size(c, m->T),
        .pe_grad = per_layer ? m->grads.layer[l].pe : m->grads.pe_shared,
        .pe_grad_work = m->pe_grad_work,
        .pe_grad_size = m->pe_grad_size,
        .dropout = active_dropout(m),
        .dropout_key = site_key(m, l, SITE_ATTENTION),
        .dropout_first_bh = (size_t)m->batch_row0 * c->n_head,
        .work = m->att_work,
        .work_per_thread = m->att_work_per_thread,
        .n_threads = m->n_threads,
    };
}

// The attention module's view of layer l at the current (B, T).
static ModuleLayer module_layer(const GPT *m, int l, const AttentionSetup *setup) {
    return (ModuleLayer){.config = &m->config, .layer = l, .B = m->B, .T = m->T,
                         .params = m->params.layer[l].module, .grads = m->grads.layer[l].module,
                         .acts = m->acts.layer[l].module, .att = m->acts.layer[l].att,
                         .scratch = m->scratch.module, .setup = setup};
}

// attproj = drop(attention(inp Wqkv^T + bqkv) Wo^T + bo)
static void attention_block_forward(GPT *m, int l, const float *inp) {
    const GPTConfig *c = &m->config;
    const LayerParams *p = &m->params.layer[l];
    LayerActs *a = &m->acts.layer[l];
    int B = m->B, T = m->T, C = c->n_embd, N = B * T;
    matmul_forward(a->qkv, inp, p->qkvw, p->qkvb, N, C, 3 * C);
    AttentionSetup setup = attention_setup(m, l);
    if (m->module) {
        ModuleLayer ml = module_layer(m, l, &setup);
        m->module->forward(a->atty, a->qkv, &ml, m->module_sums);
    } else {
        if (m->qk_override.forward && m->qk_override.applies(m, l))
            m->qk_override.forward(m, l, a->qkv);
        else if (c->pe->qk_forward)
            c->pe->qk_forward(a->qkv, c, B, T);
        attention_forward(a->atty, a->att, a->pe, a->qkv, B, T, C, c->n_head, &setup);
    }
    matmul_forward(a->attproj, a->atty, p->attprojw, p->attprojb, N, C, C);
    drop(m, a->attproj, (size_t)T * C, active_dropout(m), site_key(m, l, SITE_ATTENTION_OUT));
}

// dinp += d(attention block)/d(inp) given dout = d(attproj) (dout is consumed). need_dinp 0:
// nothing below the block trains, so what only leads there (dinp, and with MoICE the attention
// itself when the qkv weights are frozen) is skipped. aux_grad: the module's, see gpt_backward.
static void attention_block_backward(GPT *m, int l, float *dout, float *dinp, const float *inp,
                                     int need_dinp, const float *aux_grad) {
    const GPTConfig *c = &m->config;
    const LayerParams *p = &m->params.layer[l];
    const LayerParams *g = &m->grads.layer[l];
    const LayerActs *a = &m->acts.layer[l];
    GradScratch *s = &m->scratch;
    int B = m->B, T = m->T, C = c->n_embd, N = B * T;
    drop(m, dout, (size_t)T * C, active_dropout(m), site_key(m, l, SITE_ATTENTION_OUT));
    memset(s->datty, 0, (size_t)N * C * sizeof(float));
    matmul_backward(s->datty, g->attprojw, g->attprojb, dout, a->atty, p->attprojw, N, C, C);
    AttentionSetup setup = attention_setup(m, l);
    int need_dqkv = need_dinp || g->qkvw || g->qkvb;
    if (m->module) {
        ModuleLayer ml = module_layer(m, l, &setup);
        m->module->backward(s->dqkv, s->datty, a->qkv, &ml, aux_grad, need_dqkv);
    } else {
        attention_backward(s->dqkv, s->datty, a->att, a->pe, a->qkv, B, T, C, c->n_head, &setup);
        if (c->pe->qk_backward) c->pe->qk_backward(s->dqkv, c, B, T);
    }
    if (need_dqkv)
        matmul_backward(need_dinp ? dinp : NULL, g->qkvw, g->qkvb, s->dqkv, inp, p->qkvw, N, C, 3 * C);
}

// fcproj = drop(drop_ffn(act(inp Wfc^T + bfc)) Wproj^T + bproj)
static void mlp_block_forward(GPT *m, int l, const float *inp) {
    const GPTConfig *c = &m->config;
    const LayerParams *p = &m->params.layer[l];
    LayerActs *a = &m->acts.layer[l];
    int C = c->n_embd, F = c->ffn_dim, N = m->B * m->T;
    matmul_forward(a->fch, inp, p->fcw, p->fcb, N, C, F);
    activation_forward(a->fch_act, a->fch, (size_t)N * F, c->act);
    // fch_act keeps the dropped values: they are what the projection's weight gradient needs
    drop(m, a->fch_act, (size_t)m->T * F, active_ffn_dropout(m), site_key(m, l, SITE_MLP_HIDDEN));
    matmul_forward(a->fcproj, a->fch_act, p->fcprojw, p->fcprojb, N, F, C);
    drop(m, a->fcproj, (size_t)m->T * C, active_dropout(m), site_key(m, l, SITE_MLP_OUT));
}

// dinp += d(mlp block)/d(inp) given dout = d(fcproj) (dout is consumed)
static void mlp_block_backward(GPT *m, int l, float *dout, float *dinp, const float *inp) {
    const GPTConfig *c = &m->config;
    const LayerParams *p = &m->params.layer[l];
    const LayerParams *g = &m->grads.layer[l];
    const LayerActs *a = &m->acts.layer[l];
    float *dfch = m->scratch.dfch;
    int C = c->n_embd, F = c->ffn_dim, N = m->B * m->T;
    drop(m, dout, (size_t)m->T * C, active_dropout(m), site_key(m, l, SITE_MLP_OUT));
    memset(dfch, 0, (size_t)N * F * sizeof(float));
    matmul_backward(dfch, g->fcprojw, g->fcprojb, dout, a->fch_act, p->fcprojw, N, F, C);
    drop(m, dfch, (size_t)m->T * F, active_ffn_dropout(m), site_key(m, l, SITE_MLP_HIDDEN));
    activation_backward(dfch, dfch, a->fch, (size_t)N * F, c->act);
    matmul_backward(dinp, g->fcw, g->fcb, dfch, inp, p->fcw, N, C, F);
}

// mean_loss, aux_loss and objective from the sums of the batch's forward.
static void set_losses(GPT *m) {
    m->mean_loss = m->n_scored ? (float)(m->loss_sum / m->n_scored) : 0.0f;
    double aux = 0.0, weighted = 0.0;
    if (m->module && m->module->objective)
        aux = m->module->objective(&m->config, m->module_sums, &weighted);
    m->aux_loss = (float)aux;
    m->objective = (float)((m->n_scored ? m->loss_sum / m->n_scored : 0.0) + weighted);
}

static void residual_forward(float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

// The forward over the rows m holds (its B, T, inputs, targets and activations are set).
static void forward_rows(GPT *m) {
    const GPTConfig *c = &m->config;
    const ParameterTensors *p = &m->params;
    ActivationTensors *a = &m->acts;
    int B = m->B, T = m->T, C = c->n_embd, V = c->vocab_size, N = B * T;
    embedding_forward(a->encoded, m->inputs, p->wte, N, C);
    if (c->pe->embed_forward) c->pe->embed_forward(a->encoded, p->pe_shared, c, B, T);
    drop(m, a->encoded, (size_t)T * C, active_dropout(m), site_key(m, -1, SITE_EMBEDDING));

    for (int l = 0; l < c->n_layer; l++) {
        const LayerParams *lp = &p->layer[l];
        LayerActs *la = &a->layer[l];
        const float *x = layer_input(m, l);
        if (c->norm == NORM_PRE) {
            layernorm_forward(la->ln1, la->ln1_mean, la->ln1_rstd, x, lp->ln1w, lp->ln1b, N, C);
            attention_block_forward(m, l, la->ln1);
            residual_forward(la->res2, x, la->attproj, (size_t)N * C);
            layernorm_forward(la->ln2, la->ln2_mean, la->ln2_rstd, la->res2, lp->ln2w, lp->ln2b, N, C);
            mlp_block_forward(m, l, la->ln2);
            residual_forward(la->res3, la->res2, la->fcproj, (size_t)N * C);
        } else {
            attention_block_forward(m, l, x);
            residual_forward(la->res2, x, la->attproj, (size_t)N * C);
            layernorm_forward(la->ln1, la->ln1_mean, la->ln1_rstd, la->res2, lp->ln1w, lp->ln1b, N, C);
            mlp_block_forward(m, l, la->ln1);
            residual_forward(la->res3, la->ln1, la->fcproj, (size_t)N * C);
            layernorm_forward(la->ln2, la->ln2_mean, la->ln2_rstd, la->res3, lp->ln2w, lp->ln2b, N, C);
        }
    }
    const float *head_in = layer_output(m, c->n_layer - 1);
    if (c->norm == NORM_PRE) {
        layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, head_in, p->lnfw, p->lnfb, N, C);
        head_in = a->lnf;
    }
    matmul_forward(a->logits, head_in, p->wte, NULL, N, C, V);
    m->n_scored = crossentropy_forward(a->losses, a->probs, a->logits, m->targets, N, V);
    double sum = 0.0;
    for (int n = 0; n < N; n++) sum += a->losses[n];
    m->loss_sum = sum;
}

// Whether a forward of B sequences runs as a team of replicas (GPT.replicas): two rows at least.
static int team_forward(const GPT *m, int B) { return m->replicas && B >= 2; }

// Sets replica k of a team of n up for its shard of the batch m is forwarding: m's fields as
// they are (config, trainable set, dropout, batch_row0...), then its rows, its slices of the
// activations and scratch, its thread's attention work areas and its own gradient buffer.
static void replica_setup(GPT *m, int k, int n) {
    GPT *r = &m->replicas[k];
    int lo = m->B * k / n, hi = m->B * (k + 1) / n, T = m->T;
    memcpy(r, m, sizeof *r);
    r->replicas = NULL;
    r->replica_grads = NULL;
    r->team_size = 0;
    r->n_threads = 1;
    r->B = hi - lo;
    r->inputs = m->inputs + (size_t)lo * T;
    r->targets = m->targets + (size_t)lo * T;
    r->batch_row0 = m->batch_row0 + lo;
    r->shard_row0 = lo;
    layout_activations(&r->acts, m->acts_memory, &m->config, m->B, T, lo);
    layout_scratch(&r->scratch, m->scratch_memory, &m->config, m->B, T, lo);
    r->att_work = m->att_work + (size_t)k * m->att_work_per_thread;
    r->pe_grad_work = m->pe_grad_work + (size_t)k * m->pe_grad_size;
    if (k > 0) r->grads_memory = m->replica_grads + (size_t)(k - 1) * m->num_parameters;
    bind_pointers(r);
}

float gpt_forward(GPT *m, const int32_t *inputs, const int32_t *targets, int B, int T,
                  int training, uint64_t dropout_key) {
    m->B = B;
    m->T = T;
    m->inputs = inputs;
    m->targets = targets;
    m->training = training;
    m->dropout_key = dropout_key;
    // Lay the activations out for this (B, T) so every tensor is contiguous at its real size.
    layout_activations(&m->acts, m->acts_memory, &m->config, B, T, 0);
    memset(m->module_sums, 0, sizeof m->module_sums);
    m->team_size = 0;
    if (!team_forward(m, B)) {
        forward_rows(m);
    } else {
        // The team's size as OpenMP grants it, written once the replicas have copied m.
        int team = 0;
#pragma omp parallel num_threads(B < m->n_threads ? B : m->n_threads)
        {
            int k = omp_get_thread_num(), n = omp_get_num_threads();
            replica_setup(m, k, n);
            forward_rows(&m->replicas[k]);
            if (k == 0) team = n;
        }
        m->team_size = team;
        // the shards' sums added up in shard order
        m->n_scored = 0;
        m->loss_sum = 0.0;
        for (int k = 0; k < m->team_size; k++) {
            m->n_scored += m->replicas[k].n_scored;
            m->loss_sum += m->replicas[k].loss_sum;
        }
    }
    set_losses(m);
    return m->mean_loss;
}

void gpt_forward_sums(const GPT *m, double *sums) {
    memset(sums, 0, GPT_SUMS * sizeof(double));
    sums[GPT_SUM_SCORED] = m->n_scored;
    sums[GPT_SUM_LOSS] = m->loss_sum;
    memcpy(sums + GPT_SUM_MODULE, m->module_sums, sizeof m->module_sums);
}

void gpt_set_batch_sums(GPT *m, const double *sums) {
    m->n_scored = (int)sums[GPT_SUM_SCORED];
    m->loss_sum = sums[GPT_SUM_LOSS];
    memcpy(m->module_sums, sums + GPT_SUM_MODULE, sizeof m->module_sums);
    set_losses(m);
}

void gpt_zero_grad(GPT *m) { memset(m->grads_memory, 0, m->num_parameters * sizeof(float)); }

// The backward over the rows m holds, accumulating into the gradients m points at.
static void backward_rows(GPT *m) {
    const GPTConfig *c = &m->config;
    const ParameterTensors *p = &m->params;
    const ParameterTensors *g = &m->grads;
    const ActivationTensors *a = &m->acts;
    GradScratch *s = &m->scratch;
    int C = c->n_embd, V = c->vocab_size, N = m->B * m->T;
    size_t NC = (size_t)N * C;
    float aux_grad[MODULE_MAX_SUMS] = {0};
    int aux_on = m->module && m->module->objective_grad &&
                 m->module->objective_grad(c, m->module_sums, aux_grad);
    // nothing scored and no module term: the objective does not depend on anything
    if (m->n_scored == 0 && !aux_on) return;

    crossentropy_backward(s->dlogits, a->probs, m->targets, N, V,
                          m->n_scored ? 1.0f / m->n_scored : 0.0f);
    const float *last = layer_output(m, c->n_layer - 1);
    memset(s->dres, 0, NC * sizeof(float));
    if (c->norm == NORM_PRE) {
        memset(s->dnorm, 0, NC * sizeof(float));
        matmul_backward(s->dnorm, g->wte, NULL, s->dlogits, a->lnf, p->wte, N, C, V);
        layernorm_backward(s->dres, g->lnfw, g->lnfb, s->dnorm, last, p->lnfw, a->lnf_mean,
                           a->lnf_rstd, N, C);
    } else {
        matmul_backward(s->dres, g->wte, NULL, s->dlogits, last, p->wte, N, C, V);
    }

    // Below grad_floor nothing trains: the pass ends inside that layer, once its own trainable
    // tensors have their gradients.
    int floor = m->grad_floor > 0 ? m->grad_floor : 0;
    for (int l = c->n_layer - 1; l >= floor; l--) {
        const LayerParams *lp = &p->layer[l], *lg = &g->layer[l];
        const LayerActs *la = &a->layer[l];
        const float *x = layer_input(m, l);
        int need_dx = l > m->grad_floor;  // d(x), the gradient w.r.t. the layer's input
        if (c->norm == NORM_PRE) {
            // res3 = res2 + mlp(ln2(res2)): dres is d(res3) on entry, d(res2) after
            memcpy(s->dbranch, s->dres, NC * sizeof(float));
            memset(s->dnorm, 0, NC * sizeof(float));
            mlp_block_backward(m, l, s->dbranch, s->dnorm, la->ln2);
            layernorm_backward(s->dres, lg->ln2w, lg->ln2b, s->dnorm, la->res2, lp->ln2w,
                               la->ln2_mean, la->ln2_rstd, N, C);
            // res2 = x + attn(ln1(x)): dres becomes d(x)
            memcpy(s->dbranch, s->dres, NC * sizeof(float));
            memset(s->dnorm, 0, NC * sizeof(float));
            int need_dln1 = need_dx || lg->ln1w || lg->ln1b;
            attention_block_backward(m, l, s->dbranch, s->dnorm, la->ln1, need_dln1, aux_grad);
            if (need_dln1)
                layernorm_backward(s->dres, lg->ln1w, lg->ln1b, s->dnorm, x, lp->ln1w,
                                   la->ln1_mean, la->ln1_rstd, N, C);
        } else {
            // out = ln2(res3), res3 = ln1 + mlp(ln1): dres is d(out) on entry, d(ln1) after
            memset(s->dbranch, 0, NC * sizeof(float));
            layernorm_backward(s->dbranch, lg->ln2w, lg->ln2b, s->dres, la->res3, lp->ln2w,
                               la->ln2_mean, la->ln2_rstd, N, C);
            memcpy(s->dres, s->dbranch, NC * sizeof(float));
            mlp_block_backward(m, l, s->dbranch, s->dres, la->ln1);
            // ln1 = ln(res2), res2 = x + attn(x): dres becomes d(x)
            memset(s->dbranch, 0, NC * sizeof(float));
            layernorm_backward(s->dbranch, lg->ln1w, lg->ln1b, s->dres, la->res2, lp->ln1w,
                               la->ln1_mean, la->ln1_rstd, N, C);
            memcpy(s->dres, s->dbranch, NC * sizeof(float));
            attention_block_backward(m, l, s->dbranch, s->dres, x, need_dx, aux_grad);
        }
    }
    if (m->grad_floor >= 0) return;
    drop(m, s->dres, (size_t)m->T * C, active_dropout(m), site_key(m, -1, SITE_EMBEDDING));
    if (c->pe->embed_backward && g->pe_shared) c->pe->embed_backward(g->pe_shared, s->dres, c, m->B, m->T);
    if (g->wte) embedding_backward(g->wte, s->dres, m->inputs, N, C);
}

void gpt_backward(GPT *m) {
    if (m->qk_override.forward) {
        // A caller's bug, not a user's: the override has no backward (Ms-PoE, model/mspoe.h).
        fprintf(stderr, "gpt_backward: the qk override is evaluation-only; release it before training\n");
        abort();
    }
    if (!m->team_size) {
        backward_rows(m);
        return;
    }
    size_t P = m->num_parameters;
#pragma omp parallel num_threads(m->team_size)
    {
        int k = omp_get_thread_num();
        GPT *r = &m->replicas[k];
        // The whole batch's sums (gpt_set_batch_sums may have changed them since the forward):
        // each shard's gradient is its share of the batch's.
        r->n_scored = m->n_scored;
        r->loss_sum = m->loss_sum;
        memcpy(r->module_sums, m->module_sums, sizeof m->module_sums);
        set_losses(r);
        if (k > 0) memset(r->grads_memory, 0, P * sizeof(float));
        backward_rows(r);
#pragma omp barrier
        // Replica 0 accumulated into grads_memory; the others' gradients are added in replica
        // order, each thread summing its share of the parameters.
#pragma omp for schedule(static)
        for (size_t i = 0; i < P; i++)
            for (int o = 1; o < m->team_size; o++) m->grads_memory[i] += m->replica_grads[(o - 1) * P + i];
    }
}

double gpt_flops_per_step(const GPTConfig *c, int B, int T) {
    double N = (double)B * T, C = c->n_embd, F = c->ffn_dim, V = c->vocab_size;
    double d = (double)C / c->n_head;
    // forward: 2 flops per multiply-add; attention counts the causal half (with the diagonal)
    double matmuls = 2.0 * N * (3 * C * C + C * C + 2 * C * F) * c->n_layer + 2.0 * N * C * V;
    double attention = 2.0 * 2.0 * B * c->n_head * (T * (T + 1.0) / 2.0) * d * c->n_layer;
    const AttentionModule *mod = module_of(c);
    double module = mod && mod->flops ? mod->flops(c, B, T, attention) : 0.0;
    double pe = mod || !c->pe->score_flops ? 0.0 : (double)B * c->n_head * c->n_layer * c->pe->score_flops(c, T);
    // backward: two products per forward product (input and weight gradients)
    return 3.0 * (matmuls + attention) + module + pe;
}

void gpt_effective_attention(const GPT *m, int l, float *dst) {
    if (m->module && m->module->effective_attention) {
        AttentionSetup setup = attention_setup(m, l);
        ModuleLayer ml = module_layer(m, l, &setup);
        m->module->effective_attention(dst, &ml);
        return;
    }
    // the attention kernel leaves the entries above the diagonal as work space
    int T = m->T;
    const float *src = m->acts.layer[l].att;
    for (size_t mat = 0; mat < (size_t)m->B * m->config.n_head; mat++)
        for (int i = 0; i < T; i++) {
            const float *s = src + (mat * T + i) * T;
            float *d = dst + (mat * T + i) * T;
            memcpy(d, s, (size_t)(i + 1) * sizeof(float));
            memset(d + i + 1, 0, (size_t)(T - i - 1) * sizeof(float));
        }
}
