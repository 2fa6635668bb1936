// What the small test tools (bin/crosscheck, bin/bench) share: strict number flags, failing
// with one line (train/program.h's die, status 1).
#ifndef PELAB_TOOL_COMMON_H
#define PELAB_TOOL_COMMON_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "../train/program.h"

static inline long parse_int(const char *flag, const char *s, long lo) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > 1000000)
        die(1, "%s needs an integer from %ld to 1000000, got \"%s\"", flag, lo, s);
    return v;
}

static inline float parse_float(const char *flag, const char *s, float lo) {
    char *end;
    float v = strtof(s, &end);
    if (*end || end == s || !(v >= lo) || v > 1e6f)
        die(1, "%s needs a number from %g to 1000000, got \"%s\"", flag, (double)lo, s);
    return v;
}

#endif
