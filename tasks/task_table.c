// The table of tasks: a new task is one file plus one line here.
#include <string.h>

#include "task.h"

extern const Task task_flipflop;

static const Task *const task_table[] = {&task_flipflop};

#define TASK_COUNT (sizeof task_table / sizeof task_table[0])

const Task *task_find(const char *name) {
    for (size_t i = 0; i < TASK_COUNT; i++)
        if (strcmp(task_table[i]->name, name) == 0) return task_table[i];
    return NULL;
}

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
