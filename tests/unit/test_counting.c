// Properties of the counting generator (docs/tasks.md, the official generator's semantics):
// replaying a sample's statements gives its answer, no value passes 10, statement counts lie in
// [3, --count-statements] with the official redraw of programs that set nothing, only the answer
// is scored, the left cut keeps the end, --count-vars is respected, determinism, the layout, the
// presets and the validation of the options.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../tasks/task.h"
#include "task_checks.h"

#define MAX_LEN (4 * 512 + 3)

static const Task *counting(void) {
    const Task *t = task_find("counting");
    cr_assert_not_null(t, "task \"counting\" is not in the task table");
    return t;
}

static TaskOptions options(int vars, int statements, int seq_len) {
    TaskOptions opt = task_defaults();
    opt.count_vars = vars;
    opt.count_statements = statements;
    opt.seq_len = seq_len;
    return opt;
}

// The longest sample: all SETs ("v = 0 ;"), then "print v" and the answer.
static int longest(int statements) { return 4 * statements + 3; }

// Token ids by name, so the test does not depend on the id layout.
static int32_t id_of(const Task *t, const char *name) {
    for (int i = 0; i < t->vocab_size; i++)
        if (strcmp(t->token_names[i], name) == 0) return i;
    cr_assert_fail("no token named '%s'", name);
    return -1;
}

static int variable_of(const Task *t, int32_t tok) {
    const char *name = t->token_names[tok];
    return name[1] == '\0' && name[0] >= 'a' && name[0] <= 'z' ? name[0] - 'a' : -1;
}

static int value_of(const Task *t, int32_t tok) {
    const char *name = t->token_names[tok], *end;
    long v = strtol(name, (char **)&end, 10);
    return end != name && *end == '\0' ? (int)v : -1;
}

// What a replay of one untruncated sample saw.
typedef struct {
    int statements, question_var, answer;
    int resets;  // SETs of a variable whose value was above 0
} Replay;

// Parses and runs a whole sample, asserting its grammar, the value bound, the variables, the
// answer and that only the answer is scored.
static Replay replay(const Task *t, const int32_t *in, const int32_t *tg, int len, int vars) {
    const int32_t pass = id_of(t, "pass;"), plus = id_of(t, "++;"), eq = id_of(t, "=");
    const int32_t semi = id_of(t, ";"), print = id_of(t, "print"), zero = id_of(t, "0");
    int value[26], set[26] = {0};
    Replay r = {0};
    int p = 0;
    while (p < len - 3) {
        r.statements++;
        if (in[p] == pass) {
            p++;
            continue;
        }
        int v = variable_of(t, in[p]);
        cr_assert(v >= 0 && v < vars, "position %d: %s is no statement of %d variables", p,
                  t->token_names[in[p]], vars);
        if (in[p + 1] == plus) {
            cr_assert(set[v], "position %d: %c ++; before %c was set", p, 'a' + v, 'a' + v);
            value[v]++;
            cr_assert(value[v] <= 10, "position %d: %c reaches %d", p, 'a' + v, value[v]);
            p += 2;
        } else {
            cr_assert(in[p + 1] == eq && in[p + 2] == zero && in[p + 3] == semi,
                      "position %d: a statement starting with %c is neither SET nor INCREMENT", p,
                      'a' + v);
            r.resets += set[v] && value[v] > 0;
            set[v] = 1;
            value[v] = 0;
            p += 4;
        }
    }
    cr_assert_eq(p, len - 3, "the statements overrun the question");
    cr_assert_eq(in[len - 3], print, "the question does not start with print");
    r.question_var = variable_of(t, in[len - 2]);
    cr_assert(r.question_var >= 0 && r.question_var < vars && set[r.question_var],
              "the question asks for %s, which is not a set variable", t->token_names[in[len - 2]]);
    r.answer = value_of(t, in[len - 1]);
    cr_assert_eq(r.answer, value[r.question_var], "answer %d, replay gives %d", r.answer,
                 value[r.question_var]);
    for (int q = 0; q < len; q++)
        cr_assert_eq(tg[q], q == len - 2 ? in[len - 1] : -1, "target %d of %d", q, len);
    return r;
}

