// sin: the fixed sinusoid of "Attention is all you need" added to the token embeddings:
// P[t, 2m] = sin(t / 10000^(2m/C)), P[t, 2m+1] = cos(t / 10000^(2m/C)). Nothing is learned,
// so there is no backward.
#include <math.h>

#include "gpt.h"

static void sin_embed_forward(float *h0, const float *params, const GPTConfig *c, int B, int T) {
    (void)params;
    int C = c->n_embd;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < C; i++) {
            double angle = t / pow(10000.0, (double)(i - i % 2) / C);
            float p = (float)(i % 2 == 0 ? sin(angle) : cos(angle));
            for (int b = 0; b < B; b++) h0[((size_t)b * T + t) * C + i] += p;
        }
    }
}

const PositionalEncoding pe_sin = {
    .name = "sin",
    .summary = "fixed sinusoidal position signal added to the tokens",
    .embed_forward = sin_embed_forward,
};
