// Fixed sets (data/dataset.h) and dataset files (data/dataset_file.h): batches are cut to their
// longest sequence; an epoch's order is a deterministic permutation of whole batches of similar
// lengths; a file round trip gives back every set bit for bit; damaged or foreign files give
// one message naming the problem, not a crash.
#include <criterion/criterion.h>
#include <hdf5.h>
#include <math.h>
#include <hdf5_hl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../data/dataset.h"
#include "../../data/dataset_file.h"

#define TMP_FILE "data.h5"
#include "tmp_file.h"
#include "foreign_file.h"
#include "fuzz_regressions.h"

TestSuite(dataset, .init = tmp_file_make, .fini = tmp_file_remove);

// A set whose row r has length 1 + r % width, with tokens r + t and every position scored.
static void varied_set(SequenceSet *set, int n, int width) {
    cr_assert_eq(sequence_set_alloc(set, n, width), 0);
    snprintf(set->name, sizeof set->name, "varied");
    for (int r = 0; r < n; r++) {
        int L = 1 + r % width;
        set->lengths[r] = L;
        for (int t = 0; t < L; t++) {
            set->inputs[(size_t)r * width + t] = (r + t) % 5;
            set->targets[(size_t)r * width + t] = (r + t + 1) % 5;
        }
    }
}

Test(dataset, a_batch_is_cut_to_its_longest_sequence) {
    SequenceSet set;
    varied_set(&set, 10, 8);
    int rows[3] = {1, 4, 2};  // lengths 2, 5, 3
    int32_t in[3 * 8], tg[3 * 8];
    int T = sequence_set_batch(&set, rows, 3, in, tg);
    cr_assert_eq(T, 5);
    for (int b = 0; b < 3; b++)
        for (int t = 0; t < T; t++) {
            cr_assert_eq(in[b * T + t], set.inputs[rows[b] * 8 + t]);
            cr_assert_eq(tg[b * T + t], t < set.lengths[rows[b]] ? set.targets[rows[b] * 8 + t] : -1,
                         "padding must stay unscored");
        }
    sequence_set_free(&set);
}

// n lengths in 1 .. width, scrambled so that row order says nothing about length (free them).
static int32_t *scrambled_lengths(int n, int width) {
    int32_t *lengths = malloc(n * sizeof(int32_t));
    for (int r = 0; r < n; r++) lengths[r] = 1 + (int)((r * 2654435761u) % width);
    return lengths;
}

// The first `used` entries of an epoch's order name rows 0 .. n-1, none twice.
static void assert_distinct_rows(const int *order, int used, int n) {
    char *seen = calloc(n, 1);
    for (int i = 0; i < used; i++) {
        cr_assert(order[i] >= 0 && order[i] < n && !seen[order[i]],
                  "row %d repeated or out of range", order[i]);
        seen[order[i]] = 1;
    }
    free(seen);
}

Test(dataset, an_epoch_is_a_deterministic_permutation_of_similar_length_batches) {
    enum { N = 1000, B = 8, W = 64 };
    int32_t *lengths = scrambled_lengths(N, W);
    int *a = malloc(N * sizeof(int)), *b = malloc(N * sizeof(int)), *c = malloc(N * sizeof(int));
    int64_t *work = malloc(N * sizeof(int64_t));
    int used = batches_per_epoch(N, B, ORDER_POOLED) * B;
    cr_assert_eq(used, 1000 / 8 * 8);
    epoch_order(a, work, lengths, N, B, ORDER_POOLED, 7, 3);
    epoch_order(b, work, lengths, N, B, ORDER_POOLED, 7, 3);
    epoch_order(c, work, lengths, N, B, ORDER_POOLED, 7, 4);
    cr_assert_arr_eq(a, b, used * sizeof(int), "same seed and epoch, another order");
    cr_assert(memcmp(a, c, used * sizeof(int)) != 0, "epochs 3 and 4 gave the same order");
    epoch_order(c, work, lengths, N, B, ORDER_POOLED, 8, 3);
    cr_assert(memcmp(a, c, used * sizeof(int)) != 0, "seeds 7 and 8 gave the same order");
    assert_distinct_rows(a, used, N);
    long padded = 0, random_padded = 0;
    // Padding computed: batch length minus each row's length, against batches of rows in order.
    for (int k = 0; k < used / B; k++) {
        int longest = 0, longest_plain = 0;
        for (int j = 0; j < B; j++) {
            longest = lengths[a[k * B + j]] > longest ? lengths[a[k * B + j]] : longest;
            longest_plain = lengths[k * B + j] > longest_plain ? lengths[k * B + j] : longest_plain;
        }
        for (int j = 0; j < B; j++) {
            padded += longest - lengths[a[k * B + j]];
            random_padded += longest_plain - lengths[k * B + j];
        }
    }
    cr_assert_lt(padded * 5, random_padded, "pools sorted by length should cut padding 5x: %ld vs %ld",
                 padded, random_padded);
    free(a), free(b), free(c), free(work), free(lengths);
}

