// Properties of the Flip-Flop generator (docs/tasks.md): the grammar of a sequence, the memory
// semantics of reads, which targets are scored, the instruction mix of every split, the data
// card's split sizes and --eval-seqs taking the first of them, determinism and the validation of
// the options.
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "../../data/evaluate.h"
#include "../../tasks/task.h"
#include "task_checks.h"

enum { W = 0, R = 1, I = 2, B0 = 3, B1 = 4 };

#define MAX_LEN 512

static const Task *flipflop(void) {
    const Task *t = task_find("flipflop");
    cr_assert_not_null(t, "task \"flipflop\" is not in the task table");
    return t;
}

static int split_index(const Task *t, const TaskOptions *opt, const char *name) {
    TaskLayout layout;
    t->layout(opt, &layout);
    int s = task_layout_find(&layout, name);
    cr_assert_geq(s, 0, "flipflop has no split \"%s\"", name);
    return s;
}

static int n_splits(const Task *t, const TaskOptions *opt) {
    TaskLayout layout;
    t->layout(opt, &layout);
    return layout.n_splits;
}

// Checks every structural property of one sequence and returns its count of middle ignores.
static int check_sequence(const int32_t *in, const int32_t *tg, int len) {
    cr_assert_eq(in[0], W, "first instruction must be w, got %d", in[0]);
    cr_assert_eq(in[len - 2], R, "last instruction must be r, got %d", in[len - 2]);
    int memory = -1, ignores = 0;
    for (int t = 0; t < len; t += 2) {
        int instr = in[t], bit = in[t + 1];
        cr_assert(instr == W || instr == R || instr == I, "position %d holds %d, not an instruction",
                  t, instr);
        cr_assert(bit == B0 || bit == B1, "position %d holds %d, not a bit", t + 1, bit);
        if (instr == W) memory = bit;
        if (instr == R) {
            cr_assert_eq(bit, memory, "read at %d returns %d but the last write was %d", t, bit,
                         memory);
            cr_assert_eq(tg[t], bit, "target after the read at %d must be the read bit", t);
        } else {
            cr_assert_eq(tg[t], -1, "position %d (not a read) must not be scored", t);
        }
        cr_assert_eq(tg[t + 1], -1, "bit position %d must not be scored", t + 1);
        if (instr == I && t > 0 && t < len - 2) ignores++;
    }
    return ignores;
}

Test(flipflop, grammar_reads_and_targets) {
    const Task *task = flipflop();
    int32_t in[MAX_LEN], tg[MAX_LEN];
    const int lens[] = {4, 6, 128, 512};
    for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
        TaskOptions opt = {.seq_len = lens[l], .flipflop_p_train = 0.8f};
        cr_assert_null(task->check(&opt));
        Rng rng;
        rng_seed(&rng, 1234 + l);
        for (int split = -1; split < n_splits(task, &opt); split++)
            for (int n = 0; n < 200; n++) {
                task->sample(&opt, split, &rng, in, tg);
                check_sequence(in, tg, opt.seq_len);
            }
    }
}

// Measures the instruction mix over `n_seq` sequences and compares it with p_i. The middle
// instructions are independent draws, so the fraction of ignores is Binomial(N, p_i)/N with
// standard deviation sqrt(p_i (1 - p_i) / N); among the others, writes are Binomial(M, 1/2)/M.
// Five standard deviations make a false failure a 1-in-a-million event for a fresh seed (the
// seeds are fixed, so the test is deterministic anyway), while a p_i off by a few
// thousandths (e.g. a swapped split or the training p_i ignored) exceeds it.
static void check_mix(const Task *task, const TaskOptions *opt, int split, double p_ignore) {
    int32_t in[MAX_LEN], tg[MAX_LEN];
    const int n_seq = 4000;
    long ignores = 0, writes = 0, reads = 0;
    Rng rng;
    rng_seed(&rng, 99 + split);
    for (int n = 0; n < n_seq; n++) {
        task->sample(opt, split, &rng, in, tg);
        check_sequence(in, tg, opt->seq_len);
        for (int t = 2; t < opt->seq_len - 2; t += 2) {
            ignores += in[t] == I;
            writes += in[t] == W;
            reads += in[t] == R;
        }
    }
    long total = ignores + writes + reads;
    double measured = (double)ignores / (double)total;
    double tol = 5.0 * sqrt(p_ignore * (1.0 - p_ignore) / (double)total);
    cr_expect(fabs(measured - p_ignore) <= tol,
              "split %d: measured p_i %.5f, requested %.5f (tolerance %.5f over %ld draws)", split,
              measured, p_ignore, tol, total);
    long others = writes + reads;
    if (others > 0) {
        double write_share = (double)writes / (double)others;
        double tol_w = 5.0 * sqrt(0.25 / (double)others);
        cr_expect(fabs(write_share - 0.5) <= tol_w,
                  "split %d: writes are %.5f of the non-ignores, expected 0.5 +- %.5f", split,
                  write_share, tol_w);
    }
}

