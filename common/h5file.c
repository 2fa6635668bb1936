#include "h5file.h"

#include <hdf5_hl.h>
#include <stdlib.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "savefile.h"

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

// The file is built in memory (HDF5's core driver) and reaches the disk through savefile_write:
// HDF5 itself never writes to disk, because a write failing inside it (a full disk, a file size
// limit) leaves the file open in a state that crashes the library when it shuts down at exit.
// The cost is one copy of the file in memory while it is saved.
int h5_write_atomic(const char *path, const char *what, H5Fill fill, const void *ctx, char *err,
                    size_t errlen) {
    h5_quiet();
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fapl_core(fapl, 16 << 20, 0) < 0) {
        if (fapl >= 0) H5Pclose(fapl);
        return h5_fail(err, errlen, "cannot set up the %s %s in memory", what, path);
    }
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (file < 0) return h5_fail(err, errlen, "cannot create the %s %s in memory", what, path);
    int rc = fill(file, ctx) < 0 || H5Fflush(file, H5F_SCOPE_LOCAL) < 0 ? -1 : 0;
    ssize_t size = rc ? -1 : H5Fget_file_image(file, NULL, 0);
    char *image = size > 0 ? malloc((size_t)size) : NULL;
    if (!image || H5Fget_file_image(file, image, (size_t)size) != size) rc = -1;
    if (rc) h5_fail(err, errlen, "cannot write %s %s%s", what, path,
                    size > 0 && !image ? " (out of memory for its image)" : "");
    H5Fclose(file);
    if (rc == 0) rc = savefile_write(path, what, image, (size_t)size, err, errlen);
    free(image);
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
