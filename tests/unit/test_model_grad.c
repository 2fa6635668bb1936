// Finite-difference check of the whole model's backward: every tensor of small GPTs for each
// positional encoding and norm placement, with and without dropout. The MLP uses gelu here:
// with hundreds of relu units some always sit within a step of their kink, where differences
// mean nothing; relu's derivative has its own layer check, and relu models are compared
// exactly against PyTorch autograd (tests/reference/test_crosscheck.py).
//
// MoICE models are checked on their objective (cross-entropy + aux_weight * load-balancing
// loss) with K = N. A top-K choice with K < N is a step function of the weights: across a
// model's hundreds of routings some always sit within a difference step of a tie, where the
// difference measures the jump rather than the gradient. The top-K renormalisation and the
// loss's gradient are checked on the router alone (tests/unit/test_moice.c), where the routings are
// kept clear of ties, and the whole K < N model against PyTorch autograd.
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "../../model/gpt.h"
#include "gradcheck.h"

typedef struct {
    char pe[16];  // inline: Criterion copies parameters into the test's process
    NormPlacement norm;
    Activation act;
    float dropout;
    int npos;  // rel_npos / cope_npos; small values exercise the clamped positions
    float ffn_dropout;
} ModelCase;

typedef struct {
    ModelCase model;
    int n_bases;
    float aux_weight;
} MoICECase;

typedef struct {
    GPT *model;
    int32_t *inputs, *targets;
    int B, T;
} LossCtx;

// The objective in double: cross-entropy, plus MoICE's aux_weight * N sum_n f_n P_n.
static double model_loss(void *p) {
    LossCtx *c = p;
    GPT *m = c->model;
    // training = 1 with a fixed key: dropout masks are the same on every call
    gpt_forward(m, c->inputs, c->targets, c->B, c->T, 1, 1234);
    double s = 0;
    for (int n = 0; n < c->B * c->T; n++) s += m->acts.losses[n];
    // the module's sums (model/moice.c): routings R, then per base picks, then probability sums
    const MoICEOptions *o = &m->config.moice;
    const double *sums = m->module_sums, R = sums[0];
    double loss = s / m->n_scored, aux = 0.0;
    for (int n = 0; n < o->n_bases; n++) aux += sums[1 + n] / R * sums[1 + o->n_bases + n] / R;
    return loss + o->aux_weight * o->n_bases * aux;
}

