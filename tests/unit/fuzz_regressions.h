// The inputs a fuzz target of tests/fuzz once crashed or hung on, kept in
// tests/fuzz/regressions/<target>/ (the tests run from the repository root): each must now be
// refused with a message, which the sanitizer build (make sanitize) also checks for memory errors.
#ifndef PELAB_FUZZ_REGRESSIONS_H
#define PELAB_FUZZ_REGRESSIONS_H

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>

// Calls refuse(path) for every file of the target's folder; returns how many there were.
static int for_each_regression(const char *target, void (*refuse)(const char *path)) {
    char folder[256], path[512];
    snprintf(folder, sizeof folder, "tests/fuzz/regressions/%s", target);
    DIR *dir = opendir(folder);
    cr_assert_not_null(dir, "no folder %s (run the tests from the repository root)", folder);
    int n = 0;
    for (struct dirent *e; (e = readdir(dir));) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", folder, e->d_name);
        refuse(path);
        n++;
    }
    closedir(dir);
    return n;
}

#endif
