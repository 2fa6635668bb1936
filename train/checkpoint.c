// HDF5 checkpoints through the high-level H5LT API (layout in checkpoint.h).
#include "checkpoint.h"

#include "../common/h5file.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <hdf5_hl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// ----------------------------------------------------------------------------------------------
// writing

// One float32 dataset per tensor from a buffer in the parameter layout (params or a moment).
static int write_tensors(hid_t group, const GPT *model, const float *buf, int trainable_only) {
    for (int i = 0; i < model->n_tensors; i++) {
        const TensorInfo *t = &model->tensors[i];
        if (trainable_only && !t->trainable) continue;
        hsize_t dims[3];
        for (int d = 0; d < t->ndim; d++) dims[d] = (hsize_t)t->shape[d];
        if (H5LTmake_dataset_float(group, t->name, t->ndim, dims, buf + t->offset) < 0) return -1;
    }
    return 0;
}

static hid_t make_group(hid_t parent, const char *name) {
    return H5Gcreate2(parent, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
}

static int write_optimizer(hid_t file, const GPT *model, const AdamW *opt) {
    hid_t g = make_group(file, "optim");
    if (g < 0) return -1;
    long long step = opt->step;
    int rc = h5_set_scalar(g, "step", H5T_NATIVE_LLONG, &step);
    const char *names[2] = {"m", "v"};
    const float *moments[2] = {opt->m, opt->v};
    for (int k = 0; k < 2 && rc >= 0; k++) {
        hid_t gm = make_group(g, names[k]);
        rc = gm < 0 ? -1 : write_tensors(gm, model, moments[k], 1);
        if (gm >= 0) H5Gclose(gm);
    }
    H5Gclose(g);
    return rc < 0 ? -1 : 0;
}

static int write_state(hid_t file, const TrainState *s) {
    hid_t g = make_group(file, "state");
    if (g < 0) return -1;
    hsize_t four = 4;
    long long count = s->loss_count;
    int rc = H5LTmake_dataset(g, "data_rng", 1, &four, H5T_NATIVE_UINT64, s->data_rng.s);
    if (rc >= 0) rc = h5_set_scalar(g, "loss_sum", H5T_NATIVE_DOUBLE, &s->loss_sum);
    if (rc >= 0) rc = h5_set_scalar(g, "loss_count", H5T_NATIVE_LLONG, &count);
    if (rc >= 0) rc = h5_set_scalar(g, "elapsed_s", H5T_NATIVE_DOUBLE, &s->elapsed_s);
    if (rc >= 0 && s->data_sha256[0]) {
        rc = H5LTset_attribute_string(g, ".", "data_sha256", s->data_sha256);
        if (rc >= 0) rc = h5_set_scalar(g, "data_bytes", H5T_NATIVE_LLONG, &s->data_bytes);
    }
    H5Gclose(g);
    return rc < 0 ? -1 : 0;
}

typedef struct {
    const GPT *model;
    const AdamW *opt;
    const char *config_json;
    const TrainState *state;
} CheckpointContents;

static int write_file(hid_t file, const void *contents) {
    const CheckpointContents *c = contents;
    const GPT *model = c->model;
    const AdamW *opt = c->opt;
    const TrainState *state = c->state;
    const char *config_json = c->config_json;
    int version = CHECKPOINT_VERSION;
    long long step = state ? state->step : 0, tokens = state ? state->tokens_seen : 0;
    if (H5LTset_attribute_string(file, "/", "format", CHECKPOINT_FORMAT) < 0 ||
        h5_set_scalar(file, "version", H5T_NATIVE_INT, &version) < 0 ||
        H5LTset_attribute_string(file, "/", "config", config_json) < 0 ||
        h5_set_scalar(file, "step", H5T_NATIVE_LLONG, &step) < 0 ||
        h5_set_scalar(file, "tokens_seen", H5T_NATIVE_LLONG, &tokens) < 0)
        return -1;
    hid_t g = make_group(file, "model");
    if (g < 0) return -1;
    int rc = write_tensors(g, model, model->params_memory, 0);
    H5Gclose(g);
    if (rc < 0) return -1;
    if (opt && write_optimizer(file, model, opt) < 0) return -1;
    if (state && write_state(file, state) < 0) return -1;
    return 0;
}

int checkpoint_save(const char *path, const GPT *model, const AdamW *opt, const char *config_json,
                    const TrainState *state, char *err, size_t errlen) {
    CheckpointContents contents = {model, opt, config_json, state};
    return h5_write_atomic(path, "checkpoint", write_file, &contents, err, errlen);
}

// ----------------------------------------------------------------------------------------------
// reading

// Far above any config pelab writes (a few KB), far below trouble.
#define CONFIG_MAX_BYTES (1 << 20)

static hid_t open_checkpoint(const char *path, char *err, size_t errlen) {
    return h5_open_format(path, "checkpoint", CHECKPOINT_FORMAT, CHECKPOINT_VERSION, err, errlen);
}

int checkpoint_read_config(const char *path, char **config_json, char *err, size_t errlen) {
    *config_json = NULL;
    hid_t file = open_checkpoint(path, err, errlen);
    if (file < 0) return -1;
    int rc = h5_get_string_attr(file, "config", CONFIG_MAX_BYTES, config_json);
    if (rc != 0) h5_fail(err, errlen, "%s has no readable config attribute; the checkpoint is damaged", path);
    H5Fclose(file);
    return rc;
}

static void format_shape(char *buf, size_t len, int ndim, const hsize_t *dims) {
    int n = snprintf(buf, len, "[");
    for (int d = 0; d < ndim && n > 0 && (size_t)n < len; d++)
        n += snprintf(buf + n, len - n, d ? ", %llu" : "%llu", (unsigned long long)dims[d]);
    if (n > 0 && (size_t)n < len) snprintf(buf + n, len - n, "]");
}

// The index of the first value of x[0..n) that is not finite (or negative, with nonnegative),
// or -1 when all are fine.
static long first_bad_value(const float *x, size_t n, int nonnegative) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]) || (nonnegative && x[i] < 0.0f)) return (long)i;
    return -1;
}