// --batch-order shuffle, as a shuffling DataLoader that keeps its last batch: ceil(n/B)
// batches, every row exactly once per epoch, the last batch short, and the permutation uniform
// (no length sorting: the mean length of the first half of the epoch matches the second's).
Test(dataset, a_shuffled_epoch_holds_every_row_once_with_a_short_last_batch) {
    enum { N = 1003, B = 8, W = 64 };
    int32_t *lengths = scrambled_lengths(N, W);
    int nb = batches_per_epoch(N, B, ORDER_SHUFFLE);
    cr_assert_eq(nb, 126);
    cr_assert_eq(epoch_batch_size(N, B, ORDER_SHUFFLE, 0), B);
    cr_assert_eq(epoch_batch_size(N, B, ORDER_SHUFFLE, nb - 1), N - (nb - 1) * B);
    cr_assert_eq(epoch_batch_size(N, B, ORDER_POOLED, nb - 2), B);
    int *a = malloc(N * sizeof(int)), *b = malloc(N * sizeof(int));
    int64_t *work = malloc(N * sizeof(int64_t));
    epoch_order(a, work, lengths, N, B, ORDER_SHUFFLE, 7, 3);
    epoch_order(b, work, lengths, N, B, ORDER_SHUFFLE, 7, 4);
    cr_assert(memcmp(a, b, N * sizeof(int)) != 0, "epochs 3 and 4 gave the same order");
    assert_distinct_rows(a, N, N);
    double half[2] = {0, 0};
    for (int i = 0; i < N; i++) half[2 * i >= N] += lengths[a[i]];
    // lengths uniform on 1..64: each half's mean has a standard error near 0.8
    cr_assert_lt(fabs(half[0] - half[1]) / (N / 2.0), 4.0, "the order sorts by length");
    free(a), free(b), free(work), free(lengths);
}

static const Task *kvret(void) { return task_find("kvret"); }

static void draw(DatasetContents *c, int train_n) {
    const Task *task = kvret();
    TaskOptions opt = task_defaults();
    TaskLayout layout;
    task->layout(&opt, &layout);
    memset(c, 0, sizeof *c);
    if (train_n)
        cr_assert_eq(sequence_set_generate(&c->train, task, &opt, &layout, -1, train_n, dataset_seed(-1)), 0);
    c->n_splits = layout.n_splits;
    c->sweep_first = layout.sweep_first;
    c->sweep_bins = layout.sweep_bins;
    for (int s = 0; s < layout.n_splits; s++)
        cr_assert_eq(sequence_set_generate(&c->split[s], task, &opt, &layout, s, 7, dataset_seed(s)), 0);
}

static void assert_same_set(const SequenceSet *a, const SequenceSet *b) {
    cr_assert_str_eq(a->name, b->name);
    cr_assert_str_eq(a->summary, b->summary);
    cr_assert_eq(a->n, b->n);
    cr_assert_eq(a->width, b->width);
    cr_assert_eq(a->extrapolates, b->extrapolates);
    size_t cells = (size_t)a->n * a->width;
    cr_assert_arr_eq(a->inputs, b->inputs, cells * sizeof(int32_t), "set %s: inputs differ", a->name);
    cr_assert_arr_eq(a->targets, b->targets, cells * sizeof(int32_t), "set %s: targets differ", a->name);
    cr_assert_arr_eq(a->lengths, b->lengths, a->n * sizeof(int32_t), "set %s: lengths differ", a->name);
}

Test(dataset, a_file_round_trip_gives_back_every_set) {
    DatasetContents written, read;
    draw(&written, 50);
    char err[512];
    cr_assert_eq(dataset_file_write(path, kvret(), &written, err, sizeof err), 0, "%s", err);
    cr_assert_eq(dataset_file_read(path, kvret(), &read, err, sizeof err), 0, "%s", err);
    assert_same_set(&written.train, &read.train);
    cr_assert_eq(read.n_splits, written.n_splits);
    cr_assert_eq(read.sweep_first, written.sweep_first);
    cr_assert_eq(read.sweep_bins, written.sweep_bins);
    for (int s = 0; s < written.n_splits; s++) assert_same_set(&written.split[s], &read.split[s]);
    dataset_contents_free(&read);
    dataset_contents_free(&written);
}

