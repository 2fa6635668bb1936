// Properties of the key-value retrieval generator (docs/tasks.md): the grammar of a sequence,
// distinct keys, the answer being the queried key's value and the only scored token, the
// queried pair landing in the requested bin, the training position distributions, the layout
// of splits and lengths, determinism and the validation of the options; and the position-sweep
// summary that evaluate.c computes from per-bin results.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../tasks/task.h"
#include "task_checks.h"
#include "../../data/evaluate.h"

#define MAX_LEN (2 * KV_MAX_PAIRS + 1 + 2 * KV_MAX_QUERIES)

static const Task *kvret(void) {
    const Task *t = task_find("kvret");
    cr_assert_not_null(t, "task \"kvret\" is not in the task table");
    return t;
}

static TaskOptions options(int pairs, int eval_pairs, KvPositions positions, int bins) {
    return (TaskOptions){.seq_len = 2 * (eval_pairs > pairs ? eval_pairs : pairs) + 3,
                         .kv_pairs = pairs, .kv_eval_pairs = eval_pairs, .kv_keys = KV_MAX_PAIRS,
                         .kv_queries = 1,
                         .kv_positions = positions, .kv_middle_share = 0.1f, .position_bins = bins};
}

static TaskOptions with_keys(TaskOptions opt, int keys) {
    opt.kv_keys = keys;
    return opt;
}

static TaskOptions with_min_pairs(TaskOptions opt, int min_pairs) {
    opt.kv_min_pairs = min_pairs;
    return opt;
}

static TaskOptions with_queries(TaskOptions opt, int queries) {
    opt.kv_queries = queries;
    opt.seq_len += 2 * (queries - 1);
    return opt;
}

// The token names tell keys ("k..."), values ("v...") and the query marker ("?") apart, so the
// test does not depend on how the ids are laid out.
static char kind(const Task *t, int32_t token) {
    cr_assert(token >= 0 && token < t->vocab_size, "token %d outside the vocabulary", token);
    return t->token_names[token][0];
}

// Checks one sequence of n pairs and `queries` queries; writes the index of each query's pair
// to queried (room for KV_MAX_QUERIES) and returns the first.
static int check_queries(const Task *t, const int32_t *in, const int32_t *tg, int n, int queries,
                         int *queried) {
    int len = 2 * n + 1 + 2 * queries;
    for (int i = 0; i < n; i++) {
        cr_assert_eq(kind(t, in[2 * i]), 'k', "position %d should hold a key", 2 * i);
        cr_assert_eq(kind(t, in[2 * i + 1]), 'v', "position %d should hold a value", 2 * i + 1);
        for (int j = 0; j < i; j++)
            cr_assert_neq(in[2 * i], in[2 * j], "pairs %d and %d share the key %s", j, i,
                          t->token_names[in[2 * i]]);
    }
    cr_assert_eq(kind(t, in[2 * n]), '?', "position %d should hold the query marker", 2 * n);
    for (int j = 0; j < queries; j++) {
        int at = 2 * n + 1 + 2 * j, q = -1;
        for (int i = 0; i < n; i++)
            if (in[2 * i] == in[at]) q = i;
        cr_assert_geq(q, 0, "query %d: the key %s is not in the context", j,
                      t->token_names[in[at]]);
        cr_assert_eq(in[at + 1], in[2 * q + 1], "query %d: the answer is not its key's value", j);
        queried[j] = q;
    }
    for (int p = 0; p < len; p++) {
        int is_query = p > 2 * n && (p - 2 * n) % 2 == 1;
        cr_assert_eq(tg[p], is_query ? in[p + 1] : -1,
                     "target %d: only the queried keys' positions are scored, with their values",
                     p);
    }
    return queried[0];
}

// Checks one sequence with a single query and returns the index of the queried pair.
static int check_sequence(const Task *t, const int32_t *in, const int32_t *tg, int n) {
    int queried[KV_MAX_QUERIES];
    return check_queries(t, in, tg, n, 1, queried);
}

