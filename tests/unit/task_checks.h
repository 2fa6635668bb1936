// Checks every task's generator must pass, shared by the per-task test files.
#ifndef PELAB_TASK_CHECKS_H
#define PELAB_TASK_CHECKS_H

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "../../tasks/task.h"

// Same seed, same sequences on the training stream and on every split; another seed, others.
static inline void check_deterministic_for_a_seed(const Task *task, const TaskOptions *opt) {
    TaskLayout layout;
    task->layout(opt, &layout);
    int max_len = layout.train_len;
    for (int s = 0; s < layout.n_splits; s++)
        max_len = layout.split[s].seq_len > max_len ? layout.split[s].seq_len : max_len;
    int32_t *a = malloc(sizeof(int32_t) * max_len), *ta = malloc(sizeof(int32_t) * max_len);
    int32_t *b = malloc(sizeof(int32_t) * max_len), *tb = malloc(sizeof(int32_t) * max_len);
    for (int split = -1; split < layout.n_splits; split++) {
        Rng r1, r2, r3;
        rng_seed(&r1, 42);
        rng_seed(&r2, 42);
        rng_seed(&r3, 43);
        int differs = 0;
        for (int n = 0; n < 20; n++) {
            // Only a sequence's own positions count: the rest of the room is the caller's.
            int len = task->sample(opt, split, &r1, a, ta);
            cr_assert_eq(task->sample(opt, split, &r2, b, tb), len,
                         "split %d: same seed, other length", split);
            size_t bytes = sizeof(int32_t) * len;
            cr_assert_arr_eq(a, b, bytes, "split %d: same seed, other inputs", split);
            cr_assert_arr_eq(ta, tb, bytes, "split %d: same seed, other targets", split);
            differs |= task->sample(opt, split, &r3, b, tb) != len || memcmp(a, b, bytes) != 0;
        }
        cr_assert(differs, "split %d: seeds 42 and 43 gave the same sequences", split);
    }
    free(a), free(ta), free(b), free(tb);
}

#endif
