// Finite-difference checks of every layer's backward, one layer at a time.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../model/layers.h"
#include "../../model/vecmath.h"
#include "gradcheck.h"

// Relative error bound for float32 central differences with h = 1e-2 on O(1) inputs: rounding
// noise is ~1e-7 * |loss| / h ~ 1e-4 relative, truncation ~h^2 * |f'''| ~ 1e-4; a wrong
// gradient (missing term, wrong sign, wrong index) shows up as O(1).
#define TOL 5e-3
#define H 1e-2f

// ---- layernorm
typedef struct {
    int N, C;
    float *inp, *w, *b, *out, *mean, *rstd, *proj;
} LNCase;

static double ln_loss(void *p) {
    LNCase *c = p;
    layernorm_forward(c->out, c->mean, c->rstd, c->inp, c->w, c->b, c->N, c->C);
    return weighted_sum(c->out, c->proj, (size_t)c->N * c->C);
}

Test(layers, layernorm_backward_matches_finite_differences) {
    Rng rng;
    rng_seed(&rng, 1);
    LNCase c = {.N = 6, .C = 40};
    size_t NC = (size_t)c.N * c.C;
    c.inp = alloc_normal(NC, 1.0f, &rng);
    c.w = alloc_normal(c.C, 1.0f, &rng);
    c.b = alloc_normal(c.C, 1.0f, &rng);
    c.proj = alloc_normal(NC, 1.0f, &rng);
    c.out = malloc(NC * sizeof(float));
    c.mean = malloc(c.N * sizeof(float));
    c.rstd = malloc(c.N * sizeof(float));
    float *dinp = calloc(NC, sizeof(float)), *dw = calloc(c.C, sizeof(float)), *db = calloc(c.C, sizeof(float));
    ln_loss(&c);
    layernorm_backward(dinp, dw, db, c.proj, c.inp, c.w, c.mean, c.rstd, c.N, c.C);
    cr_expect_lt(gradcheck(ln_loss, &c, c.inp, dinp, NC, 60, H, 2), TOL, "dinp");
    cr_expect_lt(gradcheck(ln_loss, &c, c.w, dw, c.C, 40, H, 3), TOL, "dweight");
    cr_expect_lt(gradcheck(ln_loss, &c, c.b, db, c.C, 40, H, 4), TOL, "dbias");
    // backward accumulates: a second call doubles the gradient
    float before = dinp[7];
    layernorm_backward(dinp, dw, db, c.proj, c.inp, c.w, c.mean, c.rstd, c.N, c.C);
    cr_expect_float_eq(dinp[7], 2 * before, 1e-5f * (1 + fabsf(before)));
    free(c.inp), free(c.w), free(c.b), free(c.proj), free(c.out), free(c.mean), free(c.rstd);
    free(dinp), free(dw), free(db);
}

// ---- matmul
typedef struct {
    int N, C, OC;
    float *inp, *w, *b, *out, *proj;
} MMCase;

static double mm_loss(void *p) {
    MMCase *c = p;
    matmul_forward(c->out, c->inp, c->w, c->b, c->N, c->C, c->OC);
    return weighted_sum(c->out, c->proj, (size_t)c->N * c->OC);
}

