// Run config <-> JSON (cJSON). Reading is strict: a checkpoint written by another version or by
// hand must fail with the name of the bad field rather than train something unintended.
#include "config.h"

#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const norm_names[] = {[NORM_PRE] = "pre", [NORM_POST] = "post", NULL};
const char *const act_names[] = {[ACT_GELU] = "gelu", [ACT_RELU] = "relu", NULL};
const char *const schedule_names[] = {
    [SCHEDULE_COSINE] = "cosine", [SCHEDULE_CONSTANT] = "constant", NULL};
const char *const train_only_names[] = {[TRAIN_ALL] = "all", [TRAIN_MODULE] = "routers", NULL};
const char *const init_names[] = {[INIT_GPT2] = "gpt2", [INIT_TORCH] = "torch", NULL};
const char *const batch_order_names[] = {[ORDER_POOLED] = "pooled", [ORDER_SHUFFLE] = "shuffle",
                                         NULL};

DataSource run_config_data(const RunConfig *r) {
    return (DataSource){.task = r->task, .opt = &r->task_opt, .path = r->data,
                        .train_seqs = r->train_seqs, .eval_seqs = r->eval_seqs,
                        .cut_to = r->task_opt.seq_len};
}

void format_float(char *buf, size_t len, float value) {
    for (int digits = 6; digits <= 9; digits++) {
        snprintf(buf, len, "%.*g", digits, (double)value);
        if ((float)strtod(buf, NULL) == value) return;
    }
}

// Floats go into the JSON as their shortest decimal, so that it says "lr": 0.001 rather than
// 0.0010000000474974513 and still reads back bit for bit.
static void add_float(cJSON *obj, const char *key, float value) {
    char text[32];
    format_float(text, sizeof text, value);
    cJSON_AddNumberToObject(obj, key, strtod(text, NULL));
}

// ----------------------------------------------------------------------------------------------
// reading: a cursor over one JSON object that records the first problem and then ignores the
// rest, so that a reader is a flat list of fields followed by one check.

typedef struct {
    const cJSON *obj;
    const char *section;
    char *err;
    size_t errlen;
    int failed;
} JsonReader;

static const cJSON *reader_field(JsonReader *r, const char *key, int (*is_type)(const cJSON *),
                                 const char *what) {
    if (r->failed) return NULL;
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(r->obj, key);
    if (!is_type(item)) {
        snprintf(r->err, r->errlen, "config field %s.%s is missing or not %s", r->section, key,
                 what);
        r->failed = 1;
        return NULL;
    }
    return item;
}

static int cjson_is_number(const cJSON *item) { return cJSON_IsNumber(item); }
static int cjson_is_string(const cJSON *item) { return cJSON_IsString(item); }
static int cjson_is_bool(const cJSON *item) { return cJSON_IsBool(item); }
static int cjson_is_array(const cJSON *item) { return cJSON_IsArray(item); }

// An integer in [lo, hi] (JSON numbers are doubles: exact up to 2^53).
static double read_integer(JsonReader *r, const char *key, double lo, double hi) {
    const cJSON *item = reader_field(r, key, cjson_is_number, "an integer");
    if (!item) return 0;
    double v = item->valuedouble;
    if (v != floor(v) || v < lo || v > hi) {
        snprintf(r->err, r->errlen, "config field %s.%s must be an integer in [%.0f, %.0f], got %g",
                 r->section, key, lo, hi, v);
        r->failed = 1;
        return 0;
    }
    return v;
}

static int read_int(JsonReader *r, const char *key) {
    return (int)read_integer(r, key, INT_MIN, INT_MAX);
}
static long read_long(JsonReader *r, const char *key) {
    return (long)read_integer(r, key, 0, 9007199254740991.0);
}

static float read_float(JsonReader *r, const char *key) {
    const cJSON *item = reader_field(r, key, cjson_is_number, "a number");
    return item ? (float)item->valuedouble : 0.0f;
}

static const char *read_string(JsonReader *r, const char *key) {
    const cJSON *item = reader_field(r, key, cjson_is_string, "a string");
    return item ? item->valuestring : "";
}

// Index of the string field `key` in the NULL-terminated names, as enums are stored by name.
static int read_choice(JsonReader *r, const char *key, const char *const *names) {
    const char *s = read_string(r, key);
    if (r->failed) return 0;
    for (int i = 0; names[i]; i++)
        if (strcmp(s, names[i]) == 0) return i;
    snprintf(r->err, r->errlen, "config field %s.%s has the unknown value \"%s\"", r->section, key,
             s);
    r->failed = 1;
    return 0;
}

static JsonReader reader_of(const cJSON *root, const char *section, char *err, size_t errlen) {
    JsonReader r = {.obj = root, .section = section, .err = err, .errlen = errlen};
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "config has no \"%s\" object", section);
        r.failed = 1;
    }
    return r;
}

