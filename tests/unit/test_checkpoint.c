// Checkpoints (train/checkpoint.h): a save/load round trip is bit-exact for parameters, AdamW
// moments and the trainer state; a checkpoint refuses to load into a model of another config,
// saying which tensor differs; a failed save leaves the existing checkpoint untouched; damaged
// and missing files give messages, not crashes. Also the run config's JSON round trip.
#include <criterion/criterion.h>
#include <hdf5.h>
#include <hdf5_hl.h>
#include <math.h>
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

#define TMP_FILE "model.h5"
#include "tmp_file.h"
#include "foreign_file.h"

TestSuite(checkpoint, .init = tmp_file_make, .fini = tmp_file_remove);

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
    for (size_t i = 0; i < a.num_parameters; i++) oa.v[i] = fabsf(oa.v[i]);  // as AdamW's are
    oa.step = 7;
    TrainState sa = {.step = 123, .tokens_seen = 45678, .loss_sum = 1.25, .loss_count = 3,
                     .elapsed_s = 9.5, .data_bytes = 98765,
                     .data_sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"};
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

// Saves a model of (pe_a, width_a) and loads it into one of (pe_b, width_b): must fail; the
// message goes to err.
static void load_into_another(const char *pe_a, int width_a, const char *pe_b, int width_b,
                              char *err, size_t errlen) {
    GPT a, b;
    build(&a, pe_a, width_a);
    build(&b, pe_b, width_b);
    save_ok(&a, NULL, NULL);
    cr_assert_neq(checkpoint_load(path, &b, NULL, NULL, err, errlen), 0);
    gpt_free(&b);
    // The model it was saved from loads.
    char why[512];
    cr_assert_eq(checkpoint_load(path, &a, NULL, NULL, why, sizeof why), 0,
                 "the matching model loads: %s", why);
    gpt_free(&a);
}

Test(checkpoint, another_width_names_the_tensor) {
    char err[512];
    load_into_another("abs", 16, "abs", 32, err, sizeof err);
    cr_assert(strstr(err, "wte.weight") && strstr(err, "[5, 16]") && strstr(err, "[5, 32]"),
              "message should name the tensor and both shapes: %s", err);
}

Test(checkpoint, another_encoding_names_the_tensor) {
    char err[512];
    load_into_another("abs", 16, "none", 16, err, sizeof err);
    cr_assert(strstr(err, "wpe.weight"), "message should name the extra tensor: %s", err);
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

// ----------------------------------------------------------------------------------------------
// damaged and crafted files (every case failed before the checks it tests existed)

static void save_full(GPT *m, AdamW *opt, const char *pe) {
    build(m, pe, 16);
    cr_assert_eq(adamw_init(opt, m), 0);
    fill(m->params_memory, m->num_parameters, 1);
    TrainState s = {.step = 5, .tokens_seen = 50, .loss_count = 1, .loss_sum = 2.0};
    rng_seed(&s.data_rng, 3);
    opt->step = 5;
    save_ok(m, opt, &s);
}

// Loads path into m with its optimiser and state: must fail with a message holding `needle`.
static void expect_load_error(GPT *m, AdamW *opt, const char *needle) {
    TrainState s;
    char err[512] = "";
    cr_assert_neq(checkpoint_load(path, m, opt, &s, err, sizeof err), 0, "the load succeeded");
    cr_assert(strstr(err, needle) && strstr(err, path), "message \"%s\" lacks \"%s\" or the path",
              err, needle);
}

static void patch_bytes(long at, const char *bytes, size_t n, int append) {
    FILE *f = fopen(path, append ? "ab" : "r+b");
    cr_assert_not_null(f);
    if (!append) fseek(f, at, SEEK_SET);
    cr_assert_eq(fwrite(bytes, 1, n, f), n);
    fclose(f);
}

Test(checkpoint, the_checksum_catches_a_changed_byte_and_a_changed_length) {
    GPT m;
    AdamW opt;
    save_full(&m, &opt, "abs");
    long len;
    char *original = read_bytes(path, &len);
    // The record is what `tail -c +513 FILE | sha256sum` checks by hand.
    char hex[65], line[128];
    long long bytes;
    cr_assert_eq(file_sha256(path, H5_CHECKSUM_BLOCK, hex, &bytes, line, sizeof line), 0);
    snprintf(line, sizeof line, "pelab-checksum 1\nsha256 %s\nbytes %lld\n", hex, bytes);
    cr_assert_eq(memcmp(original, line, strlen(line)), 0, "record: %.120s", original);
    cr_assert_eq(bytes, len - H5_CHECKSUM_BLOCK);

    // A byte of the middle, the last byte: each changed alone.
    long spots[] = {len / 2, len - 1, H5_CHECKSUM_BLOCK};
    for (int i = 0; i < 3; i++) {
        char flipped = original[spots[i]] ^ 0x20;
        patch_bytes(spots[i], &flipped, 1, 0);
        expect_load_error(&m, &opt, "do not match the checksum");
        patch_bytes(spots[i], original + spots[i], 1, 0);
    }
    patch_bytes(0, "x", 1, 1);
    expect_load_error(&m, &opt, "not as long as when written");
    FILE *f = fopen(path, "wb");
    fwrite(original, 1, len, f);
    fclose(f);
    patch_bytes(30, "g", 1, 0);  // not a hex digit
    expect_load_error(&m, &opt, "checksum record");
    patch_bytes(0, "q", 1, 0);  // neither the record nor HDF5
    expect_load_error(&m, &opt, "not an HDF5 file");

    // Without the record, as another tool would write it, the file loads.
    f = fopen(path, "wb");
    fwrite(original, 1, len, f);
    fclose(f);
    strip_checksum(path);
    TrainState s;
    char err[512];
    cr_assert_eq(checkpoint_load(path, &m, &opt, &s, err, sizeof err), 0, "%s", err);
    free(original);
    adamw_free(&opt);
    gpt_free(&m);
}

// Writes `value` into dataset `name` at flat index `at` of the (stripped) file.
static void poke_float(const char *name, size_t at, float value) {
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t set = H5Dopen2(file, name, H5P_DEFAULT);
    cr_assert_geq(set, 0, "no %s", name);
    hid_t space = H5Dget_space(set);
    hsize_t n = (hsize_t)H5Sget_simple_extent_npoints(space);
    float *x = malloc(n * sizeof *x);
    cr_assert_geq(H5Dread(set, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x), 0);
    x[at] = value;
    cr_assert_geq(H5Dwrite(set, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x), 0);
    free(x);
    H5Sclose(space);
    H5Dclose(set);
    H5Fclose(file);
}

Test(checkpoint, weights_and_moments_that_are_not_numbers_are_refused) {
    GPT m;
    AdamW opt;
    const struct {
        const char *tensor;
        float value;
        const char *needle;
    } cases[] = {
        {"model/wte.weight", NAN, "model/wte.weight holds nan at flat index 3"},
        {"model/ln_f.weight", INFINITY, "model/ln_f.weight holds inf"},
        {"optim/m/wpe.weight", -INFINITY, "optim/m/wpe.weight holds -inf"},
        {"optim/v/wte.weight", -1.0f, "a second moment cannot be"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        save_full(&m, &opt, "abs");
        strip_checksum(path);
        poke_float(cases[c].tensor, 3, cases[c].value);
        expect_load_error(&m, &opt, cases[c].needle);
        // --init reads the weights alone, and checks them the same way.
        char err[512] = "";
        int weights = strncmp(cases[c].tensor, "model/", 6) == 0;
        cr_assert_eq(checkpoint_load_init(path, &m, err, sizeof err) != 0, weights, "case %zu: %s",
                     c, err);
        adamw_free(&opt);
        gpt_free(&m);
    }
}

// Replaces dataset or attribute `name` of group `where` by an int64 one of shape dims (rank).
static void replace_int64(const char *where, const char *name, int is_attr, int rank,
                          const hsize_t *dims) {
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = H5Oopen(file, where, H5P_DEFAULT);
    cr_assert_geq(g, 0);
    hid_t space = H5Screate_simple(rank, dims, NULL);
    long long values[64] = {1, 2, 3, 4, 5, 6, 7, 8};
    if (is_attr) {
        H5Adelete(g, name);
        hid_t a = H5Acreate2(g, name, H5T_NATIVE_ULLONG, space, H5P_DEFAULT, H5P_DEFAULT);
        cr_assert_geq(H5Awrite(a, H5T_NATIVE_ULLONG, values), 0);
        H5Aclose(a);
    } else {
        H5Ldelete(g, name, H5P_DEFAULT);
        hid_t d = H5Dcreate2(g, name, H5T_NATIVE_ULLONG, space, H5P_DEFAULT, H5P_DEFAULT,
                             H5P_DEFAULT);
        cr_assert_geq(H5Dwrite(d, H5T_NATIVE_ULLONG, H5S_ALL, H5S_ALL, H5P_DEFAULT, values), 0);
        H5Dclose(d);
    }
    H5Sclose(space);
    H5Oclose(g);
    H5Fclose(file);
}

// The generator's state was read with the file's shape into TrainState's four words, and
// scalar attributes into one number whatever their length.
Test(checkpoint, state_of_another_shape_is_refused) {
    GPT m;
    AdamW opt;
    const struct {
        const char *where, *name;
        int is_attr, rank;
        hsize_t dims[2];
    } cases[] = {
        {"/state", "data_rng", 0, 2, {4, 8}},
        {"/state", "data_rng", 0, 1, {8}},
        {"/state", "data_rng", 0, 1, {3}},
        {"/", "step", 1, 1, {64}},
        {"/state", "loss_count", 1, 2, {8, 8}},
        {"/optim", "step", 1, 1, {16}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        save_full(&m, &opt, "none");
        strip_checksum(path);
        replace_int64(cases[c].where, cases[c].name, cases[c].is_attr, cases[c].rank,
                      cases[c].dims);
        expect_load_error(&m, &opt, cases[c].where[1] == 'o' ? "step attribute" : "training state");
        adamw_free(&opt);
        gpt_free(&m);
    }
    // An all-zero generator never leaves zero: every later batch would be the same.
    save_full(&m, &opt, "none");
    strip_checksum(path);
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    unsigned long long zero[4] = {0};
    hid_t d = H5Dopen2(file, "state/data_rng", H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_ULLONG, H5S_ALL, H5S_ALL, H5P_DEFAULT, zero);
    H5Dclose(d);
    H5Fclose(file);
    expect_load_error(&m, &opt, "training state");
    adamw_free(&opt);
    gpt_free(&m);
}

// h5py writes str attributes as variable-length strings; they were read as pointer bytes.
Test(checkpoint, variable_length_string_attributes_read_as_text) {
    GPT m;
    AdamW opt;
    save_full(&m, &opt, "none");
    strip_checksum(path);
    char *expected = config_json(&m);
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
    hid_t space = H5Screate(H5S_SCALAR);
    const char *texts[2] = {"pelab-checkpoint", expected};
    const char *names[2] = {"format", "config"};
    for (int i = 0; i < 2; i++) {
        H5Adelete(file, names[i]);
        hid_t a = H5Acreate2(file, names[i], type, space, H5P_DEFAULT, H5P_DEFAULT);
        cr_assert_geq(H5Awrite(a, type, &texts[i]), 0);
        H5Aclose(a);
    }
    H5Sclose(space);
    H5Tclose(type);
    H5Fclose(file);
    char err[512], *json = NULL;
    cr_assert_eq(checkpoint_read_config(path, &json, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(json, expected);
    free(json);
    free(expected);
    adamw_free(&opt);
    gpt_free(&m);
}
