// Dataset files: a task's fixed sets in one HDF5 file, so that data can be shared and reused
// (bin/train --write-data FILE writes one, --data FILE trains and evaluates on one).
//
//   /                  attributes format = "pelab-dataset", version = 1, task (name),
//                      splits ("in,sparse,dense": the evaluation splits in order),
//                      sweep_first, sweep_bins (the position sweep's splits; 0 bins: none)
//   /vocab             strings [V]: the task's token names, id order
//   /<set>/tokens      int32 [N, W + 1]: row n holds its L_n positions' tokens, then the token
//                      the last position predicts (0 when that prediction is not scored)
//   /<set>/lengths     int32 [N]: L_n, the positions of each sequence (1 .. W)
//   /<set>/score_mask  uint8 [N, W]: 1 where the prediction of token t+1 at position t is scored
//                      <set> has attributes summary (text) and extrapolates (0/1)
//
// <set> is `train` (optional: a finite training set) and every evaluation split. A position's
// target is always the next token, so tokens and the mask rebuild inputs and targets exactly.
// Every function returns 0, or -1 with one line in err naming the file, the problem and the fix.
#ifndef PELAB_DATASET_FILE_H
#define PELAB_DATASET_FILE_H

#include <stddef.h>

#include "dataset.h"

#define DATASET_FORMAT "pelab-dataset"
#define DATASET_VERSION 1

// Everything a file holds, in memory.
typedef struct {
    SequenceSet train;                   // n = 0 when the file has no training set
    SequenceSet split[TASK_MAX_SPLITS];  // the evaluation splits, in order
    int n_splits;
    int sweep_first, sweep_bins;
} DatasetContents;

// Writes path atomically (a temporary file renamed over it once complete).
int dataset_file_write(const char *path, const Task *task, const DatasetContents *data, char *err,
                       size_t errlen);

// Reads a file written for `task` (its name and vocabulary must match).
int dataset_file_read(const char *path, const Task *task, DatasetContents *data, char *err,
                      size_t errlen);

void dataset_contents_free(DatasetContents *data);

#endif