static void expect_read_error(const Task *task, const char *needle) {
    DatasetContents c;
    char err[512] = "";
    cr_assert_eq(dataset_file_read(path, task, &c, err, sizeof err), -1, "read should fail");
    cr_assert(strstr(err, needle), "message \"%s\" lacks \"%s\"", err, needle);
}

Test(dataset, foreign_and_damaged_files_are_refused_with_a_reason) {
    expect_read_error(kvret(), "cannot open dataset");
    FILE *f = fopen(path, "w");
    fputs("not hdf5", f);
    fclose(f);
    expect_read_error(kvret(), "is not an HDF5 file");

    DatasetContents c;
    draw(&c, 10);
    char err[512];
    cr_assert_eq(dataset_file_write(path, kvret(), &c, err, sizeof err), 0, "%s", err);
    expect_read_error(task_find("flipflop"), "was written for task kvret, not flipflop; pass --task kvret");

    // A token id past the vocabulary, written over the file's first train token.
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    int32_t *tokens = malloc((size_t)10 * (c.train.width + 1) * sizeof(int32_t));
    cr_assert_geq(H5LTread_dataset_int(file, "train/tokens", tokens), 0);
    tokens[0] = 9999;
    hid_t set = H5Dopen2(file, "train/tokens", H5P_DEFAULT);
    cr_assert_geq(H5Dwrite(set, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, tokens), 0);
    H5Dclose(set);
    H5Fclose(file);
    // The checksum sees the change first; without it (as h5py writes files) the values do.
    expect_read_error(kvret(), "do not match the checksum");
    strip_checksum(path);
    expect_read_error(kvret(), "sequence 0 has a token id outside the vocabulary");

    // Without the format attribute it is some other HDF5 file.
    file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    H5Adelete(file, "format");
    H5Fclose(file);
    expect_read_error(kvret(), "not a pelab dataset");
    free(tokens);
    dataset_contents_free(&c);
}

Test(dataset, a_target_that_is_not_the_next_token_cannot_be_written) {
    DatasetContents c;
    draw(&c, 0);
    // kvret scores one position; make its target disagree with the next input.
    SequenceSet *s = &c.split[0];
    for (int t = 0; t < s->lengths[0] - 1; t++)
        if (s->targets[t] >= 0) s->targets[t] = (s->inputs[t + 1] + 1) % kvret()->vocab_size;
    char err[512];
    cr_assert_eq(dataset_file_write(path, kvret(), &c, err, sizeof err), -1);
    cr_assert(strstr(err, "is not the next token"), "message: %s", err);
    cr_assert_eq(access(path, F_OK), -1, "a failed write must leave no file");
    dataset_contents_free(&c);
}

// Writes a fresh kvret file without its checksum record, for changes through libhdf5.
static void write_foreign(void) {
    DatasetContents c;
    draw(&c, 10);
    char err[512];
    cr_assert_eq(dataset_file_write(path, kvret(), &c, err, sizeof err), 0, "%s", err);
    dataset_contents_free(&c);
    strip_checksum(path);
}

static void set_int_attr(const char *name, int value) {
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(H5LTset_attribute_int(file, "/", name, &value, 1), 0);
    H5Fclose(file);
}