static void check_model(const ModelCase *mc, const MoICECase *moice) {
    GPTConfig cfg = {.vocab_size = 7, .seq_len = 12, .n_layer = 2, .n_embd = 16, .n_head = 2,
                     .ffn_dim = 24, .dropout = mc->dropout, .ffn_dropout = mc->ffn_dropout,
                     .norm = mc->norm, .act = mc->act,
                     .pe = pe_find(mc->pe),
                     .pe_opt = {.rope_base = 10000.0f, .rel_npos = mc->npos, .cope_npos = mc->npos},
                     .init_std = GPT2_INIT_STD, .emb_std = GPT2_INIT_STD,
                     // bases far apart so that the experts differ within 11 positions
                     .moice = {.n_bases = moice ? moice->n_bases : 0,
                               .top_k = moice ? moice->n_bases : 0,
                               .aux_weight = moice ? moice->aux_weight : 0.0f}};
    const float bases[] = {10000.0f, 3.0f, 10.0f, 100.0f};
    for (int n = 0; n < cfg.moice.n_bases; n++) cfg.moice.bases[n] = bases[n];
    cr_assert_not_null(cfg.pe, "unknown pe %s", mc->pe);
    GPT model;
    char err[256];
    cr_assert_eq(gpt_build(&model, &cfg, 3, err, sizeof err), 0, "%s", err);
    gpt_init(&model, 5);
    // Larger weights than the 0.02 init so every gradient is well above float32 noise.
    Rng rng;
    rng_seed(&rng, 6);
    for (size_t i = 0; i < model.num_parameters; i++) model.params_memory[i] += 0.3f * rng_normal(&rng);
    LossCtx ctx = {.model = &model, .B = 3, .T = 11};  // T below seq_len: batches may be shorter
    ctx.inputs = malloc(sizeof(int32_t) * ctx.B * ctx.T);
    ctx.targets = malloc(sizeof(int32_t) * ctx.B * ctx.T);
    for (int i = 0; i < ctx.B * ctx.T; i++) {
        ctx.inputs[i] = (int32_t)rng_below(&rng, cfg.vocab_size);
        ctx.targets[i] = i % 4 == 1 ? -1 : (int32_t)rng_below(&rng, cfg.vocab_size);
    }
    model_loss(&ctx);
    gpt_zero_grad(&model);
    gpt_backward(&model);
    float *grads = malloc(model.num_parameters * sizeof(float));
    memcpy(grads, model.grads_memory, model.num_parameters * sizeof(float));
    for (int t = 0; t < model.n_tensors; t++) {
        const TensorInfo *ti = &model.tensors[t];
        // The float32 noise of the loss (~1e-6) / 2h stays near 1e-3 of gradients of order
        // 0.1..1, so 1e-2 relative separates a right backward from a wrong one by an order
        // of magnitude. Some tensors' gradients are 10 to 100 times smaller: MoICE routers
        // (the experts' outputs differ little over 11 positions) and CoPE's position tables
        // (each entry moves only the few scores whose position interpolates it). For them the
        // noise would be 1e-2 of the gradient (measured: 1.1e-2 with AVX-512 sgemm kernels),
        // so their step is 1e-2 (measured: errors below 3e-3).
        float max_grad = 0.0f;
        for (size_t i = 0; i < ti->size; i++) max_grad = fmaxf(max_grad, fabsf(grads[ti->offset + i]));
        double err_rel = gradcheck(model_loss, &ctx, model.params_memory + ti->offset,
                                   grads + ti->offset, ti->size, 12, max_grad < 0.05f ? 1e-2f : 1e-3f,
                                   100 + t);
        cr_expect_lt(err_rel, 1e-2, "%s pe=%s norm=%d act=%d dropout=%.1f/%.1f moice %d: rel err %.2e",
                     ti->name, mc->pe, mc->norm, mc->act, mc->dropout, mc->ffn_dropout,
                     cfg.moice.n_bases, err_rel);
    }
    free(grads), free(ctx.inputs), free(ctx.targets);
    gpt_free(&model);
}

// Every encoding of the registry (model/pe_table.c), so that a new one is checked without a
// line here: pre-norm without dropout, and post-norm with dropout and tables of 5 rows (rel,
// cope: distances and positions clamp). Then the variants that need their own case.
static const ModelCase extra_cases[] = {
    {"none", NORM_POST, ACT_GELU, 0.0f, 0, 0.0f}, {"abs", NORM_POST, ACT_GELU, 0.0f, 0, 0.0f},
    {"abs", NORM_PRE, ACT_GELU, 0.2f, 0, 0.0f},   {"alibi", NORM_POST, ACT_GELU, 0.0f, 0, 0.0f},
    {"cope", NORM_PRE, ACT_GELU, 0.0f, 3, 0.0f},
    // dropout after the MLP activation (--ffn-dropout), alone and with the other dropouts
    {"abs", NORM_POST, ACT_GELU, 0.1f, 0, 0.3f}, {"rope", NORM_PRE, ACT_GELU, 0.0f, 0, 0.3f},
};
#define N_EXTRA (int)(sizeof extra_cases / sizeof extra_cases[0])
#define MAX_PES 32

ParameterizedTestParameters(model, whole_model_backward_matches_finite_differences) {
    static ModelCase cases[2 * MAX_PES + N_EXTRA];
    int n = 0;
    if (pe_count() > MAX_PES) {
        fprintf(stderr, "test_model_grad.c: %d encodings, raise MAX_PES\n", pe_count());
        abort();
    }
    for (int i = 0; i < pe_count(); i++) {
        ModelCase pre = {.norm = NORM_PRE, .act = ACT_GELU};
        ModelCase post = {.norm = NORM_POST, .act = ACT_GELU, .dropout = 0.2f, .npos = 5};
        snprintf(pre.pe, sizeof pre.pe, "%s", pe_at(i)->name);
        snprintf(post.pe, sizeof post.pe, "%s", pe_at(i)->name);
        cases[n++] = pre, cases[n++] = post;
    }
    for (int i = 0; i < N_EXTRA; i++) cases[n++] = extra_cases[i];
    return cr_make_param_array(ModelCase, cases, n);
}

