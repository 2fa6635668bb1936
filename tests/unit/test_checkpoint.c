// Checkpoints (train/checkpoint.h): a save/load round trip is bit-exact for parameters, AdamW
// moments and the trainer state; a checkpoint refuses to load into a model of another config,
// saying which tensor differs; a failed save leaves the existing checkpoint untouched; damaged
// and missing files give messages, not crashes. Also the run config's JSON round trip.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../model/gpt.h"
#include "../../common/rng.h"
#include "../../train/adamw.h"
#include "../../train/checkpoint.h"
#include "../../train/config.h"

static char dir[64];
static char path[128];

static void make_dir(void) {
    snprintf(dir, sizeof dir, "/tmp/pelab-test-ckpt-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/model.h5", dir);
}

static void remove_dir(void) {
    unlink(path);
    rmdir(dir);
}

TestSuite(checkpoint, .init = make_dir, .fini = remove_dir);

static GPTConfig config_of(const char *pe, int dim) {
    return (GPTConfig){.vocab_size = 5, .seq_len = 8, .n_layer = 2, .n_embd = dim, .n_head = 2,
                       .ffn_dim = 4 * dim, .norm = NORM_PRE, .act = ACT_GELU, .pe = pe_find(pe),
                       .pe_opt = {.rope_base = 10000.0f, .rel_npos = 8},
                       .init_std = GPT2_INIT_STD, .emb_std = GPT2_INIT_STD};
}

static void build(GPT *m, const char *pe, int dim) {
    GPTConfig c = config_of(pe, dim);
    char err[256];
    cr_assert_eq(gpt_build(m, &c, 2, err, sizeof err), 0, "gpt_build: %s", err);
}

// Random values everywhere, so that no all-zero or all-one tensor can hide a swapped read.
static void fill(float *x, size_t n, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) x[i] = rng_normal(&rng);
}

static char *config_json(const GPT *m) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddItemToObject(root, "model", gpt_config_to_json(&m->config));
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

static void save_ok(const GPT *m, const AdamW *opt, const TrainState *state) {
    char err[512], *json = config_json(m);
    cr_assert_eq(checkpoint_save(path, m, opt, json, state, err, sizeof err), 0, "save: %s", err);
    free(json);
}

static char *read_bytes(const char *file, long *len) {
    FILE *f = fopen(file, "rb");
    cr_assert_not_null(f, "cannot open %s", file);
    fseek(f, 0, SEEK_END);
    *len = ftell(f);
    rewind(f);
    char *buf = malloc(*len);
    cr_assert_eq(fread(buf, 1, *len, f), (size_t)*len);
    fclose(f);
    return buf;
}

