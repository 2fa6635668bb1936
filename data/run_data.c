#include "run_data.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/checksum.h"
#include "dataset_file.h"
#include "jsonl.h"

// The layout of sets read from a file: their names, summaries and widths.
static void layout_of(const DatasetContents *c, TaskLayout *layout) {
    memset(layout, 0, sizeof *layout);
    layout->n_splits = c->n_splits;
    layout->train_size = c->train.n;
    layout->sweep_first = c->sweep_first;
    layout->sweep_bins = c->sweep_bins;
    for (int s = 0; s < c->n_splits; s++) {
        TaskSplit *split = &layout->split[s];
        snprintf(split->name, sizeof split->name, "%s", c->split[s].name);
        snprintf(split->summary, sizeof split->summary, "%s", c->split[s].summary);
        split->seq_len = c->split[s].width;
        split->size = c->split[s].n;
        split->extrapolates = c->split[s].extrapolates;
    }
    // A file without a training set can still be evaluated on; its longest split stands in.
    layout->train_len = c->train.n ? c->train.width : task_layout_longest(layout);
}

// A folder of the official counting generator: train.jsonl, valid.jsonl and test.jsonl, read
// whole (cut_left cuts them).
static int read_jsonl(const DataSource *src, DatasetContents *c, char *err, size_t errlen) {
    SequenceSet sets[JSONL_MAX_SPLITS];
    int n = jsonl_read_folder(src->path, src->task, INT_MAX, sets, err, errlen);
    if (n < 0) return -1;
    memset(c, 0, sizeof *c);
    c->train = sets[0];
    c->n_splits = n - 1;
    for (int s = 1; s < n; s++) c->split[s - 1] = sets[s];
    return 0;
}

// The official trainer's left cut of every set to src->cut_to (0: none), counted in d.
static void cut_left(RunData *d, const DataSource *src, DatasetContents *c) {
    d->lost = src->task->answer_known ? 0 : -1;
    for (int s = -1; s < c->n_splits; s++) {
        SequenceSet *set = s < 0 ? &c->train : &c->split[s];
        d->samples += set->n;
        if (!src->cut_to) continue;
        int cut, lost;
        sequence_set_cut_left(set, src->cut_to, src->task, &cut, &lost);
        d->cut += cut;
        if (d->lost >= 0) d->lost += lost;
    }
}