// sweep_first + sweep_bins overflowed int and passed the range check.
Test(dataset, position_sweep_attributes_are_range_checked) {
    const struct {
        int first, bins;
        const char *needle;
    } cases[] = {
        {INT_MAX, 2, "outside its splits"},
        {2, INT_MAX, "outside its splits"},
        {-1, 3, "outside its splits"},
        {1, -3, "outside its splits"},
        {1, 2, "fewer than 3 bins"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        write_foreign();
        set_int_attr("sweep_first", cases[c].first);
        set_int_attr("sweep_bins", cases[c].bins);
        expect_read_error(kvret(), cases[c].needle);
    }
}

// Replaces /vocab by a dataset of `type` holding `data` (one element per token).
static void replace_vocab(hid_t type, const void *data) {
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    H5Ldelete(file, "vocab", H5P_DEFAULT);
    hsize_t n = (hsize_t)kvret()->vocab_size;
    hid_t space = H5Screate_simple(1, &n, NULL);
    hid_t set = H5Dcreate2(file, "vocab", type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(H5Dwrite(set, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), 0);
    H5Dclose(set);
    H5Sclose(space);
    H5Fclose(file);
}

// A damaged vocabulary in a pelab file is the checksum's to catch (libhdf5 crashed or hung on
// some); in a file without one, everything but libhdf5's own structures is checked here.
Test(dataset, a_damaged_vocabulary_is_refused) {
    DatasetContents c;
    draw(&c, 10);
    char err[512];
    cr_assert_eq(dataset_file_write(path, kvret(), &c, err, sizeof err), 0, "%s", err);
    dataset_contents_free(&c);
    long len;
    FILE *f = fopen(path, "r+b");
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    char *bytes = malloc(len);
    rewind(f);
    cr_assert_eq(fread(bytes, 1, len, f), (size_t)len);
    const char *name = kvret()->token_names[kvret()->vocab_size - 1];
    size_t name_len = strlen(name) + 1;
    long at = H5_CHECKSUM_BLOCK;
    while (at + (long)name_len <= len && memcmp(bytes + at, name, name_len) != 0) at++;
    cr_assert_leq(at + (long)name_len, len, "token name %s not found in the file", name);
    fseek(f, at, SEEK_SET);
    fputc('#', f);
    fclose(f);
    free(bytes);
    expect_read_error(kvret(), "do not match the checksum");

    // Without the checksum: a vocabulary string's heap object made longer than its collection
    // (libhdf5 copied past the collection; found by tests/fuzz).
    write_foreign();
    f = fopen(path, "r+b");
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    bytes = malloc(len);
    rewind(f);
    cr_assert_eq(fread(bytes, 1, len, f), (size_t)len);
    at = 0;
    while (at + 4 <= len && memcmp(bytes + at, "GCOL", 4) != 0) at++;
    cr_assert_lt(at + 4, len, "no global heap collection");
    fseek(f, at + 16 + 8, SEEK_SET);  // the first object's size
    unsigned char huge[8] = {0, 0x40};
    fwrite(huge, 1, 8, f);
    fclose(f);
    free(bytes);
    expect_read_error(kvret(), "no readable vocab");

    int n = kvret()->vocab_size;
    int *ids = calloc(n, sizeof *ids);
    write_foreign();
    replace_vocab(H5T_NATIVE_INT, ids);
    expect_read_error(kvret(), "no readable vocab");
    free(ids);

    // Fixed-length strings: a NUL inside a name, then a name longer than any token's.
    char *fixed = calloc((size_t)n, 300);
    for (int v = 0; v < n; v++) snprintf(fixed + 300 * v, 300, "%s", kvret()->token_names[v]);
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, 8);
    H5Tset_strpad(type, H5T_STR_NULLPAD);
    char *narrow = calloc((size_t)n, 8);
    for (int v = 0; v < n; v++) memcpy(narrow + 8 * v, fixed + 300 * v, 7);
    write_foreign();
    replace_vocab(type, narrow);
    cr_assert_eq(dataset_file_read(path, kvret(), &c, err, sizeof err), 0,
                 "fixed-length names read: %s", err);
    dataset_contents_free(&c);
    narrow[8 * 2 + 1] = '\0', narrow[8 * 2 + 2] = 'x';
    write_foreign();
    replace_vocab(type, narrow);
    expect_read_error(kvret(), "no readable vocab");
    H5Tset_size(type, 300);
    memset(fixed + 300 * 3, 'k', 299);
    write_foreign();
    replace_vocab(type, fixed);
    expect_read_error(kvret(), "no readable vocab");
    H5Tclose(type);
    free(narrow);
    free(fixed);
}

// Attribute shapes: an array where one number belongs was read into one int.
Test(dataset, attributes_of_another_shape_are_refused) {
    write_foreign();
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    int many[64] = {0};
    H5Adelete(file, "sweep_bins");
    cr_assert_geq(H5LTset_attribute_int(file, "/", "sweep_bins", many, 64), 0);
    H5Fclose(file);
    expect_read_error(kvret(), "lacks its task, splits or sweep attributes");
}

static void refuse_dataset(const char *file) {
    DatasetContents c;
    char err[512] = "";
    cr_assert_eq(dataset_file_read(file, kvret(), &c, err, sizeof err), -1, "%s was read", file);
    cr_assert(strstr(err, file), "the message names not the file: %s", err);
}

// Crafted files the fuzzer made (a valid checksum record over damaged contents), on which
// libhdf5 crashed inside the reader.
Test(dataset, fuzz_regressions_are_refused) {
    cr_assert_gt(for_each_regression("fuzz_dataset", refuse_dataset), 0);
}

// A variable-length vocabulary whose characters the type says are 385 MB wide: libhdf5 spent
// minutes converting it (fuzz_dataset, a file without checksum); refused by its type now.
Test(dataset, a_vocabulary_of_wide_characters_is_refused_by_its_type) {
    const char *file = "tests/fuzz/regressions/fuzz_dataset/vocab-characters-of-385-mb.h5";
    DatasetContents c;
    char err[512] = "";
    cr_assert_eq(dataset_file_read(file, kvret(), &c, err, sizeof err), -1);
    cr_assert(strstr(err, "no readable vocab"), "%s", err);
}
