// Ms-PoE (model/mspoe.c) on hand-checkable cases: ratios of 1 change no bit of rope, the plain
// order gives the documented ratios, the position-awareness score and the head ranking do what
// model/mspoe.h says on constructed attention rows, and the whole hook ranks the heads at each
// sequence's last scored row and rotates by t / r. tests/reference/test_crosscheck.py compares the whole
// forward with the PyTorch reference.
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "../../model/gpt.h"
#include "../../model/layers.h"
#include "../../model/mspoe.h"
#include "../../common/rng.h"

static GPTConfig rope_config(int n_layer, int n_embd, int n_head, int seq_len) {
    return (GPTConfig){.vocab_size = 7, .seq_len = seq_len, .n_layer = n_layer, .n_embd = n_embd,
                       .n_head = n_head, .ffn_dim = 4 * n_embd, .pe = pe_find("rope"),
                       .pe_opt = {.rope_base = 10000.0f}, .init_std = GPT2_INIT_STD,
                       .emb_std = GPT2_INIT_STD};
}

static void build(GPT *m, const GPTConfig *c, int batch) {
    char err[256];
    cr_assert_eq(gpt_build(m, c, batch, err, sizeof err), 0, "%s", err);
    gpt_init(m, 3);
    Rng rng;
    rng_seed(&rng, 4);
    // Larger than gpt_init's weights, so that attention is far from uniform.
    for (size_t i = 0; i < m->num_parameters; i++) m->params_memory[i] += 0.2f * rng_normal(&rng);
}

static void draw_tokens(int32_t *inputs, int32_t *targets, int n, int V) {
    Rng rng;
    rng_seed(&rng, 9);
    for (int i = 0; i < n; i++) {
        inputs[i] = (int32_t)rng_below(&rng, (uint32_t)V);
        targets[i] = (int32_t)rng_below(&rng, (uint32_t)V);
    }
}

Test(mspoe, rotation_with_ratio_one_is_plain_rope_bit_for_bit) {
    GPTConfig c = rope_config(1, 24, 3, 40);
    int B = 2, T = 37, n = B * T * 3 * c.n_embd;
    float *plain = malloc(n * sizeof(float)), *scaled = malloc(n * sizeof(float));
    double ones[6] = {1, 1, 1, 1, 1, 1};
    Rng rng;
    rng_seed(&rng, 1);
    for (int i = 0; i < n; i++) plain[i] = scaled[i] = rng_normal(&rng);
    rope_rotate(plain, 3 * c.n_embd, 2, B, T, c.n_embd, c.n_head, c.pe_opt.rope_base, 1.0f, NULL);
    rope_rotate(scaled, 3 * c.n_embd, 2, B, T, c.n_embd, c.n_head, c.pe_opt.rope_base, 1.0f, ones);
    cr_assert(memcmp(plain, scaled, n * sizeof(float)) == 0);
    free(plain);
    free(scaled);
}

Test(mspoe, ratios_of_one_leave_the_logits_unchanged_bit_for_bit) {
    GPTConfig c = rope_config(3, 32, 4, 20);
    GPT m;
    build(&m, &c, 2);
    int B = 2, T = 20, N = B * T;
    int32_t inputs[40], targets[40];
    draw_tokens(inputs, targets, N, c.vocab_size);
    size_t bytes = (size_t)N * c.vocab_size * sizeof(float);
    float *plain = malloc(bytes);
    float plain_loss = gpt_forward(&m, inputs, targets, B, T, 0, 0);
    memcpy(plain, m.acts.logits, bytes);
    char err[256];
    MsPoEConfig one = {.ratio_min = 1.0f, .ratio_max = 1.0f, .skip_layers = 0};
    cr_assert_eq(mspoe_enable(&m, &one, err, sizeof err), 0, "%s", err);
    cr_assert_eq(gpt_forward(&m, inputs, targets, B, T, 0, 0), plain_loss);
    cr_assert(memcmp(plain, m.acts.logits, bytes) == 0);
    // ...while ratios above 1 do change them: the hook is on the forward path.
    MsPoEConfig official = {.ratio_min = 1.2f, .ratio_max = 1.8f, .skip_layers = 2};
    cr_assert_eq(mspoe_enable(&m, &official, err, sizeof err), 0, "%s", err);
    cr_assert_neq(gpt_forward(&m, inputs, targets, B, T, 0, 0), plain_loss);
    mspoe_disable(&m);
    cr_assert_eq(gpt_forward(&m, inputs, targets, B, T, 0, 0), plain_loss);
    free(plain);
    gpt_free(&m);
}

