// The table of tasks: a new task is one file plus one line here.
#include <string.h>

#include "task.h"

extern const Task task_flipflop, task_kvret, task_selcopy, task_counting;

static const Task *const task_table[] = {&task_flipflop, &task_kvret, &task_selcopy,
                                         &task_counting};

#define TASK_COUNT (sizeof task_table / sizeof task_table[0])

TaskOptions task_defaults(void) {
    // The context before a task or preset says otherwise; every option as its row declares.
    TaskOptions o = {.seq_len = 128};
    for (size_t i = 0; i < TASK_COUNT; i++) option_defaults(task_table[i]->options, task_table[i]->n_options, &o);
    return o;
}

const Task *task_find(const char *name) {
    for (size_t i = 0; i < TASK_COUNT; i++)
        if (strcmp(task_table[i]->name, name) == 0) return task_table[i];
    return NULL;
}

int task_count(void) { return (int)TASK_COUNT; }

const Task *task_at(int i) { return task_table[i]; }

const char *task_names(void) {
    static char names[256];
    if (names[0]) return names;
    for (size_t i = 0; i < TASK_COUNT; i++) {
        if (i) strcat(names, ", ");
        strcat(names, task_table[i]->name);
    }
    return names;
}

const Preset *task_preset(const Task *task, const char *name) {
    for (int i = 0; i < task->n_presets; i++)
        if (strcmp(task->presets[i].name, name) == 0) return &task->presets[i];
    return NULL;
}

int task_layout_longest(const TaskLayout *layout) {
    int longest = layout->train_len;
    for (int s = 0; s < layout->n_splits; s++)
        if (layout->split[s].seq_len > longest) longest = layout->split[s].seq_len;
    return longest;
}

int task_layout_find(const TaskLayout *layout, const char *name) {
    for (int s = 0; s < layout->n_splits; s++)
        if (strcmp(layout->split[s].name, name) == 0) return s;
    return -1;
}
