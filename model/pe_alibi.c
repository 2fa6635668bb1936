// alibi: a fixed linear distance penalty per head, s_ij -= m_h (i - j). For H a power of two
// the slopes are m_h = 2^(-8(h+1)/H); for other H, the ALiBi paper's rule: the slopes of the
// nearest lower power of two n, then every other slope of 2n for the remaining H - n heads.
// Nothing is learned and the term does not depend on q or k, so there is no backward.
#include <math.h>

#include "gpt.h"

static float power_of_two_slope(int h, int n) { return powf(2.0f, -8.0f * (h + 1) / n); }

static float alibi_slope(int head, int n_head) {
    int n = 1;
    while (n * 2 <= n_head) n *= 2;
    if (head < n) return power_of_two_slope(head, n);
    return power_of_two_slope(2 * (head - n), 2 * n);
}

static void alibi_score_forward(float *S, const float *q, const float *k, int head,
                                const PEContext *ctx, float *act, float *scratch) {
    (void)q, (void)k, (void)act, (void)scratch;
    int T = ctx->T;
    float slope = alibi_slope(head, ctx->config->n_head);
    for (int i = 0; i < T; i++) {
        float *row = S + (size_t)i * T;
        for (int j = 0; j <= i; j++) row[j] -= slope * (float)(i - j);
    }
}

const PositionalEncoding pe_alibi = {
    .name = "alibi",
    .summary = "ALiBi: a fixed per-head penalty proportional to the distance",
    .score_forward = alibi_score_forward,
};