// ----------------------------------------------------------------------------------------------
// options of the modules

// The options of the encodings and of the tasks, from their own tables (Option rows; the key is
// the flag's name with '_' for '-'): written always, read where present, and required only
// when the run uses the option's module, so checkpoints written before a module existed still
// load (with the built-in values, which such a run never reads). An option added to a module
// later (Option.added_later) is never required: its built-in value is what the module did
// before it existed.
static void option_key(const Option *o, char *key, size_t len) {
    snprintf(key, len, "%s", o->name);
    for (char *c = key; *c; c++)
        if (*c == '-') *c = '_';
}

// Adds every option of a module's table, its values in `values` (PEOptions, TaskOptions).
static void add_options(cJSON *obj, const Option *options, int n, const void *values) {
    for (int i = 0; i < n; i++) {
        const Option *o = &options[i];
        const void *field = (const char *)values + o->offset;
        char key[64];
        option_key(o, key, sizeof key);
        if (o->kind == KIND_FLOAT) add_float(obj, key, *(const float *)field);
        else if (o->kind == KIND_CHOICE) cJSON_AddStringToObject(obj, key, o->choices[*(const int *)field]);
        else cJSON_AddNumberToObject(obj, key, *(const int *)field);
    }
}

// Reads the options of a module's table into `values`; `used`: the run uses the module.
static void read_options(JsonReader *r, const Option *options, int n, int used, void *values) {
    for (int i = 0; i < n; i++) {
        const Option *o = &options[i];
        void *field = (char *)values + o->offset;
        char key[64];
        option_key(o, key, sizeof key);
        if ((!used || o->added_later) && !cJSON_HasObjectItem(r->obj, key)) continue;
        if (o->kind == KIND_FLOAT) *(float *)field = read_float(r, key);
        else if (o->kind == KIND_CHOICE) *(int *)field = read_choice(r, key, o->choices);
        else *(int *)field = read_int(r, key);
    }
}

// ----------------------------------------------------------------------------------------------
// model

cJSON *gpt_config_to_json(const GPTConfig *c) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(j, "seq_len", c->seq_len);
    cJSON_AddNumberToObject(j, "n_layer", c->n_layer);
    cJSON_AddNumberToObject(j, "n_embd", c->n_embd);
    cJSON_AddNumberToObject(j, "n_head", c->n_head);
    cJSON_AddNumberToObject(j, "ffn_dim", c->ffn_dim);
    add_float(j, "dropout", c->dropout);
    add_float(j, "ffn_dropout", c->ffn_dropout);
    cJSON_AddStringToObject(j, "norm", norm_names[c->norm]);
    cJSON_AddStringToObject(j, "act", act_names[c->act]);
    cJSON_AddStringToObject(j, "pe", c->pe->name);
    cJSON_AddStringToObject(j, "init_scheme", init_names[c->init]);
    add_float(j, "init_std", c->init_std);
    add_float(j, "emb_std", c->emb_std);
    for (int p = 0; p < pe_count(); p++)
        add_options(j, pe_at(p)->options, pe_at(p)->n_options, &c->pe_opt);
    cJSON_AddBoolToObject(j, "tied", 1);
    if (c->moice.n_bases) {
        cJSON *moice = cJSON_AddObjectToObject(j, "moice");
        cJSON *bases = cJSON_AddArrayToObject(moice, "bases");
        for (int n = 0; n < c->moice.n_bases; n++) {
            char text[32];
            format_float(text, sizeof text, c->moice.bases[n]);
            cJSON_AddItemToArray(bases, cJSON_CreateNumber(strtod(text, NULL)));
        }
        cJSON_AddNumberToObject(moice, "top_k", c->moice.top_k);
        add_float(moice, "aux_weight", c->moice.aux_weight);
        add_float(moice, "router_std", c->moice.router_std);
    }
    return j;
}

// The optional "moice" object of the model; absent means MoICE is off.
static int read_moice(const cJSON *json, MoICEOptions *o, char *err, size_t errlen) {
    memset(o, 0, sizeof *o);
    if (!json) return 0;
    JsonReader r = reader_of(json, "model.moice", err, errlen);
    const cJSON *bases = reader_field(&r, "bases", cjson_is_array, "an array of numbers");
    o->top_k = read_int(&r, "top_k");
    o->aux_weight = read_float(&r, "aux_weight");
    // written since the router init became an option; before, it was 1/sqrt(d) (0 here)
    if (cJSON_HasObjectItem(json, "router_std")) o->router_std = read_float(&r, "router_std");
    if (r.failed) return -1;
    int n = cJSON_GetArraySize(bases);
    if (n > MOICE_MAX_BASES) {
        snprintf(err, errlen, "config field model.moice.bases has %d bases, more than %d", n,
                 MOICE_MAX_BASES);
        return -1;
    }
    const cJSON *base;
    cJSON_ArrayForEach(base, bases) {
        if (!cJSON_IsNumber(base)) {
            snprintf(err, errlen, "config field model.moice.bases must hold numbers only");
            return -1;
        }
        o->bases[o->n_bases++] = (float)base->valuedouble;
    }
    return 0;
}

