#include "program.h"

#include "dist.h"

#include <omp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

// OpenBLAS's own calls; the OpenMP build shares the pool that omp_set_num_threads sizes.
void openblas_set_num_threads(int);
char *openblas_get_config(void);

// The buffer OpenBLAS allocates for each of its threads (BUFFER_SIZE of its x86-64 and arm64
// builds), up to the MAX_THREADS it was built with.
#define BLAS_BUFFER_BYTES ((size_t)128 << 20)

const char *program_name = "pelab";

void program_start(int argc, char **argv, const char *fallback) {
    program_name = argc > 0 && argv[0] ? argv[0] : fallback;
    signal(SIGXFSZ, SIG_IGN);
}

void die(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", program_name);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    dist_exit(status);
}

// The threads OpenBLAS gives a buffer when asked for n.
static int blas_threads(int n) {
    const char *config = openblas_get_config();
    const char *max = config ? strstr(config, "MAX_THREADS=") : NULL;
    int cap = max ? atoi(max + strlen("MAX_THREADS=")) : 0;
    return cap > 0 && cap < n ? cap : n;
}

void program_set_threads(int n) {
    struct rlimit stack;
    size_t stack_bytes = getrlimit(RLIMIT_STACK, &stack) == 0 && stack.rlim_cur != RLIM_INFINITY
                             ? (size_t)stack.rlim_cur
                             : (size_t)2 << 20;
    size_t need = (size_t)n * stack_bytes + (size_t)blas_threads(n) * BLAS_BUFFER_BYTES;
    // Reserved once, never touched, and given back: only the limit is tested.
    void *room = mmap(NULL, need, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (room == MAP_FAILED)
        die(2, "--threads %d needs about %.1f GiB of address space (a stack and an OpenBLAS buffer "
            "per thread), more than this process may have (ulimit -v); lower --threads",
            n, need / 1073741824.0);
    munmap(room, need);
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}
