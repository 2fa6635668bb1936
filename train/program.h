// What the pelab programs (bin/train, bin/eval) share at their edges: their name in messages,
// and the one-line exit on an error.
#ifndef PELAB_PROGRAM_H
#define PELAB_PROGRAM_H

// The name messages start with: argv[0], set by main.
extern const char *program_name;

// Prints "<program_name>: <message>" on stderr and exits with status (in a data-parallel
// run taking the other ranks down too: train/dist.h).
_Noreturn void die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
