#include "h5file.h"

#include <hdf5_hl.h>
#include <stdlib.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static herr_t innermost_error(unsigned n, const H5E_error2_t *e, void *detail) {
    if (n == 0) snprintf(detail, 200, "%s", e->desc);
    return 0;
}

int h5_fail(char *err, size_t errlen, const char *fmt, ...) {
    char detail[200] = "";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_error, detail);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    if (detail[0] && n >= 0 && (size_t)n < errlen) snprintf(err + n, errlen - n, " (HDF5: %s)", detail);
    H5Eclear2(H5E_DEFAULT);
    return -1;
}

int h5_set_scalar(hid_t loc, const char *name, hid_t type, const void *value) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = space < 0 ? -1 : H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = attr < 0 ? -1 : H5Awrite(attr, type, value);
    if (attr >= 0) H5Aclose(attr);
    if (space >= 0) H5Sclose(space);
    return rc < 0 ? -1 : 0;
}

// The rename is only atomic protection if the data reached the disk before it: otherwise a
// crash could leave the new name pointing at an empty file.
static int sync_file(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int h5_write_atomic(const char *path, const char *what, H5Fill fill, const void *ctx, char *err,
                    size_t errlen) {
    h5_quiet();
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        snprintf(err, errlen, "%s path %s is too long", what, path);
        return -1;
    }
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) return h5_fail(err, errlen, "cannot create %s (is its folder there and writable?)", tmp);
    int rc = fill(file, ctx);
    if (rc < 0) h5_fail(err, errlen, "cannot write %s %s", what, tmp);
    if (H5Fclose(file) < 0 && rc == 0) rc = h5_fail(err, errlen, "cannot finish %s %s", what, tmp);
    if (rc == 0 && sync_file(tmp) != 0) {
        snprintf(err, errlen, "cannot flush %s to disk: %s", tmp, strerror(errno));
        rc = -1;
    }
    if (rc == 0 && rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        rc = -1;
    }
    if (rc != 0) unlink(tmp);
    return rc;
}

hid_t h5_open_format(const char *path, const char *what, const char *format, int version,
                     char *err, size_t errlen) {
    h5_quiet();
    if (access(path, R_OK) != 0) {
        snprintf(err, errlen, "cannot open %s %s: %s", what, path, strerror(errno));
        return -1;
    }
    if (H5Fis_hdf5(path) <= 0) {
        snprintf(err, errlen, "%s is not an HDF5 file (corrupt, or not a %s)", path, what);
        return -1;
    }
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) {
        h5_fail(err, errlen, "cannot read %s; the file is damaged", path);
        return -1;
    }
    char *found = NULL;
    int found_version = 0;
    if (h5_get_string_attr(file, "format", &found) != 0 || strcmp(found, format) != 0) {
        snprintf(err, errlen, "%s is an HDF5 file but not a pelab %s (no format attribute \"%s\")",
                 path, what, format);
    } else if (H5LTget_attribute_int(file, "/", "version", &found_version) < 0) {
        snprintf(err, errlen, "%s has no version attribute; the %s is damaged", path, what);
    } else if (found_version != version) {
        snprintf(err, errlen, "%s is a version %d %s; this build reads version %d", path,
                 found_version, what, version);
    } else {
        free(found);
        return file;
    }
    free(found);
    H5Eclear2(H5E_DEFAULT);
    H5Fclose(file);
    return -1;
}

int h5_get_string_attr(hid_t loc, const char *name, char **text) {
    *text = NULL;
    hsize_t dims;
    H5T_class_t cls;
    size_t size = 0;
    if (H5LTget_attribute_info(loc, ".", name, &dims, &cls, &size) < 0 || cls != H5T_STRING)
        return -1;
    if (!(*text = calloc(size + 1, 1))) return -1;
    if (H5LTget_attribute_string(loc, ".", name, *text) < 0) {
        free(*text);
        *text = NULL;
        return -1;
    }
    return 0;
}