ParameterizedTest(ModelCase *mc, model, whole_model_backward_matches_finite_differences) {
    check_model(mc, NULL);
}

ParameterizedTestParameters(model, moice_backward_matches_finite_differences) {
    // all N bases kept (K = N), pre-norm, and post-norm with dropout (one mask per base)
    static MoICECase cases[] = {
        {{"rope", NORM_PRE, ACT_GELU, 0.0f, 0, 0.0f}, 4, 0.2f},
        {{"rope", NORM_POST, ACT_GELU, 0.2f, 0, 0.0f}, 3, 0.3f},
    };
    return cr_make_param_array(MoICECase, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(MoICECase *mc, model, moice_backward_matches_finite_differences) {
    check_model(&mc->model, mc);
}

Test(model, same_inputs_same_bits) {
    GPTConfig cfg = {.vocab_size = 5, .seq_len = 70, .n_layer = 2, .n_embd = 16, .n_head = 4,
                     .ffn_dim = 64, .dropout = 0.1f, .pe = pe_find("abs"),
                     .init_std = GPT2_INIT_STD, .emb_std = GPT2_INIT_STD};
    GPT a, b;
    build_twins(&cfg, 2, 9, &a, &b);
    int32_t in[140], tg[140];
    for (int i = 0; i < 140; i++) in[i] = i % 5, tg[i] = (i * 3) % 5;
    gpt_forward(&a, in, tg, 2, 70, 1, 3);
    gpt_zero_grad(&a), gpt_backward(&a);
    gpt_forward(&b, in, tg, 2, 70, 1, 3);
    gpt_zero_grad(&b), gpt_backward(&b);
    cr_assert_eq(memcmp(a.grads_memory, b.grads_memory, a.num_parameters * sizeof(float)), 0);
    cr_assert_eq(a.mean_loss, b.mean_loss);
    gpt_free(&a), gpt_free(&b);
}

// --init-std and --emb-std: the sample standard deviation of each initialised tensor is the
// one asked for (matrices; residual projections divided by sqrt(2L); wte and abs's wpe), within
// 5% (thousands of draws each), and biases stay zero.
Test(model, init_scales_as_configured) {
    const float init_std = 0.1f, emb_std = 0.5f;
    GPTConfig cfg = {.vocab_size = 50, .seq_len = 40, .n_layer = 2, .n_embd = 32, .n_head = 4,
                     .ffn_dim = 128, .pe = pe_find("abs"), .init_std = init_std,
                     .emb_std = emb_std};
    GPT m;
    char err[256];
    cr_assert_eq(gpt_build(&m, &cfg, 1, err, sizeof err), 0, "%s", err);
    gpt_init(&m, 3);
    const struct {
        const char *name;
        float std;
    } expect[] = {{"wte.weight", emb_std},
                  {"wpe.weight", emb_std},
                  {"blocks.0.attn.qkv.weight", init_std},
                  {"blocks.1.mlp.fc.weight", init_std},
                  {"blocks.0.attn.proj.weight", init_std / 2.0f},  // sqrt(2L) = 2
                  {"blocks.1.mlp.proj.weight", init_std / 2.0f},
                  {"blocks.0.attn.qkv.bias", 0.0f}};
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
        const TensorInfo *t = gpt_tensor(&m, expect[i].name);
        cr_assert_not_null(t, "no tensor %s", expect[i].name);
        const float *p = m.params_memory + t->offset;
        double sum2 = 0.0;
        for (size_t k = 0; k < t->size; k++) sum2 += (double)p[k] * p[k];
        double std = sqrt(sum2 / (double)t->size);
        cr_expect(fabs(std - expect[i].std) <= 0.05 * expect[i].std, "%s: std %.4f, expected %.4f",
                  expect[i].name, std, expect[i].std);
    }
    gpt_free(&m);
    cfg.init_std = 0.0f;
    cr_expect(strstr(gpt_config_check(&cfg), "--init-std and --emb-std must be positive") != NULL);
}

// --init-scheme torch: every Linear weight and bias is uniform within 1/sqrt(fan_in) (the
// bound reached within 1%, and the standard deviation bound/sqrt(3) within 5%), the residual
// projections' weights divided by sqrt(2L) in pre-norm only, embeddings still N(0, emb_std).
static void check_torch_init(NormPlacement norm) {
    GPTConfig cfg = {.vocab_size = 50, .seq_len = 40, .n_layer = 2, .n_embd = 32, .n_head = 4,
                     .ffn_dim = 128, .norm = norm, .pe = pe_find("abs"), .init = INIT_TORCH,
                     .init_std = GPT2_INIT_STD, .emb_std = 0.25f};
    GPT m;
    char err[256];
    cr_assert_eq(gpt_build(&m, &cfg, 1, err, sizeof err), 0, "%s", err);
    gpt_init(&m, 3);
    float c = 1.0f / sqrtf(32.0f), f = 1.0f / sqrtf(128.0f), depth = norm == NORM_PRE ? 2.0f : 1.0f;
    const struct {
        const char *name;
        float bound;  // 0: normal with std 0.25
    } expect[] = {{"wte.weight", 0}, {"wpe.weight", 0},
                  {"blocks.0.attn.qkv.weight", c}, {"blocks.0.attn.qkv.bias", c},
                  {"blocks.1.attn.proj.weight", c / depth}, {"blocks.1.attn.proj.bias", c},
                  {"blocks.0.mlp.fc.weight", c}, {"blocks.1.mlp.fc.bias", c},
                  {"blocks.0.mlp.proj.weight", f / depth}, {"blocks.0.mlp.proj.bias", f}};
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
        const TensorInfo *t = gpt_tensor(&m, expect[i].name);
        cr_assert_not_null(t, "no tensor %s", expect[i].name);
        const float *p = m.params_memory + t->offset;
        double sum2 = 0.0, top = 0.0;
        for (size_t k = 0; k < t->size; k++) sum2 += (double)p[k] * p[k], top = fmax(top, fabs(p[k]));
        double std = sqrt(sum2 / (double)t->size);
        double want = expect[i].bound ? expect[i].bound / sqrt(3.0) : 0.25;
        // biases have only 32..128 entries: their spread is checked by the bound alone
        if (t->size >= 1000)
            cr_expect(fabs(std - want) <= 0.05 * want, "%s: std %.4f, expected %.4f", expect[i].name,
                      std, want);
        if (expect[i].bound)
            cr_expect(top <= expect[i].bound && (t->size < 1000 || top >= 0.99 * expect[i].bound),
                      "%s: largest |w| %.4f, bound %.4f", expect[i].name, top, expect[i].bound);
    }
    gpt_free(&m);
}

