// Data parallelism: MPI when built with PELAB_MPI (make MPI=1), else a single rank.
#include "dist.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../common/rng.h"
#include "program.h"

#ifdef PELAB_MPI
#include <mpi.h>

static int rank, size = 1;

void dist_init(int *argc, char ***argv) {
    MPI_Init(argc, argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (rank == 0) return;
    if (!freopen("/dev/null", "w", stdout)) die(1, "cannot silence stdout: %s", "/dev/null");
    static char name[256];
    snprintf(name, sizeof name, "%s (rank %d of %d)", program_name, rank, size);
    program_name = name;
}

void dist_finalize(void) { MPI_Finalize(); }

_Noreturn void dist_exit(int status) {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    fflush(stdout);
    fflush(stderr);
    if (initialized && !finalized && size > 1) MPI_Abort(MPI_COMM_WORLD, status);
    if (initialized && !finalized) MPI_Finalize();
    exit(status);
}

void dist_sum(double *x, int n) {
    if (size > 1) MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

// The gradient sum: one MPI_Allreduce over the whole buffer, in pieces only past INT_MAX floats.
void dist_sum_floats(float *x, size_t n) {
    if (size == 1) return;
    for (size_t done = 0, piece = 1u << 30; done < n; done += piece)
        MPI_Allreduce(MPI_IN_PLACE, x + done, (int)(n - done < piece ? n - done : piece), MPI_FLOAT,
                      MPI_SUM, MPI_COMM_WORLD);
}

int dist_any(int flag) {
    if (size > 1) MPI_Allreduce(MPI_IN_PLACE, &flag, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD);
    return flag;
}

int dist_same(const char *text) {
    // the largest hash and the largest complement agree only if every rank has the same hash
    uint64_t h = 0x5045;
    for (const char *c = text; *c; c++) h = hash_mix(h, (unsigned char)*c);
    uint64_t both[2] = {h, ~h};
    MPI_Allreduce(MPI_IN_PLACE, both, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    return both[0] == h && both[1] == ~h;
}

#else

static const int rank = 0, size = 1;

void dist_init(int *argc, char ***argv) { (void)argc, (void)argv; }
void dist_finalize(void) {}
_Noreturn void dist_exit(int status) { exit(status); }
void dist_sum(double *x, int n) { (void)x, (void)n; }
void dist_sum_floats(float *x, size_t n) { (void)x, (void)n; }
int dist_any(int flag) { return flag; }
int dist_same(const char *text) { return (void)text, 1; }

#endif

int dist_rank(void) { return rank; }
int dist_size(void) { return size; }

void dist_check(int status, const char *message) {
    int first = status ? rank : size, worst = status;  // the lowest failed rank, the largest status
#ifdef PELAB_MPI
    if (size > 1) {
        MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
        MPI_Allreduce(MPI_IN_PLACE, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    }
#endif
    if (!worst) return;
    if (rank == first) fprintf(stderr, "%s: %s\n", program_name, message);
    dist_finalize();
    exit(worst);
}

// Each split's counts and loss sum, added up as doubles (exact for counts below 2^53).
void dist_sum_results(SplitResult *results, int n) {
    if (size == 1) return;  // a single rank's loss is already the mean: keep its bits
    enum { FIELDS = 6 };
    double sums[TASK_MAX_SPLITS * FIELDS];
    for (int s = 0; s < n; s++) {
        const SplitResult *r = &results[s];
        double *x = sums + s * FIELDS;
        x[0] = r->scored, x[1] = r->token_errors, x[2] = r->seqs, x[3] = r->seq_errors;
        x[4] = r->loss * (double)r->scored, x[5] = r->second_answers;
    }
    dist_sum(sums, n * FIELDS);
    for (int s = 0; s < n; s++) {
        SplitResult *r = &results[s];
        const double *x = sums + s * FIELDS;
        r->scored = (long)x[0], r->token_errors = (long)x[1], r->seqs = (long)x[2];
        r->seq_errors = (long)x[3], r->second_answers = (long)x[5];
        r->loss = r->scored ? x[4] / (double)r->scored : 0.0;
    }
}
