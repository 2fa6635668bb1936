// What every task of the registry (tasks/task_table.c) must do with its built-in options, so
// that a new task is held to it without a line here: accept them, lay out sequences that fit
// their room, draw tokens of its vocabulary, score at least one position of every sequence, and
// draw the same sequences for the same seed. The per-task files test each task's own grammar.
#include <criterion/criterion.h>
#include <stdlib.h>

#include "../../model/pe.h"
#include "task_checks.h"

Test(registry, every_task_accepts_its_defaults_and_draws_valid_sequences) {
    cr_assert_gt(task_count(), 0);
    for (int i = 0; i < task_count(); i++) {
        const Task *task = task_at(i);
        cr_assert_eq(task_find(task->name), task, "%s is not found by its name", task->name);
        cr_assert_gt(task->n_presets, 0, "%s has no preset", task->name);
        const TaskOptions defaults = task_defaults();
        const char *problem = task->check(&defaults);
        cr_assert_null(problem, "%s rejects the default options: %s", task->name, problem);
        TaskLayout layout;
        task->layout(&defaults, &layout);
        cr_assert_gt(layout.n_splits, 0, "%s has no evaluation split", task->name);
        int room = task_layout_longest(&layout);
        int32_t *inputs = malloc(sizeof(int32_t) * room), *targets = malloc(sizeof(int32_t) * room);
        Rng rng;
        rng_seed(&rng, 7);
        for (int split = -1; split < layout.n_splits; split++) {
            int len_max = split < 0 ? layout.train_len : layout.split[split].seq_len;
            for (int n = 0; n < 8; n++) {
                int len = task->sample(&defaults, split, &rng, inputs, targets);
                cr_assert(len >= 1 && len <= len_max, "%s split %d: length %d outside 1..%d",
                          task->name, split, len, len_max);
                int scored = 0;
                for (int t = 0; t < len; t++) {
                    cr_assert(inputs[t] >= 0 && inputs[t] < task->vocab_size,
                              "%s split %d: input token %d", task->name, split, inputs[t]);
                    cr_assert(targets[t] >= -1 && targets[t] < task->vocab_size,
                              "%s split %d: target %d", task->name, split, targets[t]);
                    scored += targets[t] >= 0;
                }
                cr_assert_gt(scored, 0, "%s split %d: a sequence with nothing scored", task->name,
                             split);
            }
        }
        free(inputs), free(targets);
        check_deterministic_for_a_seed(task, &defaults);
    }
}

Test(registry, names_are_unique_and_found) {
    for (int i = 0; i < pe_count(); i++) {
        cr_assert_eq(pe_find(pe_at(i)->name), pe_at(i), "pe %s is shadowed", pe_at(i)->name);
        cr_assert_not_null(pe_at(i)->summary);
    }
    for (int i = 0; i < task_count(); i++)
        cr_assert_not_null(task_at(i)->summary);
}