Test(counting, samples_replay_to_their_answer) {
    const Task *task = counting();
    const int vars[] = {1, 3, 5, 26}, statements[] = {3, 10, 512};
    static int32_t in[MAX_LEN], tg[MAX_LEN];
    for (int c = 0; c < 4; c++)
        for (int s = 0; s < 3; s++) {
            TaskOptions opt = options(vars[c], statements[s], longest(statements[s]));
            cr_assert_null(task->check(&opt));
            Rng rng;
            rng_seed(&rng, 100 + 10 * c + s);
            int fewest = 1 << 30, most = 0, answers[11] = {0}, asked[26] = {0}, resets = 0;
            for (int split = -1; split < 2; split++)
                for (int k = 0; k < 400; k++) {
                    int len = task->sample(&opt, split, &rng, in, tg);
                    cr_assert(len >= 3 && len <= longest(statements[s]), "length %d", len);
                    Replay r = replay(task, in, tg, len, vars[c]);
                    cr_assert(r.statements >= 3 && r.statements <= statements[s],
                              "%d statements, not within [3, %d]", r.statements, statements[s]);
                    fewest = r.statements < fewest ? r.statements : fewest;
                    most = r.statements > most ? r.statements : most;
                    answers[r.answer]++;
                    asked[r.question_var]++;
                    resets += r.resets;
                }
            if (statements[s] == 10)
                cr_expect(fewest == 3 && most == 10, "statement counts %d..%d, not 3..10", fewest,
                          most);
            if (statements[s] == 512) {
                for (int v = 0; v <= 10; v++) cr_expect(answers[v] > 0, "no answer %d", v);
                cr_expect(resets > 0, "no SET of a variable above 0 in 1200 long programs");
            }
            if (vars[c] <= 5 && statements[s] == 512)
                for (int v = 0; v < vars[c]; v++)
                    cr_expect(asked[v] > 0, "variable %c never asked for", 'a' + v);
        }
}

// The official generator discards a program that set no variable, its statement count with it:
// with the official weights, a statement before the first SET is a SET with probability 1/51
// (INCREMENTs fail and are redrawn), so n statements survive with probability 1 - (50/51)^n
// and the count n is drawn with probability proportional to that. Checked per count with a
// 5-sigma binomial bound; a generator that kept the count (uniform) fails at n = 3 and 12.
Test(counting, statement_counts_follow_the_official_redraw) {
    const Task *task = counting();
    const int most = 12, draws = 40000;
    TaskOptions opt = options(2, most, longest(most));
    static int32_t in[MAX_LEN], tg[MAX_LEN];
    long hits[13] = {0};
    double weight[13] = {0}, total = 0;
    for (int n = 3; n <= most; n++) total += weight[n] = 1.0 - pow(50.0 / 51.0, n);
    Rng rng;
    rng_seed(&rng, 17);
    for (int k = 0; k < draws; k++) {
        int len = task->sample(&opt, -1, &rng, in, tg);
        hits[replay(task, in, tg, len, 2).statements]++;
    }
    for (int n = 3; n <= most; n++) {
        double p = weight[n] / total, tol = 5.0 * sqrt(p * (1 - p) / draws);
        cr_expect(fabs((double)hits[n] / draws - p) <= tol,
                  "%d statements in %.4f of the samples, expected %.4f", n,
                  (double)hits[n] / draws, p);
    }
}

// A context shorter than the sample keeps its last tokens: the same draws with a long and a
// short context give the long sequence's suffix, still ending in "print v answer", scored there.
Test(counting, left_cut_keeps_the_end) {
    const Task *task = counting();
    const int contexts[] = {3, 4, 17, 64, 300};
    static int32_t full[MAX_LEN], full_tg[MAX_LEN], cut[MAX_LEN], cut_tg[MAX_LEN];
    TaskOptions whole = options(3, 512, longest(512));
    int cut_some = 0;
    for (int c = 0; c < 5; c++) {
        TaskOptions opt = options(3, 512, contexts[c]);
        cr_assert_null(task->check(&opt));
        TaskLayout layout;
        task->layout(&opt, &layout);
        cr_assert_eq(layout.train_len, contexts[c]);
        Rng a, b;
        rng_seed(&a, 9 + c);
        rng_seed(&b, 9 + c);
        for (int k = 0; k < 200; k++) {
            int n = task->sample(&whole, -1, &a, full, full_tg);
            int m = task->sample(&opt, -1, &b, cut, cut_tg);
            int keep = n < contexts[c] ? n : contexts[c];
            cut_some |= keep < n;
            cr_assert_eq(m, keep, "context %d: length %d of a %d-token sample", contexts[c], m, n);
            cr_assert_arr_eq(cut, full + n - keep, keep * sizeof(int32_t),
                             "context %d: not the last %d tokens", contexts[c], keep);
            for (int t = 0; t < m; t++)
                cr_assert_eq(cut_tg[t], t == m - 2 ? cut[m - 1] : -1, "context %d: target %d",
                             contexts[c], t);
            cr_assert_eq(cut[m - 3], id_of(task, "print"));
        }
    }
    cr_assert(cut_some, "no sample was long enough to be cut");
}

