#include "run_lock.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "../common/savefile.h"

static int lock_path(char *buf, size_t len, const char *dir) {
    int n = snprintf(buf, len, "%s/%s", dir, RUN_LOCK_FILE);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

// The pid written in the lock file open at fd, or -1 if it has none yet.
static long read_pid(int fd) {
    char text[32] = "";
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    long pid = n > 0 ? strtol(text, NULL, 10) : 0;
    return pid > 0 ? pid : -1;
}

int run_lock_busy(const char *what, const char *dir, long pid, char *err, size_t errlen) {
    char who[32] = "";
    if (pid > 0) snprintf(who, sizeof who, " (pid %ld)", pid);
    snprintf(err, errlen,
             "%s %s is in use by a run still going%s; wait for it to end or stop it, or pick "
             "another folder",
             what, dir, who);
    return -1;
}

int run_lock_take(const char *dir, char *err, size_t errlen) {
    char path[4096 + 16];
    if (lock_path(path, sizeof path, dir) != 0) {
        snprintf(err, errlen, "--out %s is too long", dir);
        return -1;
    }
    // Kept open, never closed: the lock lasts as long as the process.
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s; pick a writable --out", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int busy = errno == EWOULDBLOCK;
        if (busy) run_lock_busy("--out", dir, read_pid(fd), err, errlen);
        else snprintf(err, errlen, "cannot lock %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    char text[32];
    int n = snprintf(text, sizeof text, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)n, 0) != n) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return 0;
}

long run_lock_holder(const char *dir) {
    char path[4096 + 16];
    if (lock_path(path, sizeof path, dir) != 0) return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    long pid = 0;
    // A shared lock conflicts only with the holder's exclusive one, and is dropped at once.
    if (flock(fd, LOCK_SH | LOCK_NB) != 0) pid = errno == EWOULDBLOCK ? read_pid(fd) : 0;
    close(fd);
    return pid;
}

// The writer's pid of a save's temporary name "<name>.tmp.<pid>", or 0 if name is not one.
static long temp_writer(const char *name) {
    const char *mark = NULL;
    for (const char *p = strstr(name, ".tmp."); p; p = strstr(p + 1, ".tmp.")) mark = p;
    if (!mark || !isdigit((unsigned char)mark[5])) return 0;
    char *end;
    long pid = strtol(mark + 5, &end, 10);
    return *end == '\0' ? pid : 0;
}

int run_lock_clean_temps(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int removed = 0;
    for (struct dirent *e; (e = readdir(d));) {
        long pid = temp_writer(e->d_name);
        // Alive, or alive under another user (EPERM): not ours to remove. A pid reused since is
        // taken as alive too; the file then stays, which is the safe side.
        if (!pid || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char path[4096 + 256];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) == 0) {
            printf("removed %s, left by an interrupted save (pid %ld)\n", path, pid);
            removed++;
        }
    }
    closedir(d);
    return removed;
}

int run_lock_open_append(const char *path, const char *what, char *err, size_t errlen) {
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    const char *dir = dirname(copy);
    long holder = run_lock_holder(dir);
    if (holder) {
        char label[128];
        snprintf(label, sizeof label, "%s %s: its folder", what, path);
        return run_lock_busy(label, dir, holder, err, errlen);
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    if (fd < 0 || savefile_sync_folder(path) != 0) {
        snprintf(err, errlen, "cannot open %s %s: %s", what, path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(err, errlen, "%s %s is being written by another process; wait for it to finish "
                 "or write elsewhere", what, path);
        close(fd);
        return -1;
    }
    return fd;
}