Test(mspoe, plain_order_gives_ratio_by_head_index) {
    GPTConfig c = rope_config(3, 32, 4, 12);
    GPT m;
    build(&m, &c, 2);
    int32_t inputs[24], targets[24];
    draw_tokens(inputs, targets, 24, c.vocab_size);
    MsPoEConfig cfg = {.ratio_min = 1.2f, .ratio_max = 1.8f, .skip_layers = 1,
                       .order = MSPOE_ORDER_PLAIN};
    char err[256];
    cr_assert_eq(mspoe_enable(&m, &cfg, err, sizeof err), 0, "%s", err);
    gpt_forward(&m, inputs, targets, 2, 12, 0, 0);
    cr_assert_null(mspoe_layer_ratios(&m, 0), "layer 0 is skipped");
    const double expected[4] = {1.2, 1.35, 1.5, 1.65};  // r_min + (r_max - r_min) h / H
    for (int l = 1; l < 3; l++)
        for (int b = 0; b < 2; b++)
            for (int h = 0; h < 4; h++)
                cr_assert_float_eq(mspoe_layer_ratios(&m, l)[b * 4 + h], expected[h], 1e-6,
                                   "layer %d sequence %d head %d", l, b, h);
    gpt_free(&m);
}

// One head's q and k, d = 2, stride 2: the query (1, 0) at `row`, and keys (big, 0) at
// positions 0 .. dominant - 1, (0, 0) elsewhere, so the dominant keys share the weight.
static void dominant_keys(float *q, float *k, int row, int dominant) {
    memset(q, 0, 2 * (row + 1) * sizeof(float));
    memset(k, 0, 2 * (row + 1) * sizeof(float));
    q[2 * row] = 1.0f;
    for (int j = 0; j < dominant; j++) k[2 * j] = 30.0f;
}

Test(mspoe, position_score_is_the_fraction_of_keys_above_three_times_the_mean) {
    // 10 keys: mean weight 0.1, threshold 0.3. 1, 2 or 3 dominant keys weigh about 1, 1/2,
    // 1/3 each (above 0.3), 4 weigh 1/4 each (below), and equal keys weigh the mean.
    float q[20], k[20], work[10];
    const int dominant[] = {0, 1, 2, 3, 4};
    const float expected[] = {0.0f, 0.1f, 0.2f, 0.3f, 0.0f};
    for (int i = 0; i < 5; i++) {
        dominant_keys(q, k, 9, dominant[i]);
        cr_assert_float_eq(mspoe_position_score(q, k, 2, 2, 9, work), expected[i], 1e-7,
                           "%d dominant keys", dominant[i]);
    }
}

Test(mspoe, heads_rank_by_score_highest_first_ties_by_index) {
    int rank[4];
    // order by score: heads 1, 2, 3, 0; rank is the inverse of that order (a 4-cycle, so using
    // the order itself, as the official code's indexing does, would give 1, 2, 3, 0).
    mspoe_rank_heads((const float[]){0.1f, 0.5f, 0.3f, 0.2f}, 4, rank);
    cr_assert(rank[0] == 3 && rank[1] == 0 && rank[2] == 1 && rank[3] == 2);
    mspoe_rank_heads((const float[]){0.2f, 0.2f, 0.1f, 0.2f}, 4, rank);
    cr_assert(rank[0] == 0 && rank[1] == 1 && rank[2] == 3 && rank[3] == 2);
}