int gpt_config_from_json(const cJSON *json, GPTConfig *c, char *err, size_t errlen) {
    JsonReader r = reader_of(json, "model", err, errlen);
    memset(c, 0, sizeof *c);
    c->vocab_size = read_int(&r, "vocab_size");
    c->seq_len = read_int(&r, "seq_len");
    c->n_layer = read_int(&r, "n_layer");
    c->n_embd = read_int(&r, "n_embd");
    c->n_head = read_int(&r, "n_head");
    c->ffn_dim = read_int(&r, "ffn_dim");
    c->dropout = read_float(&r, "dropout");
    c->norm = (NormPlacement)read_choice(&r, "norm", norm_names);
    c->act = (Activation)read_choice(&r, "act", act_names);
    const char *pe = read_string(&r, "pe");
    // Written since the init became a flag; older checkpoints were all GPT-2's.
    c->init_std = c->emb_std = GPT2_INIT_STD;
    if (cJSON_HasObjectItem(json, "init_std")) c->init_std = read_float(&r, "init_std");
    if (cJSON_HasObjectItem(json, "emb_std")) c->emb_std = read_float(&r, "emb_std");
    // Written since the CoPE trainer's init and FFN dropout became options; before, pelab had
    // neither (zero memset above: gpt2, no FFN dropout).
    if (cJSON_HasObjectItem(json, "init_scheme"))
        c->init = (InitScheme)read_choice(&r, "init_scheme", init_names);
    if (cJSON_HasObjectItem(json, "ffn_dropout")) c->ffn_dropout = read_float(&r, "ffn_dropout");
    const PositionalEncoding *own = r.failed ? NULL : pe_find(pe);
    for (int p = 0; p < pe_count(); p++)
        read_options(&r, pe_at(p)->options, pe_at(p)->n_options, pe_at(p) == own, &c->pe_opt);
    const cJSON *tied = reader_field(&r, "tied", cjson_is_bool, "true or false");
    if (r.failed) return -1;
    if (read_moice(cJSON_GetObjectItemCaseSensitive(json, "moice"), &c->moice, err, errlen))
        return -1;
    if (!cJSON_IsTrue(tied)) {
        snprintf(err, errlen,
                 "config says the model is untied; pelab models tie the output head to wte");
        return -1;
    }
    if (!(c->pe = pe_find(pe))) {
        snprintf(err, errlen,
                 "config names the positional encoding \"%s\", which this build lacks (it has %s)",
                 pe, pe_names());
        return -1;
    }
    const char *problem = gpt_config_check(c);
    if (problem) {
        snprintf(err, errlen, "config describes an invalid model: %s", problem);
        return -1;
    }
    return 0;
}

// ----------------------------------------------------------------------------------------------
// run

char *run_config_to_json(const RunConfig *rc) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddItemToObject(root, "model", gpt_config_to_json(&rc->model));

    cJSON *task = cJSON_AddObjectToObject(root, "task");
    cJSON_AddStringToObject(task, "name", rc->task->name);
    cJSON_AddStringToObject(task, "preset", rc->preset->name);
    cJSON_AddNumberToObject(task, "seq_len", rc->task_opt.seq_len);
    cJSON_AddStringToObject(task, "data", rc->data);
    cJSON_AddNumberToObject(task, "train_seqs", rc->train_seqs);
    for (int t = 0; t < task_count(); t++)
        add_options(task, task_at(t)->options, task_at(t)->n_options, &rc->task_opt);

    cJSON *train = cJSON_AddObjectToObject(root, "train");
    cJSON_AddNumberToObject(train, "batch", rc->batch);
    cJSON_AddStringToObject(train, "batch_order", batch_order_names[rc->batch_order]);
    cJSON_AddNumberToObject(train, "steps", rc->steps);
    add_float(train, "lr", rc->lr);
    add_float(train, "min_lr", rc->min_lr);
    cJSON_AddStringToObject(train, "schedule", schedule_names[rc->schedule]);
    cJSON_AddNumberToObject(train, "warmup", rc->warmup);
    add_float(train, "weight_decay", rc->adamw.weight_decay);
    add_float(train, "beta1", rc->adamw.beta1);
    add_float(train, "beta2", rc->adamw.beta2);
    add_float(train, "eps", rc->adamw.eps);
    add_float(train, "clip", rc->clip);
    // Raw text: cJSON prints large numbers with 15 digits, and seeds go up to 2^53.
    char seed[24];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)rc->seed);
    cJSON_AddRawToObject(train, "seed", seed);
    cJSON_AddNumberToObject(train, "threads", rc->threads);
    cJSON_AddNumberToObject(train, "eval_every", rc->eval_every);
    cJSON_AddNumberToObject(train, "eval_seqs", rc->eval_seqs);
    cJSON_AddNumberToObject(train, "save_every", rc->save_every);
    cJSON_AddStringToObject(train, "train_only", train_only_names[rc->train_only]);

    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