Test(layers, matmul_backward_matches_finite_differences) {
    Rng rng;
    rng_seed(&rng, 5);
    MMCase c = {.N = 7, .C = 33, .OC = 45};  // sizes off any SIMD width on purpose
    c.inp = alloc_normal((size_t)c.N * c.C, 1.0f, &rng);
    c.w = alloc_normal((size_t)c.OC * c.C, 0.5f, &rng);
    c.b = alloc_normal(c.OC, 1.0f, &rng);
    c.proj = alloc_normal((size_t)c.N * c.OC, 1.0f, &rng);
    c.out = malloc((size_t)c.N * c.OC * sizeof(float));
    float *dinp = calloc((size_t)c.N * c.C, sizeof(float));
    float *dw = calloc((size_t)c.OC * c.C, sizeof(float)), *db = calloc(c.OC, sizeof(float));
    mm_loss(&c);
    matmul_backward(dinp, dw, db, c.proj, c.inp, c.w, c.N, c.C, c.OC);
    cr_expect_lt(gradcheck(mm_loss, &c, c.inp, dinp, (size_t)c.N * c.C, 60, H, 6), TOL, "dinp");
    cr_expect_lt(gradcheck(mm_loss, &c, c.w, dw, (size_t)c.OC * c.C, 60, H, 7), TOL, "dweight");
    cr_expect_lt(gradcheck(mm_loss, &c, c.b, db, c.OC, 45, H, 8), TOL, "dbias");
    // frozen weights: NULL gradients are skipped and dinp is unchanged by that
    float *dinp2 = calloc((size_t)c.N * c.C, sizeof(float));
    matmul_backward(dinp2, NULL, NULL, c.proj, c.inp, c.w, c.N, c.C, c.OC);
    for (int i = 0; i < c.N * c.C; i++) cr_assert_float_eq(dinp2[i], dinp[i], 1e-5f);
    free(c.inp), free(c.w), free(c.b), free(c.proj), free(c.out), free(dinp), free(dinp2), free(dw), free(db);
}

// ---- activations
typedef struct {
    size_t n;
    Activation act;
    float *inp, *out, *proj;
} ActCase;

static double act_loss(void *p) {
    ActCase *c = p;
    activation_forward(c->out, c->inp, c->n, c->act);
    return weighted_sum(c->out, c->proj, c->n);
}

static void check_activation(Activation act) {
    Rng rng;
    rng_seed(&rng, 9 + act);
    ActCase c = {.n = 200, .act = act};
    c.inp = alloc_normal(c.n, 2.0f, &rng);
    // keep relu's kink away from the finite-difference stencil
    for (size_t i = 0; i < c.n; i++)
        if (fabsf(c.inp[i]) < 2 * H) c.inp[i] += 4 * H;
    c.proj = alloc_normal(c.n, 1.0f, &rng);
    c.out = malloc(c.n * sizeof(float));
    float *dinp = malloc(c.n * sizeof(float));
    activation_backward(dinp, c.proj, c.inp, c.n, act);
    cr_expect_lt(gradcheck(act_loss, &c, c.inp, dinp, c.n, 200, H, 10), TOL, "activation %d", act);
    free(c.inp), free(c.proj), free(c.out), free(dinp);
}

Test(layers, gelu_backward_matches_finite_differences) { check_activation(ACT_GELU); }
Test(layers, relu_backward_matches_finite_differences) { check_activation(ACT_RELU); }

Test(layers, gelu_matches_tanh_formula_values) {
    float x[3] = {-1.0f, 0.0f, 2.0f}, y[3];
    activation_forward(y, x, 3, ACT_GELU);
    // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), evaluated independently in double
    for (int i = 0; i < 3; i++) {
        double v = x[i], ref = 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
        cr_expect_float_eq(y[i], (float)ref, 1e-6f);
    }
}

// The vectorised exp and GELU (model/vecmath.h) against double-precision references, on a grid
// that covers their range; the bounds are those model/vecmath.h and docs/speed.md state.
Test(layers, vector_exp_is_within_one_ulp_of_exp) {
    double worst = 0.0;
    for (float x = -87.0f; x <= 88.0f; x += 1.37e-3f) {
        float y = vec_exp(vec_splat(x))[0];
        double ref = exp((double)x), err = fabs(y - ref) / ref;
        worst = err > worst ? err : worst;
    }
    cr_expect_lt(worst, 1.2e-7, "worst relative error %g", worst);
    cr_expect_eq(vec_exp(vec_splat(-100.0f))[0], 0.0f);
    cr_expect(isinf(vec_exp(vec_splat(100.0f))[0]));
    cr_expect(isnan(vec_exp(vec_splat(NAN))[0]));
}

