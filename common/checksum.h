// SHA-256 of files and text (OpenSSL's libcrypto): the checksum record of the files pelab
// writes (h5file.h) and the identity of the data a run trains on (its checkpoint records it).
#ifndef PELAB_CHECKSUM_H
#define PELAB_CHECKSUM_H

#include <stddef.h>

// The SHA-256 of path's bytes from `offset` on, as 64 hex digits, and how many bytes that was.
// 0, or -1 with err.
int file_sha256(const char *path, long long offset, char hex[65], long long *bytes, char *err,
                size_t errlen);

// The SHA-256 of text[0..n) as 64 hex digits. 0, or -1 (libcrypto failed).
int text_sha256(const void *text, size_t n, char hex[65]);

#endif
