// AdamW with decoupled weight decay, global-norm gradient clipping and the learning-rate
// schedule. The moments share the parameter layout (one offset per tensor), so frozen tensors
// simply have no update; their moment slots stay zero and are not saved.
#ifndef PELAB_ADAMW_H
#define PELAB_ADAMW_H

#include "../model/gpt.h"

typedef struct {
    float beta1, beta2, eps, weight_decay;
} AdamWConfig;

typedef struct {
    float *m, *v;  // [num_parameters] first and second moments
    long step;     // number of updates taken
} AdamW;

int adamw_init(AdamW *opt, const GPT *model);
void adamw_free(AdamW *opt);
// One update of every trainable tensor of model with its gradients at learning rate lr.
void adamw_update(AdamW *opt, GPT *model, float lr, const AdamWConfig *cfg);

// L2 norm of all trainable gradients (accumulated in double, in tensor order).
float grad_global_norm(const GPT *model);
// Scales the gradients so their global norm is at most max_norm (no-op if max_norm <= 0);
// returns the norm before clipping.
float clip_grad_norm(GPT *model, float max_norm);

typedef enum { SCHEDULE_COSINE = 0, SCHEDULE_CONSTANT = 1 } Schedule;
// Linear warmup over `warmup` steps to lr_max, then cosine decay to lr_min at `total` steps
// (or constant). step is 0-based: the learning rate of the update that step makes.
float lr_at(long step, long warmup, long total, float lr_max, float lr_min, Schedule schedule);

#endif