Test(flipflop, ignore_probability_of_every_split) {
    const Task *task = flipflop();
    // A training p_i unlike any split's, so a generator that ignores it is caught.
    TaskOptions opt = {.seq_len = 128, .flipflop_p_train = 0.5f};
    check_mix(task, &opt, -1, 0.5);
    check_mix(task, &opt, split_index(task, &opt, "in"), 0.8);
    check_mix(task, &opt, split_index(task, &opt, "sparse"), 0.98);
    check_mix(task, &opt, split_index(task, &opt, "dense"), 0.1);
}

// Bits after writes and ignores are fair coins: same 5-sigma bound as above.
Test(flipflop, written_bits_are_uniform) {
    const Task *task = flipflop();
    TaskOptions opt = {.seq_len = 128, .flipflop_p_train = 0.8f};
    int32_t in[MAX_LEN], tg[MAX_LEN];
    long ones = 0, total = 0;
    Rng rng;
    rng_seed(&rng, 7);
    for (int n = 0; n < 4000; n++) {
        task->sample(&opt, -1, &rng, in, tg);
        for (int t = 0; t < opt.seq_len; t += 2)
            if (in[t] != R) {
                ones += in[t + 1] == B1;
                total++;
            }
    }
    double share = (double)ones / (double)total;
    double tol = 5.0 * sqrt(0.25 / (double)total);
    cr_expect(fabs(share - 0.5) <= tol, "written bits are 1 with frequency %.5f, expected 0.5 +- %.5f",
              share, tol);
}

Test(flipflop, deterministic_for_a_seed) {
    TaskOptions opt = {.seq_len = 128, .flipflop_p_train = 0.8f};
    check_deterministic_for_a_seed(flipflop(), &opt);
}

Test(flipflop, check_rejects_bad_lengths_and_p) {
    const Task *task = flipflop();
    const int bad[] = {-2, 0, 1, 2, 3, 5, 127};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        TaskOptions opt = {.seq_len = bad[i], .flipflop_p_train = 0.8f};
        const char *msg = task->check(&opt);
        cr_assert_not_null(msg, "seq_len %d was accepted", bad[i]);
        cr_assert(strstr(msg, "--seq-len") != NULL, "message does not name the flag: %s", msg);
    }
    const float bad_p[] = {-0.1f, 1.5f, NAN};
    for (size_t i = 0; i < sizeof bad_p / sizeof bad_p[0]; i++) {
        TaskOptions opt = {.seq_len = 64, .flipflop_p_train = bad_p[i]};
        cr_assert_not_null(task->check(&opt), "p_i %g was accepted", (double)bad_p[i]);
    }
    TaskOptions ok = {.seq_len = 4, .flipflop_p_train = 0.0f};
    cr_assert_null(task->check(&ok), "the shortest valid sequence (w b r b) was rejected");
}

Test(flipflop, presets_are_valid) {
    const Task *task = flipflop();
    cr_assert_gt(task->n_presets, 0);
    cr_assert_str_eq(task->presets[0].name, "classroom", "the default preset must be classroom");
    cr_assert_not_null(task_preset(task, "paper"));
    for (int i = 0; i < task->n_presets; i++) {
        const Preset *p = &task->presets[i];
        TaskOptions opt = {.seq_len = p->seq_len, .flipflop_p_train = 0.8f};
        cr_assert_null(task->check(&opt), "preset %s: %s", p->name, task->check(&opt));
        cr_assert_eq(p->n_embd % p->n_head, 0, "preset %s: heads do not divide the width",
                     p->name);
    }
}

// The data card's splits: val 16K sequences of FFL(0.8), val_sparse 160K of FFL(0.98), val_dense
// 4K of FFL(0.1) (the mixes: ignore_probability_of_every_split); --eval-seqs N draws the first N
// of each (all of a smaller one), the same first sequences whatever N is.
Test(flipflop, data_card_split_sizes_and_eval_seqs) {
    const Task *task = flipflop();
    TaskOptions opt = {.seq_len = 8, .flipflop_p_train = 0.8f};
    TaskLayout layout;
    task->layout(&opt, &layout);
    const char *names[] = {"in", "sparse", "dense"};
    const int card[] = {16000, 160000, 4000};
    for (int i = 0; i < 3; i++)
        cr_assert_eq(layout.split[split_index(task, &opt, names[i])].size, card[i], "split %s",
                     names[i]);
    EvalSets few, many;
    cr_assert_eq(eval_sets_build(&few, task, &opt, 100), 0);
    cr_assert_eq(eval_sets_build(&many, task, &opt, 5000), 0);
    for (int i = 0; i < 3; i++) {
        int s = split_index(task, &opt, names[i]);
        cr_assert_eq(few.split[s].n, 100, "split %s", names[i]);
        cr_assert_eq(many.split[s].n, card[i] < 5000 ? card[i] : 5000, "split %s", names[i]);
        size_t bytes = sizeof(int32_t) * 100 * (size_t)few.split[s].width;
        cr_assert_arr_eq(few.split[s].inputs, many.split[s].inputs, bytes,
                         "split %s: --eval-seqs 100 is not the first 100 of 5000", names[i]);
    }
    eval_sets_free(&few);
    eval_sets_free(&many);
}
