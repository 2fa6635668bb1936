// The table of attention modules (model/module.h): a new module is one file plus one line here.
#include "gpt.h"
#include "module.h"

extern const AttentionModule moice_module;

static const AttentionModule *const module_table[] = {&moice_module};

#define MODULE_COUNT ((int)(sizeof module_table / sizeof module_table[0]))

int module_count(void) { return MODULE_COUNT; }

const AttentionModule *module_at(int i) { return module_table[i]; }

const AttentionModule *module_of(const GPTConfig *c) {
    for (int i = 0; i < MODULE_COUNT; i++)
        if (module_table[i]->active(c)) return module_table[i];
    return NULL;
}