static int is_folder(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

// Every sequence scores at least one target, and every split holds a sequence: an unscored
// split would report an error of 0 % out of nothing, and an unscored training batch would train
// at loss 0 without a word. Task streams guarantee it; files that break it are refused.
static int check_scored(const SequenceSet *set, const char *set_name, const DataSource *src,
                        char *err, size_t errlen) {
    char source[4200], fix[256];
    snprintf(source, sizeof source, "%s %s", src->path[0] ? "dataset" : "task",
             src->path[0] ? src->path : src->task->name);
    if (src->path[0])
        snprintf(fix, sizeof fix, "the file is damaged or not one of task %s; write it again with "
                 "bin/train --write-data", src->task->name);
    else
        snprintf(fix, sizeof fix, "task %s drew it, which is a bug in the task", src->task->name);
    if (set->n == 0) {
        snprintf(err, errlen, "%s: %s has no sequences, so nothing to evaluate on; %s", source,
                 set_name, fix);
        return -1;
    }
    for (int i = 0; i < set->n; i++) {
        const int32_t *targets = set->targets + (size_t)i * set->width;
        int scored = 0;
        for (int t = 0; t < set->width && !scored; t++) scored = targets[t] >= 0;
        if (scored) continue;
        snprintf(err, errlen, "%s: sequence %d of %s has no scored target (its loss mask is all "
                 "zero), so it would count as correct and train at loss 0; %s",
                 source, i, set_name, fix);
        return -1;
    }
    return 0;
}

static int check_sets(const RunData *d, const DataSource *src, char *err, size_t errlen) {
    if (d->train.n && check_scored(&d->train, "the training set", src, err, errlen)) return -1;
    for (int s = 0; s < d->evals.layout.n_splits; s++) {
        char name[48];
        snprintf(name, sizeof name, "split %s", d->evals.layout.split[s].name);
        if (check_scored(&d->evals.split[s], name, src, err, errlen)) return -1;
    }
    return 0;
}

static int load_sets(RunData *d, const DataSource *src, int with_train, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    if (src->path[0]) {
        DatasetContents c;
        int folder = is_folder(src->path);
        if (folder ? read_jsonl(src, &c, err, errlen)
                   : dataset_file_read(src->path, src->task, &c, err, errlen))
            return -1;
        // --eval-seqs limits a file's splits too: their first sequences, a fixed subset, so
        // that evaluating a large file (the official counting data: 2000) does not dwarf training.
        for (int s = 0; s < c.n_splits; s++)
            if (c.split[s].n > src->eval_seqs) c.split[s].n = src->eval_seqs;
        if (folder) cut_left(d, src, &c);
        TaskLayout layout;
        layout_of(&c, &layout);
        eval_sets_adopt(&d->evals, &layout, c.split);
        if (with_train) d->train = c.train;
        else sequence_set_free(&c.train);
        return 0;
    }
    TaskLayout layout;
    src->task->layout(src->opt, &layout);
    int train_size = src->train_seqs ? src->train_seqs : layout.train_size;
    if (eval_sets_build(&d->evals, src->task, src->opt, src->eval_seqs) != 0 ||
        (with_train && train_size &&
         sequence_set_generate(&d->train, src->task, src->opt, &layout, -1, train_size,
                               dataset_seed(-1)) != 0)) {
        run_data_free(d);
        snprintf(err, errlen, "out of memory for the data sets; lower --eval-seqs or --train-seqs");
        return -1;
    }
    return 0;
}

int run_data_load(RunData *d, const DataSource *src, int with_train, char *err, size_t errlen) {
    if (load_sets(d, src, with_train, err, errlen)) return -1;
    if (check_sets(d, src, err, errlen) == 0) return 0;
    run_data_free(d);
    return -1;
}

void run_data_free(RunData *d) {
    eval_sets_free(&d->evals);
    sequence_set_free(&d->train);
}

int run_data_identity(const char *path, char sha256[65], long long *bytes, char *err,
                      size_t errlen) {
    if (!is_folder(path)) return file_sha256(path, 0, sha256, bytes, err, errlen);
    static const char *const files[] = {"train.jsonl", "valid.jsonl", "test.jsonl"};
    char list[3 * (16 + 24 + 65 + 3)] = "";
    size_t used = 0;
    *bytes = 0;
    for (int f = 0; f < 3; f++) {
        char file[4096 + 16], hex[65];
        long long n;
        snprintf(file, sizeof file, "%s/%s", path, files[f]);
        struct stat st;
        if (f == 2 && stat(file, &st) != 0) break;  // test.jsonl is optional (jsonl.h)
        if (file_sha256(file, 0, hex, &n, err, errlen) != 0) return -1;
        used += snprintf(list + used, sizeof list - used, "%s %lld %s\n", files[f], n, hex);
        *bytes += n;
    }
    if (text_sha256(list, used, sha256) != 0) {
        snprintf(err, errlen, "cannot hash %s", path);
        return -1;
    }
    return 0;
}

int run_data_write(const RunData *d, const Task *task, const char *path, char *err, size_t errlen) {
    DatasetContents c = {.train = d->train, .n_splits = d->evals.layout.n_splits,
                         .sweep_first = d->evals.layout.sweep_first,
                         .sweep_bins = d->evals.layout.sweep_bins};
    for (int s = 0; s < c.n_splits; s++) c.split[s] = d->evals.split[s];
    return dataset_file_write(path, task, &c, err, errlen);
}
