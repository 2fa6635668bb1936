// Ms-PoE: per-head position ratios for rope at evaluation time (model/mspoe.h says what and why).
#include "mspoe.h"

#include "layers.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const mspoe_order_names[] = {[MSPOE_ORDER_SCORE] = "score",
                                         [MSPOE_ORDER_PLAIN] = "plain",
                                         [MSPOE_ORDER_OFFICIAL] = "official", NULL};

_Static_assert(sizeof(MsPoEOrder) == sizeof(int), "--mspoe-order stores the enum as an int");

const Option mspoe_options[] = {
    {"mspoe", "MIN:MAX", KIND_RATIOS, 0, SCOPE_RUN,
     .help = "Ms-PoE on a rope model: head ratios r from MIN to MAX (official 1.2:1.8)",
     .default_text = "off"},
    {"mspoe-skip-layers", "N", KIND_INT, offsetof(MsPoEConfig, skip_layers), SCOPE_RUN, 0,
     GPT_MAX_LAYERS, .help = "Ms-PoE: the first N layers keep plain rope",
     .default_text = "2, at most layers - 1"},
    {"mspoe-order", "score|plain|official", KIND_CHOICE, offsetof(MsPoEConfig, order), SCOPE_RUN,
     .choices = mspoe_order_names,
     .help = "Ms-PoE: ratios by position-awareness score (least aware head gets MAX), by head "
             "index, or by the official code's indexing of the score order",
     .default_text = "score"},
};
const int mspoe_n_options = sizeof mspoe_options / sizeof mspoe_options[0];

const char *mspoe_check(const MsPoEConfig *s, const GPTConfig *c) {
    static _Thread_local char msg[256];
    if (strcmp(c->pe->name, "rope") != 0) {
        snprintf(msg, sizeof msg,
                 "Ms-PoE rescales rope's positions, and this model uses --pe %s; pass a rope "
                 "checkpoint or leave --mspoe out",
                 c->pe->name);
        return msg;
    }
    if (module_of(c)) {
        snprintf(msg, sizeof msg,
                 "Ms-PoE rescales plain rope's positions, and this model's attention is %s's; "
                 "evaluate the rope checkpoint its %s tensors were trained from instead",
                 module_of(c)->name, module_of(c)->name);
        return msg;
    }
    if (!(isfinite(s->ratio_min) && isfinite(s->ratio_max) && s->ratio_min > 0.0f)) {
        snprintf(msg, sizeof msg,
                 "--mspoe ratios divide the positions, so they must be positive numbers, got "
                 "%g:%g; the official ones are 1.2:1.8",
                 (double)s->ratio_min, (double)s->ratio_max);
        return msg;
    }
    if (s->ratio_min > s->ratio_max) {
        snprintf(msg, sizeof msg,
                 "--mspoe %g:%g has MIN above MAX; the ratios run from MIN (most position-aware "
                 "head) up to MAX, as in 1.2:1.8",
                 (double)s->ratio_min, (double)s->ratio_max);
        return msg;
    }
    if (s->skip_layers < 0 || s->skip_layers >= c->n_layer) {
        snprintf(msg, sizeof msg,
                 "--mspoe-skip-layers %d leaves no layer of this %d-layer model to rescale; pass "
                 "a value from 0 to %d",
                 s->skip_layers, c->n_layer, c->n_layer - 1);
        return msg;
    }
    if ((unsigned)s->order > MSPOE_ORDER_OFFICIAL)
        return "--mspoe-order must be score, plain or official";
    return NULL;
}

int mspoe_parse_ratios(const char *text, MsPoEConfig *s, char *err, size_t errlen) {
    char *colon, *end;
    errno = 0;
    s->ratio_min = strtof(text, &colon);
    int ok = colon != text && *colon == ':' && errno == 0;
    if (ok) {
        s->ratio_max = strtof(colon + 1, &end);
        ok = end != colon + 1 && *end == '\0' && errno == 0;
    }
    if (!ok) {
        snprintf(err, errlen, "--mspoe needs two ratios MIN:MAX such as 1.2:1.8, got '%s'", text);
        return -1;
    }
    return 0;
}

static struct MsPoE *state_of(const GPT *m) {
    return m->qk_override.release == mspoe_disable ? m->qk_override.state : NULL;
}

void mspoe_disable(GPT *m) {
    struct MsPoE *s = state_of(m);
    if (!s) return;
    free(s->ratios);
    free(s->scores);
    free(s->ranks);
    free(s->row_work);
    free(s->query_rows);
    free(s);
    memset(&m->qk_override, 0, sizeof m->qk_override);
}

int mspoe_enable(GPT *m, const MsPoEConfig *config, char *err, size_t errlen) {
    const GPTConfig *c = &m->config;
    const char *problem = mspoe_check(config, c);
    if (problem) {
        snprintf(err, errlen, "%s", problem);
        return -1;
    }
    if (m->qk_override.release) m->qk_override.release(m);
    struct MsPoE *s = calloc(1, sizeof *s);
    size_t BH = (size_t)m->max_batch * c->n_head;
    if (s) {
        s->config = *config;
        s->ratios = calloc((size_t)c->n_layer * BH, sizeof(double));
        s->scores = calloc(BH, sizeof(float));
        s->ranks = calloc(BH, sizeof(int));
        s->row_work = calloc(BH * c->seq_len, sizeof(float));
        s->query_rows = calloc((size_t)m->max_batch, sizeof(int));
    }
    m->qk_override = (QKOverride){.applies = mspoe_applies, .forward = mspoe_qk_forward,
                                  .release = mspoe_disable, .state = s};
    if (!s || !s->ratios || !s->scores || !s->ranks || !s->row_work || !s->query_rows) {
        mspoe_disable(m);
        snprintf(err, errlen, "out of memory for Ms-PoE's work space; lower the batch");
        return -1;
    }
    return 0;
}