// cope's gates: a whole row at once, lengths that end inside a vector included.
Test(layers, vector_sigmoid_matches_double_precision) {
    enum { N = 1003 };
    float x[N], y[N];
    double worst = 0.0;
    for (float start = -100.0f; start < 100.0f; start += 0.731f) {
        for (int i = 0; i < N; i++) x[i] = start + 1e-3f * (float)i;
        vec_sigmoid(y, x, N);
        for (int i = 0; i < N; i++) {
            double ref = 1.0 / (1.0 + exp(-(double)x[i])), err = fabs(y[i] - ref) / fmax(ref, 1e-30);
            worst = err > worst ? err : worst;
        }
    }
    cr_expect_lt(worst, 3e-7, "worst relative error %g", worst);
    float edge[3] = {-200.0f, 200.0f, NAN};
    vec_sigmoid(edge, edge, 3);
    cr_expect_eq(edge[0], 0.0f);
    cr_expect_eq(edge[1], 1.0f);
    cr_expect(isnan(edge[2]));
}

// The running sums of cope's count: small integers, so that every order of addition is exact
// and a lane out of place shows as a wrong sum.
Test(layers, vector_prefix_and_suffix_sums_add_the_right_lanes) {
    vfloat v;
    for (int l = 0; l < VEC_WIDTH; l++) v[l] = (float)(1 << (l % 12)) + (float)l;
    vfloat pre = vec_prefix_sums(v), suf = vec_suffix_sums(v);
    for (int l = 0; l < VEC_WIDTH; l++) {
        float p = 0.0f, s = 0.0f;
        for (int m = 0; m <= l; m++) p += v[m];
        for (int m = l; m < VEC_WIDTH; m++) s += v[m];
        cr_expect_eq(pre[l], p, "prefix lane %d: %g, want %g", l, pre[l], p);
        cr_expect_eq(suf[l], s, "suffix lane %d: %g, want %g", l, suf[l], s);
    }
    vfloat down = VEC_SHIFT_DOWN(v, 3), up = VEC_SHIFT_UP(v, 3);
    for (int l = 0; l < VEC_WIDTH; l++) {
        cr_expect_eq(down[l], l + 3 < VEC_WIDTH ? v[l + 3] : 0.0f);
        cr_expect_eq(up[l], l >= 3 ? v[l - 3] : 0.0f);
    }
}

Test(layers, vector_gelu_and_its_gradient_match_double_precision) {
    enum { N = 24001 };  // x from -12 to 12, not a multiple of 8: the padded tail is covered
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    float *ones = malloc(N * sizeof(float)), *dx = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) x[i] = -12.0f + 1e-3f * (float)i, ones[i] = 1.0f;
    activation_forward(y, x, N, ACT_GELU);
    activation_backward(dx, ones, x, N, ACT_GELU);
    double worst = 0.0, worst_grad = 0.0;
    for (int i = 0; i < N; i++) {
        double v = x[i], u = sqrt(2 / M_PI) * (v + 0.044715 * v * v * v), th = tanh(u);
        double ref = 0.5 * v * (1 + th);
        double dref = 0.5 * (1 + th) + 0.5 * v * (1 - th * th) * sqrt(2 / M_PI) * (1 + 3 * 0.044715 * v * v);
        double scale = fabs(v) > 1 ? fabs(v) : 1;
        worst = fmax(worst, fabs(y[i] - ref) / scale);
        worst_grad = fmax(worst_grad, fabs(dx[i] - dref) / scale);
        // one element alone goes through the padded path: the same bits as inside a group
        float one;
        activation_forward(&one, &x[i], 1, ACT_GELU);
        cr_assert_eq(one, y[i], "x = %g", (double)x[i]);
    }
    cr_expect_lt(worst, 3e-7, "GELU worst error %g", worst);
    cr_expect_lt(worst_grad, 1e-6, "GELU gradient worst error %g", worst_grad);
    float nan = NAN, out;
    activation_forward(&out, &nan, 1, ACT_GELU);
    cr_expect(isnan(out));
    free(x), free(y), free(ones), free(dx);
}

