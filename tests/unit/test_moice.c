// MoICE (model/moice.h): finite-difference checks of the router (top K < N with the
// load-balancing loss's gradient) and of the mixing; the --moice-bases parser and the config
// check; router-only training (frozen tensors get no gradient, the routers the same gradient as
// when everything trains, and the backward pass stops below the lowest router).
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../model/moice.h"
#include "gradcheck.h"

#define TOL 5e-3
#define H 1e-2f

// ---- router
// loss = sum c . weights + sum_n a_n sum_rows p_n: the second term is how the load-balancing
// loss reaches the probabilities (a_n = aux_weight N f_n / R, constants).
typedef struct {
    int rows, d, N, K;
    float *x, *w1, *w3, *w2, *u1, *u3, *h, *probs, *weights, *proj, *aux;
    unsigned char *picked;  // the unperturbed top-K choice
    int flips;
} RouterCase;

static double router_loss(void *p) {
    RouterCase *c = p;
    router_forward(c->u1, c->u3, c->h, c->probs, c->weights, c->x, c->w1, c->w3, c->w2, c->rows,
                   c->d, c->N, c->K);
    size_t n_all = (size_t)c->rows * c->N;
    double loss = weighted_sum(c->weights, c->proj, n_all);
    for (size_t i = 0; i < n_all; i++) {
        loss += (double)c->aux[i % c->N] * c->probs[i];
        if (c->picked) c->flips += c->picked[i] != (c->weights[i] > 0.0f);
    }
    return loss;
}

Test(moice, router_backward_matches_finite_differences) {
    Rng rng;
    rng_seed(&rng, 3);
    RouterCase c = {.rows = 6, .d = 8, .N = 5, .K = 2};
    size_t xd = (size_t)c.rows * c.d, wd = (size_t)c.N * c.d, n_all = (size_t)c.rows * c.N;
    c.x = alloc_normal(xd, 1.0f, &rng);
    c.w1 = alloc_normal(wd, 0.5f, &rng);
    c.w3 = alloc_normal(wd, 0.5f, &rng);
    c.w2 = alloc_normal((size_t)c.N * c.N, 1.0f, &rng);
    c.proj = alloc_normal(n_all, 1.0f, &rng);
    c.aux = alloc_normal(c.N, 1.0f, &rng);
    float *bufs[5];
    for (int i = 0; i < 5; i++) bufs[i] = malloc(n_all * sizeof(float));
    c.u1 = bufs[0], c.u3 = bufs[1], c.h = bufs[2], c.probs = bufs[3], c.weights = bufs[4];
    router_loss(&c);
    // The forward's contract: K weights per row, renormalised, on the K largest probabilities.
    c.picked = malloc(n_all);
    for (int r = 0; r < c.rows; r++) {
        const float *p = c.probs + (size_t)r * c.N, *w = c.weights + (size_t)r * c.N;
        int kept = 0;
        float sum = 0.0f, lowest_kept = 1.0f, highest_dropped = 0.0f;
        for (int n = 0; n < c.N; n++) {
            c.picked[(size_t)r * c.N + n] = w[n] > 0.0f;
            kept += w[n] > 0.0f;
            sum += w[n];
            if (w[n] > 0.0f) lowest_kept = fminf(lowest_kept, p[n]);
            else highest_dropped = fmaxf(highest_dropped, p[n]);
        }
        cr_assert_eq(kept, c.K);
        cr_expect_float_eq(sum, 1.0f, 1e-6f);
        cr_expect_gt(lowest_kept, highest_dropped, "row %d keeps a smaller probability", r);
    }
    float *dx = calloc(xd, sizeof(float)), *dw1 = calloc(wd, sizeof(float));
    float *dw3 = calloc(wd, sizeof(float)), *dw2 = calloc((size_t)c.N * c.N, sizeof(float));
    float *dweights = malloc(n_all * sizeof(float)), *work = malloc(2 * n_all * sizeof(float));
    memcpy(dweights, c.proj, n_all * sizeof(float));
    router_backward(dx, dw1, dw3, dw2, dweights, c.aux, c.x, c.u1, c.u3, c.h, c.probs, c.weights,
                    c.w1, c.w3, c.w2, work, c.rows, c.d, c.N);
    cr_expect_lt(gradcheck(router_loss, &c, c.x, dx, xd, 48, H, 4), TOL, "dx");
    cr_expect_lt(gradcheck(router_loss, &c, c.w1, dw1, wd, 40, H, 5), TOL, "dw1");
    cr_expect_lt(gradcheck(router_loss, &c, c.w3, dw3, wd, 40, H, 6), TOL, "dw3");
    cr_expect_lt(gradcheck(router_loss, &c, c.w2, dw2, (size_t)c.N * c.N, 25, H, 7), TOL, "dw2");
    // a difference across a tie would measure the jump of the top-K choice, not the gradient
    cr_expect_eq(c.flips, 0, "%d differences changed the top-K choice; pick clearer inputs", c.flips);
    free(c.x), free(c.w1), free(c.w3), free(c.w2), free(c.proj), free(c.aux), free(c.picked);
    for (int i = 0; i < 5; i++) free(bufs[i]);
    free(dx), free(dw1), free(dw3), free(dw2), free(dweights), free(work);
}

