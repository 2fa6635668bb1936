// Small HDF5 helpers shared by every file pelab writes (checkpoints, attention maps, datasets):
// one-line error messages instead of HDF5's printed stacks, atomic writes, a whole-file checksum
// checked before libhdf5 sees a byte, and attribute readers that check shape and type first.
//
// The checksum record: every file pelab writes starts with a 512-byte HDF5 user block (which
// libhdf5 and h5py skip) holding the text "pelab-checksum 1\nsha256 <64 hex digits>\nbytes <N>\n"
// padded with NUL bytes, where N and the SHA-256 cover everything after the block (so
// `tail -c +513 FILE | sha256sum` checks it by hand). A file that starts with HDF5's own
// signature instead was written by another tool (h5py); it is read without a checksum.
#ifndef PELAB_H5FILE_H
#define PELAB_H5FILE_H

#include <hdf5.h>
#include <stddef.h>

#include "checksum.h"

// Turns HDF5's own error printing off; failures become our messages.
void h5_quiet(void);

// Formats the message into err, followed by the most specific line of HDF5's error stack if it
// has one. Returns -1 so that callers can `return h5_fail(...)`.
int h5_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

// A scalar attribute, so that h5py reads f.attrs["step"] as 40 rather than array([40]).
int h5_set_scalar(hid_t loc, const char *name, hid_t type, const void *value);

#define H5_CHECKSUM_BLOCK 512

// Opens a pelab file for reading after checking, in order, that it exists, is HDF5, carries an
// intact checksum record (or none at all: then a note on stderr says that it is read without
// one), has the root attribute format == `format` and a version this build reads, so that each
// way of being wrong gets its own message (`what`: "checkpoint", "dataset"). The file id, or -1
// with err.
hid_t h5_open_format(const char *path, const char *what, const char *format, int version,
                     char *err, size_t errlen);

// Reads the string attribute `name` of loc into *text (malloc'd, the caller frees): one string,
// fixed-length or variable-length (as h5py writes them), at most max_len bytes and without NUL
// bytes inside. 0, or -1 when it is missing or not such a string.
int h5_get_string_attr(hid_t loc, const char *name, size_t max_len, char **text);

// Reads the attribute `name` of loc, which must hold one number of the class of mem_type (integer
// for H5T_NATIVE_INT and H5T_NATIVE_LLONG, float for H5T_NATIVE_DOUBLE), into *value. 0, or -1
// when it is missing or something else (an array, a string, ...).
int h5_get_number_attr(hid_t loc, const char *name, hid_t mem_type, void *value);

// Reads the rank-1 string dataset `name` of loc, at most max_n strings of at most max_len bytes
// each, NUL-free, into *strings (an array of malloc'd strings: h5_free_strings frees it). Their
// count, or -1 when it is missing or not such a dataset.
long long h5_get_strings(hid_t loc, const char *name, long long max_n, size_t max_len,
                         char ***strings);
void h5_free_strings(char **strings, long long n);

// Creates path as common/savefile.h does (temporary file, flushed, renamed; an existing file
// survives any failure, a full disk included): `fill` writes everything into a file HDF5 keeps
// in memory, whose image is then saved. `what` names the file in messages ("checkpoint",
// "attention maps"). 0, or -1 with err.
typedef int (*H5Fill)(hid_t file, const void *ctx);
int h5_write_atomic(const char *path, const char *what, H5Fill fill, const void *ctx, char *err,
                    size_t errlen);

#endif
