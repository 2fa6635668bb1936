// Key-value retrieval, our small-scale "lost in the middle" probe (docs/tasks.md): n distinct
// keys, each followed by its value, then a query marker, one of the keys, and its value, which
// is scored:
//
//   k_0 v_0 k_1 v_1 ... k_{n-1} v_{n-1} ? k_q v_q        (2n + 3 tokens)
//
// With --kv-queries Q > 1, training sequences (and the splits `in` and `long`) ask Q queries
// after the marker, each query's pair drawn independently from the same distribution and each
// value scored: ? k_q1 v_q1 ... k_qQ v_qQ (2n + 1 + 2Q tokens), as in the multi-query
// associative recall of Zoology (Arora et al. 2023): the lookup circuit (a previous-token head,
// then a key match) gets Q times the signal per sequence, one of the three changes the
// classroom preset needs to learn it (below). The sweep's bins ask one query
// each, so where the queried pair sits is the only thing a bin varies, and a bin sequence is
// the first 2n + 3 tokens of a training sequence's format.
//
// Keys and values have symbols of their own, so the model cannot confuse them. Which pair is
// queried (q) is what the task varies: training draws it from --kv-positions, the position
// sweep holds it in each of --position-bins bins in turn, so accuracy can be read as a function
// of where the relevant pair sits in the context.
//
// The training distribution `ends` (our choice of "most mass at both ends"): with e = ceil(n/10)
// pairs in each end, q is uniform over the n - 2e pairs in between with probability m
// (--kv-middle-share, default 0.1), else uniform over the first or the last e pairs with
// probability (1 - m) / 2 each; m = 0 never queries the middle in training, as in Wu et al.
// 2025's biased training data. A sequence of 2 pairs has no middle, and q is either with
// probability 0.5.
// `uniform` draws q uniformly from all n pairs.
//
// With --kv-min-pairs M, each training sequence first draws its own number of pairs uniformly
// from M to --kv-pairs n (the splits keep n): the few-pair sequences make the lookup easy to
// find (two candidates), and what they teach holds at every length.
//
// Splits: `in` (n pairs, the training position distribution), `bin0` .. `bin<B-1>` (n pairs,
// one query, q uniform over the pairs floor(b n / B) .. floor((b+1) n / B) - 1), and with
// --kv-eval-pairs m, `long` (m pairs, q uniform): length generalisation.
//
// The duplicate-key probe (--kv-duplicate-probe P, an evaluation option): splits `dup<a>-<b>`
// for 0 <= a <= b < P, each of n pairs and one query, whose queried key appears twice, at a pair
// i uniform in probe bin a and a pair j > i uniform in bin b (P bins as the sweep's), with two
// different values. Both values are valid answers: the target is the earlier one, the second
// answer (Task.second_answer) the later one, and the evaluation counts which one the model gives
// (or neither), a measure of its positional bias that needs no notion of a right answer. All
// other keys are distinct, as elsewhere.
#include <stdio.h>
#include <string.h>

#include "task.h"

enum { N_KEYS = KV_MAX_PAIRS, N_VALUES = 16, FIRST_KEY = 0, FIRST_VALUE = N_KEYS,
       QUERY = N_KEYS + N_VALUES, VOCAB = QUERY + 1 };

const char *const kv_positions_names[] = {[KV_UNIFORM] = "uniform", [KV_ENDS] = "ends", NULL};

#define TEN(p) p "0", p "1", p "2", p "3", p "4", p "5", p "6", p "7", p "8", p "9"
static const char *const token_names[VOCAB] = {
    TEN("k"), TEN("k1"), TEN("k2"), TEN("k3"), TEN("k4"), TEN("k5"), TEN("k6"), TEN("k7"),
    TEN("k8"), TEN("k9"), TEN("k10"), TEN("k11"), "k120", "k121", "k122", "k123", "k124",
    "k125", "k126", "k127",
    TEN("v"), "v10", "v11", "v12", "v13", "v14", "v15",
    "?"};
#undef TEN
_Static_assert(sizeof token_names / sizeof token_names[0] == VOCAB && N_KEYS == 128,
               "one name per token: 128 keys, 16 values and the query marker");

