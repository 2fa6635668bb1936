// Properties of the selective-copy generator (docs/tasks.md): the prefix holds exactly n_data
// data tokens among the split's number of blanks, the copied tokens after the separator are the
// data tokens in order and are exactly the scored targets, the split lengths, uniform scattering,
// determinism and the validation of the options.
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "../../tasks/task.h"
#include "task_checks.h"

#define MAX_LEN 4096

static const Task *selcopy(void) {
    const Task *t = task_find("selcopy");
    cr_assert_not_null(t, "task \"selcopy\" is not in the task table");
    return t;
}

static TaskOptions options(int data, int blanks) {
    return (TaskOptions){.seq_len = 2 * data + 2 * blanks + 1, .sel_data = data,
                         .sel_blanks = blanks};
}

// Token kinds by name, so the test does not depend on the id layout.
static int is_data(const Task *t, int32_t tok) {
    cr_assert(tok >= 0 && tok < t->vocab_size, "token %d outside the vocabulary", tok);
    return t->token_names[tok][0] == 'd';
}
static int is_named(const Task *t, int32_t tok, const char *name) {
    return strcmp(t->token_names[tok], name) == 0;
}

// Checks a sequence with the given numbers of data tokens and blanks.
static void check_sequence(const Task *t, const int32_t *in, const int32_t *tg, int n_data,
                           int n_blank) {
    int prefix = n_data + n_blank, len = 2 * n_data + n_blank + 1;
    int32_t data[MAX_LEN];
    int found = 0;
    for (int p = 0; p < prefix; p++) {
        if (is_data(t, in[p])) data[found++] = in[p];
        else cr_assert(is_named(t, in[p], "_"), "prefix position %d holds %s", p, t->token_names[in[p]]);
    }
    cr_assert_eq(found, n_data, "the prefix holds %d data tokens, not %d", found, n_data);
    cr_assert(is_named(t, in[prefix], "|"), "position %d should hold the separator", prefix);
    for (int k = 0; k < n_data; k++)
        cr_assert_eq(in[prefix + 1 + k], data[k], "copied token %d is not data token %d", k, k);
    for (int p = 0; p < len; p++) {
        int scored = p >= prefix && p < len - 1;
        cr_assert_eq(tg[p], scored ? in[p + 1] : -1, "target %d of %d (separator at %d)", p, len,
                     prefix);
    }
}

Test(selcopy, layout_and_copies_of_every_split) {
    const Task *task = selcopy();
    const int data[] = {1, 3, 8, 20}, blanks[] = {2, 7, 24, 40};
    int32_t in[MAX_LEN], tg[MAX_LEN];
    for (int c = 0; c < 4; c++) {
        TaskOptions opt = options(data[c], blanks[c]);
        cr_assert_null(task->check(&opt));
        TaskLayout layout;
        task->layout(&opt, &layout);
        const int split_blanks[] = {blanks[c], blanks[c] / 2, 2 * blanks[c]};
        const char *names[] = {"in", "dense", "sparse"};
        cr_assert_eq(layout.n_splits, 3);
        cr_assert_eq(layout.train_len, 2 * data[c] + blanks[c] + 1);
        cr_assert_eq(task_layout_longest(&layout), 2 * data[c] + 2 * blanks[c] + 1);
        Rng rng;
        rng_seed(&rng, 5 + c);
        for (int s = -1; s < 3; s++) {
            int nb = s < 0 ? blanks[c] : split_blanks[s];
            if (s >= 0) {
                cr_assert_str_eq(layout.split[s].name, names[s]);
                cr_assert_eq(layout.split[s].seq_len, 2 * data[c] + nb + 1, "split %s", names[s]);
            }
            for (int k = 0; k < 200; k++) {
                task->sample(&opt, s, &rng, in, tg);
                check_sequence(task, in, tg, data[c], nb);
            }
        }
    }
}

// Data positions are a uniform subset of the prefix: each position holds data with probability
// n_data / prefix. Checked per position with a 5-sigma binomial bound, which a generator biased
// towards either end (e.g. placing the data first) fails at once.
Test(selcopy, data_positions_are_uniform) {
    const Task *task = selcopy();
    TaskOptions opt = options(6, 18);
    int32_t in[MAX_LEN], tg[MAX_LEN];
    const int prefix = 24, draws = 20000;
    long hits[24] = {0};
    Rng rng;
    rng_seed(&rng, 11);
    for (int k = 0; k < draws; k++) {
        task->sample(&opt, -1, &rng, in, tg);
        for (int p = 0; p < prefix; p++) hits[p] += is_data(task, in[p]);
    }
    double p_data = 6.0 / prefix, tol = 5.0 * sqrt(p_data * (1 - p_data) / draws);
    for (int p = 0; p < prefix; p++)
        cr_expect(fabs((double)hits[p] / draws - p_data) <= tol,
                  "position %d holds data %.4f of the time, expected %.4f", p,
                  (double)hits[p] / draws, p_data);
}

Test(selcopy, deterministic_for_a_seed) {
    TaskOptions opt = options(8, 24);
    check_deterministic_for_a_seed(selcopy(), &opt);
}

Test(selcopy, check_and_presets) {
    const Task *task = selcopy();
    const TaskOptions bad[] = {options(0, 8), options(8, 1), options(-1, 8)};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *msg = task->check(&bad[i]);
        cr_assert_not_null(msg, "case %zu was accepted", i);
        cr_assert(strstr(msg, "--sel-") != NULL, "case %zu: message names no flag: %s", i, msg);
    }
    cr_assert_str_eq(task->presets[0].name, "classroom");
    const Preset *paper = task_preset(task, "paper");
    cr_assert_not_null(paper);
    // Its selcopy options are flag text (resolved and checked for every preset of every task by
    // tests/cli/test_dry_run.py).
    cr_assert(strstr(paper->flags, "--sel-data 128 --sel-blanks 128") != NULL);
    cr_assert(strstr(paper->summary, "UNCONFIRMED") != NULL, "paper sizes must say unconfirmed");
}
