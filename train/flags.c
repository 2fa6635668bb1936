// The flag parser over Option rows (train/flags.h).
#include "flags.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../model/moice.h"
#include "../model/mspoe.h"
#include "config.h"

int flags_error(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

void flags_add(FlagTable *t, const Option *rows, int n, size_t base) {
    if (t->n + n > FLAGS_MAX) {
        fprintf(stderr, "train/flags.c: more than %d flags; raise FLAGS_MAX\n", FLAGS_MAX);
        abort();
    }
    for (int i = 0; i < n; i++, t->n++) t->row[t->n] = rows[i], t->base[t->n] = base;
}

const Option *flags_find(const FlagTable *t, const char *name) {
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->row[i].name, name) == 0) return &t->row[i];
    return NULL;
}

void *flags_value(const FlagTable *t, const Option *f, const void *values) {
    return (char *)values + t->base[f - t->row] + f->offset;
}

int flags_scan(const FlagTable *t, int argc, char **argv, const char **given,
               const char **positional, char *err, size_t errlen) {
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0) arg = "--help";
        if (strncmp(arg, "--", 2) != 0) {
            if (positional && !*positional) {
                *positional = arg;
                continue;
            }
            return flags_error(err, errlen, "unexpected argument '%s'; flags start with -- (see --help)",
                         arg);
        }
        char name[64];
        const char *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
        snprintf(name, sizeof name, "%.*s", (int)(len < sizeof name ? len : sizeof name - 1),
                 arg + 2);
        const Option *f = flags_find(t, name);
        if (!f)
            return flags_error(err, errlen, "unknown flag %.*s; see --help for the list", (int)len + 2,
                         arg);
        int index = (int)(f - t->row);
        if (f->kind == KIND_SWITCH) {
            if (eq) return flags_error(err, errlen, "--%s takes no value", f->name);
            given[index] = "";
        } else if (eq) {
            given[index] = eq + 1;
        } else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
            given[index] = argv[++i];
        } else {
            return flags_error(err, errlen, "--%s needs a value (%s)", f->name, f->metavar);
        }
    }
    return 0;
}

// ----------------------------------------------------------------------------------------------
// values: parsing, formatting, comparing, range checks

static const char *preset_names(const Task *task, char *buf, size_t len) {
    buf[0] = '\0';
    for (int i = 0; i < task->n_presets; i++)
        snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", i ? ", " : "",
                 task->presets[i].name);
    return buf;
}

// "an integer from 1 to 64", "a number in [0, 1)", "a number > 0", ...
static void describe_range(const Option *f, char *buf, size_t len) {
    const char *what = f->kind == KIND_FLOAT ? "a number" : "an integer";
    if (isinf(f->hi))
        snprintf(buf, len, "%s %s %g", what, f->lo_open ? ">" : ">=", f->lo);
    else if (f->kind == KIND_FLOAT)
        snprintf(buf, len, "%s in %c%g, %g%c", what, f->lo_open ? '(' : '[', f->lo, f->hi,
                 f->hi_open ? ')' : ']');
    else
        snprintf(buf, len, "%s from %.0f to %.0f", what, f->lo, f->hi);
}

static int out_of_range(const Option *f, const char *value, char *err, size_t errlen) {
    char range[96];
    describe_range(f, range, sizeof range);
    return flags_error(err, errlen, "--%s must be %s, got %s", f->name, range, value);
}

// Integers must fit the C type before the range check can see them (the value is then cast).
static int parse_integer(const Option *f, const char *text, long long lo, long long hi,
                         long long *out, char *err, size_t errlen) {
    char *end;
    errno = 0;
    *out = strtoll(text, &end, 10);
    if (end == text || *end != '\0')
        return flags_error(err, errlen, "--%s needs an integer, got '%s'", f->name, text);
    if (errno == ERANGE || *out < lo || *out > hi) return out_of_range(f, text, err, errlen);
    return 0;
}