static const Preset presets[] = {
    // Our choice: the fewest pairs the 10-bin sweep allows (10), 16 key symbols. With GPT-2's
    // init, one query per sequence and every sequence at 10 pairs, the two-layer lookup (a
    // previous-token head, then a key match) did not form within 8000 steps in any variant
    // tried; three changes together make it form within 250-750 steps on every seed tried
    // (README, kvret), where each of the three pairs of them did not: training lengths from 2
    // to 10 pairs (short sequences bootstrap the circuit, which carries over to long ones), 8
    // scored queries per sequence, and a larger init (matrices 0.072, about PyTorch's default
    // for width 64, embeddings 0.3) that gets attention off its flat start.
    {.name = "classroom",
     .summary = "2 layers, width 64, 10 pairs (2-10 in training), 16 keys, 8 queries",
     .n_layer = 2, .n_embd = 64, .n_head = 4, .batch = 64, .steps = 1500, .warmup = 100,
     .eval_every = 250, .eval_seqs = 256, .lr = 3e-3f, .kv_pairs = 10, .kv_min_pairs = 2,
     .kv_keys = 16, .kv_queries = 8, .flags = "--init-std 0.072 --emb-std 0.3"},
    // Our choice, not from a paper: the model of the CoPE paper's synthetic tasks (4 layers,
    // width 256, 4 heads) on 64 pairs = 131 tokens. Add --kv-eval-pairs 128 for length
    // generalisation (not with abs).
    {.name = "paper",
     .summary = "our choice: 4 layers, width 256, 64 pairs (131 tokens)",
     .n_layer = 4, .n_embd = 256, .n_head = 4, .batch = 32, .steps = 10000, .warmup = 500,
     .eval_every = 1000, .eval_seqs = 512, .lr = 3e-4f, .kv_pairs = 64},
};

static int most_pairs(const TaskOptions *opt) {
    return opt->kv_eval_pairs > opt->kv_pairs ? opt->kv_eval_pairs : opt->kv_pairs;
}

// Split indices: `in`, the sweep's bins, `long` if any, then the probe's splits.
static int is_long(const TaskOptions *opt, int split) {
    return opt->kv_eval_pairs && split == opt->position_bins + 1;
}
static int first_probe_split(const TaskOptions *opt) {
    return opt->position_bins + 1 + (opt->kv_eval_pairs != 0);
}
static int probe_splits(const TaskOptions *opt) {
    return opt->kv_duplicate_probe * (opt->kv_duplicate_probe + 1) / 2;
}

// The probe bins (a, b), a <= b, of probe split k, in the order a = 0: b = 0 .. P-1, then a = 1.
static void probe_bins(const TaskOptions *opt, int k, int *a, int *b) {
    int P = opt->kv_duplicate_probe;
    for (*a = 0; k >= P - *a; (*a)++) k -= P - *a;
    *b = *a + k;
}

// The pairs of probe bin b (of n pairs): lo .. hi - 1, as the sweep's bins.
static void probe_bin_pairs(const TaskOptions *opt, int n, int b, int *lo, int *hi) {
    *lo = b * n / opt->kv_duplicate_probe;
    *hi = (b + 1) * n / opt->kv_duplicate_probe;
}