Test(kvret, layout_of_splits_and_lengths) {
    const Task *task = kvret();
    TaskOptions opt = options(20, 50, KV_UNIFORM, 5);
    cr_assert_null(task->check(&opt));
    TaskLayout layout;
    task->layout(&opt, &layout);
    cr_assert_eq(layout.train_len, 43);
    cr_assert_eq(layout.n_splits, 1 + 5 + 1);
    cr_assert_eq(layout.sweep_first, 1);
    cr_assert_eq(layout.sweep_bins, 5);
    cr_assert_str_eq(layout.split[0].name, "in");
    cr_assert_str_eq(layout.split[3].name, "bin2");
    int s = task_layout_find(&layout, "long");
    cr_assert_eq(s, 6);
    cr_assert_eq(layout.split[s].seq_len, 103);
    cr_assert(layout.split[s].extrapolates);
    for (int i = 0; i < s; i++) {
        cr_assert_eq(layout.split[i].seq_len, 43, "split %d", i);
        cr_assert_not(layout.split[i].extrapolates, "split %d", i);
    }
    cr_assert_eq(task_layout_longest(&layout), 103);
    opt.kv_eval_pairs = 0;
    task->layout(&opt, &layout);
    cr_assert_eq(task_layout_find(&layout, "long"), -1, "a long split without --kv-eval-pairs");
}

Test(kvret, grammar_answers_and_bins) {
    const Task *task = kvret();
    int32_t in[MAX_LEN], tg[MAX_LEN];
    const int pairs[] = {10, 16, 37, 64}, bins[] = {3, 10, 7, 10};
    for (int c = 0; c < 4; c++) {
        int n = pairs[c], B = bins[c], m = n + 1 + c;
        TaskOptions opt = options(n, m, c % 2 ? KV_ENDS : KV_UNIFORM, B);
        cr_assert_null(task->check(&opt));
        TaskLayout layout;
        task->layout(&opt, &layout);
        Rng rng;
        rng_seed(&rng, 100 + c);
        for (int split = -1; split < layout.n_splits; split++) {
            int len = split < 0 ? layout.train_len : layout.split[split].seq_len;
            int n_split = (len - 3) / 2;
            cr_assert_eq(n_split, split == layout.n_splits - 1 ? m : n);
            int hits[TASK_MAX_BINS] = {0};
            for (int k = 0; k < 300; k++) {
                task->sample(&opt, split, &rng, in, tg);
                int q = check_sequence(task, in, tg, n_split);
                int b = split - layout.sweep_first;
                if (b >= 0 && b < B) {
                    cr_assert(q >= b * n / B && q < (b + 1) * n / B,
                              "%d pairs, bin %d of %d: the queried pair %d lies outside it", n, b,
                              B, q);
                    hits[q - b * n / B]++;
                }
            }
            // Every pair of a bin gets queried (300 draws over at most 22 pairs).
            int b = split - layout.sweep_first;
            if (b >= 0 && b < B)
                for (int p = 0; p < (b + 1) * n / B - b * n / B; p++)
                    cr_assert_gt(hits[p], 0, "bin %d: pair %d never queried", b, b * n / B + p);
        }
    }
}