// Reads every model tensor (or every trainable one) from `group` into buf (parameter layout),
// checking names, types, shapes and values (finite; also >= 0 with nonnegative), and that the
// group holds no tensor the model lacks. With routers_optional, MoICE routers the group lacks
// keep the values buf has.
static int read_tensors(hid_t group, const char *group_name, const GPT *model, float *buf,
                        int trainable_only, int routers_optional, int nonnegative,
                        const char *path, char *err, size_t errlen) {
    int expected = 0;
    for (int i = 0; i < model->n_tensors; i++) {
        const TensorInfo *t = &model->tensors[i];
        if (trainable_only && !t->trainable) continue;
        if (routers_optional && t->module && H5Lexists(group, t->name, H5P_DEFAULT) <= 0)
            continue;
        expected++;
        if (H5Lexists(group, t->name, H5P_DEFAULT) <= 0) {
            snprintf(err, errlen, "checkpoint %s has no tensor %s/%s; it was saved from a model of "
                     "another config (other --pe, --norm or --layers?); build the model from "
                     "the checkpoint's config", path, group_name, t->name);
            return -1;
        }
        int ndim = 0;
        hsize_t dims[3] = {0}, want[3];
        H5T_class_t cls;
        size_t size;
        if (H5LTget_dataset_ndims(group, t->name, &ndim) < 0 || ndim < 1 || ndim > 3 ||
            H5LTget_dataset_info(group, t->name, dims, &cls, &size) < 0 || cls != H5T_FLOAT)
            return h5_fail(err, errlen, "checkpoint %s: %s/%s is not a float tensor of rank 1 to 3",
                        path, group_name, t->name);
        for (int d = 0; d < t->ndim; d++) want[d] = (hsize_t)t->shape[d];
        if (ndim != t->ndim || memcmp(dims, want, sizeof(hsize_t) * ndim) != 0) {
            char have_s[64], want_s[64];
            format_shape(have_s, sizeof have_s, ndim, dims);
            format_shape(want_s, sizeof want_s, t->ndim, want);
            snprintf(err, errlen, "checkpoint %s: tensor %s is %s there but %s in this model; "
                     "build the model from the checkpoint's config", path, t->name, have_s, want_s);
            return -1;
        }
        if (H5LTread_dataset_float(group, t->name, buf + t->offset) < 0)
            return h5_fail(err, errlen, "cannot read %s/%s from %s", group_name, t->name, path);
        long bad = first_bad_value(buf + t->offset, t->size, nonnegative);
        if (bad >= 0) {
            snprintf(err, errlen, "checkpoint %s: tensor %s/%s holds %g at flat index %ld, which "
                     "%s; the checkpoint is damaged (or its run diverged): resume from an "
                     "earlier checkpoint", path, group_name, t->name, (double)buf[t->offset + bad],
                     bad, nonnegative ? "a second moment cannot be" : "is not a finite number");
            return -1;
        }
    }
    H5G_info_t info;
    if (H5Gget_info(group, &info) < 0)
        return h5_fail(err, errlen, "cannot list %s/ in %s", group_name, path);
    for (hsize_t i = 0; i < info.nlinks && (hsize_t)expected != info.nlinks; i++) {
        char name[256];
        if (H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name,
                               H5P_DEFAULT) < 0)
            return h5_fail(err, errlen, "cannot list %s/ in %s", group_name, path);
        if (!gpt_tensor(model, name)) {
            snprintf(err, errlen, "checkpoint %s has a tensor %s/%s that this model lacks; it was "
                     "saved from a model of another config", path, group_name, name);
            return -1;
        }
    }
    return 0;
}

