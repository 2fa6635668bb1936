#include "program.h"

#include "dist.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

const char *program_name = "pelab";

void die(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", program_name);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    dist_exit(status);
}