// ---- dropout
Test(layers, dropout_is_its_own_backward_and_keeps_the_expected_fraction) {
    size_t n = 100000;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = y[i] = 1.0f;
    dropout_apply(x, n, 0.25f, 42, 0);
    dropout_apply(y, n, 0.25f, 42, 0);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(x[i], y[i], "same key, same mask");
        cr_assert(x[i] == 0.0f || fabsf(x[i] - 1.0f / 0.75f) < 1e-6f);
        kept += x[i] != 0.0f;
    }
    // binomial: sd = sqrt(n p (1-p)) ~ 137; 5 sd
    cr_expect(labs((long)kept - 75000) < 700, "kept %zu of %zu", kept, n);
    dropout_apply(y, n, 0.25f, 43, 0);
    size_t same = 0;
    for (size_t i = 0; i < n; i++) same += (x[i] != 0.0f) == (y[i] != 0.0f);
    cr_expect(same < n, "another key draws another mask");
    free(x), free(y);
}

// ---- cross-entropy
typedef struct {
    int N, V;
    float *logits, *probs, *losses;
    int32_t *targets;
} CECase;

static double ce_loss(void *p) {
    CECase *c = p;
    int scored = crossentropy_forward(c->losses, c->probs, c->logits, c->targets, c->N, c->V);
    double s = 0;
    for (int n = 0; n < c->N; n++) s += c->losses[n];
    return s / scored;
}

Test(layers, crossentropy_backward_matches_finite_differences_and_skips_unscored) {
    Rng rng;
    rng_seed(&rng, 11);
    CECase c = {.N = 9, .V = 7};
    c.logits = alloc_normal((size_t)c.N * c.V, 2.0f, &rng);
    c.probs = malloc((size_t)c.N * c.V * sizeof(float));
    c.losses = malloc(c.N * sizeof(float));
    c.targets = malloc(c.N * sizeof(int32_t));
    for (int n = 0; n < c.N; n++) c.targets[n] = n % 3 == 0 ? -1 : (int32_t)rng_below(&rng, c.V);
    int scored = crossentropy_forward(c.losses, c.probs, c.logits, c.targets, c.N, c.V);
    cr_assert_eq(scored, 6);
    float *d = malloc((size_t)c.N * c.V * sizeof(float));
    crossentropy_backward(d, c.probs, c.targets, c.N, c.V, 1.0f / scored);
    cr_expect_lt(gradcheck(ce_loss, &c, c.logits, d, (size_t)c.N * c.V, 63, H, 12), TOL);
    for (int v = 0; v < c.V; v++) cr_expect_eq(d[v], 0.0f, "position 0 is not scored");
    free(c.logits), free(c.probs), free(c.losses), free(c.targets), free(d);
}

// ---- embedding
typedef struct {
    int N, C;
    int32_t *tokens;
    float *wte, *out, *proj;
} EmbCase;

static double emb_loss(void *p) {
    EmbCase *c = p;
    embedding_forward(c->out, c->tokens, c->wte, c->N, c->C);
    return weighted_sum(c->out, c->proj, (size_t)c->N * c->C);
}

Test(layers, embedding_backward_matches_finite_differences) {
    Rng rng;
    rng_seed(&rng, 13);
    EmbCase c = {.N = 12, .C = 8};
    int V = 5;
    c.tokens = malloc(c.N * sizeof(int32_t));
    for (int n = 0; n < c.N; n++) c.tokens[n] = (int32_t)rng_below(&rng, V);  // repeats on purpose
    c.wte = alloc_normal((size_t)V * c.C, 1.0f, &rng);
    c.proj = alloc_normal((size_t)c.N * c.C, 1.0f, &rng);
    c.out = malloc((size_t)c.N * c.C * sizeof(float));
    float *dwte = calloc((size_t)V * c.C, sizeof(float));
    embedding_backward(dwte, c.proj, c.tokens, c.N, c.C);
    cr_expect_lt(gradcheck(emb_loss, &c, c.wte, dwte, (size_t)V * c.C, 40, H, 14), TOL);
    free(c.tokens), free(c.wte), free(c.proj), free(c.out), free(dwte);
}