// Opens group `name` of the file and reads tensors from it (see read_tensors).
static int read_group(hid_t file, const char *name, const GPT *model, float *buf,
                      int trainable_only, int routers_optional, int nonnegative, const char *path,
                      char *err, size_t errlen) {
    if (H5Lexists(file, name, H5P_DEFAULT) <= 0) {
        snprintf(err, errlen, "checkpoint %s has no %s/ group; it holds weights only (use --init "
                 "to start a new run from them)", path, name);
        return -1;
    }
    hid_t g = H5Gopen2(file, name, H5P_DEFAULT);
    if (g < 0) return h5_fail(err, errlen, "cannot open %s/ in %s", name, path);
    int rc = read_tensors(g, name, model, buf, trainable_only, routers_optional, nonnegative, path,
                          err, errlen);
    H5Gclose(g);
    return rc;
}

// The data stream's generator: exactly uint64[4] (a rank or length of its own would be read
// past TrainState's four words), and not all zero, the one state xoshiro never leaves.
static int read_rng(hid_t state, Rng *rng) {
    if (H5Lexists(state, "data_rng", H5P_DEFAULT) <= 0) return -1;
    hid_t set = H5Dopen2(state, "data_rng", H5P_DEFAULT);
    hid_t space = set < 0 ? -1 : H5Dget_space(set);
    hid_t type = set < 0 ? -1 : H5Dget_type(set);
    int rc = space >= 0 && type >= 0 && H5Sget_simple_extent_ndims(space) == 1 &&
                     H5Sget_simple_extent_npoints(space) == 4 && H5Tget_class(type) == H5T_INTEGER &&
                     H5Tget_size(type) == 8 && H5Tget_sign(type) == H5T_SGN_NONE &&
                     H5Dread(set, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, rng->s) >= 0
                 ? 0
                 : -1;
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    if (set >= 0) H5Dclose(set);
    if (rc == 0 && !(rng->s[0] | rng->s[1] | rng->s[2] | rng->s[3])) rc = -1;
    return rc;
}

// The identity of the data the run trained on; absent in runs on drawn data.
static int read_data_identity(hid_t state, TrainState *s) {
    memset(s->data_sha256, 0, sizeof s->data_sha256);
    s->data_bytes = 0;
    if (H5Aexists(state, "data_sha256") <= 0) return 0;
    char *hex = NULL;
    int rc = h5_get_string_attr(state, "data_sha256", 64, &hex) != 0 || strlen(hex) != 64 ||
                     strspn(hex, "0123456789abcdef") != 64 ||
                     h5_get_number_attr(state, "data_bytes", H5T_NATIVE_LLONG, &s->data_bytes) != 0 ||
                     s->data_bytes < 0
                 ? -1
                 : 0;
    if (rc == 0) memcpy(s->data_sha256, hex, 65);
    free(hex);
    return rc;
}

