// Data parallelism across processes (MPI). bin/train built with `make MPI=1` (bin/train-mpi)
// and started by mpirun or srun runs as P ranks: each forwards its shard of every batch, and
// the gradients are summed across ranks before the optimiser step (docs/mpi.md). Built
// without MPI, these calls are those of a single rank: rank 0 of 1, sums that change nothing.
#ifndef PELAB_DIST_H
#define PELAB_DIST_H

#include <stddef.h>

#include "../data/evaluate.h"

// Joins the run (MPI_Init). On ranks other than 0, stdout goes to /dev/null, so that the
// progress and results print once, and program_name says the rank, so an error names it.
void dist_init(int *argc, char ***argv);
// Leaves the run (MPI_Finalize); every rank must call it.
void dist_finalize(void);
int dist_rank(void);
int dist_size(void);

// Ends the program with `status`. Where the other ranks may not be ending too (an error only
// this rank met), it takes them down with it (MPI_Abort), so nobody waits for it forever.
_Noreturn void dist_exit(int status);

// A check every rank makes at the same point, with its own status (0: fine) and message:
// where any rank failed, the lowest such rank prints "<program_name>: <message>" (one message
// for the run), and every rank leaves the run cleanly and exits with the largest status.
void dist_check(int status, const char *message);

// Sums across ranks, in place; every rank gets the same result.
void dist_sum(double *x, int n);
void dist_sum_floats(float *x, size_t n);
// Whether flag is set on any rank.
int dist_any(int flag);
// Whether every rank holds the same text (the run's configuration).
int dist_same(const char *text);
// The evaluation counts of every rank's share of the splits, added up; results: [n].
void dist_sum_results(SplitResult *results, int n);

#endif
