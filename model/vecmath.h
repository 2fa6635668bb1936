// Vectorised exp for the elementwise hot loops (GELU, softmax), 8 or 16 floats at a time.
//
// libm's expf/tanhf are scalar calls that the compiler cannot vectorise: at classroom size they
// made GELU the largest item of a training step (43 % of it). These are the Cephes expf
// polynomial (the same range reduction and degree-5 minimax polynomial) written with GCC vector
// extensions: with AVX2/FMA (-march=native on x86-64) one call is a few vector instructions; on
// other targets (aarch64, plain x86-64) GCC lowers the same code to NEON/SSE or scalar code, so
// every build runs the same formulas. Tails shorter than 8 go through the same vector code via
// a padded copy, so a value's result never depends on where a thread's chunk starts: results are
// the same bits whatever the thread count.
//
// Error against glibc's expf/tanhf (tests/unit/test_layers.c checks these bounds on a grid):
//   vec_exp: relative error below 2e-7 (2 ulp) for x in [-87, 88]; 0 below -87.3, +inf above 88.7
//   gelu (x * sigmoid(2u), the tanh form): absolute error below 1e-6 * max(1, |x|)
// Both are under float32 rounding of the products around them, so gradient checks and the
// PyTorch cross-checks pass at their unchanged tolerances.
#ifndef PELAB_VECMATH_H
#define PELAB_VECMATH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

// 16 lanes where the CPU has 512-bit vectors (AVX-512), else 8: GCC emulates a vector wider
// than the hardware's with pairs of registers, which made the 16-lane exp slower on AVX2.
#ifdef __AVX512F__
#define VEC_WIDTH 16
#else
#define VEC_WIDTH 8
#endif
typedef float vfloat __attribute__((vector_size(VEC_WIDTH * sizeof(float))));
typedef int32_t vint __attribute__((vector_size(VEC_WIDTH * sizeof(int32_t))));

// x in every lane. x - 0 is x exactly (-0 included), so this is a plain broadcast; 0 + x would
// add (it turns -0 into +0, so the compiler must keep the addition).
static inline vfloat vec_splat(float x) { return x - (vfloat){0}; }