// Share of the queried pair in the first e, last e and middle pairs over many draws, against
// the documented probabilities with a 5-sigma binomial tolerance (the seeds are fixed, so the
// test is deterministic; a distribution off by a few percent fails it).
static void check_position_shares(KvPositions positions, float middle, int split, int n,
                                  double first, double last) {
    const Task *task = kvret();
    TaskOptions opt = options(n, 0, positions, 10);
    opt.kv_middle_share = middle;
    int32_t in[MAX_LEN], tg[MAX_LEN];
    const int draws = 20000, e = (n + 9) / 10;
    long n_first = 0, n_last = 0;
    Rng rng;
    rng_seed(&rng, 7 + positions);
    for (int k = 0; k < draws; k++) {
        task->sample(&opt, split, &rng, in, tg);
        int q = check_sequence(task, in, tg, n);
        n_first += q < e;
        n_last += q >= n - e;
    }
    if (first + last == 1.0)
        cr_expect_eq(n_first + n_last, draws, "%ld queries in the middle, expected none",
                     draws - n_first - n_last);
    const double shares[2] = {(double)n_first / draws, (double)n_last / draws};
    const double expected[2] = {first, last};
    for (int i = 0; i < 2; i++) {
        double tol = 5.0 * sqrt(expected[i] * (1.0 - expected[i]) / draws);
        cr_expect(fabs(shares[i] - expected[i]) <= tol,
                  "%s, split %d, %d pairs: %s %d pairs hold %.4f of the queries, expected %.4f",
                  kv_positions_names[positions], split, n, i ? "last" : "first", e, shares[i],
                  expected[i]);
    }
}

Test(kvret, training_position_distributions) {
    check_position_shares(KV_ENDS, 0.1f, -1, 40, 0.45, 0.45);
    check_position_shares(KV_ENDS, 0.1f, 0, 40, 0.45, 0.45);  // `in` follows training
    check_position_shares(KV_ENDS, 0.1f, -1, 16, 0.45, 0.45);
    check_position_shares(KV_ENDS, 0.1f, -1, 2, 0.5, 0.5);  // two pairs: no middle to give 0.1 to
    check_position_shares(KV_UNIFORM, 0.1f, -1, 40, 4.0 / 40, 4.0 / 40);
    check_position_shares(KV_UNIFORM, 0.1f, 0, 16, 2.0 / 16, 2.0 / 16);
    // --kv-middle-share: never the middle (Wu et al.'s biased data), or half of the queries
    check_position_shares(KV_ENDS, 0.0f, -1, 40, 0.5, 0.5);
    check_position_shares(KV_ENDS, 0.5f, -1, 40, 0.25, 0.25);
    check_position_shares(KV_UNIFORM, 0.0f, -1, 40, 4.0 / 40, 4.0 / 40);  // uniform ignores it
}

// --kv-keys N: every sequence, of every split, draws its distinct keys from the symbols k0 ..
// k<N-1> only, and over many draws uses all of them.
Test(kvret, keys_from_the_first_kv_keys_symbols) {
    const Task *task = kvret();
    const int n = 10, m = 12, keys[] = {12, 16, 40};
    int32_t in[MAX_LEN], tg[MAX_LEN];
    for (size_t c = 0; c < sizeof keys / sizeof keys[0]; c++) {
        TaskOptions opt = with_keys(options(n, m, KV_ENDS, 5), keys[c]);
        cr_assert_null(task->check(&opt));
        TaskLayout layout;
        task->layout(&opt, &layout);
        Rng rng;
        rng_seed(&rng, 31 + c);
        int used[KV_MAX_PAIRS] = {0};
        for (int split = -1; split < layout.n_splits; split++) {
            int pairs = split == layout.n_splits - 1 ? m : n;
            for (int k = 0; k < 200; k++) {
                task->sample(&opt, split, &rng, in, tg);
                check_sequence(task, in, tg, pairs);  // distinct keys, answer, scoring
                for (int i = 0; i < pairs; i++) {
                    int symbol = atoi(task->token_names[in[2 * i]] + 1);
                    cr_assert(symbol < keys[c], "--kv-keys %d: split %d uses the key %s",
                              keys[c], split, task->token_names[in[2 * i]]);
                    used[symbol]++;
                }
            }
        }
        for (int symbol = 0; symbol < keys[c]; symbol++)
            cr_assert_gt(used[symbol], 0, "--kv-keys %d: the key k%d is never used", keys[c],
                         symbol);
    }
}

