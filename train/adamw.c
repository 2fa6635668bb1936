#include "adamw.h"

#include <math.h>
#include <stdlib.h>

int adamw_init(AdamW *opt, const GPT *model) {
    opt->m = calloc(model->num_parameters, sizeof(float));
    opt->v = calloc(model->num_parameters, sizeof(float));
    opt->step = 0;
    return (opt->m && opt->v) ? 0 : -1;
}

void adamw_free(AdamW *opt) {
    free(opt->m);
    free(opt->v);
    opt->m = opt->v = NULL;
}

void adamw_update(AdamW *opt, GPT *model, float lr, const AdamWConfig *cfg) {
    opt->step++;
    // Same arithmetic as torch.optim.AdamW: decay first, then the bias-corrected step.
    float bc1 = 1.0f - powf(cfg->beta1, (float)opt->step);
    float bc2 = 1.0f - powf(cfg->beta2, (float)opt->step);
    float step_size = lr / bc1;
    float bc2_sqrt = sqrtf(bc2);
    for (int t = 0; t < model->n_tensors; t++) {
        const TensorInfo *ti = &model->tensors[t];
        if (!ti->trainable) continue;
        float decay = ti->weight_decay ? 1.0f - lr * cfg->weight_decay : 1.0f;
        float *p = model->params_memory + ti->offset;
        const float *g = model->grads_memory + ti->offset;
        float *m = opt->m + ti->offset, *v = opt->v + ti->offset;
        long n = (long)ti->size;
#pragma omp parallel for schedule(static)
        for (long i = 0; i < n; i++) {
            m[i] = cfg->beta1 * m[i] + (1.0f - cfg->beta1) * g[i];
            v[i] = cfg->beta2 * v[i] + (1.0f - cfg->beta2) * g[i] * g[i];
            float denom = sqrtf(v[i]) / bc2_sqrt + cfg->eps;
            p[i] = p[i] * decay - step_size * m[i] / denom;
        }
    }
}

float grad_global_norm(const GPT *model) {
    double sum = 0.0;
    for (int t = 0; t < model->n_tensors; t++) {
        const TensorInfo *ti = &model->tensors[t];
        if (!ti->trainable) continue;
        const float *g = model->grads_memory + ti->offset;
        for (size_t i = 0; i < ti->size; i++) sum += (double)g[i] * g[i];
    }
    return (float)sqrt(sum);
}

float clip_grad_norm(GPT *model, float max_norm) {
    float norm = grad_global_norm(model);
    if (max_norm > 0.0f && norm > max_norm) {
        // torch.nn.utils.clip_grad_norm_ uses max_norm / (norm + 1e-6).
        float scale = max_norm / (norm + 1e-6f);
        for (int t = 0; t < model->n_tensors; t++) {
            const TensorInfo *ti = &model->tensors[t];
            if (!ti->trainable) continue;
            float *g = model->grads_memory + ti->offset;
            for (size_t i = 0; i < ti->size; i++) g[i] *= scale;
        }
    }
    return norm;
}

float lr_at(long step, long warmup, long total, float lr_max, float lr_min, Schedule schedule) {
    if (step < warmup) return lr_max * (float)(step + 1) / (float)warmup;
    if (schedule == SCHEDULE_CONSTANT || total <= warmup) return lr_max;
    double progress = (double)(step - warmup) / (double)(total - warmup);
    if (progress > 1.0) progress = 1.0;
    return lr_min + (float)(0.5 * (1.0 + cos(M_PI * progress))) * (lr_max - lr_min);
}