// The index of name among the row's choices, or -1 with a message listing them.
int flags_choice(const Option *f, const char *name, char *err, size_t errlen) {
    char names[256] = "";
    for (int i = 0; f->choices[i]; i++) {
        if (strcmp(name, f->choices[i]) == 0) return i;
        // "a, b or c"
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s",
                 !i ? "" : f->choices[i + 1] ? ", " : " or ", f->choices[i]);
    }
    return flags_error(err, errlen, "--%s must be %s, got '%s'", f->name, names, name);
}

int flags_parse(const FlagTable *t, const Option *f, const char *text, void *values,
                const FlagContext *ctx, char *err, size_t errlen) {
    void *p = flags_value(t, f, values);
    long long n;
    char names[256];
    int k;
    switch (f->kind) {
    case KIND_INT:
        if (parse_integer(f, text, INT_MIN, INT_MAX, &n, err, errlen)) return -1;
        *(int *)p = (int)n;
        return 0;
    case KIND_LONG:
        if (parse_integer(f, text, LONG_MIN, LONG_MAX, &n, err, errlen)) return -1;
        *(long *)p = (long)n;
        return 0;
    case KIND_SEED:
        if (parse_integer(f, text, 0, LLONG_MAX, &n, err, errlen)) return -1;
        *(uint64_t *)p = (uint64_t)n;
        return 0;
    case KIND_FLOAT: {
        char *end;
        float x = strtof(text, &end);
        if (end == text || *end != '\0')
            return flags_error(err, errlen, "--%s needs a number, got '%s'", f->name, text);
        if (!isfinite(x)) return flags_error(err, errlen, "--%s %s does not fit a float", f->name, text);
        *(float *)p = x;
        return 0;
    }
    case KIND_CHOICE:
        if ((k = flags_choice(f, text, err, errlen)) < 0) return -1;
        *(int *)p = k;
        return 0;
    case KIND_RECIPE:  // stores nothing; the program applies f->expands[k]
        return flags_choice(f, text, err, errlen) < 0 ? -1 : 0;
    case KIND_PE:
        if (!(*(const PositionalEncoding **)p = pe_find(text)))
            return flags_error(err, errlen, "unknown --pe '%s'; choose one of %s", text, pe_names());
        return 0;
    case KIND_TASK:
        if (!(*(const Task **)p = task_find(text)))
            return flags_error(err, errlen, "unknown --task '%s'; choose one of %s", text, task_names());
        return 0;
    case KIND_PRESET:
        if (!(*(const Preset **)p = task_preset(ctx->task, text)))
            return flags_error(err, errlen, "task %s has no preset '%s'; choose one of %s",
                         ctx->task->name, text, preset_names(ctx->task, names, sizeof names));
        return 0;
    case KIND_PATH:
        if (!text[0]) return flags_error(err, errlen, "--%s needs a non-empty path", f->name);
        if (strlen(text) >= FLAGS_PATH_LEN) return flags_error(err, errlen, "--%s path is too long", f->name);
        strcpy(p, text);
        return 0;
    case KIND_SWITCH:
        *(int *)p = 1;
        return 0;
    case KIND_BASES:
        return moice_parse_bases(p, text, ctx->rope_base, err, errlen);
    case KIND_RATIOS:
        return mspoe_parse_ratios(text, p, err, errlen);
    }
    return 0;
}