// cope has a tensor per layer, so both shared and per-layer PE tensors make the round trip.
Test(checkpoint, round_trip_is_bit_exact) {
    GPT a, b;
    AdamW oa, ob;
    build(&a, "cope", 16);
    build(&b, "cope", 16);
    cr_assert_eq(adamw_init(&oa, &a), 0);
    cr_assert_eq(adamw_init(&ob, &b), 0);
    fill(a.params_memory, a.num_parameters, 1);
    fill(oa.m, a.num_parameters, 2);
    fill(oa.v, a.num_parameters, 3);
    oa.step = 7;
    TrainState sa = {.step = 123, .tokens_seen = 45678, .loss_sum = 1.25, .loss_count = 3,
                     .elapsed_s = 9.5};
    rng_seed(&sa.data_rng, 4);
    save_ok(&a, &oa, &sa);

    char err[512], *json = NULL, *expected = config_json(&a);
    cr_assert_eq(checkpoint_read_config(path, &json, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(json, expected);
    TrainState sb;
    cr_assert_eq(checkpoint_load(path, &b, &ob, &sb, err, sizeof err), 0, "load: %s", err);
    size_t bytes = a.num_parameters * sizeof(float);
    cr_assert_eq(memcmp(a.params_memory, b.params_memory, bytes), 0, "parameters differ");
    cr_assert_eq(memcmp(oa.m, ob.m, bytes), 0, "first moments differ");
    cr_assert_eq(memcmp(oa.v, ob.v, bytes), 0, "second moments differ");
    cr_assert_eq(ob.step, 7);
    cr_assert_eq(memcmp(&sa, &sb, sizeof sa), 0, "train state differs");
    free(json);
    free(expected);
    adamw_free(&oa);
    adamw_free(&ob);
    gpt_free(&a);
    gpt_free(&b);
}

Test(checkpoint, another_width_names_the_tensor) {
    GPT a, b;
    build(&a, "abs", 16);
    build(&b, "abs", 32);
    save_ok(&a, NULL, NULL);
    char err[512];
    cr_assert_neq(checkpoint_load(path, &b, NULL, NULL, err, sizeof err), 0);
    cr_assert(strstr(err, "wte.weight") && strstr(err, "[5, 16]") && strstr(err, "[5, 32]"),
              "message should name the tensor and both shapes: %s", err);
    gpt_free(&a);
    gpt_free(&b);
}

Test(checkpoint, another_encoding_names_the_tensor) {
    GPT a, b;
    build(&a, "abs", 16);
    build(&b, "none", 16);
    save_ok(&a, NULL, NULL);
    char err[512];
    cr_assert_neq(checkpoint_load(path, &b, NULL, NULL, err, sizeof err), 0);
    cr_assert(strstr(err, "wpe.weight"), "message should name the extra tensor: %s", err);
    cr_assert_eq(checkpoint_load(path, &a, NULL, NULL, err, sizeof err), 0,
                 "the matching model loads: %s", err);
    gpt_free(&a);
    gpt_free(&b);
}

Test(checkpoint, weights_only_has_no_optimizer) {
    GPT a;
    AdamW opt;
    build(&a, "none", 16);
    cr_assert_eq(adamw_init(&opt, &a), 0);
    save_ok(&a, NULL, NULL);
    char err[512];
    cr_assert_neq(checkpoint_load(path, &a, &opt, NULL, err, sizeof err), 0);
    cr_assert(strstr(err, "--init"), "message should point to --init: %s", err);
    adamw_free(&opt);
    gpt_free(&a);
}

// A directory squatting on the temporary name makes the write fail even for root, for whom
// permission bits would not.
Test(checkpoint, failed_save_keeps_the_old_file) {
    GPT a;
    build(&a, "abs", 16);
    save_ok(&a, NULL, NULL);
    long before_len, after_len;
    char *before = read_bytes(path, &before_len);
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    cr_assert_eq(mkdir(tmp, 0700), 0);
    fill(a.params_memory, a.num_parameters, 5);
    char err[512], *json = config_json(&a);
    cr_assert_neq(checkpoint_save(path, &a, NULL, json, NULL, err, sizeof err), 0);
    cr_assert(strstr(err, tmp), "message should name the file it could not write: %s", err);
    rmdir(tmp);
    char *after = read_bytes(path, &after_len);
    cr_assert(before_len == after_len && memcmp(before, after, before_len) == 0,
              "the existing checkpoint changed");

    char missing[256];
    snprintf(missing, sizeof missing, "%s/no/such/folder/model.h5", dir);
    cr_assert_neq(checkpoint_save(missing, &a, NULL, json, NULL, err, sizeof err), 0);
    cr_assert(strstr(err, "no/such/folder"), "message should name the path: %s", err);
    free(json);
    free(before);
    free(after);
    gpt_free(&a);
}

Test(checkpoint, damaged_and_missing_files) {
    char err[512], *json;
    cr_assert_neq(checkpoint_read_config(path, &json, err, sizeof err), 0);
    cr_assert(strstr(err, "No such file"), "missing file: %s", err);
    FILE *f = fopen(path, "w");
    fputs("this is not a checkpoint\n", f);
    fclose(f);
    cr_assert_neq(checkpoint_read_config(path, &json, err, sizeof err), 0);
    cr_assert(strstr(err, "not an HDF5 file"), "garbage file: %s", err);
    cr_assert_null(json);
}

Test(checkpoint, run_config_json_round_trip) {
    RunConfig rc = {.model = config_of("rope", 16), .task = task_find("flipflop"),
                    .task_opt = {.seq_len = 8, .flipflop_p_train = 0.8f}, .batch = 3,
                    .steps = 100, .lr = 3e-4f, .min_lr = 3e-5f, .schedule = SCHEDULE_CONSTANT,
                    .warmup = 10, .adamw = {.beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                                            .weight_decay = 0.1f},
                    .clip = 1.0f, .seed = 9007199254740991ULL, .threads = 2, .eval_every = 5,
                    .eval_seqs = 7, .save_every = 50};
    rc.model.dropout = 0.1f;
    rc.model.init_std = 0.07f, rc.model.emb_std = 0.3f;
    rc.preset = &rc.task->presets[0];
    char err[512], *json = run_config_to_json(&rc);
    RunConfig back;
    cr_assert_eq(run_config_from_json(json, &back, err, sizeof err), 0, "%s", err);
    char *again = run_config_to_json(&back);
    cr_assert_str_eq(json, again);
    cr_assert(back.lr == rc.lr && back.model.dropout == rc.model.dropout && back.seed == rc.seed &&
                  back.model.init_std == rc.model.init_std &&
                  back.model.emb_std == rc.model.emb_std,
              "floats and the seed must survive bit for bit");
    cr_assert(strstr(json, "\"lr\":0.0003"), "floats are written short: %s", json);
    free(json);
    free(again);

    cr_assert_neq(run_config_from_json("{\"model\": {}}", &back, err, sizeof err), 0);
    cr_assert(strstr(err, "model.vocab_size"), "message should name the field: %s", err);
}