static const char *kvret_check(const TaskOptions *opt) {
    static char msg[256];
    if (opt->position_bins < 3 || opt->position_bins > TASK_MAX_BINS)
        snprintf(msg, sizeof msg,
                 "kvret needs --position-bins from 3 to %d (two ends and a middle), got %d",
                 TASK_MAX_BINS, opt->position_bins);
    else if (opt->kv_pairs < opt->position_bins || opt->kv_pairs > KV_MAX_PAIRS)
        snprintf(msg, sizeof msg,
                 "kvret needs --kv-pairs from --position-bins (%d, a pair per bin) to %d (its "
                 "keys), got %d",
                 opt->position_bins, KV_MAX_PAIRS, opt->kv_pairs);
    else if (opt->kv_eval_pairs != 0 &&
             (opt->kv_eval_pairs <= opt->kv_pairs || opt->kv_eval_pairs > KV_MAX_PAIRS))
        snprintf(msg, sizeof msg,
                 "kvret's --kv-eval-pairs must lie above --kv-pairs %d and at most %d (its keys), "
                 "or be 0 (no length generalisation split), got %d",
                 opt->kv_pairs, KV_MAX_PAIRS, opt->kv_eval_pairs);
    else if (opt->kv_keys < most_pairs(opt) || opt->kv_keys > N_KEYS)
        snprintf(msg, sizeof msg,
                 "kvret needs --kv-keys from the pairs of its longest sequence (%d, each with a "
                 "key of its own) to %d, got %d",
                 most_pairs(opt), N_KEYS, opt->kv_keys);
    else if (opt->kv_min_pairs != 0 &&
             (opt->kv_min_pairs < 2 || opt->kv_min_pairs > opt->kv_pairs))
        snprintf(msg, sizeof msg,
                 "kvret's --kv-min-pairs must lie from 2 (a key to tell from another) to "
                 "--kv-pairs %d, or be 0 (every training sequence has --kv-pairs), got %d",
                 opt->kv_pairs, opt->kv_min_pairs);
    else if (opt->kv_queries < 1 || opt->kv_queries > KV_MAX_QUERIES)
        snprintf(msg, sizeof msg, "kvret needs --kv-queries from 1 to %d, got %d", KV_MAX_QUERIES,
                 opt->kv_queries);
    else if (opt->kv_positions != KV_UNIFORM && opt->kv_positions != KV_ENDS)
        snprintf(msg, sizeof msg, "kvret's --kv-positions must be uniform or ends");
    else if (opt->kv_duplicate_probe < 0 || opt->kv_pairs < 2 * opt->kv_duplicate_probe)
        snprintf(msg, sizeof msg,
                 "kvret's --kv-duplicate-probe needs two pairs per probe bin: at most --kv-pairs "
                 "/ 2 = %d bins, got %d",
                 opt->kv_pairs / 2, opt->kv_duplicate_probe);
    else if (first_probe_split(opt) + probe_splits(opt) > TASK_MAX_SPLITS)
        snprintf(msg, sizeof msg,
                 "kvret's --kv-duplicate-probe %d adds %d splits to %d, more than the %d a run "
                 "can evaluate; lower it or --position-bins",
                 opt->kv_duplicate_probe, probe_splits(opt), first_probe_split(opt),
                 TASK_MAX_SPLITS);
    else
        return NULL;
    return msg;
}

static int length_of(int pairs, int queries) { return 2 * pairs + 1 + 2 * queries; }

static TaskSplit *add_split(TaskLayout *layout, int pairs, int queries) {
    TaskSplit *split = &layout->split[layout->n_splits++];
    split->seq_len = length_of(pairs, queries);
    return split;
}

static void kvret_layout(const TaskOptions *opt, TaskLayout *layout) {
    int n = opt->kv_pairs, bins = opt->position_bins;
    memset(layout, 0, sizeof *layout);
    int queries = opt->kv_queries;
    layout->train_len = length_of(n, queries);
    TaskSplit *split = add_split(layout, n, queries);
    snprintf(split->name, sizeof split->name, "in");
    snprintf(split->summary, sizeof split->summary, "%d pairs, %d %s drawn as in training (%s)",
             n, queries, queries == 1 ? "query" : "queries", kv_positions_names[opt->kv_positions]);
    layout->sweep_first = layout->n_splits;
    layout->sweep_bins = bins;
    for (int b = 0; b < bins; b++) {
        int first = b * n / bins + 1, last = (b + 1) * n / bins;
        split = add_split(layout, n, 1);
        snprintf(split->name, sizeof split->name, "bin%d", b);
        if (first == last)
            snprintf(split->summary, sizeof split->summary, "%d pairs, queried pair is pair %d", n,
                     first);
        else
            snprintf(split->summary, sizeof split->summary,
                     "%d pairs, queried pair among pairs %d-%d", n, first, last);
    }
    if (opt->kv_eval_pairs) {
        split = add_split(layout, opt->kv_eval_pairs, queries);
        snprintf(split->name, sizeof split->name, "long");
        snprintf(split->summary, sizeof split->summary,
                 "%d pairs (more than in training), %d queried uniformly", opt->kv_eval_pairs,
                 queries);
        split->extrapolates = 1;
    }
    for (int k = 0; k < probe_splits(opt); k++) {
        int a, b, lo_a, hi_a, lo_b, hi_b;
        probe_bins(opt, k, &a, &b);
        probe_bin_pairs(opt, n, a, &lo_a, &hi_a);
        probe_bin_pairs(opt, n, b, &lo_b, &hi_b);
        split = add_split(layout, n, 1);
        // a, b < P <= TASK_MAX_SPLITS: as unsigned chars the name provably fits.
        snprintf(split->name, sizeof split->name, "dup%hhu-%hhu", (unsigned char)a,
                 (unsigned char)b);
        snprintf(split->summary, sizeof split->summary,
                 "%d pairs, queried key twice: in pairs %d-%d, then %d-%d", n, lo_a + 1, hi_a,
                 lo_b + 1, hi_b);
        split->probe = 1;
    }
}