void flags_format(const FlagTable *t, const Option *f, const void *values, char *buf, size_t len) {
    const void *p = flags_value(t, f, values);
    switch (f->kind) {
    case KIND_INT: snprintf(buf, len, "%d", *(const int *)p); break;
    case KIND_LONG: snprintf(buf, len, "%ld", *(const long *)p); break;
    case KIND_SEED: snprintf(buf, len, "%llu", (unsigned long long)*(const uint64_t *)p); break;
    case KIND_FLOAT: format_float(buf, len, *(const float *)p); break;
    case KIND_CHOICE: snprintf(buf, len, "%s", f->choices[*(const int *)p]); break;
    case KIND_PE: snprintf(buf, len, "%s", (*(const PositionalEncoding *const *)p)->name); break;
    case KIND_TASK: snprintf(buf, len, "%s", (*(const Task *const *)p)->name); break;
    case KIND_PRESET: snprintf(buf, len, "%s", (*(const Preset *const *)p)->name); break;
    case KIND_PATH: snprintf(buf, len, "%s", (const char *)p); break;
    case KIND_SWITCH: snprintf(buf, len, "%s", *(const int *)p ? "on" : "off"); break;
    case KIND_BASES: moice_format_bases(buf, len, p); break;
    case KIND_RECIPE: snprintf(buf, len, "-"); break;
    case KIND_RATIOS: {
        const MsPoEConfig *m = p;
        snprintf(buf, len, "%g:%g", (double)m->ratio_min, (double)m->ratio_max);
        break;
    }
    }
}

int flags_same(const FlagTable *t, const Option *f, const void *a, const void *b) {
    static const size_t sizes[] = {
        [KIND_INT] = sizeof(int), [KIND_LONG] = sizeof(long), [KIND_FLOAT] = sizeof(float),
        [KIND_SEED] = sizeof(uint64_t), [KIND_CHOICE] = sizeof(int), [KIND_PE] = sizeof(void *),
        [KIND_TASK] = sizeof(void *), [KIND_PRESET] = sizeof(void *),
        [KIND_PATH] = FLAGS_PATH_LEN, [KIND_SWITCH] = sizeof(int),
        [KIND_BASES] = offsetof(MoICEOptions, top_k), [KIND_RECIPE] = 0,
        [KIND_RATIOS] = offsetof(MsPoEConfig, skip_layers)};
    if (f->kind == KIND_PATH) return strcmp(flags_value(t, f, a), flags_value(t, f, b)) == 0;
    return memcmp(flags_value(t, f, a), flags_value(t, f, b), sizes[f->kind]) == 0;
}

int flags_check_range(const FlagTable *t, const Option *f, const void *values, char *err,
                      size_t errlen) {
    const void *p = flags_value(t, f, values);
    double x;
    switch (f->kind) {
    case KIND_INT: x = *(const int *)p; break;
    case KIND_LONG: x = (double)*(const long *)p; break;
    case KIND_SEED: x = (double)*(const uint64_t *)p; break;
    case KIND_FLOAT: x = *(const float *)p; break;
    default: return 0;
    }
    // A checkpoint's config (--resume) can hold values the command line cannot.
    if (!isfinite(x)) {
        char value[64];
        flags_format(t, f, values, value, sizeof value);
        return flags_error(err, errlen, "--%s is %s, not a finite number; give a value in range",
                           f->name, value);
    }
    int below = f->lo_open ? x <= f->lo : x < f->lo;
    int above = f->hi_open ? x >= f->hi : x > f->hi;
    if (!below && !above) return 0;
    char value[64];
    flags_format(t, f, values, value, sizeof value);
    return out_of_range(f, value, err, errlen);
}

void flags_print_row(const FlagTable *t, const Option *f, const void *defaults,
                     const char *bracket_text) {
    char left[48], value[64];
    snprintf(left, sizeof left, "--%s%s%s", f->name, f->metavar ? " " : "",
             f->metavar ? f->metavar : "");
    if (f->kind == KIND_SWITCH) {
        printf("  %-26s %s\n", left, f->help);
        return;
    }
    if (bracket_text) snprintf(value, sizeof value, "%s", bracket_text);
    else if (f->default_text) snprintf(value, sizeof value, "%s", f->default_text);
    else flags_format(t, f, defaults, value, sizeof value);
    printf("  %-26s %s [%s]\n", left, f->help, value);
}