// The lanes' own indices 0 .. VEC_WIDTH - 1, for masks by position.
static inline vint vec_lane_index(void) {
#if VEC_WIDTH == 16
    return (vint){0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
#else
    return (vint){0, 1, 2, 3, 4, 5, 6, 7};
#endif
}

static inline vfloat vec_load(const float *p) {
    vfloat v;
    memcpy(&v, p, sizeof v);  // unaligned load
    return v;
}

static inline void vec_store(float *p, vfloat v) { memcpy(p, &v, sizeof v); }

// The first min(n, VEC_WIDTH) floats of p, the lanes past n `fill`: a plain vector load when
// n >= VEC_WIDTH, else through a buffer (scalar stores read back as one vector, which stalls
// store-to-load forwarding: keep it to the last vector of an array).
static inline vfloat vec_load_partial(const float *p, size_t n, float fill) {
    if (n >= VEC_WIDTH) return vec_load(p);
    float buf[VEC_WIDTH];
    for (size_t i = 0; i < VEC_WIDTH; i++) buf[i] = i < n ? p[i] : fill;
    return vec_load(buf);
}

// The first min(n, VEC_WIDTH) lanes of v to p.
static inline void vec_store_partial(float *p, vfloat v, size_t n) {
    if (n >= VEC_WIDTH) {
        vec_store(p, v);
        return;
    }
    float buf[VEC_WIDTH];
    vec_store(buf, v);
    memcpy(p, buf, n * sizeof(float));
}

// Lanes of a where mask (a comparison's -1 lanes), else of b; C has no vector ?:.
static inline vfloat vec_select(vint mask, vfloat a, vfloat b) {
    vint ai, bi;
    memcpy(&ai, &a, sizeof ai);
    memcpy(&bi, &b, sizeof bi);
    vint r = (mask & ai) | (~mask & bi);
    vfloat out;
    memcpy(&out, &r, sizeof out);
    return out;
}

static inline vfloat vec_min(vfloat a, vfloat b) { return vec_select(a < b, a, b); }
static inline vfloat vec_max(vfloat a, vfloat b) { return vec_select(a > b, a, b); }

// Entries j0 .. j0 + VEC_WIDTH - 1 of a row (p points at entry j0) whose entries up to `end`
// may be read, lanes past entry `last` set to `fill`. Whole-vector loads and a lane mask: a
// partial load where the valid entries stop (scalar stores, then a vector load of them) stalls
// store-to-load forwarding; only a vector crossing `end` loads partially.
static inline vfloat vec_load_masked(const float *p, int j0, int last, int end, float fill) {
    vfloat x = vec_load_partial(p, (size_t)(end - j0), fill);
    return vec_select(vec_lane_index() + j0 > last, vec_splat(fill), x);
}

// e^x: x = n ln2 + r with |r| <= ln2 / 2, e^r by the Cephes polynomial, 2^n by the exponent
// bits. x is clamped to [-87.3, 88.7] first, where 2^n stays a normal float; past the ends the
// result is set to exactly 0 and +inf, as expf's underflow and overflow give.
static inline vfloat vec_exp(vfloat x) {
    const vfloat lo = vec_splat(-87.33654f), hi = vec_splat(88.72283f);
    vfloat xc = vec_min(vec_max(x, lo), hi);
    vfloat n = xc * 1.44269504088896341f;  // x / ln 2, rounded to nearest below
    n = __builtin_convertvector(__builtin_convertvector(n + vec_select(n < 0, vec_splat(-0.5f), vec_splat(0.5f)), vint), vfloat);
    // r = x - n ln2 in two parts (Cody-Waite), exact for |n| < 2^8
    vfloat r = xc - n * 0.693359375f + n * 2.12194440e-4f;
    vfloat r2 = r * r;
    vfloat p = vec_splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r2 + r + 1.0f;
    vint bits = (__builtin_convertvector(n, vint) + 127) << 23;  // 2^n
    vfloat scale;
    memcpy(&scale, &bits, sizeof scale);
    vfloat y = p * scale;
    y = vec_select(x < lo, vec_splat(0.0f), y);
    y = vec_select(x > hi, vec_splat(__builtin_inff()), y);
    return vec_select(x != x, x, y);  // NaN stays NaN, so a diverged run still shows
}

// The largest lane.
static inline float vec_hmax(vfloat v) {
    float r = v[0];
    for (int k = 1; k < VEC_WIDTH; k++) r = v[k] > r ? v[k] : r;
    return r;
}

// The largest of src[0..n).
static inline float vec_max_of(const float *src, size_t n) {
    vfloat m = vec_splat(-__builtin_inff());
    for (size_t i = 0; i < n; i += VEC_WIDTH)
        m = vec_max(m, vec_load_partial(src + i, n - i, -__builtin_inff()));
    return vec_hmax(m);
}

// Lane sum in a fixed order (so a row's sum is the same bits on every run): halves added
// lane-wise down to 4 lanes, then those in pairs.
static inline float vec_sum(vfloat v) {
    float a[VEC_WIDTH];
    memcpy(a, &v, sizeof a);
    for (int w = VEC_WIDTH / 2; w >= 4; w /= 2)
        for (int k = 0; k < w; k++) a[k] += a[k + w];
    return (a[0] + a[1]) + (a[2] + a[3]);
}

// Lane l of the result is lane l + s of v (VEC_SHIFT_DOWN) or lane l - s (VEC_SHIFT_UP), 0 where
// that lane does not exist; s a constant in 1 .. VEC_WIDTH - 1. __builtin_shufflevector (GCC 12,
// clang) takes constant indices into its two vectors placed end to end: past the first
// vector's lanes are the zeros.
#if VEC_WIDTH == 16
#define VEC_LANES_FROM(s) (s), (s) + 1, (s) + 2, (s) + 3, (s) + 4, (s) + 5, (s) + 6, (s) + 7, \
                          (s) + 8, (s) + 9, (s) + 10, (s) + 11, (s) + 12, (s) + 13, (s) + 14, (s) + 15
#else
#define VEC_LANES_FROM(s) (s), (s) + 1, (s) + 2, (s) + 3, (s) + 4, (s) + 5, (s) + 6, (s) + 7
#endif
#define VEC_SHIFT_DOWN(v, s) __builtin_shufflevector((v), (vfloat){0}, VEC_LANES_FROM(s))
#define VEC_SHIFT_UP(v, s) __builtin_shufflevector((vfloat){0}, (v), VEC_LANES_FROM(VEC_WIDTH - (s)))

// Lane l: the sum of lanes l .. VEC_WIDTH - 1 (suffix) or 0 .. l (prefix), in log2(VEC_WIDTH)
// vector additions: a running sum without a chain of one scalar addition per element, and with
// less rounding (each element passes through log2(VEC_WIDTH) additions inside its vector).
static inline vfloat vec_scan(vfloat v, int prefix) {
    v += prefix ? VEC_SHIFT_UP(v, 1) : VEC_SHIFT_DOWN(v, 1);
    v += prefix ? VEC_SHIFT_UP(v, 2) : VEC_SHIFT_DOWN(v, 2);
    v += prefix ? VEC_SHIFT_UP(v, 4) : VEC_SHIFT_DOWN(v, 4);
#if VEC_WIDTH == 16
    v += prefix ? VEC_SHIFT_UP(v, 8) : VEC_SHIFT_DOWN(v, 8);
#endif
    return v;
}

static inline vfloat vec_suffix_sums(vfloat v) { return vec_scan(v, 0); }
static inline vfloat vec_prefix_sums(vfloat v) { return vec_scan(v, 1); }

// dst[i] = e^(src[i] - shift) for i < n (dst may be src); returns their sum, in a fixed order.
static inline float vec_exp_sum(float *dst, const float *src, size_t n, float shift) {
    vfloat acc = vec_splat(0.0f);
    for (size_t i = 0; i < n; i += VEC_WIDTH) {  // e^-inf = 0 in a short last vector's padding
        vfloat e = vec_exp(vec_load_partial(src + i, n - i, -__builtin_inff()) - shift);
        vec_store_partial(dst + i, e, n - i);
        acc += e;
    }
    return vec_sum(acc);
}

// dst[i] = 1 / (1 + e^-src[i]) for i < n (dst may be src): 0 where e^-x overflows, NaN stays NaN.
static inline void vec_sigmoid(float *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i += VEC_WIDTH) {
        vfloat s = 1.0f / (1.0f + vec_exp(-vec_load_partial(src + i, n - i, 0.0f)));
        vec_store_partial(dst + i, s, n - i);
    }
}

#endif
