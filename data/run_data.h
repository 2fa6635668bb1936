// The sequences of a run: its evaluation splits and its training data, drawn from the task
// (fixed seeds; a fixed training set where the task or --train-seqs asks for one, else an
// endless stream) or read from --data, once, after the command line is parsed.
#ifndef PELAB_RUN_DATA_H
#define PELAB_RUN_DATA_H

#include <stddef.h>

#include "dataset.h"
#include "evaluate.h"

// Where a run's sequences come from.
typedef struct {
    const Task *task;
    const TaskOptions *opt;  // the task's options (drawn sets)
    // "": drawn from the task; else a dataset file (.h5, dataset_file.h) or a folder of the
    // official counting generator's JSON lines (jsonl.h).
    const char *path;
    int train_seqs;  // drawn: >0 a fixed training set of this many (0: the task's own)
    int eval_seqs;   // drawn: sequences per evaluation split (where the task fixes no size)
    // JSON lines: >0 cuts longer samples to their last `cut_to` tokens (the official trainer's
    // left cut); 0 keeps them whole, for the caller to fit the context to the longest.
    int cut_to;
} DataSource;

typedef struct {
    EvalSets evals;
    SequenceSet train;  // the fixed training set; n == 0: the task's endless stream
    // Read from JSON lines: the samples in all sets, and the cut (sequence_set_cut_left).
    int samples, cut, lost;
} RunData;

// Draws or reads the evaluation splits and, with_train, the training set; 0, or -1 with err.
int run_data_load(RunData *d, const DataSource *src, int with_train, char *err, size_t errlen);
void run_data_free(RunData *d);

// The identity of the data at path, which a checkpoint records so that a resumed run can tell
// that its data changed: the SHA-256 of a dataset file's bytes, or of a JSON-lines folder's
// list of its files' names, sizes and SHA-256s; and the bytes in all. 0, or -1 with err.
int run_data_identity(const char *path, char sha256[65], long long *bytes, char *err,
                      size_t errlen);

// Writes the sets to a dataset file (--write-data); 0, or -1 with err.
int run_data_write(const RunData *d, const Task *task, const char *path, char *err, size_t errlen);

#endif