static int read_task(const cJSON *json, RunConfig *rc, char *err, size_t errlen) {
    JsonReader r = reader_of(json, "task", err, errlen);
    rc->task_opt = task_defaults();
    const char *name = read_string(&r, "name");
    const char *preset = read_string(&r, "preset");
    rc->task_opt.seq_len = read_int(&r, "seq_len");
    // Written since datasets exist; older checkpoints drew their data from the task's stream.
    if (cJSON_HasObjectItem(json, "data")) snprintf(rc->data, sizeof rc->data, "%s", read_string(&r, "data"));
    if (cJSON_HasObjectItem(json, "train_seqs")) rc->train_seqs = read_int(&r, "train_seqs");
    if (r.failed) return -1;
    if (!(rc->task = task_find(name))) {
        snprintf(err, errlen, "config names the task \"%s\", which this build lacks (it has %s)",
                 name, task_names());
        return -1;
    }
    for (int t = 0; t < task_count(); t++)
        read_options(&r, task_at(t)->options, task_at(t)->n_options, task_at(t) == rc->task,
                     &rc->task_opt);
    if (r.failed) return -1;
    if (!(rc->preset = task_preset(rc->task, preset))) {
        snprintf(err, errlen, "config names the preset \"%s\", which task %s lacks", preset, name);
        return -1;
    }
    return 0;
}

static int read_train(const cJSON *json, RunConfig *rc, char *err, size_t errlen) {
    JsonReader r = reader_of(json, "train", err, errlen);
    rc->batch = read_int(&r, "batch");
    rc->steps = read_long(&r, "steps");
    rc->lr = read_float(&r, "lr");
    rc->min_lr = read_float(&r, "min_lr");
    rc->schedule = (Schedule)read_choice(&r, "schedule", schedule_names);
    rc->warmup = read_long(&r, "warmup");
    rc->adamw.weight_decay = read_float(&r, "weight_decay");
    rc->adamw.beta1 = read_float(&r, "beta1");
    rc->adamw.beta2 = read_float(&r, "beta2");
    rc->adamw.eps = read_float(&r, "eps");
    rc->clip = read_float(&r, "clip");
    rc->seed = (uint64_t)read_long(&r, "seed");
    rc->threads = read_int(&r, "threads");
    rc->eval_every = read_long(&r, "eval_every");
    rc->eval_seqs = read_int(&r, "eval_seqs");
    rc->save_every = read_long(&r, "save_every");
    // written since the order became an option; older runs pooled by length
    if (cJSON_HasObjectItem(json, "batch_order"))
        rc->batch_order = (BatchOrder)read_choice(&r, "batch_order", batch_order_names);
    // written since router-only training exists; older runs trained everything
    if (cJSON_HasObjectItem(json, "train_only"))
        rc->train_only = (TrainableSet)read_choice(&r, "train_only", train_only_names);
    return r.failed ? -1 : 0;
}

int run_config_from_json(const char *json, RunConfig *rc, char *err, size_t errlen) {
    memset(rc, 0, sizeof *rc);
    cJSON *root = cJSON_Parse(json);
    if (!root) {
        snprintf(err, errlen, "config is not valid JSON");
        return -1;
    }
    int ok = gpt_config_from_json(cJSON_GetObjectItemCaseSensitive(root, "model"), &rc->model,
                                     err, errlen) == 0 &&
                read_task(cJSON_GetObjectItemCaseSensitive(root, "task"), rc, err, errlen) == 0 &&
                read_train(cJSON_GetObjectItemCaseSensitive(root, "train"), rc, err, errlen) == 0;
    cJSON_Delete(root);
    if (!ok) return -1;
    // The model against the task, as bin/train builds them: the same tokens, and a context that
    // holds the task's sequences (the model's buffers are sized by it).
    if (rc->model.vocab_size != rc->task->vocab_size) {
        snprintf(err, errlen, "config gives the model a vocabulary of %d tokens, task %s has %d",
                 rc->model.vocab_size, rc->task->name, rc->task->vocab_size);
        return -1;
    }
    if (rc->task_opt.seq_len < 1 || rc->task_opt.seq_len > rc->model.seq_len) {
        snprintf(err, errlen, "config gives the task a context of %d tokens, outside the model's "
                 "1 .. %d", rc->task_opt.seq_len, rc->model.seq_len);
        return -1;
    }
    return 0;
}
