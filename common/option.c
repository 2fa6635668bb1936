// Built-in option values from the rows that declare them (common/option.h).
#include "option.h"

#include <stdint.h>

void option_defaults(const Option *rows, int n, void *owner) {
    for (int i = 0; i < n; i++) {
        void *p = (char *)owner + rows[i].offset;
        switch (rows[i].kind) {
        case KIND_INT:
        case KIND_CHOICE: *(int *)p = (int)rows[i].def; break;
        case KIND_LONG: *(long *)p = (long)rows[i].def; break;
        case KIND_FLOAT: *(float *)p = (float)rows[i].def; break;
        case KIND_SEED: *(uint64_t *)p = (uint64_t)rows[i].def; break;
        default: break;
        }
    }
}