// ---- mixing
typedef struct {
    int BT, C, Hd, N;
    float *base_out, *weights, *out, *proj;
} MixCase;

static double mix_loss(void *p) {
    MixCase *c = p;
    moice_mix_forward(c->out, c->base_out, c->weights, c->BT, c->C, c->Hd, c->N);
    return weighted_sum(c->out, c->proj, (size_t)c->BT * c->C);
}

Test(moice, mix_backward_matches_finite_differences) {
    Rng rng;
    rng_seed(&rng, 8);
    MixCase c = {.BT = 5, .C = 12, .Hd = 3, .N = 3};
    size_t plane = (size_t)c.BT * c.C, routed = (size_t)c.BT * c.Hd * c.N;
    c.base_out = alloc_normal(plane * c.N, 1.0f, &rng);
    c.weights = alloc_normal(routed, 1.0f, &rng);
    c.proj = alloc_normal(plane, 1.0f, &rng);
    c.out = malloc(plane * sizeof(float));
    float *dweights = malloc(routed * sizeof(float));
    mix_loss(&c);
    moice_mix_backward(dweights, c.proj, c.base_out, c.BT, c.C, c.Hd, c.N);
    cr_expect_lt(gradcheck(mix_loss, &c, c.weights, dweights, routed, 45, H, 9), TOL, "dweights");
    free(c.base_out), free(c.weights), free(c.proj), free(c.out), free(dweights);
}

// ---- options

Test(moice, bases_parse_names_and_lists) {
    MoICEOptions o;
    char err[256], text[256];
    cr_assert_eq(moice_parse_bases(&o, "10000,26000,40000", 10000.0f, err, sizeof err), 0, "%s", err);
    cr_expect_eq(o.n_bases, 3);
    cr_expect_eq(o.bases[2], 40000.0f);
    cr_expect_eq(o.bases[3], 0.0f);
    moice_format_bases(text, sizeof text, &o);
    cr_expect_str_eq(text, "10000,26000,40000");
    cr_assert_eq(moice_parse_bases(&o, "official", 10000.0f, err, sizeof err), 0);
    moice_format_bases(text, sizeof text, &o);
    cr_expect_str_eq(text, "10000,17500,18000,19000,20000,22500,25000");
    cr_assert_eq(moice_parse_bases(&o, "short", 500.0f, err, sizeof err), 0);
    cr_expect_eq(o.n_bases, 7);
    cr_expect_eq(o.bases[0], 500.0f);
    cr_assert_eq(moice_parse_bases(&o, "none", 10000.0f, err, sizeof err), 0);
    cr_expect_eq(o.n_bases, 0);
    cr_expect_eq(moice_parse_bases(&o, "10000,,2", 10000.0f, err, sizeof err), -1);
    cr_expect(strstr(err, "--moice-bases '10000,,2' is not a list of numbers") != NULL, "%s", err);
    cr_expect_eq(moice_parse_bases(&o, "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17", 1.0f, err,
                                   sizeof err), -1);
    cr_expect(strstr(err, "more than 16 bases") != NULL, "%s", err);
}

static GPTConfig moice_config(const char *pe, int n, int k) {
    GPTConfig c = {.vocab_size = 7, .seq_len = 12, .n_layer = 3, .n_embd = 16, .n_head = 2,
                   .ffn_dim = 24, .pe = pe_find(pe), .pe_opt = {.rope_base = 10000.0f},
                   .init_std = GPT2_INIT_STD, .emb_std = GPT2_INIT_STD,
                   .moice = {.n_bases = n, .bases = {10000.0f, 30.0f, 5.0f}, .top_k = k,
                             .aux_weight = 0.2f}};
    return c;
}

Test(moice, config_check_names_the_problem) {
    GPTConfig c = moice_config("abs", 3, 2);
    cr_expect(strstr(gpt_config_check(&c), "needs --pe rope") != NULL);
    c = moice_config("rope", 3, 4);
    cr_expect(strstr(gpt_config_check(&c), "--moice-topk must be from 1 to the 3 bases, got 4") != NULL);
    c = moice_config("rope", 3, 2);
    c.moice.bases[0] = 20000.0f;
    cr_expect(strstr(gpt_config_check(&c), "must start with the model's --rope-base 10000") != NULL);
    c = moice_config("rope", 3, 2);
    cr_expect_null(gpt_config_check(&c));
}