Test(model, torch_init_is_pytorch_linear_default_scaled_in_pre_norm_only) {
    check_torch_init(NORM_PRE);
    check_torch_init(NORM_POST);
}

// --ffn-dropout drops the MLP's hidden activations in training only: with p = 0.5 about half
// of them are zero (gelu gives no exact zeros), none in evaluation.
Test(model, ffn_dropout_drops_hidden_activations_in_training_only) {
    GPTConfig cfg = {.vocab_size = 11, .seq_len = 32, .n_layer = 1, .n_embd = 16, .n_head = 2,
                     .ffn_dim = 64, .ffn_dropout = 0.5f, .pe = pe_find("rope"),
                     .pe_opt = {.rope_base = 10000.0f}, .init_std = 0.3f, .emb_std = 1.0f};
    GPT m;
    char err[256];
    cr_assert_eq(gpt_build(&m, &cfg, 4, err, sizeof err), 0, "%s", err);
    gpt_init(&m, 1);
    int32_t in[128], tg[128];
    for (int i = 0; i < 128; i++) in[i] = (i * 7) % 11, tg[i] = (i * 5) % 11;
    size_t n = (size_t)128 * 64;
    for (int training = 0; training <= 1; training++) {
        gpt_forward(&m, in, tg, 4, 32, training, 99);
        size_t zeros = 0;
        for (size_t i = 0; i < n; i++) zeros += m.acts.layer[0].fch_act[i] == 0.0f;
        double share = (double)zeros / (double)n;
        if (training)
            cr_expect(fabs(share - 0.5) < 0.03, "%.3f of the hidden units dropped, not 0.5", share);
        else
            cr_expect_eq(zeros, 0, "evaluation dropped %zu hidden units", zeros);
    }
    gpt_free(&m);
}

