// Finite-difference checks of causal attention (no PE term), across row-block boundaries and
// with attention dropout; and the causal property itself.
#include <criterion/criterion.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../../model/layers.h"
#include "gradcheck.h"

#define TOL 5e-3
#define H 1e-2f

typedef struct {
    int B, T, C, NH;
    float *qkv, *out, *att, *proj;
    AttentionSetup setup;
} AttnCase;

static double attn_loss(void *p) {
    AttnCase *c = p;
    attention_forward(c->out, c->att, NULL, c->qkv, c->B, c->T, c->C, c->NH, &c->setup);
    return weighted_sum(c->out, c->proj, (size_t)c->B * c->T * c->C);
}

static AttnCase make_case(int B, int T, int C, int NH, float dropout, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    AttnCase c = {.B = B, .T = T, .C = C, .NH = NH};
    size_t N = (size_t)B * T;
    c.qkv = malloc(N * 3 * C * sizeof(float));
    fill_normal(c.qkv, N * 3 * C, 1.0f, &rng);
    c.proj = malloc(N * C * sizeof(float));
    fill_normal(c.proj, N * C, 1.0f, &rng);
    c.out = malloc(N * C * sizeof(float));
    c.att = malloc((size_t)B * NH * T * T * sizeof(float));
    int threads = omp_get_max_threads();
    c.setup = (AttentionSetup){.dropout = dropout, .dropout_key = 77, .n_threads = threads,
                               .work_per_thread = attention_work_size(T)};
    c.setup.work = malloc(c.setup.work_per_thread * threads * sizeof(float));
    return c;
}

static void free_case(AttnCase *c) {
    free(c->qkv), free(c->proj), free(c->out), free(c->att), free(c->setup.work);
}

static void check_attention(int B, int T, int C, int NH, float dropout) {
    AttnCase c = make_case(B, T, C, NH, dropout, 21);
    size_t n = (size_t)B * T * 3 * C;
    float *dqkv = malloc(n * sizeof(float));
    attn_loss(&c);
    attention_backward(dqkv, c.proj, c.att, NULL, c.qkv, B, T, C, NH, &c.setup);
    cr_expect_lt(gradcheck(attn_loss, &c, c.qkv, dqkv, n, 150, H, 22), TOL,
                 "B%d T%d C%d H%d dropout %.2f", B, T, C, NH, dropout);
    free(dqkv);
    free_case(&c);
}

Test(attention, backward_matches_finite_differences) { check_attention(2, 9, 8, 2, 0.0f); }
Test(attention, backward_across_row_blocks) { check_attention(1, 150, 8, 2, 0.0f); }
Test(attention, backward_with_attention_dropout) { check_attention(2, 70, 8, 2, 0.3f); }

Test(attention, output_at_t_ignores_later_tokens) {
    AttnCase c = make_case(1, 80, 8, 2, 0.0f, 31);
    attn_loss(&c);
    float *before = malloc(80 * 8 * sizeof(float));
    memcpy(before, c.out, 80 * 8 * sizeof(float));
    for (int t = 50; t < 80; t++)
        for (int i = 0; i < 24; i++) c.qkv[t * 24 + i] += 3.0f;
    attn_loss(&c);
    for (int i = 0; i < 50 * 8; i++) cr_assert_eq(c.out[i], before[i], "position %d changed", i / 8);
    free(before);
    free_case(&c);
}

Test(attention, rows_are_probability_distributions) {
    AttnCase c = make_case(2, 70, 8, 2, 0.0f, 41);
    attn_loss(&c);
    for (int r = 0; r < 2 * 2 * 70; r++) {
        int i = r % 70;
        double sum = 0;
        for (int j = 0; j <= i; j++) sum += c.att[(size_t)r * 70 + j];
        cr_assert(fabs(sum - 1.0) < 1e-5, "row %d sums to %f", r, sum);
    }
    free_case(&c);
}
