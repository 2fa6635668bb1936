#include "dataset_file.h"

#include <hdf5.h>
#include <hdf5_hl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/h5file.h"

// ----------------------------------------------------------------------------------------------
// writing

typedef struct {
    const Task *task;
    const DatasetContents *data;
    char *problem;  // set by fill when a set cannot be stored (not an HDF5 failure)
    size_t problem_len;
} WriteJob;

static int write_vocab(hid_t file, const Task *task) {
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    hsize_t dims = (hsize_t)task->vocab_size;
    hid_t space = H5Screate_simple(1, &dims, NULL);
    hid_t set = H5Dcreate2(file, "vocab", type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = set < 0 || H5Dwrite(set, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, task->token_names) < 0;
    if (set >= 0) H5Dclose(set);
    H5Sclose(space);
    H5Tclose(type);
    return rc ? -1 : 0;
}

// One set as tokens + mask. Returns 1 (with job->problem) when a scored target is not the next
// token, which this format cannot express.
static int write_set(hid_t file, const SequenceSet *set, WriteJob *job) {
    int N = set->n, W = set->width;
    int32_t *tokens = calloc((size_t)N * (W + 1) + 1, sizeof(int32_t));
    uint8_t *mask = calloc((size_t)N * W + 1, 1);
    int rc = -1;
    if (!tokens || !mask) goto done;
    for (int n = 0; n < N; n++) {
        const int32_t *in = set->inputs + (size_t)n * W, *tg = set->targets + (size_t)n * W;
        int32_t *row = tokens + (size_t)n * (W + 1);
        int L = set->lengths[n];
        memcpy(row, in, (size_t)L * sizeof(int32_t));
        for (int t = 0; t < L; t++) {
            if (tg[t] < 0) continue;
            mask[(size_t)n * W + t] = 1;
            if (t == L - 1) {
                row[L] = tg[t];
            } else if (tg[t] != in[t + 1]) {
                snprintf(job->problem, job->problem_len,
                         "set %s, sequence %d: the target at %d is not the next token, which a "
                         "dataset file cannot store",
                         set->name, n, t);
                rc = 1;
                goto done;
            }
        }
    }
    hid_t g = H5Gcreate2(file, set->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) goto done;
    hsize_t tok_dims[2] = {(hsize_t)N, (hsize_t)W + 1}, mask_dims[2] = {(hsize_t)N, (hsize_t)W};
    hsize_t len_dims = (hsize_t)N;
    int extrapolates = set->extrapolates;
    rc = H5LTmake_dataset_int(g, "tokens", 2, tok_dims, tokens) < 0 ||
                 H5LTmake_dataset_int(g, "lengths", 1, &len_dims, set->lengths) < 0 ||
                 H5LTmake_dataset(g, "score_mask", 2, mask_dims, H5T_NATIVE_UINT8, mask) < 0 ||
                 H5LTset_attribute_string(g, ".", "summary", set->summary) < 0 ||
                 h5_set_scalar(g, "extrapolates", H5T_NATIVE_INT, &extrapolates) < 0
             ? -1
             : 0;
    H5Gclose(g);
done:
    free(tokens);
    free(mask);
    return rc;
}

static int fill(hid_t file, const void *ctx) {
    WriteJob *job = (WriteJob *)ctx;
    const DatasetContents *d = job->data;
    int version = DATASET_VERSION;
    char names[TASK_MAX_SPLITS * 17] = "";
    for (int s = 0; s < d->n_splits; s++) {
        if (s) strcat(names, ",");
        strcat(names, d->split[s].name);
    }
    if (H5LTset_attribute_string(file, "/", "format", DATASET_FORMAT) < 0 ||
        h5_set_scalar(file, "version", H5T_NATIVE_INT, &version) < 0 ||
        H5LTset_attribute_string(file, "/", "task", job->task->name) < 0 ||
        H5LTset_attribute_string(file, "/", "splits", names) < 0 ||
        h5_set_scalar(file, "sweep_first", H5T_NATIVE_INT, &d->sweep_first) < 0 ||
        h5_set_scalar(file, "sweep_bins", H5T_NATIVE_INT, &d->sweep_bins) < 0 ||
        write_vocab(file, job->task) < 0)
        return -1;
    if (d->train.n && write_set(file, &d->train, job) != 0) return -1;
    for (int s = 0; s < d->n_splits; s++)
        if (write_set(file, &d->split[s], job) != 0) return -1;
    return 0;
}

int dataset_file_write(const char *path, const Task *task, const DatasetContents *data, char *err,
                       size_t errlen) {
    char problem[512] = "";
    WriteJob job = {task, data, problem, sizeof problem};
    if (h5_write_atomic(path, "dataset", fill, &job, err, errlen) == 0) return 0;
    if (problem[0]) snprintf(err, errlen, "cannot write dataset %s: %s", path, problem);
    return -1;
}

// ----------------------------------------------------------------------------------------------
// reading

// Token names are short words; the bound keeps a damaged length from allocating much.
#define TOKEN_NAME_MAX 256

static int check_vocab(hid_t file, const Task *task, const char *path, char *err, size_t errlen) {
    char **names = NULL;
    long long n = h5_get_strings(file, "vocab", 1 << 20, TOKEN_NAME_MAX, &names);
    int rc = -1;
    if (n < 0) {
        h5_fail(err, errlen, "dataset %s has no readable vocab (strings [V] of at most %d bytes, "
                "without NUL bytes); the file is damaged", path, TOKEN_NAME_MAX);
    } else if (n != task->vocab_size) {
        snprintf(err, errlen,
                 "dataset %s has a vocabulary of %lld tokens, task %s has %d; write the file "
                 "again with this build (bin/train --task %s --write-data FILE)",
                 path, n, task->name, task->vocab_size, task->name);
    } else {
        rc = 0;
        for (int v = 0; v < n && rc == 0; v++)
            if (strcmp(names[v], task->token_names[v]) != 0) {
                snprintf(err, errlen,
                         "dataset %s calls token %d \"%.40s\", task %s calls it \"%s\"; write the "
                         "file again with this build",
                         path, v, names[v], task->name, task->token_names[v]);
                rc = -1;
            }
    }
    h5_free_strings(names, n);
    return rc;
}

// Bounds on a set's shape, checked before anything is allocated: each keeps N * (W + 1) within
// int and size_t arithmetic, and a damaged shape from asking for more memory than a set needs.
#define MAX_SEQUENCES (1 << 30)
#define MAX_WIDTH (1 << 24)
#define MAX_CELLS (1ull << 31)

// The shapes of a set: N and W from tokens [N, W + 1], checked against lengths and mask.
static int read_shape(hid_t file, const char *name, int *N, int *W, const char *path, char *err,
                      size_t errlen) {
    hsize_t tok[2], len[2], mask[2];
    H5T_class_t cls;
    size_t size;
    int rank_tok = 0, rank_len = 0, rank_mask = 0;
    char at[64];
    snprintf(at, sizeof at, "%s/tokens", name);
    int bad = H5LTfind_dataset(file, name) <= 0;
    if (!bad) {
        hid_t g = H5Gopen2(file, name, H5P_DEFAULT);
        bad = g < 0 || H5LTget_dataset_ndims(g, "tokens", &rank_tok) < 0 ||
              H5LTget_dataset_ndims(g, "lengths", &rank_len) < 0 ||
              H5LTget_dataset_ndims(g, "score_mask", &rank_mask) < 0 || rank_tok != 2 ||
              rank_len != 1 || rank_mask != 2 ||
              H5LTget_dataset_info(g, "tokens", tok, &cls, &size) < 0 || cls != H5T_INTEGER ||
              H5LTget_dataset_info(g, "lengths", len, &cls, &size) < 0 || cls != H5T_INTEGER ||
              H5LTget_dataset_info(g, "score_mask", mask, &cls, &size) < 0 || cls != H5T_INTEGER ||
              tok[1] < 2 || len[0] != tok[0] || mask[0] != tok[0] || mask[1] != tok[1] - 1 ||
              tok[0] > MAX_SEQUENCES || tok[1] > MAX_WIDTH + 1 ||
              tok[0] * tok[1] > MAX_CELLS;
        if (g >= 0) H5Gclose(g);
    }
    if (bad) {
        H5Eclear2(H5E_DEFAULT);
        snprintf(err, errlen,
                 "dataset %s has no well-formed set %s (tokens [N, W+1], lengths [N], score_mask "
                 "[N, W]); the file is damaged or not written by pelab",
                 path, name);
        return -1;
    }
    *N = (int)tok[0];
    *W = (int)tok[1] - 1;
    return 0;
}

// Longer summaries are cut to the table's width when read; longer ones than this are damage.
#define SUMMARY_MAX 4096

// Reads one set and checks every value: token ids in the vocabulary, lengths in 1 .. W, mask
// entries 0/1 and only on real positions.
static int read_set(hid_t file, const char *name, const Task *task, SequenceSet *set,
                    const char *path, char *err, size_t errlen) {
    int N, W;
    if (read_shape(file, name, &N, &W, path, err, errlen) != 0) return -1;
    hid_t g = H5Gopen2(file, name, H5P_DEFAULT);
    char *summary = NULL;
    int extrapolates = 0;
    if (g < 0 || h5_get_string_attr(g, "summary", SUMMARY_MAX, &summary) != 0 ||
        h5_get_number_attr(g, "extrapolates", H5T_NATIVE_INT, &extrapolates) != 0) {
        free(summary);
        if (g >= 0) H5Gclose(g);
        return h5_fail(err, errlen, "set %s of dataset %s lacks its summary or extrapolates attribute", name, path);
    }
    int rc = sequence_set_alloc(set, N, W);
    snprintf(set->name, sizeof set->name, "%s", name);
    snprintf(set->summary, sizeof set->summary, "%s", summary);
    free(summary);
    set->extrapolates = extrapolates != 0;
    if (rc != 0) {
        H5Gclose(g);
        snprintf(err, errlen, "out of memory reading set %s of dataset %s", name, path);
        return rc;
    }
    int32_t *tokens = malloc(((size_t)N * (W + 1) + 1) * sizeof(int32_t));
    uint8_t *mask = malloc((size_t)N * W + 1);
    rc = -1;
    if (!tokens || !mask) {
        snprintf(err, errlen, "out of memory reading set %s of dataset %s", name, path);
    } else if (H5LTread_dataset_int(g, "tokens", tokens) < 0 ||
               H5LTread_dataset_int(g, "lengths", set->lengths) < 0 ||
               H5LTread_dataset(g, "score_mask", H5T_NATIVE_UINT8, mask) < 0) {
        h5_fail(err, errlen, "cannot read set %s of dataset %s", name, path);
    } else {
        rc = 0;
        for (int n = 0; n < N && rc == 0; n++) {
            int L = set->lengths[n];
            const int32_t *row = tokens + (size_t)n * (W + 1);
            const uint8_t *m = mask + (size_t)n * W;
            const char *why = L < 1 || L > W ? "a length outside 1 .. W" : NULL;
            int at = 0;
            for (int t = 0; !why && t <= L; t++)
                if (row[t] < 0 || row[t] >= task->vocab_size) why = "a token id outside the vocabulary", at = t;
            for (int t = 0; !why && t < W; t++)
                if (m[t] > 1 || (m[t] && t >= L)) why = "a score mask that is not 0/1 on real positions", at = t;
            if (why) {
                snprintf(err, errlen, "set %s of dataset %s: sequence %d has %s (at %d); the file is damaged",
                         name, path, n, why, at);
                rc = -1;
                break;
            }
            memcpy(set->inputs + (size_t)n * W, row, (size_t)L * sizeof(int32_t));
            for (int t = 0; t < L; t++)
                if (m[t]) set->targets[(size_t)n * W + t] = row[t + 1];
        }
    }
    free(tokens);
    free(mask);
    H5Gclose(g);
    if (rc != 0) sequence_set_free(set);
    return rc;
}

// A split's name: a group of the file, short enough for SequenceSet.name, and a plain word.
static int valid_split_name(const char *name) {
    size_t n = strlen(name);
    return n > 0 && n < sizeof ((SequenceSet *)0)->name &&
           strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == n;
}

// The splits' names and the sweep's place among them, checked before any set is read: the
// names words, at most TASK_MAX_SPLITS of them, the sweep's bins (none, or three and more: two
// ends and a middle) within them.
static int check_splits(char *splits, const DatasetContents *data, const char *path, char *err,
                        size_t errlen) {
    int n = 0;
    for (const char *c = splits; *c; c++) n += *c == ',';
    n += splits[0] != '\0';
    for (char *name = splits, *end; name; name = end ? end + 1 : NULL) {
        if ((end = strchr(name, ','))) *end = '\0';
        int ok = valid_split_name(name);
        if (end) *end = ',';
        if (!ok) {
            snprintf(err, errlen, "dataset %s lists a split name that is not a word of 1 to %zu "
                     "letters, digits, '_' or '-' (splits \"%.60s\"); the file is damaged", path,
                     sizeof ((SequenceSet *)0)->name - 1, splits);
            return -1;
        }
    }
    const char *why = n > TASK_MAX_SPLITS ? "more splits than this build reads"
                      : data->sweep_first < 0 || data->sweep_bins < 0 ||
                              data->sweep_first > n || data->sweep_bins > n - data->sweep_first
                          ? "a position sweep outside its splits"
                      : data->sweep_bins == 1 || data->sweep_bins == 2
                          ? "a position sweep of fewer than 3 bins"
                          : NULL;
    if (why) {
        snprintf(err, errlen, "dataset %s names %s (%d splits, sweep_first %d, sweep_bins %d; at "
                 "most %d splits); the file is damaged", path, why, n, data->sweep_first,
                 data->sweep_bins, TASK_MAX_SPLITS);
        return -1;
    }
    return 0;
}

int dataset_file_read(const char *path, const Task *task, DatasetContents *data,
                      char *err, size_t errlen) {
    memset(data, 0, sizeof *data);
    hid_t file = h5_open_format(path, "dataset", DATASET_FORMAT, DATASET_VERSION, err, errlen);
    if (file < 0) return -1;
    char *task_name = NULL, *splits = NULL;
    int rc = -1;
    if (h5_get_string_attr(file, "task", 64, &task_name) != 0 ||
        h5_get_string_attr(file, "splits", TASK_MAX_SPLITS * sizeof data->split[0].name, &splits) != 0 ||
        h5_get_number_attr(file, "sweep_first", H5T_NATIVE_INT, &data->sweep_first) != 0 ||
        h5_get_number_attr(file, "sweep_bins", H5T_NATIVE_INT, &data->sweep_bins) != 0) {
        h5_fail(err, errlen, "dataset %s lacks its task, splits or sweep attributes; the file is damaged", path);
    } else if (strcmp(task_name, task->name) != 0) {
        snprintf(err, errlen, "dataset %s was written for task %.64s, not %s; pass --task %.64s", path,
                 task_name, task->name, task_name);
    } else if (check_splits(splits, data, path, err, errlen) == 0 &&
               check_vocab(file, task, path, err, errlen) == 0) {
        rc = 0;
        if (H5LTfind_dataset(file, "train") > 0)
            rc = read_set(file, "train", task, &data->train, path, err, errlen);
        for (char *name = strtok(splits, ","); name && rc == 0; name = strtok(NULL, ","))
            rc = read_set(file, name, task, &data->split[data->n_splits++], path, err, errlen);
    }
    free(task_name);
    free(splits);
    H5Fclose(file);
    if (rc != 0) dataset_contents_free(data);
    return rc;
}

void dataset_contents_free(DatasetContents *data) {
    sequence_set_free(&data->train);
    for (int s = 0; s < TASK_MAX_SPLITS; s++) sequence_set_free(&data->split[s]);
    data->n_splits = 0;
}
