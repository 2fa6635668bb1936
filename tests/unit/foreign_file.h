// Files as another tool would leave them: pelab's checksum record (the 512-byte user block, see
// common/h5file.h) cut off, so that a test can change a pelab-written file through libhdf5 and
// reach the checks behind the checksum, as a file written by h5py does.
#ifndef PELAB_FOREIGN_FILE_H
#define PELAB_FOREIGN_FILE_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "../../common/h5file.h"

static void strip_checksum(const char *file) {
    FILE *f = fopen(file, "rb");
    cr_assert_not_null(f, "cannot open %s", file);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    cr_assert_gt(len, H5_CHECKSUM_BLOCK);
    char *buf = malloc(len);
    rewind(f);
    cr_assert_eq(fread(buf, 1, len, f), (size_t)len);
    fclose(f);
    cr_assert_eq(memcmp(buf, "pelab-checksum 1\n", 17), 0, "%s has no checksum record", file);
    f = fopen(file, "wb");
    cr_assert_eq(fwrite(buf + H5_CHECKSUM_BLOCK, 1, len - H5_CHECKSUM_BLOCK, f),
                 (size_t)(len - H5_CHECKSUM_BLOCK));
    fclose(f);
    free(buf);
}

#endif
