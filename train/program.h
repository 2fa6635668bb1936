// What the pelab programs (bin/train, bin/eval) share at their edges: their name in messages,
// the one-line exit on an error, and the set-up every one of them needs.
#ifndef PELAB_PROGRAM_H
#define PELAB_PROGRAM_H

// The name messages start with: argv[0], set by program_start.
extern const char *program_name;

// Names the program (argv[0], else fallback) and ignores SIGXFSZ: a write past the file size
// limit then fails with EFBIG, which the savers report, instead of killing the program mid-save.
void program_start(int argc, char **argv, const char *fallback);

// Prints "<program_name>: <message>" on stderr and exits with status (in a data-parallel
// run taking the other ranks down too: train/dist.h).
_Noreturn void die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Sets the OpenMP and OpenBLAS threads to n, after checking that the process may reserve the
// address space they take (a stack each, and OpenBLAS's buffer each): under a memory limit
// (ulimit -v) OpenBLAS would otherwise retry its allocation forever. Exits with status 2 and a
// message naming --threads when it may not.
void program_set_threads(int n);

#endif