// The sweep bin a split holds (splits 1 .. bins, after `in`), or -1.
static int sweep_bin(const TaskOptions *opt, int split) {
    return split >= 1 && split <= opt->position_bins ? split - 1 : -1;
}

// The queried pair's index in a sequence of n pairs of the given split.
static int queried_pair(const TaskOptions *opt, int split, int n, Rng *rng) {
    int bins = opt->position_bins, b = sweep_bin(opt, split);
    if (b >= 0) {
        int lo = b * n / bins, hi = (b + 1) * n / bins;
        return lo + (int)rng_below(rng, (uint32_t)(hi - lo));
    }
    int edge = (n + 9) / 10;
    // `long`, `uniform`, and sequences with no middle (every pair an end) draw from all pairs.
    if (is_long(opt, split) || opt->kv_positions == KV_UNIFORM || n <= 2 * edge)
        return (int)rng_below(rng, (uint32_t)n);
    float u = rng_float(rng), end_share = (1.0f - opt->kv_middle_share) / 2.0f;
    if (u < end_share) return (int)rng_below(rng, (uint32_t)edge);
    if (u < 2.0f * end_share) return n - edge + (int)rng_below(rng, (uint32_t)edge);
    return edge + (int)rng_below(rng, (uint32_t)(n - 2 * edge));
}

// Writes n pairs with distinct keys drawn from the first kv_keys symbols (a partial
// Fisher-Yates shuffle of them) and uniform values.
static void draw_pairs(const TaskOptions *opt, int n, Rng *rng, int32_t *inputs) {
    int32_t keys[N_KEYS];
    for (int k = 0; k < opt->kv_keys; k++) keys[k] = FIRST_KEY + k;
    for (int i = 0; i < n; i++) {
        int j = i + (int)rng_below(rng, (uint32_t)(opt->kv_keys - i));
        int32_t key = keys[j];
        keys[j] = keys[i];
        inputs[2 * i] = key;
        inputs[2 * i + 1] = FIRST_VALUE + (int32_t)rng_below(rng, N_VALUES);
    }
}

// A sequence of probe split k: n pairs whose pair j repeats the key of pair i < j with another
// value, then the query of that key, its target the earlier value.
static int sample_duplicate(const TaskOptions *opt, int k, Rng *rng, int32_t *inputs,
                            int32_t *targets) {
    int n = opt->kv_pairs, a, b, lo_a, hi_a, lo_b, hi_b, i, j;
    probe_bins(opt, k, &a, &b);
    probe_bin_pairs(opt, n, a, &lo_a, &hi_a);
    probe_bin_pairs(opt, n, b, &lo_b, &hi_b);
    if (a == b) {  // two distinct pairs of one bin, in order
        i = lo_a + (int)rng_below(rng, (uint32_t)(hi_a - lo_a));
        j = lo_a + (int)rng_below(rng, (uint32_t)(hi_a - lo_a - 1));
        j += j >= i;
        if (j < i) {
            int t = i;
            i = j, j = t;
        }
    } else {
        i = lo_a + (int)rng_below(rng, (uint32_t)(hi_a - lo_a));
        j = lo_b + (int)rng_below(rng, (uint32_t)(hi_b - lo_b));
    }
    // n - 1 pairs of distinct keys, moved apart to make room at j for the repeat of i's key
    // with another value.
    draw_pairs(opt, n - 1, rng, inputs);
    memmove(inputs + 2 * j + 2, inputs + 2 * j, sizeof(int32_t) * 2 * (n - 1 - j));
    int32_t later = FIRST_VALUE + (int32_t)rng_below(rng, N_VALUES - 1);
    later += later >= inputs[2 * i + 1];
    inputs[2 * j] = inputs[2 * i], inputs[2 * j + 1] = later;
    int len = length_of(n, 1);
    for (int t = 0; t < len; t++) targets[t] = -1;
    inputs[2 * n] = QUERY;
    inputs[2 * n + 1] = inputs[2 * i];
    inputs[2 * n + 2] = inputs[2 * i + 1];
    targets[2 * n + 1] = inputs[2 * i + 1];
    return len;
}

// The later of the queried key's two values, the probe's second answer: the last pair before
// the query marker (at t - 1) with the key at t.
static int32_t kvret_second_answer(const int32_t *inputs, int t) {
    int32_t value = -1;
    for (int p = 0; p + 1 < t - 1; p += 2)
        if (inputs[p] == inputs[t]) value = inputs[p + 1];
    return value;
}

