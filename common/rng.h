// Random numbers for pelab: a seedable stream generator (xoshiro256**) for data and
// initialisation, and a stateless counter hash for dropout masks.
//
// Why two kinds: a stream generator is what a task generator wants (draw, draw, draw), and its
// four words of state go into a checkpoint so a resumed run continues the same stream.
// Dropout masks instead must be the same in forward and backward and independent of how
// OpenMP splits the work, so each mask bit is a pure function of (key, element index).
#ifndef PELAB_RNG_H
#define PELAB_RNG_H

#include <math.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4];
} Rng;

static inline uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// Mixes several words into one key (for dropout sites, split seeds, ...).
static inline uint64_t hash_mix(uint64_t a, uint64_t b) {
    uint64_t x = a ^ (b * 0xD1B54A32D192ED03ULL);
    return splitmix64(&x);
}

static inline void rng_seed(Rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t rng_u64(Rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

// Uniform in [0, 1) with 24 bits, exactly representable as float.
static inline float rng_float(Rng *r) { return (float)(rng_u64(r) >> 40) * (1.0f / 16777216.0f); }

// Uniform integer in [0, n), n > 0 (Lemire's multiply-shift; the tiny bias is irrelevant here).
static inline uint32_t rng_below(Rng *r, uint32_t n) {
    return (uint32_t)(((rng_u64(r) >> 32) * (uint64_t)n) >> 32);
}

// Standard normal (Box-Muller, one value per call so the stream stays simple).
static inline float rng_normal(Rng *r) {
    double u1 = ((double)(rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double u2 = (double)(rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

// Dropout keep test for element `index` of the site `key`: true with probability 1 - p.
static inline int dropout_keep(uint64_t key, uint64_t index, uint32_t drop_threshold24) {
    uint64_t h = hash_mix(key, index);
    return (uint32_t)(h >> 40) >= drop_threshold24;
}

static inline uint32_t dropout_threshold(float p) { return (uint32_t)(p * 16777216.0f); }

#endif