// --kv-queries Q: training, `in` and `long` sequences ask Q queries, each scored and each
// drawn from the split's position distribution (checked over all queries, not just the first);
// the sweep's bins ask one, so a bin sequence has the single-query length.
Test(kvret, several_queries_each_scored) {
    const Task *task = kvret();
    const int n = 20, m = 30, Q = 6;
    TaskOptions opt = with_queries(options(n, m, KV_ENDS, 5), Q);
    cr_assert_null(task->check(&opt));
    TaskLayout layout;
    task->layout(&opt, &layout);
    cr_assert_eq(layout.train_len, 2 * n + 1 + 2 * Q);
    cr_assert_eq(layout.split[0].seq_len, 2 * n + 1 + 2 * Q, "`in` asks Q queries");
    for (int b = 0; b < 5; b++)
        cr_assert_eq(layout.split[layout.sweep_first + b].seq_len, 2 * n + 3, "bin %d", b);
    int s_long = task_layout_find(&layout, "long");
    cr_assert_eq(layout.split[s_long].seq_len, 2 * m + 1 + 2 * Q, "`long` asks Q queries");
    int32_t in[MAX_LEN], tg[MAX_LEN];
    int queried[KV_MAX_QUERIES];
    Rng rng;
    rng_seed(&rng, 5);
    for (int split = -1; split < layout.n_splits; split++) {
        int len = split < 0 ? layout.train_len : layout.split[split].seq_len;
        int pairs = split == s_long ? m : n, queries = (len - 2 * pairs - 1) / 2;
        int distinct = 0;
        for (int k = 0; k < 200; k++) {
            cr_assert_eq(task->sample(&opt, split, &rng, in, tg), len, "split %d", split);
            check_queries(task, in, tg, pairs, queries, queried);
            distinct += queries > 1 && queried[1] != queried[0];
        }
        if (queries > 1) cr_assert_gt(distinct, 100, "split %d: the queries are not drawn apart",
                                      split);
    }
    // The `ends` shares hold for every query of a training sequence.
    const int draws = 4000, e = (n + 9) / 10;
    long n_first = 0, n_last = 0;
    for (int k = 0; k < draws; k++) {
        task->sample(&opt, -1, &rng, in, tg);
        check_queries(task, in, tg, n, Q, queried);
        for (int j = 0; j < Q; j++) n_first += queried[j] < e, n_last += queried[j] >= n - e;
    }
    double tol = 5.0 * sqrt(0.45 * 0.55 / (draws * Q));
    cr_expect(fabs((double)n_first / (draws * Q) - 0.45) <= tol, "first share %.4f",
              (double)n_first / (draws * Q));
    cr_expect(fabs((double)n_last / (draws * Q) - 0.45) <= tol, "last share %.4f",
              (double)n_last / (draws * Q));
}

// --kv-min-pairs M: training sequences hold from M to --kv-pairs n pairs, each count drawn
// (uniformly: every one turns up), with the grammar and scoring of their own count; the
// evaluation splits keep n, and the layout's training length is the longest.
Test(kvret, training_pairs_from_kv_min_pairs) {
    const Task *task = kvret();
    const int n = 10, M = 2, Q = 4;
    TaskOptions opt = with_queries(options(n, 0, KV_ENDS, 5), Q);
    opt.kv_min_pairs = M;
    cr_assert_null(task->check(&opt));
    TaskLayout layout;
    task->layout(&opt, &layout);
    cr_assert_eq(layout.train_len, 2 * n + 1 + 2 * Q);
    int32_t in[MAX_LEN], tg[MAX_LEN];
    int queried[KV_MAX_QUERIES], seen[KV_MAX_PAIRS + 1] = {0};
    Rng rng;
    rng_seed(&rng, 11);
    for (int k = 0; k < 2000; k++) {
        int len = task->sample(&opt, -1, &rng, in, tg);
        int pairs = (len - 1 - 2 * Q) / 2;
        cr_assert(pairs >= M && pairs <= n && len == 2 * pairs + 1 + 2 * Q,
                  "a training sequence of %d tokens", len);
        check_queries(task, in, tg, pairs, Q, queried);
        seen[pairs]++;
    }
    for (int p = M; p <= n; p++)
        cr_assert(seen[p] > 2000 / (n - M + 1) / 2, "%d pairs drawn %d times of 2000", p, seen[p]);
    for (int split = 0; split < layout.n_splits; split++)
        for (int k = 0; k < 20; k++)
            cr_assert_eq(task->sample(&opt, split, &rng, in, tg), layout.split[split].seq_len,
                         "split %d: evaluation keeps --kv-pairs", split);
}