static int kvret_sample(const TaskOptions *opt, int split, Rng *rng, int32_t *inputs,
                        int32_t *targets) {
    if (split >= first_probe_split(opt))
        return sample_duplicate(opt, split - first_probe_split(opt), rng, inputs, targets);
    int n = is_long(opt, split) ? opt->kv_eval_pairs : opt->kv_pairs;
    if (split < 0 && opt->kv_min_pairs && opt->kv_min_pairs < n)
        n = opt->kv_min_pairs + (int)rng_below(rng, (uint32_t)(n - opt->kv_min_pairs + 1));
    int queries = sweep_bin(opt, split) >= 0 ? 1 : opt->kv_queries;
    int queried[KV_MAX_QUERIES];
    for (int j = 0; j < queries; j++) queried[j] = queried_pair(opt, split, n, rng);
    draw_pairs(opt, n, rng, inputs);
    int len = length_of(n, queries);
    for (int t = 0; t < len; t++) targets[t] = -1;
    inputs[2 * n] = QUERY;
    for (int j = 0; j < queries; j++) {
        int q = queried[j], at = 2 * n + 1 + 2 * j;
        inputs[at] = inputs[2 * q];
        inputs[at + 1] = inputs[2 * q + 1];
        targets[at] = inputs[at + 1];
    }
    return len;
}

static const Option kvret_options[] = {
    {"kv-pairs", "N", KIND_INT, offsetof(TaskOptions, kv_pairs), SCOPE_TASK, 1, KV_MAX_PAIRS,
     .help = "kvret: key-value pairs per training sequence"},
    {"kv-eval-pairs", "N", KIND_INT, offsetof(TaskOptions, kv_eval_pairs), SCOPE_TASK, 0,
     KV_MAX_PAIRS,
     .help = "kvret: pairs of the length-generalisation split `long` (0: none; not with abs)",
     .eval = 1},
    {"kv-keys", "N", KIND_INT, offsetof(TaskOptions, kv_keys), SCOPE_TASK, 1, KV_MAX_PAIRS,
     .help = "kvret: key symbols in use (the first N); at least the pairs of every split",
     .added_later = 1},
    {"kv-queries", "Q", KIND_INT, offsetof(TaskOptions, kv_queries), SCOPE_TASK, 1,
     KV_MAX_QUERIES,
     .help = "kvret: queries per training (and in, long) sequence, each value scored; the "
             "sweep's bins ask one",
     .added_later = 1},
    {"kv-min-pairs", "N", KIND_INT, offsetof(TaskOptions, kv_min_pairs), SCOPE_TASK, 0,
     KV_MAX_PAIRS,
     .help = "kvret: training sequences hold from N to --kv-pairs pairs (0: --kv-pairs)",
     .added_later = 1},
    {"kv-positions", "uniform|ends", KIND_CHOICE, offsetof(TaskOptions, kv_positions),
     SCOPE_TASK, .choices = kv_positions_names,
     .help = "kvret: training position of the queried pair (ends: mostly the first and last "
             "tenth, see --kv-middle-share)"},
    {"kv-middle-share", "X", KIND_FLOAT, offsetof(TaskOptions, kv_middle_share), SCOPE_TASK, 0, 1,
     .help = "kvret, ends: share of training queries between the two end tenths (0: never)",
     .added_later = 1},
    {"position-bins", "B", KIND_INT, offsetof(TaskOptions, position_bins), SCOPE_TASK, 3,
     TASK_MAX_BINS, .help = "kvret: bins of the position sweep (evaluation splits bin0..)",
     .eval = 1},
    {"kv-duplicate-probe", "P", KIND_INT, offsetof(TaskOptions, kv_duplicate_probe), SCOPE_TASK,
     0, TASK_MAX_SPLITS,
     .help = "kvret: probe splits dup<a>-<b> (0 <= a <= b < P) whose queried key appears twice, "
             "in bins a and b: counts the earlier / later / neither value answered (0: none)",
     .added_later = 1, .eval = 1},
};

const Task task_kvret = {
    .name = "kvret",
    .options = kvret_options,
    .n_options = sizeof kvret_options / sizeof kvret_options[0],
    .summary = "key-value retrieval: the value of a queried key is scored; position sweep",
    .vocab_size = VOCAB,
    .token_names = token_names,
    .presets = presets,
    .n_presets = sizeof presets / sizeof presets[0],
    .check = kvret_check,
    .layout = kvret_layout,
    .sample = kvret_sample,
    .second_answer = kvret_second_answer,
};