int mspoe_applies(const GPT *m, int layer) {
    const struct MsPoE *s = state_of(m);
    return s && layer >= s->config.skip_layers;
}

const double *mspoe_layer_ratios(const GPT *m, int layer) {
    if (!mspoe_applies(m, layer)) return NULL;
    return state_of(m)->ratios + (size_t)layer * m->max_batch * m->config.n_head;
}

int mspoe_default_skip_layers(int n_layer) { return n_layer - 1 < 2 ? n_layer - 1 : 2; }

double mspoe_ratio(const MsPoEConfig *s, int rank, int H) {
    return (double)s->ratio_min + ((double)s->ratio_max - (double)s->ratio_min) * rank / H;
}

float mspoe_position_score(const float *q, const float *k, int stride, int d, int row,
                           float *work) {
    const float *qr = q + (size_t)row * stride;
    float scale = 1.0f / sqrtf((float)d), top = -INFINITY;
    for (int j = 0; j <= row; j++) {
        const float *kj = k + (size_t)j * stride;
        float dot = 0.0f;
        for (int i = 0; i < d; i++) dot += qr[i] * kj[i];
        work[j] = dot * scale;
        if (work[j] > top) top = work[j];
    }
    float sum = 0.0f;
    for (int j = 0; j <= row; j++) {
        work[j] = expf(work[j] - top);
        sum += work[j];
    }
    // The n = row + 1 weights e_j / sum have the mean 1 / n, so a weight above factor times
    // the mean is an e_j above factor * sum / n.
    float threshold = MSPOE_OUTLIER_FACTOR * sum / (float)(row + 1);
    int outliers = 0;
    for (int j = 0; j <= row; j++) outliers += work[j] > threshold;
    return (float)outliers / (float)(row + 1);
}

void mspoe_rank_heads(const float *scores, int H, int *rank) {
    // A head's rank is the number of heads ahead of it: higher scores, and equal scores of
    // lower index. H is a handful, so counting beats sorting.
    for (int h = 0; h < H; h++) {
        rank[h] = 0;
        for (int o = 0; o < H; o++)
            rank[h] += scores[o] > scores[h] || (scores[o] == scores[h] && o < h);
    }
}

// The last scored position of every sequence of the batch (the last row if none is, or if the
// forward has no targets).
static void find_query_rows(const int32_t *targets, int B, int T, int *rows) {
    for (int b = 0; b < B; b++) {
        int t = T - 1;
        while (targets && t > 0 && targets[(size_t)b * T + t] < 0) t--;
        rows[b] = targets && targets[(size_t)b * T + t] < 0 ? T - 1 : t;
    }
}

void mspoe_qk_forward(GPT *m, int layer, float *qkv) {
    struct MsPoE *s = state_of(m);
    const GPTConfig *c = &m->config;
    int B = m->B, T = m->T, C = c->n_embd, H = c->n_head, d = C / H;
    // A replica (gpt.h) forwards rows shard_row0.. of the batch: its rows' state is theirs.
    size_t row0 = (size_t)m->shard_row0;
    double *ratios = s->ratios + ((size_t)layer * m->max_batch + row0) * H;
    float *scores = s->scores + row0 * H;
    int *ranks = s->ranks + row0 * H, *query_rows = s->query_rows + row0;
    if (s->config.order != MSPOE_ORDER_PLAIN) {
        find_query_rows(m->targets, B, T, query_rows);
#pragma omp parallel for collapse(2) schedule(static) num_threads(m->n_threads)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) {
                const float *q = qkv + (size_t)b * T * 3 * C + h * d;
                float *work = s->row_work + ((row0 + b) * H + h) * c->seq_len;
                scores[b * H + h] = mspoe_position_score(q, q + C, 3 * C, d, query_rows[b], work);
            }
    }
    for (int b = 0; b < B; b++) {
        int *rank = ranks + b * H;
        if (s->config.order == MSPOE_ORDER_PLAIN)
            for (int h = 0; h < H; h++) rank[h] = h;
        else mspoe_rank_heads(scores + b * H, H, rank);
        // score: head h takes the ratio of index rank[h]. official: head h takes index order[h],
        // the head whose rank is h; so head rank[g] takes index g.
        for (int h = 0; h < H; h++)
            if (s->config.order == MSPOE_ORDER_OFFICIAL)
                ratios[b * H + rank[h]] = mspoe_ratio(&s->config, h, H);
            else
                ratios[b * H + h] = mspoe_ratio(&s->config, rank[h], H);
    }
    rope_rotate(qkv, 3 * c->n_embd, 2, B, T, c->n_embd, c->n_head, c->pe_opt.rope_base, 1.0f, ratios);
}