// The hook on a constructed qkv: heads 0..3 of a sequence have 0, 1, 2, 3 dominant keys at its
// last scored row, so their scores rise with the head index and the ratios must fall: head 3
// gets r_min. Sequence 0's last scored row is 9 (rows 10, 11 unscored padding whose uniform
// attention would score every head 0 and keep head-index order); sequence 1's is 11.
Test(mspoe, hook_ranks_heads_at_the_last_scored_row_and_rotates_by_t_over_r) {
    enum { B = 2, T = 12, H = 4, C = 8 };  // d = 2
    GPTConfig c = rope_config(1, C, H, T);
    GPT m;
    char err[256];
    cr_assert_eq(gpt_build(&m, &c, B, err, sizeof err), 0, "%s", err);
    MsPoEConfig cfg = {.ratio_min = 1.2f, .ratio_max = 1.8f, .skip_layers = 0};
    cr_assert_eq(mspoe_enable(&m, &cfg, err, sizeof err), 0, "%s", err);
    static float qkv[B * T * 3 * C];
    int32_t targets[B * T];
    const int rows[B] = {9, 11};
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) targets[b * T + t] = t <= rows[b] && t % 2 ? 1 : -1;
        targets[b * T + rows[b]] = 1;
        for (int h = 0; h < H; h++) {
            float q[2 * T], k[2 * T];
            dominant_keys(q, k, rows[b], h);
            for (int t = 0; t <= rows[b]; t++)
                for (int i = 0; i < 2; i++) {
                    qkv[(b * T + t) * 3 * C + h * 2 + i] = q[2 * t + i];
                    qkv[(b * T + t) * 3 * C + C + h * 2 + i] = k[2 * t + i];
                }
        }
    }
    m.B = B;
    m.T = T;
    m.targets = targets;
    mspoe_qk_forward(&m, 0, qkv);
    const double *ratios = mspoe_layer_ratios(&m, 0);
    const double expected[H] = {1.65, 1.5, 1.35, 1.2};
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            cr_assert_float_eq(ratios[b * H + h], expected[h], 1e-6, "sequence %d head %d", b, h);
            // q = (1, 0) at the row, rotated by angle row / r (theta_0 = 1 for d = 2).
            const float *q = qkv + (b * T + rows[b]) * 3 * C + h * 2;
            double angle = rows[b] / ratios[b * H + h];
            cr_assert_float_eq(q[0], cos(angle), 1e-6);
            cr_assert_float_eq(q[1], sin(angle), 1e-6);
        }
    gpt_free(&m);
}

Test(mspoe, refuses_what_it_cannot_rescale) {
    GPTConfig c = rope_config(2, 16, 2, 8);
    MsPoEConfig ok = {.ratio_min = 1.2f, .ratio_max = 1.8f, .skip_layers = 1};
    cr_assert_null(mspoe_check(&ok, &c));
    MsPoEConfig bad = ok;
    bad.skip_layers = 2;
    cr_assert_not_null(strstr(mspoe_check(&bad, &c), "leaves no layer"));
    bad = ok;
    bad.ratio_min = 2.0f;
    cr_assert_not_null(strstr(mspoe_check(&bad, &c), "MIN above MAX"));
    bad = ok;
    bad.ratio_min = 0.0f;
    cr_assert_not_null(strstr(mspoe_check(&bad, &c), "must be positive"));
    c.pe = pe_find("abs");
    cr_assert_not_null(strstr(mspoe_check(&ok, &c), "uses --pe abs"));
    MsPoEConfig parsed;
    char err[128];
    cr_assert_eq(mspoe_parse_ratios("1.25:2", &parsed, err, sizeof err), 0);
    cr_assert(parsed.ratio_min == 1.25f && parsed.ratio_max == 2.0f);
    const char *malformed[] = {"1.2", "1.2:", ":1.8", "a:b", "1.2:1.8:2", "1.2;1.8", ""};
    for (size_t i = 0; i < sizeof malformed / sizeof *malformed; i++)
        cr_assert_eq(mspoe_parse_ratios(malformed[i], &parsed, err, sizeof err), -1, "%s",
                     malformed[i]);
}

// Ms-PoE has no backward: training with it on is a caller's bug, which must not go unnoticed.
Test(mspoe, backward_refuses_to_run, .signal = SIGABRT) {
    GPTConfig c = rope_config(2, 16, 2, 8);
    GPT m;
    build(&m, &c, 1);
    MsPoEConfig cfg = {.ratio_min = 1.2f, .ratio_max = 1.8f, .skip_layers = 1};
    char err[256];
    cr_assert_eq(mspoe_enable(&m, &cfg, err, sizeof err), 0, "%s", err);
    int32_t inputs[8] = {0}, targets[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    gpt_forward(&m, inputs, targets, 1, 8, 1, 0);
    gpt_backward(&m);
}