Test(kvret, deterministic_for_a_seed) {
    TaskOptions opt = options(16, 24, KV_ENDS, 4);
    check_deterministic_for_a_seed(kvret(), &opt);
    opt = with_min_pairs(with_queries(opt, 5), 4);
    check_deterministic_for_a_seed(kvret(), &opt);
}

Test(kvret, check_rejects_bad_options) {
    const Task *task = kvret();
    const struct {
        TaskOptions opt;
        const char *flag;
    } bad[] = {
        {options(9, 0, KV_UNIFORM, 10), "--kv-pairs"},     // fewer pairs than bins
        {options(129, 0, KV_UNIFORM, 10), "--kv-pairs"},   // more pairs than keys
        {options(16, 16, KV_UNIFORM, 10), "--kv-eval-pairs"},
        {options(16, 8, KV_UNIFORM, 10), "--kv-eval-pairs"},
        {options(16, 129, KV_UNIFORM, 10), "--kv-eval-pairs"},
        {options(16, 0, KV_UNIFORM, 2), "--position-bins"},
        {options(64, 0, KV_UNIFORM, TASK_MAX_BINS + 1), "--position-bins"},
        {options(16, 0, (KvPositions)2, 10), "--kv-positions"},
        {with_keys(options(16, 0, KV_UNIFORM, 10), 15), "--kv-keys"},  // fewer than pairs
        {with_keys(options(16, 24, KV_UNIFORM, 10), 23), "--kv-keys"},  // fewer than eval pairs
        {with_keys(options(16, 0, KV_UNIFORM, 10), KV_MAX_PAIRS + 1), "--kv-keys"},
        {with_queries(options(16, 0, KV_UNIFORM, 10), 0), "--kv-queries"},
        {with_min_pairs(options(16, 0, KV_UNIFORM, 10), 1), "--kv-min-pairs"},  // no choice
        {with_min_pairs(options(16, 0, KV_UNIFORM, 10), 17), "--kv-min-pairs"},
        {with_queries(options(16, 0, KV_UNIFORM, 10), KV_MAX_QUERIES + 1), "--kv-queries"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *msg = task->check(&bad[i].opt);
        cr_assert_not_null(msg, "case %zu was accepted", i);
        cr_assert(strstr(msg, bad[i].flag) != NULL, "case %zu: message does not name %s: %s", i,
                  bad[i].flag, msg);
    }
    TaskOptions edge = options(KV_MAX_PAIRS - 1, KV_MAX_PAIRS, KV_ENDS, 3);
    cr_assert_null(task->check(&edge), "the largest valid options were rejected");
    edge = with_keys(options(10, 12, KV_ENDS, 10), 12);
    cr_assert_null(task->check(&edge), "as many keys as the longest sequence's pairs rejected");
}

Test(kvret, presets_are_valid) {
    const Task *task = kvret();
    cr_assert_str_eq(task->presets[0].name, "classroom");
    cr_assert_not_null(task_preset(task, "paper"));
    // The presets' kvret options are flag text, resolved and checked by bin/train's parser:
    // tests/cli/test_dry_run.py resolves every preset of every task.
    for (int i = 0; i < task->n_presets; i++) {
        const Preset *p = &task->presets[i];
        cr_assert_eq(p->n_embd % p->n_head, 0, "preset %s: heads do not divide the width",
                     p->name);
    }
}

// evaluate.c's summary: ends are the first and the last bin, the middle is everything between.
Test(kvret, sweep_summary) {
    TaskLayout layout = {.n_splits = 6, .sweep_first = 1, .sweep_bins = 5};
    SplitResult results[6] = {{0}};
    const long wrong[6] = {50, 10, 30, 60, 40, 20};  // of 100: split 0 is `in`, not a bin
    for (int s = 0; s < 6; s++) results[s] = (SplitResult){.scored = 100, .token_errors = wrong[s]};
    SweepResult sw = eval_sweep(&layout, results);
    cr_assert_eq(sw.bins, 5);
    const double accuracy[5] = {0.9, 0.7, 0.4, 0.6, 0.8};
    for (int b = 0; b < 5; b++) cr_assert_float_eq(sw.accuracy[b], accuracy[b], 1e-12, "bin %d", b);
    cr_assert_float_eq(sw.middle_mean, (0.7 + 0.4 + 0.6) / 3, 1e-12);
    cr_assert_float_eq(sw.end_middle_gap, 0.9 - 0.4, 1e-12);
    layout.sweep_bins = 0;
    cr_assert_eq(eval_sweep(&layout, results).bins, 0);
}

// --kv-duplicate-probe P: splits dup<a>-<b> (a <= b < P) after the others, each sequence of n
// pairs and one query whose key appears exactly twice, first in probe bin a, then in bin b, with
// two different values; the target is the earlier value and the task's second answer the later;
// every other key appears once. Over many draws both positions cover their bins.
Test(kvret, duplicate_key_probe) {
    const Task *task = kvret();
    const int n = 12, P = 3;
    TaskOptions opt = options(n, 14, KV_UNIFORM, 4);
    opt.kv_duplicate_probe = P;
    cr_assert_null(task->check(&opt));
    TaskLayout layout;
    task->layout(&opt, &layout);
    int first = task_layout_find(&layout, "dup0-0");
    cr_assert_eq(first, 1 + 4 + 1, "the probe's splits come after in, the bins and long");
    cr_assert_eq(layout.n_splits, first + P * (P + 1) / 2);
    cr_assert_eq(task_layout_find(&layout, "long"), first - 1);
    cr_assert_not_null(task->second_answer);
    int32_t in[MAX_LEN], tg[MAX_LEN];
    Rng rng;
    rng_seed(&rng, 17);
    for (int a = 0, s = first; a < P; a++)
        for (int b = a; b < P; b++, s++) {
            char name[32];
            snprintf(name, sizeof name, "dup%d-%d", a, b);
            cr_assert_str_eq(layout.split[s].name, name);
            cr_assert(layout.split[s].probe && layout.split[s].seq_len == 2 * n + 3, "%s", name);
            int seen_i[KV_MAX_PAIRS] = {0}, seen_j[KV_MAX_PAIRS] = {0};
            for (int k = 0; k < 600; k++) {
                cr_assert_eq(task->sample(&opt, s, &rng, in, tg), 2 * n + 3, "%s", name);
                cr_assert_eq(kind(task, in[2 * n]), '?');
                int32_t key = in[2 * n + 1];
                int at[3], twice = 0;
                for (int p = 0; p < n; p++) {
                    cr_assert_eq(kind(task, in[2 * p]), 'k', "%s: position %d", name, 2 * p);
                    cr_assert_eq(kind(task, in[2 * p + 1]), 'v', "%s: position %d", name, 2 * p + 1);
                    for (int q = 0; q < p; q++)
                        cr_assert(in[2 * q] != in[2 * p] || in[2 * p] == key,
                                  "%s: pairs %d and %d share a key that is not queried", name, q, p);
                    if (in[2 * p] == key && twice < 3) at[twice++] = p;
                }
                cr_assert_eq(twice, 2, "%s: the queried key appears %d times", name, twice);
                int i = at[0], j = at[1];
                cr_assert(i >= a * n / P && i < (a + 1) * n / P, "%s: earlier pair %d", name, i);
                cr_assert(j >= b * n / P && j < (b + 1) * n / P, "%s: later pair %d", name, j);
                cr_assert_neq(in[2 * i + 1], in[2 * j + 1], "%s: the two values are equal", name);
                for (int t = 0; t < 2 * n + 3; t++)
                    cr_assert_eq(tg[t], t == 2 * n + 1 ? in[2 * i + 1] : -1,
                                 "%s: target %d: only the query, with the earlier value", name, t);
                cr_assert_eq(task->second_answer(in, 2 * n + 1), in[2 * j + 1],
                             "%s: the second answer is not the later value", name);
                seen_i[i]++, seen_j[j]++;
            }
            // In one bin the last pair cannot come first, nor the first pair second.
            for (int p = a * n / P; p < (a + 1) * n / P - (a == b); p++)
                cr_assert_gt(seen_i[p], 0, "%s: pair %d never the earlier", name, p);
            for (int p = b * n / P + (a == b); p < (b + 1) * n / P; p++)
                cr_assert_gt(seen_j[p], 0, "%s: pair %d never the later", name, p);
        }
    check_deterministic_for_a_seed(task, &opt);
}

Test(kvret, duplicate_key_probe_rejects_bad_sizes) {
    const Task *task = kvret();
    TaskOptions opt = options(10, 0, KV_UNIFORM, 5);
    opt.kv_duplicate_probe = 6;  // 10 pairs hold 5 bins of two
    const char *msg = task->check(&opt);
    cr_assert(msg && strstr(msg, "--kv-duplicate-probe"), "%s", msg ? msg : "accepted");
    opt = options(64, 0, KV_UNIFORM, 32);
    opt.kv_duplicate_probe = 3;  // 1 + 32 + 6 splits: fits
    cr_assert_null(task->check(&opt));
    opt.kv_duplicate_probe = 4;  // 1 + 32 + 10 > TASK_MAX_SPLITS
    msg = task->check(&opt);
    cr_assert(msg && strstr(msg, "--kv-duplicate-probe"), "%s", msg ? msg : "accepted");
}

// The lasting U's training distribution (--kv-positions ends --kv-middle-share s): with s = 0 no
// query of any training sequence or of `in`, at any length --kv-min-pairs draws and with several
// queries a sequence, lands between the two end tenths; with s > 0 the share of queries there is
// s within a 5-sigma binomial bound (a generator off by a few points fails it).
Test(kvret, lasting_u_middle_share) {
    const Task *task = kvret();
    const int n = 40, Q = 8, draws = 3000;
    const float shares[] = {0.0f, 0.1f, 0.3f};
    int32_t in[MAX_LEN], tg[MAX_LEN];
    int queried[KV_MAX_QUERIES];
    for (size_t c = 0; c < sizeof shares / sizeof shares[0]; c++) {
        TaskOptions opt = with_min_pairs(with_queries(options(n, 0, KV_ENDS, 10), Q), 12);
        opt.kv_middle_share = shares[c];
        cr_assert_null(task->check(&opt));
        Rng rng;
        rng_seed(&rng, 23 + c);
        for (int split = -1; split <= 0; split++) {
            long middle = 0, total = 0;
            for (int k = 0; k < draws; k++) {
                int len = task->sample(&opt, split, &rng, in, tg);
                int pairs = (len - 1 - 2 * Q) / 2, e = (pairs + 9) / 10;
                check_queries(task, in, tg, pairs, Q, queried);
                for (int j = 0; j < Q; j++) middle += queried[j] >= e && queried[j] < pairs - e;
                total += Q;
            }
            double s = shares[c], got = (double)middle / (double)total;
            if (s == 0.0) {
                cr_expect_eq(middle, 0, "share 0, split %d: %ld of %ld queries in the middle",
                             split, middle, total);
            } else {
                double tol = 5.0 * sqrt(s * (1.0 - s) / (double)total);
                cr_expect(fabs(got - s) <= tol, "share %.2f, split %d: %.4f of the queries in "
                          "the middle (bound %.4f)", s, split, got, tol);
            }
        }
    }
}