static int read_state(hid_t file, TrainState *s, const char *path, char *err, size_t errlen) {
    long long step, tokens, count;
    if (H5Lexists(file, "state", H5P_DEFAULT) <= 0) {
        snprintf(err, errlen, "checkpoint %s has no state/ group; it holds weights only (use "
                 "--init to start a new run from them)", path);
        return -1;
    }
    hid_t g = H5Gopen2(file, "state", H5P_DEFAULT);
    int bad = g < 0 || h5_get_number_attr(file, "step", H5T_NATIVE_LLONG, &step) != 0 ||
              h5_get_number_attr(file, "tokens_seen", H5T_NATIVE_LLONG, &tokens) != 0 ||
              read_rng(g, &s->data_rng) != 0 ||
              h5_get_number_attr(g, "loss_sum", H5T_NATIVE_DOUBLE, &s->loss_sum) != 0 ||
              h5_get_number_attr(g, "loss_count", H5T_NATIVE_LLONG, &count) != 0 ||
              h5_get_number_attr(g, "elapsed_s", H5T_NATIVE_DOUBLE, &s->elapsed_s) != 0 ||
              read_data_identity(g, s) != 0;
    // Counts that a run can reach, sums that are numbers.
    bad = bad || step < 0 || tokens < 0 || count < 0 || count > step || !isfinite(s->loss_sum) ||
          !isfinite(s->elapsed_s) || s->elapsed_s < 0;
    if (g >= 0) H5Gclose(g);
    if (bad)
        return h5_fail(err, errlen, "checkpoint %s: the training state is incomplete or damaged "
                       "(step, tokens_seen, state/data_rng uint64[4], loss_sum, loss_count, "
                       "elapsed_s); resume from another checkpoint", path);
    s->step = (long)step;
    s->tokens_seen = (long)tokens;
    s->loss_count = (long)count;
    return 0;
}

static int read_file(hid_t file, GPT *model, AdamW *opt, TrainState *state, int routers_optional,
                     const char *path, char *err, size_t errlen) {
    if (read_group(file, "model", model, model->params_memory, 0, routers_optional, 0, path, err,
                   errlen) < 0)
        return -1;
    if (opt) {
        long long step = -1;
        if (read_group(file, "optim/m", model, opt->m, 1, 0, 0, path, err, errlen) < 0 ||
            read_group(file, "optim/v", model, opt->v, 1, 0, 1, path, err, errlen) < 0)
            return -1;
        hid_t g = H5Gopen2(file, "optim", H5P_DEFAULT);
        int bad = g < 0 || h5_get_number_attr(g, "step", H5T_NATIVE_LLONG, &step) != 0 || step < 0;
        if (g >= 0) H5Gclose(g);
        if (bad)
            return h5_fail(err, errlen, "checkpoint %s: optim/ has no step attribute (a count "
                           ">= 0); the checkpoint is damaged", path);
        opt->step = (long)step;
    }
    if (state && read_state(file, state, path, err, errlen) < 0) return -1;
    return 0;
}

int checkpoint_load(const char *path, GPT *model, AdamW *opt, TrainState *state, char *err,
                    size_t errlen) {
    hid_t file = open_checkpoint(path, err, errlen);
    if (file < 0) return -1;
    int rc = read_file(file, model, opt, state, 0, path, err, errlen);
    H5Fclose(file);
    return rc;
}

int checkpoint_load_init(const char *path, GPT *model, char *err, size_t errlen) {
    hid_t file = open_checkpoint(path, err, errlen);
    if (file < 0) return -1;
    int rc = read_file(file, model, NULL, NULL, 1, path, err, errlen);
    H5Fclose(file);
    return rc;
}
