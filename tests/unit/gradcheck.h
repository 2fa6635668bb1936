// Finite-difference gradient checking shared by the unit tests.
//
// Each check defines a scalar loss of some float buffer, computes its analytic gradient, and
// compares it with central differences on a sample of entries. Central differences in float32
// carry rounding noise of order eps_machine * |loss| / h, so the comparison is relative to the
// largest gradient entry of the tensor rather than entry by entry.
#ifndef PELAB_GRADCHECK_H
#define PELAB_GRADCHECK_H

#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include "../../common/rng.h"

typedef double (*LossFn)(void *ctx);

// Returns max |fd - analytic| / max(max |analytic|, floor) over up to `samples` entries of x.
static inline double gradcheck(LossFn loss, void *ctx, float *x, const float *analytic, size_t n,
                               int samples, float h, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    double max_grad = 1e-6, max_err = 0.0;
    for (size_t i = 0; i < n; i++) max_grad = fmax(max_grad, fabs(analytic[i]));
    size_t count = (size_t)samples < n ? (size_t)samples : n;
    for (size_t s = 0; s < count; s++) {
        size_t i = count == n ? s : rng_below(&rng, (uint32_t)n);
        float saved = x[i];
        x[i] = saved + h;
        double up = loss(ctx);
        x[i] = saved - h;
        double down = loss(ctx);
        x[i] = saved;
        double fd = (up - down) / (2.0 * h);
        max_err = fmax(max_err, fabs(fd - analytic[i]));
    }
    return max_err / max_grad;
}

static inline void fill_normal(float *x, size_t n, float std, Rng *rng) {
    for (size_t i = 0; i < n; i++) x[i] = std * rng_normal(rng);
}

// A new buffer of n values drawn from N(0, std^2).
static inline float *alloc_normal(size_t n, float std, Rng *rng) {
    float *x = malloc(n * sizeof(float));
    fill_normal(x, n, std, rng);
    return x;
}

// sum_i w_i x_i in double: the projection that turns a tensor output into a scalar loss.
static inline double weighted_sum(const float *x, const float *w, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * w[i];
    return s;
}

#endif