// The routers' init: W1 and W3 at 1/sqrt(d) unless --moice-router-std sets their std (the
// official recipe's 0.02), W2 at 0.02 either way.
static double sample_std(const GPT *m, const char *suffix) {
    double sum = 0.0, sum2 = 0.0;
    long n = 0;
    for (int t = 0; t < m->n_tensors; t++) {
        const TensorInfo *ti = &m->tensors[t];
        if (!ti->module || !strstr(ti->name, suffix)) continue;
        for (size_t i = 0; i < ti->size; i++, n++) {
            double x = m->params_memory[ti->offset + i];
            sum += x, sum2 += x * x;
        }
    }
    cr_assert_gt(n, 0, "no %s tensors", suffix);
    return sqrt(sum2 / n - (sum / n) * (sum / n));
}

Test(moice, router_init_follows_router_std) {
    GPTConfig c = moice_config("rope", 3, 2);
    c.n_layer = 6;
    int d = c.n_embd / c.n_head;
    char err[256];
    for (int official = 0; official < 2; official++) {
        c.moice.router_std = official ? 0.02f : 0.0f;
        GPT m;
        cr_assert_eq(gpt_build(&m, &c, 1, err, sizeof err), 0, "%s", err);
        gpt_init(&m, 3);
        double in_std = official ? 0.02 : 1.0 / sqrt(d);
        // 6 layers x N d = 144 draws (W2: 54): sample stds within 3 standard errors
        cr_expect_lt(fabs(sample_std(&m, "w1.weight") / in_std - 1.0), 0.25, "official %d", official);
        cr_expect_lt(fabs(sample_std(&m, "w3.weight") / in_std - 1.0), 0.25, "official %d", official);
        cr_expect_lt(fabs(sample_std(&m, "w2.weight") / 0.02 - 1.0), 0.35, "official %d", official);
        gpt_free(&m);
    }
}

// ---- router-only training

static void forward_backward(GPT *m, const int32_t *in, const int32_t *tg) {
    gpt_forward(m, in, tg, 2, 12, 1, 7);
    gpt_zero_grad(m);
    gpt_backward(m);
}

// Router-only training must give the routers exactly the gradient they get when everything
// trains (the frozen network still carries it down to the lower layers' routers), write no
// other gradient, and stop below the lowest router: layer 0's attention backward is skipped, so
// a NaN planted in its attention probabilities cannot reach the gradient scratch (which the
// full pass would carry it through on its way to the embedding).
static void check_router_only(NormPlacement norm) {
    GPTConfig cfg = moice_config("rope", 3, 2);
    cfg.norm = norm;
    cfg.dropout = 0.1f;
    GPT full, routers;
    build_twins(&cfg, 2, 4, &full, &routers);
    gpt_set_trainable(&routers, TRAIN_MODULE);
    int32_t in[24], tg[24];
    for (int i = 0; i < 24; i++) in[i] = (i * 5 + 1) % 7, tg[i] = i % 3 ? (i * 3) % 7 : -1;
    forward_backward(&full, in, tg);
    gpt_forward(&routers, in, tg, 2, 12, 1, 7);
    size_t probs = (size_t)2 * cfg.n_head * 12 * 12 * cfg.moice.n_bases;
    for (size_t i = 0; i < probs; i++) routers.acts.layer[0].att[i] = NAN;
    gpt_zero_grad(&routers);
    gpt_backward(&routers);
    int n_routers = 0;
    for (int t = 0; t < full.n_tensors; t++) {
        const TensorInfo *ti = &full.tensors[t];
        cr_expect_eq(routers.tensors[t].trainable, ti->module, "%s", ti->name);
        const float *a = full.grads_memory + ti->offset, *b = routers.grads_memory + ti->offset;
        if (ti->module) {
            n_routers++;
            cr_expect_eq(memcmp(a, b, ti->size * sizeof(float)), 0, "%s differs", ti->name);
            double norm2 = 0.0;
            for (size_t i = 0; i < ti->size; i++) norm2 += (double)b[i] * b[i];
            cr_expect_gt(norm2, 0.0, "%s has no gradient", ti->name);
        } else {
            for (size_t i = 0; i < ti->size; i++)
                cr_expect_eq(b[i], 0.0f, "frozen %s has a gradient", ti->name);
        }
    }
    cr_expect_eq(n_routers, 3 * cfg.n_layer);
    size_t NC = (size_t)2 * 12 * cfg.n_embd;
    for (size_t i = 0; i < NC; i++)
        cr_assert(isfinite(routers.scratch.dres[i]) && isfinite(routers.scratch.dnorm[i]) &&
                      isfinite(routers.scratch.dqkv[i]) && isfinite(routers.scratch.dqkv[2 * NC + i]),
                  "the pass went through layer 0's attention");
    cr_expect_eq(routers.grad_floor, 0);
    cr_expect_eq(full.grad_floor, -1);
    gpt_free(&full), gpt_free(&routers);
}

Test(moice, router_only_backward_pre_norm) { check_router_only(NORM_PRE); }
Test(moice, router_only_backward_post_norm) { check_router_only(NORM_POST); }
