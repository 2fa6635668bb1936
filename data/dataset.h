// Fixed sets of sequences: what evaluation splits, finite training sets (counting's 10k) and
// dataset files (HDF5, or the official counting generator's JSON lines) all become in memory.
//
// Sequences may differ in length; each row is right-padded to the set's width (input 0,
// target -1), which a causal model never lets the real positions see, and a batch is cut to
// the longest sequence it holds so that padding costs little.
#ifndef PELAB_DATASET_H
#define PELAB_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "../tasks/task.h"

typedef struct {
    char name[16];       // the split's name ("train", "in", "valid", ...)
    char summary[112];   // one line for tables
    int extrapolates;    // longer than training on purpose (see TaskSplit)
    int n;               // sequences
    int width;           // positions per row: at least the longest sequence
    int32_t *inputs;     // [n, width] token at t; 0 past the sequence's length
    int32_t *targets;    // [n, width] token at t+1 where scored, else -1
    int32_t *lengths;    // [n] positions of each sequence (1 .. width)
} SequenceSet;

// The seed of a task's fixed set: evaluation split `split`, or the finite training set for
// split < 0. A constant, not --seed, so every run of a task with the same options sees the same
// sets and runs compare directly; asking for more sequences extends a set (the first n stay).
uint64_t dataset_seed(int split);

// Allocates n empty rows of `width` (inputs 0, targets -1, lengths 0). Returns 0, or -1 when out
// of memory (the set is then empty and safe to free).
int sequence_set_alloc(SequenceSet *set, int n, int width);
void sequence_set_free(SequenceSet *set);

// Draws n sequences of a task's split (split < 0: the training distribution) from `seed`;
// the set takes the split's name, summary and width from the layout. Returns 0 or -1 (memory).
int sequence_set_generate(SequenceSet *set, const Task *task, const TaskOptions *opt,
                          const TaskLayout *layout, int split, int n, uint64_t seed);

// Pads row `row` (input 0, target -1) and draws one sequence of the split into it.
void sequence_set_draw(SequenceSet *set, int row, const Task *task, const TaskOptions *opt,
                       int split, Rng *rng);

// How an epoch of a fixed training set of n sequences is cut into batches of B, both from a
// permutation drawn from (seed, epoch):
//   pooled:  sorted by length within pools of EPOCH_POOL batches, so that each batch holds
//            sequences of similar length (little padding to compute), cut into n / B batches
//            whose order is then shuffled; the n mod B sequences left over differ every epoch.
//   shuffle: the permutation cut in order into ceil(n / B) batches, the last one short when B
//            does not divide n: every sequence once per epoch, as a shuffling PyTorch
//            DataLoader that keeps its last batch (the CoPE paper's trainer).
// Batch k is order[k B .. k B + epoch_batch_size(k) - 1]. A pure function of its arguments: a
// resumed run recomputes the epoch it stopped in.
typedef enum { ORDER_POOLED = 0, ORDER_SHUFFLE = 1 } BatchOrder;
#define EPOCH_POOL 16
int batches_per_epoch(int n, int B, BatchOrder how);
// Sequences in batch k of an epoch: B, but for shuffle's short last batch.
int epoch_batch_size(int n, int B, BatchOrder how, int k);
// order and work: [n] each.
void epoch_order(int *order, int64_t *work, const int32_t *lengths, int n, int B, BatchOrder how,
                 uint64_t seed, long epoch);

// Copies the rows indices[0..B-1] into inputs/targets as a [B, T] batch, T being the longest
// of them, and returns T.
int sequence_set_batch(const SequenceSet *set, const int *indices, int B, int32_t *inputs,
                       int32_t *targets);

#endif
