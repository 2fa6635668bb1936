// The table of positional encodings: a new encoding is one file plus one line here.
#include <string.h>

#include "pe.h"

extern const PositionalEncoding pe_none, pe_abs, pe_sin, pe_rel, pe_t5, pe_alibi, pe_rope, pe_cope;

static const PositionalEncoding *const pe_table[] = {&pe_none, &pe_abs,  &pe_sin,  &pe_rel,
                                                     &pe_t5,   &pe_alibi, &pe_rope, &pe_cope};

#define PE_COUNT (sizeof pe_table / sizeof pe_table[0])

const PositionalEncoding *pe_find(const char *name) {
    for (size_t i = 0; i < PE_COUNT; i++)
        if (strcmp(pe_table[i]->name, name) == 0) return pe_table[i];
    return NULL;
}

int pe_count(void) { return (int)PE_COUNT; }

const PositionalEncoding *pe_at(int i) { return pe_table[i]; }

PEOptions pe_defaults(void) {
    PEOptions o = {0};
    for (size_t i = 0; i < PE_COUNT; i++) option_defaults(pe_table[i]->options, pe_table[i]->n_options, &o);
    return o;
}

const char *pe_names(void) {
    static char names[256];
    if (names[0]) return names;
    for (size_t i = 0; i < PE_COUNT; i++) {
        if (i) strcat(names, ", ");
        strcat(names, pe_table[i]->name);
    }
    return names;
}
