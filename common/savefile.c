#include "savefile.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int savefile_temp_name(char *buf, size_t len, const char *path, long pid) {
    int n = snprintf(buf, len, "%s.tmp.%ld", path, pid);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

int savefile_sync_folder(const char *path) {
    char copy[4096];
    if (snprintf(copy, sizeof copy, "%s", path) >= (int)sizeof copy) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

const char *savefile_why(int errnum) {
    switch (errnum) {
    case ENOSPC: return "the disk is full; free some space or write elsewhere";
    case EDQUOT: return "the disk quota is used up; free some space or write elsewhere";
    case EFBIG: return "the file size limit (ulimit -f) is too small for it; raise the limit";
    default: return strerror(errnum);
    }
}

// All of data, through short writes and signals.
static int write_all(int fd, const char *data, size_t size) {
    while (size) {
        ssize_t n = write(fd, data, size);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        data += n, size -= (size_t)n;
    }
    return 0;
}

int savefile_write(const char *path, const char *what, const void *data, size_t size, char *err,
                   size_t errlen) {
    char tmp[4096 + 32];
    if (savefile_temp_name(tmp, sizeof tmp, path, (long)getpid()) != 0) {
        snprintf(err, errlen, "%s path %s is too long", what, path);
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create %s %s: %s (is its folder there and writable?)", what,
                 tmp, strerror(errno));
        return -1;
    }
    const char *step = "write";
    int failed = write_all(fd, data, size) != 0 || (step = "flush", fsync(fd) != 0);
    int saved = errno;
    if (close(fd) != 0 && !failed) failed = 1, saved = errno, step = "close";
    if (!failed && rename(tmp, path) != 0) failed = 1, saved = errno, step = "rename";
    if (failed) {
        unlink(tmp);
        snprintf(err, errlen, "cannot %s %s %s: %s; %s is left as it was", step, what, tmp,
                 savefile_why(saved), path);
        return -1;
    }
    if (savefile_sync_folder(path) != 0) {
        snprintf(err, errlen, "wrote %s %s but cannot flush its folder to disk: %s", what, path,
                 strerror(errno));
        return -1;
    }
    return 0;
}
