// Writing a file so that nothing already saved is lost: the bytes go to "<path>.tmp.<pid>",
// which is flushed to disk, renamed over path, and the folder flushed too (the rename itself is
// only durable once the folder's entry is). A failure at any point (a full disk, a file size
// limit, a folder that cannot be written) leaves path as it was and no temporary file behind.
#ifndef PELAB_SAVEFILE_H
#define PELAB_SAVEFILE_H

#include <stddef.h>

// The temporary name of a save of path by the process pid. -1 if it does not fit len.
int savefile_temp_name(char *buf, size_t len, const char *path, long pid);

// Writes size bytes to path as above; `what` names the file in messages ("checkpoint",
// "metrics log"). 0, or -1 with one line in err naming the file, the problem and the fix.
int savefile_write(const char *path, const char *what, const void *data, size_t size, char *err,
                   size_t errlen);

// Flushes the folder holding path, so that a file just created or renamed there survives a
// crash. 0, or -1 with errno set.
int savefile_sync_folder(const char *path);

// A failed write's errno as advice: a full disk or a size limit says so and what to do.
const char *savefile_why(int errnum);

#endif
