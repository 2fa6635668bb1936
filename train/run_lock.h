// One run per output folder: bin/train holds an flock on <out>/.lock for as long as it runs, so
// that a second run on the same --out (with --force or --resume too) fails at once instead of
// interleaving its metrics and saving over the first. The file holds the holder's pid for the
// message; the kernel drops the lock when the process ends, however it ends, so a killed run
// never leaves a folder locked. The file itself stays (removing it would let two runs lock two
// different files of the same name).
#ifndef PELAB_RUN_LOCK_H
#define PELAB_RUN_LOCK_H

#include <stddef.h>

#define RUN_LOCK_FILE ".lock"

// Takes dir's lock for the rest of the process's life. 0, or -1 with err: a live process holds
// it (named by pid where known), or the lock file cannot be created.
int run_lock_take(const char *dir, char *err, size_t errlen);

// Whether a live process holds dir's lock: its pid, -1 if it holds it but its pid is unknown,
// 0 if no one does (or dir has no lock file). Changes nothing.
long run_lock_holder(const char *dir);

// The message for a folder `dir` that the live process pid holds, into err ("<what> <dir> is in
// use by a run still going (pid N); ..."); returns -1.
int run_lock_busy(const char *what, const char *dir, long pid, char *err, size_t errlen);

// Opens path to append rows to it (bin/eval --json), for a program that is not its folder's
// run: refused while a live run holds the folder (the folder is that run's), and while another
// process appends to the file (an flock on the file itself, held until the fd is closed). The fd,
// or -1 with err; `what` names the file in messages ("--json").
int run_lock_open_append(const char *path, const char *what, char *err, size_t errlen);

// Removes the temporary files of saves in dir ("<name>.tmp.<pid>", common/savefile.h) whose
// writer is dead: an interrupted save's leftovers. Only safe while holding dir's lock (no other
// run writes there). Prints each removal on stdout; returns how many were removed.
int run_lock_clean_temps(const char *dir);

#endif
