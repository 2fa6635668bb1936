#include "run_data.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "../data/dataset_file.h"
#include "../data/jsonl.h"

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

// A folder of the official counting generator: train.jsonl, valid.jsonl and test.jsonl.
static int read_jsonl(const RunConfig *r, DatasetContents *c, char *err, size_t errlen) {
    SequenceSet sets[JSONL_MAX_SPLITS];
    int n = jsonl_read_folder(r->data, r->task, r->task_opt.seq_len, sets, err, errlen);
    if (n < 0) return -1;
    memset(c, 0, sizeof *c);
    c->train = sets[0];
    c->n_splits = n - 1;
    for (int s = 1; s < n; s++) c->split[s - 1] = sets[s];
    return 0;
}

static int is_folder(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

// A dataset file (sets == 0: its metadata only) or a folder of JSON lines (always read whole).
static int read_contents(const RunConfig *r, DatasetContents *c, int sets, char *err, size_t errlen) {
    if (is_folder(r->data) ? read_jsonl(r, c, err, errlen)
                           : dataset_file_read(r->data, r->task, c, sets, err, errlen))
        return -1;
    if (r->train_seqs) {
        snprintf(err, errlen,
                 "--train-seqs does not apply to --data %s: the file's training set is used; "
                 "drop --train-seqs",
                 r->data);
        dataset_contents_free(c);
        return -1;
    }
    return 0;
}

int run_data_plan(const RunConfig *r, TaskLayout *layout, int *train_size, char *err,
                  size_t errlen) {
    if (r->data[0]) {
        DatasetContents c;
        if (read_contents(r, &c, 0, err, errlen) != 0) return -1;
        layout_of(&c, layout);
        *train_size = c.train.n;
        dataset_contents_free(&c);
        return 0;
    }
    r->task->layout(&r->task_opt, layout);
    *train_size = r->train_seqs ? r->train_seqs : layout->train_size;
    return 0;
}

int run_data_load(RunData *d, const RunConfig *r, int with_train, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    if (r->data[0]) {
        DatasetContents c;
        if (read_contents(r, &c, 1, err, errlen) != 0) return -1;
        // --eval-seqs limits a file's splits too: their first sequences, a fixed subset, so
        // that evaluating a large file (the official counting data: 2000) does not dwarf training.
        for (int s = 0; s < c.n_splits; s++)
            if (c.split[s].n > r->eval_seqs) c.split[s].n = r->eval_seqs;
        TaskLayout layout;
        layout_of(&c, &layout);
        eval_sets_adopt(&d->evals, &layout, c.split);
        if (with_train) d->train = c.train;
        else sequence_set_free(&c.train);
        return 0;
    }
    TaskLayout layout;
    int train_size;
    run_data_plan(r, &layout, &train_size, err, errlen);
    if (eval_sets_build(&d->evals, r->task, &r->task_opt, r->eval_seqs) != 0 ||
        (with_train && train_size && sequence_set_generate(&d->train, r->task, &r->task_opt, &layout, -1,
                                             train_size, dataset_seed(-1)) != 0)) {
        run_data_free(d);
        snprintf(err, errlen, "out of memory for the data sets; lower --eval-seqs or --train-seqs");
        return -1;
    }
    return 0;
}

void run_data_free(RunData *d) {
    eval_sets_free(&d->evals);
    sequence_set_free(&d->train);
}

int run_data_write(const RunData *d, const Task *task, const char *path, char *err, size_t errlen) {
    DatasetContents c = {.train = d->train, .n_splits = d->evals.layout.n_splits,
                         .sweep_first = d->evals.layout.sweep_first,
                         .sweep_bins = d->evals.layout.sweep_bins};
    for (int s = 0; s < c.n_splits; s++) c.split[s] = d->evals.split[s];
    return dataset_file_write(path, task, &c, err, errlen);
}