Test(counting, layout_and_finite_sizes) {
    const Task *task = counting();
    const int statements[] = {3, 32, 512}, contexts[] = {8, 64, 512, 5000};
    for (int s = 0; s < 3; s++)
        for (int c = 0; c < 4; c++) {
            TaskOptions opt = options(3, statements[s], contexts[c]);
            TaskLayout layout;
            task->layout(&opt, &layout);
            int room = contexts[c] < longest(statements[s]) ? contexts[c] : longest(statements[s]);
            cr_assert_eq(layout.train_len, room);
            cr_assert_eq(layout.train_size, 10000, "the official training set has 10k samples");
            cr_assert_eq(layout.n_splits, 2);
            cr_assert_str_eq(layout.split[0].name, "valid");
            cr_assert_str_eq(layout.split[1].name, "test");
            for (int k = 0; k < 2; k++) {
                cr_assert_eq(layout.split[k].size, 1000);
                cr_assert_eq(layout.split[k].seq_len, room);
                cr_assert_not(layout.split[k].extrapolates);
            }
            cr_assert_eq(task_layout_longest(&layout), room);
        }
}

Test(counting, deterministic_for_a_seed) {
    TaskOptions opt = options(3, 64, 128);
    check_deterministic_for_a_seed(counting(), &opt);
}

// The vocabulary holds exactly the official generator's words (and the official pad), each once.
Test(counting, vocabulary_is_the_official_words) {
    const Task *task = counting();
    const char *words[] = {"=", ";", "pass;", "++;", "print", "<pad>"};
    cr_assert_eq(task->vocab_size, 6 + 11 + 26);
    for (size_t w = 0; w < sizeof words / sizeof words[0]; w++) id_of(task, words[w]);
    char name[12];
    for (int v = 0; v <= 10; v++) {
        snprintf(name, sizeof name, "%d", v);
        cr_assert_eq(value_of(task, id_of(task, name)), v);
    }
    for (int v = 0; v < 26; v++) {
        snprintf(name, sizeof name, "%c", 'a' + v);
        cr_assert_eq(variable_of(task, id_of(task, name)), v);
    }
    for (int i = 0; i < task->vocab_size; i++)
        for (int j = i + 1; j < task->vocab_size; j++)
            cr_assert_str_neq(task->token_names[i], task->token_names[j]);
}

Test(counting, check_and_presets) {
    const Task *task = counting();
    const TaskOptions bad[] = {options(0, 512, 512), options(27, 512, 512), options(3, 2, 512),
                               options(3, 512, 2)};
    const char *flag[] = {"--count-vars", "--count-vars", "--count-statements", "--seq-len"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *msg = task->check(&bad[i]);
        cr_assert_not_null(msg, "case %zu was accepted", i);
        cr_assert(strstr(msg, flag[i]) != NULL, "case %zu: message names no %s: %s", i, flag[i],
                  msg);
    }
    cr_assert_str_eq(task->presets[0].name, "classroom");
    const Preset *paper = task_preset(task, "paper");
    cr_assert_not_null(paper);
    // The official run.sh: 4 layers, width 256, 4 heads, block 512, batch 64, lr 7e-5, dropout
    // 0.1, post-norm; relu in its feed-forward; 100 epochs of 10k samples.
    cr_assert_eq(paper->n_layer, 4);
    cr_assert_eq(paper->n_embd, 256);
    cr_assert_eq(paper->n_head, 4);
    cr_assert_eq(paper->seq_len, 512);
    cr_assert_eq(paper->batch, 64);
    cr_assert_eq(paper->steps, 100 * 157);  // 100 epochs of ceil(10000 / 64) batches, the last short
    cr_assert_float_eq(paper->lr, 7e-5f, 1e-12f);
    cr_assert_float_eq(paper->dropout, 0.1f, 1e-7f);
    cr_assert_str_eq(paper->norm, "post");
    cr_assert_str_eq(paper->act, "relu");
    // The task's own options (--count-vars 3 --count-statements 512) are in the preset's flag
    // text: tests/cli/test_dry_run.py holds the resolved values, and every preset of every task
    // resolves to a valid run there.
    cr_assert(strstr(paper->flags, "--count-vars 3 --count-statements 512") != NULL);
}
