// A fresh folder for every test of a suite, holding the one file the test writes at `path`,
// removed after the test: define TMP_FILE (the file's name) before including, then
// TestSuite(name, .init = tmp_file_make, .fini = tmp_file_remove).
#ifndef PELAB_TMP_FILE_H
#define PELAB_TMP_FILE_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char dir[64], path[128];

static void tmp_file_make(void) {
    snprintf(dir, sizeof dir, "/tmp/pelab-test-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/%s", dir, TMP_FILE);
}

static void tmp_file_remove(void) {
    unlink(path);
    rmdir(dir);
}

#endif
