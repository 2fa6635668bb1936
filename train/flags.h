// The one flag parser of bin/train and bin/eval.
//
// A program gathers Option rows (common/option.h) into a FlagTable: its own rows and those the
// modules declare in their own files (encodings, tasks, MoICE, Ms-PoE), each row with the offset
// of its owner's struct inside the program's values struct. The table then drives everything:
// reading argv, converting and storing each value by its kind, range checks, formatting values
// back to flag text, comparing two values, and the --help line of each flag.
#ifndef PELAB_FLAGS_H
#define PELAB_FLAGS_H

#include <stddef.h>

#include "../common/option.h"
#include "../tasks/task.h"

#define FLAGS_MAX 128
#define FLAGS_PATH_LEN 4096  // KIND_PATH values are char[FLAGS_PATH_LEN]

typedef struct {
    Option row[FLAGS_MAX];
    size_t base[FLAGS_MAX];  // where the struct the row's offset points into sits in the values
    int n;
} FlagTable;

// What values of some kinds depend on: KIND_PRESET names a preset of `task`; KIND_BASES
// names bases relative to `rope_base`.
typedef struct {
    const Task *task;
    float rope_base;
} FlagContext;

// Writes the message into err and returns -1: every parsing error ends in it.
int flags_error(char *err, size_t errlen, const char *fmt, ...);

// Appends rows whose offsets point into a struct at byte `base` of the values; a full table is
// a bug of the program (it aborts with a message).
void flags_add(FlagTable *t, const Option *rows, int n, size_t base);
const Option *flags_find(const FlagTable *t, const char *name);
// Row i's value inside values.
void *flags_value(const FlagTable *t, const Option *f, const void *values);

// Reads argv: given[i] becomes the text of row i's flag (the last one wins; "" for switches;
// NULL when absent), from "--name value" or "--name=value"; "-h" is "--help". A non-flag
// argument goes to *positional when that is given and still NULL, else it is refused.
// Returns 0, or -1 with a message in err.
int flags_scan(const FlagTable *t, int argc, char **argv, const char **given,
               const char **positional, char *err, size_t errlen);

// Converts text by the row's kind and stores it; ranges are checked by flags_check_range on
// the final values. 0, or -1 with a message naming the flag and what it takes.
int flags_parse(const FlagTable *t, const Option *f, const char *text, void *values,
                const FlagContext *ctx, char *err, size_t errlen);
// The index of name among a KIND_CHOICE or KIND_RECIPE row's choices, or -1 with a message
// listing them.
int flags_choice(const Option *f, const char *name, char *err, size_t errlen);
// The value as flag text.
void flags_format(const FlagTable *t, const Option *f, const void *values, char *buf, size_t len);
int flags_same(const FlagTable *t, const Option *f, const void *a, const void *b);
// 0 when a number is inside the row's range (other kinds: always), else -1 with a message.
int flags_check_range(const FlagTable *t, const Option *f, const void *values, char *err,
                      size_t errlen);

// The --help line of a row: "--name METAVAR   help [default]", the default read from
// `defaults` (or the row's default_text; bracket_text, when not NULL, for every row).
void flags_print_row(const FlagTable *t, const Option *f, const void *defaults,
                     const char *bracket_text);

#endif
