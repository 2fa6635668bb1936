// The 95 % Wilson score interval every reported error carries (data/evaluate.c), against the
// published values of Newcombe (1998, "Two-sided confidence intervals for the single
// proportion", Table I, method 3: the score interval without continuity correction), given
// there to 4 decimals, and its edge cases.
#include <criterion/criterion.h>

#include "../../data/evaluate.h"

Test(interval, wilson_matches_newcombe_1998) {
    const struct {
        long k, n;
        double lo, hi;
    } known[] = {
        {81, 263, 0.2553, 0.3662},
        {15, 148, 0.0624, 0.1605},
        {0, 20, 0.0000, 0.1611},
        {1, 29, 0.0061, 0.1718},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        Interval ci = wilson_interval(known[i].k, known[i].n);
        cr_expect_float_eq(ci.lo, known[i].lo, 5e-5, "%ld/%ld: lower end %.5f, published %.4f",
                           known[i].k, known[i].n, ci.lo, known[i].lo);
        cr_expect_float_eq(ci.hi, known[i].hi, 5e-5, "%ld/%ld: upper end %.5f, published %.4f",
                           known[i].k, known[i].n, ci.hi, known[i].hi);
    }
}

// k = 0 and k = n end exactly at 0 and 1 without collapsing to a point, the interval of k and of
// n - k mirror each other, and nothing scored says nothing ([0, 1]).
Test(interval, edges_and_symmetry) {
    Interval none = wilson_interval(0, 1000), all = wilson_interval(1000, 1000);
    cr_expect_eq(none.lo, 0.0);
    cr_expect_gt(none.hi, 0.0, "no errors in 1000 must still allow some");
    cr_expect_float_eq(none.hi, 1.0 - all.lo, 1e-12);
    cr_expect_eq(all.hi, 1.0);
    Interval a = wilson_interval(7, 40), b = wilson_interval(33, 40);
    cr_expect_float_eq(a.lo, 1.0 - b.hi, 1e-12);
    cr_expect_float_eq(a.hi, 1.0 - b.lo, 1e-12);
    cr_expect(a.lo < 7.0 / 40 && 7.0 / 40 < a.hi, "the interval holds the estimate");
    Interval empty = wilson_interval(0, 0);
    cr_expect(empty.lo == 0.0 && empty.hi == 1.0);
    // Four times the reads, about half the width.
    Interval wide = wilson_interval(50, 500), narrow = wilson_interval(200, 2000);
    double ratio = (narrow.hi - narrow.lo) / (wide.hi - wide.lo);
    cr_expect(ratio > 0.48 && ratio < 0.52, "width ratio %.3f", ratio);
}
