// Small HDF5 helpers shared by every file pelab writes (checkpoints, attention maps, datasets):
// one-line error messages instead of HDF5's printed stacks, and atomic writes.
#ifndef PELAB_H5FILE_H
#define PELAB_H5FILE_H

#include <hdf5.h>
#include <stddef.h>

// Turns HDF5's own error printing off; failures become our messages.
void h5_quiet(void);

// Formats the message into err, followed by the most specific line of HDF5's error stack if it
// has one. Returns -1 so that callers can `return h5_fail(...)`.
int h5_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

// A scalar attribute, so that h5py reads f.attrs["step"] as 40 rather than array([40]).
int h5_set_scalar(hid_t loc, const char *name, hid_t type, const void *value);

// Opens a pelab file for reading after checking, in order, that it exists, is HDF5, has the
// root attribute format == `format` and a version this build reads, so that each way of being
// wrong gets its own message (`what`: "checkpoint", "dataset"). The file id, or -1 with err.
hid_t h5_open_format(const char *path, const char *what, const char *format, int version,
                     char *err, size_t errlen);

// Reads the string attribute `name` of loc into *text (malloc'd, the caller frees). 0, or -1
// when it is missing or not a string.
int h5_get_string_attr(hid_t loc, const char *name, char **text);

// Creates path as common/savefile.h does (temporary file, flushed, renamed; an existing file
// survives any failure, a full disk included): `fill` writes everything into a file HDF5 keeps
// in memory, whose image is then saved. `what` names the file in messages ("checkpoint",
// "attention maps"). 0, or -1 with err.
typedef int (*H5Fill)(hid_t file, const void *ctx);
int h5_write_atomic(const char *path, const char *what, H5Fill fill, const void *ctx, char *err,
                    size_t errlen);

#endif