Test(model, config_check_names_the_problem) {
    GPTConfig cfg = {.vocab_size = 5, .seq_len = 8, .n_layer = 1, .n_embd = 10, .n_head = 3,
                     .ffn_dim = 8, .pe = pe_find("none"), .init_std = GPT2_INIT_STD,
                     .emb_std = GPT2_INIT_STD};
    const char *msg = gpt_config_check(&cfg);
    cr_assert_not_null(msg);
    cr_expect(strstr(msg, "--heads 3 does not divide --dim 10") != NULL, "%s", msg);
}

// The team of threads (GPT.replicas): with 2 threads a batch of 3 is cut into shards of 1 and 2
// rows; the loss, the whole batch's logits (read from the model, as evaluators do) and every
// gradient must be those of one thread up to float32 rounding (the products sum in another
// order), with dropout on (each shard draws its rows' masks) for every registered encoding.
// A batch of 1 runs without a team; a MoICE model has none (its activations are not laid out
// by rows).
static double max_rel_diff(const float *a, const float *b, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)a[i] - b[i]));
        den = fmax(den, fabs((double)a[i]));
    }
    return den > 0.0 ? num / den : num;
}

Test(model, a_team_of_threads_computes_what_one_thread_does) {
    for (int i = 0; i < pe_count(); i++) {
        GPTConfig cfg = {.vocab_size = 7, .seq_len = 12, .n_layer = 2, .n_embd = 16, .n_head = 2,
                         .ffn_dim = 24, .dropout = 0.1f, .ffn_dropout = 0.1f, .pe = pe_at(i),
                         .pe_opt = pe_defaults(), .init_std = 0.2f, .emb_std = 0.5f};
        GPT one, team;
        char err[256];
        omp_set_num_threads(1);
        cr_assert_eq(gpt_build(&one, &cfg, 3, err, sizeof err), 0, "%s", err);
        omp_set_num_threads(2);
        cr_assert_eq(gpt_build(&team, &cfg, 3, err, sizeof err), 0, "%s", err);
        gpt_init(&one, 4), gpt_init(&team, 4);
        int32_t in[33], tg[33];
        for (int k = 0; k < 33; k++) in[k] = (k * 5 + 1) % 7, tg[k] = k % 4 == 1 ? -1 : (k * 3) % 7;
        for (int B = 3; B >= 1; B -= 2) {
            float l1 = gpt_forward(&one, in, tg, B, 11, 1, 17), l2 = gpt_forward(&team, in, tg, B, 11, 1, 17);
            cr_assert_eq(team.team_size, B == 3 ? 2 : 0, "%s B=%d: team of %d", pe_at(i)->name, B, team.team_size);
            cr_expect_lt(fabs(l1 - l2), 1e-6 * fabs(l1), "%s B=%d: loss %g vs %g", pe_at(i)->name, B, l1, l2);
            double logits = max_rel_diff(one.acts.logits, team.acts.logits, (size_t)B * 11 * 7);
            cr_expect_lt(logits, 1e-5, "%s B=%d: logits differ by %.2e", pe_at(i)->name, B, logits);
            gpt_zero_grad(&one), gpt_zero_grad(&team);
            gpt_backward(&one), gpt_backward(&team);
            for (int t = 0; t < one.n_tensors; t++) {
                const TensorInfo *ti = &one.tensors[t];
                double d = max_rel_diff(one.grads_memory + ti->offset, team.grads_memory + ti->offset, ti->size);
                cr_expect_lt(d, 1e-5, "%s B=%d %s: gradients differ by %.2e", pe_at(i)->name, B, ti->name, d);
            }
        }
        gpt_free(&one), gpt_free(&team);
    }
    GPTConfig moice = {.vocab_size = 7, .seq_len = 12, .n_layer = 1, .n_embd = 16, .n_head = 2,
                       .ffn_dim = 24, .pe = pe_find("rope"), .pe_opt = pe_defaults(),
                       .init_std = 0.02f, .emb_std = 0.02f,
                       .moice = {.n_bases = 2, .bases = {10000.0f, 10.0f}, .top_k = 2, .aux_weight = 0.1f}};
    GPT m;
    char err[256];
    cr_assert_eq(gpt_build(&m, &moice, 3, err, sizeof err), 0, "%s", err);
    cr_expect_null(m.replicas, "a MoICE model got a team");
    gpt_free(&m);
}
