// What the libFuzzer targets of tests/fuzz share: the input as a file that the loaders open by
// path, as they open any file. It lives in /dev/shm (memory, no disk), one per process, removed
// at exit. (A memfd's /proc/self/fd path does not do: libhdf5 resolves the link to a name that
// does not open.)
#ifndef PELAB_FUZZ_FILE_H
#define PELAB_FUZZ_FILE_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char fuzz_path[64];

static void fuzz_file_remove(void) { unlink(fuzz_path); }

static const char *fuzz_file(const uint8_t *data, size_t size) {
    static int fd = -1;
    if (fd < 0) {
        snprintf(fuzz_path, sizeof fuzz_path, "/dev/shm/pelab-fuzz-%ld", (long)getpid());
        fd = open(fuzz_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (fd < 0) abort();
        atexit(fuzz_file_remove);
    }
    if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) abort();
    return fuzz_path;
}

#endif
