// The reader of the official CoPE generator's JSON lines (data/jsonl.c): a hand-written folder
// in the official format reads back to the expected token ids with only the answers scored, the
// left cut keeps the end, generated samples written as the official generator writes them read
// back to the generator's own tokens, the official tokenizer's rules apply, and each kind of bad
// file fails with one message naming the file, the line and the problem.
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../data/jsonl.h"

#define FIXTURE "tests/fixtures/counting"

static const Task *task_named(const char *name) {
    const Task *t = task_find(name);
    cr_assert_not_null(t, "task %s is not in the task table", name);
    return t;
}

// Asserts row i of a set: its tokens, and a single scored position before the last token.
static void check_row(const SequenceSet *set, int i, const int32_t *expected, int len) {
    cr_assert_eq(set->lengths[i], len, "%s row %d: length %d, expected %d", set->name, i,
                 set->lengths[i], len);
    const int32_t *in = set->inputs + (size_t)i * set->width;
    const int32_t *tg = set->targets + (size_t)i * set->width;
    for (int t = 0; t < len; t++)
        cr_assert_eq(in[t], expected[t], "%s row %d token %d", set->name, i, t);
    for (int t = 0; t < set->width; t++)
        cr_assert_eq(tg[t], t == len - 2 ? expected[len - 1] : -1, "%s row %d target %d",
                     set->name, i, t);
    for (int t = len; t < set->width; t++)
        cr_assert_eq(in[t], 0, "%s row %d pad %d", set->name, i, t);
}

// Counting's ids: <pad> 0, "=" 1, ";" 2, "pass;" 3, "++;" 4, print 5, "0".."10" 6..16, a.. 17..
enum { EQ = 1, SEMI = 2, PASS = 3, INC = 4, PRINT = 5, V0 = 6, A = 17 };

Test(jsonl, reads_the_official_folder) {
    static const int32_t train[3][20] = {
        // a = 0 ; pass; a ++; pass; a ++; print a 2
        {A, EQ, V0, SEMI, PASS, A, INC, PASS, A, INC, PRINT, A, V0 + 2},
        // pass; pass; a = 0 ; pass; print a 0
        {PASS, PASS, A, EQ, V0, SEMI, PASS, PRINT, A, V0},
        // a = 0 ; a ++; pass; a = 0 ; pass; a ++; print a 1
        {A, EQ, V0, SEMI, A, INC, PASS, A, EQ, V0, SEMI, PASS, A, INC, PRINT, A, V0 + 1}};
    static const int train_len[3] = {13, 10, 17};
    static const int32_t valid[2][20] = {
        // pass; b = 0 ; a = 0 ; b ++; pass; a ++; b ++; print b 2
        {PASS, A + 1, EQ, V0, SEMI, A, EQ, V0, SEMI, A + 1, INC, PASS, A, INC, A + 1, INC, PRINT,
         A + 1, V0 + 2},
        // c = 0 ; c ++; c ++; c ++; pass; print c 3
        {A + 2, EQ, V0, SEMI, A + 2, INC, A + 2, INC, A + 2, INC, PASS, PRINT, A + 2, V0 + 3}};
    static const int valid_len[2] = {19, 14};
    // pass; pass; pass; e = 0 ; e ++; d = 0 ; print e 1
    static const int32_t test[] = {PASS, PASS, PASS, A + 4, EQ, V0, SEMI, A + 4, INC,
                                   A + 3, EQ, V0, SEMI, PRINT, A + 4, V0 + 1};

    const Task *task = task_named("counting");
    cr_assert_str_eq(task->token_names[A], "a");
    cr_assert_str_eq(task->token_names[V0 + 10], "10");
    SequenceSet sets[JSONL_MAX_SPLITS];
    char err[512] = "";
    cr_assert_eq(jsonl_read_folder(FIXTURE, task, 512, sets, err, sizeof err), 3, "%s", err);
    cr_assert_str_eq(sets[0].name, "train");
    cr_assert_str_eq(sets[1].name, "valid");
    cr_assert_str_eq(sets[2].name, "test");
    cr_assert_eq(sets[0].n, 3);
    cr_assert_eq(sets[1].n, 2);
    cr_assert_eq(sets[2].n, 1);
    cr_assert_eq(sets[0].width, 17, "the set is as wide as its longest row");
    for (int i = 0; i < 3; i++) check_row(&sets[0], i, train[i], train_len[i]);
    for (int i = 0; i < 2; i++) check_row(&sets[1], i, valid[i], valid_len[i]);
    check_row(&sets[2], 0, test, 16);
    for (int s = 0; s < 3; s++) sequence_set_free(&sets[s]);
}

// The official trainer keeps a sequence's last block-size tokens.
Test(jsonl, cuts_from_the_left) {
    const Task *task = task_named("counting");
    SequenceSet set;
    char err[512] = "";
    cr_assert_eq(jsonl_read_split(FIXTURE "/train.jsonl", task, 5, &set, err, sizeof err), 0, "%s",
                 err);
    // The last 5 of each line: "a ++; print a 2", "; pass; print a 0", "a ++; print a 1".
    const int32_t rows[3][5] = {{A, INC, PRINT, A, V0 + 2}, {SEMI, PASS, PRINT, A, V0},
                                {A, INC, PRINT, A, V0 + 1}};
    cr_assert_eq(set.width, 5);
    for (int i = 0; i < 3; i++) check_row(&set, i, rows[i], 5);
    sequence_set_free(&set);
}

// Samples of the generator, written as the official generator writes them (statements joined
// by spaces, "print v", the value), read back to the generator's own tokens and targets.
Test(jsonl, generated_samples_round_trip) {
    const Task *task = task_named("counting");
    TaskOptions opt = task_defaults();
    opt.count_vars = 5;
    opt.count_statements = 512;
    opt.seq_len = 4 * 512 + 3;
    enum { N = 50 };
    static int32_t in[N][4 * 512 + 3], tg[N][4 * 512 + 3];
    int len[N];
    char dir[] = "/tmp/pelab-jsonl-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/valid.jsonl", dir);
    FILE *f = fopen(path, "w");
    Rng rng;
    rng_seed(&rng, 3);
    for (int i = 0; i < N; i++) {
        len[i] = task->sample(&opt, -1, &rng, in[i], tg[i]);
        fprintf(f, "{\"context\": \"");
        for (int t = 0; t < len[i] - 3; t++)
            fprintf(f, "%s%s", t ? " " : "", task->token_names[in[i][t]]);
        fprintf(f, "\", \"question\": \"print %s\", \"answer\": \"%s\"}\n",
                task->token_names[in[i][len[i] - 2]], task->token_names[in[i][len[i] - 1]]);
    }
    fclose(f);
    const int contexts[] = {512, 40};
    for (int c = 0; c < 2; c++) {
        SequenceSet set;
        char err[512] = "";
        cr_assert_eq(jsonl_read_split(path, task, contexts[c], &set, err, sizeof err), 0, "%s",
                     err);
        cr_assert_str_eq(set.name, "valid");
        cr_assert_eq(set.n, N);
        int longer = 0;
        for (int i = 0; i < N; i++) {
            int keep = len[i] < contexts[c] ? len[i] : contexts[c];
            check_row(&set, i, in[i] + len[i] - keep, keep);
            longer += len[i] > contexts[c];
        }
        // Read whole, then cut (as --data does): the same set.
        SequenceSet whole;
        int cut, lost;
        cr_assert_eq(jsonl_read_split(path, task, INT_MAX, &whole, err, sizeof err), 0, "%s", err);
        sequence_set_cut_left(&whole, contexts[c], task, &cut, &lost);
        cr_assert_eq(cut, longer);
        cr_assert(lost >= 0 && lost <= cut, "counting tells lost answers: %d of %d", lost, cut);
        cr_assert_eq(whole.width, set.width);
        cr_assert_arr_eq(whole.inputs, set.inputs, (size_t)N * set.width * sizeof(int32_t));
        cr_assert_arr_eq(whole.targets, set.targets, (size_t)N * set.width * sizeof(int32_t));
        cr_assert_arr_eq(whole.lengths, set.lengths, (size_t)N * sizeof(int32_t));
        sequence_set_free(&whole);
        sequence_set_free(&set);
    }
    unlink(path);
    rmdir(dir);
}

static void write_file(char *dir, const char *name, const char *text) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

static void remove_folder(const char *dir) {
    const char *names[] = {"train.jsonl", "valid.jsonl", "test.jsonl", "x.jsonl"};
    char path[128];
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

// The official tokenizer lower-cases, puts a space before '.', ',' and '?', and splits at any
// whitespace; a context may also be a list of strings (joined by spaces). Every answer word is
// scored. kvret's words ("k12", "v3", "?") show the reader serves any task.
// Reads `text` as the file x.jsonl for task, which must succeed.
static void read_text(const Task *task, const char *text, SequenceSet *set) {
    char dir[] = "/tmp/pelab-jsonl-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    write_file(dir, "x.jsonl", text);
    char path[128], err[512] = "";
    snprintf(path, sizeof path, "%s/x.jsonl", dir);
    cr_assert_eq(jsonl_read_split(path, task, 64, set, err, sizeof err), 0, "%s", err);
    remove_folder(dir);
}

Test(jsonl, official_tokenizer_rules) {
    const Task *kv = task_named("kvret");
    SequenceSet set;
    read_text(kv,
              "{\"context\": [\"K12\\tv3\", \"k7  V0\"], \"question\": \"k12?\", \"answer\": "
              "\"v3 v0\"}\n\n   \n",
              &set);
    const char *words[] = {"k12", "v3", "k7", "v0", "k12", "?", "v3", "v0"};
    cr_assert_eq(set.n, 1, "blank lines are no samples");
    cr_assert_str_eq(set.name, "x");
    cr_assert_eq(set.lengths[0], 8);
    for (int t = 0; t < 8; t++) {
        cr_assert_str_eq(kv->token_names[set.inputs[t]], words[t], "token %d", t);
        cr_assert_eq(set.targets[t], t >= 5 && t < 7 ? set.inputs[t + 1] : -1, "target %d", t);
    }
    sequence_set_free(&set);
}

// An escaped backslash before "u0000" is a backslash, then text: no NUL.
Test(jsonl, an_escaped_backslash_is_not_a_nul) {
    SequenceSet set;
    read_text(task_named("counting"),
              "{\"context\": \"a = 0 ;\", \"question\": \"print a\", \"answer\": \"0\", "
              "\"note\": \"\\\\u0000\"}\n",
              &set);
    sequence_set_free(&set);
}

Test(jsonl, test_file_is_optional) {
    char dir[] = "/tmp/pelab-jsonl-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    const char *line = "{\"context\": \"a = 0 ;\", \"question\": \"print a\", \"answer\": \"0\"}\n";
    write_file(dir, "train.jsonl", line);
    write_file(dir, "valid.jsonl", line);
    SequenceSet sets[JSONL_MAX_SPLITS];
    char err[512] = "";
    cr_assert_eq(jsonl_read_folder(dir, task_named("counting"), 64, sets, err, sizeof err), 2,
                 "%s", err);
    cr_assert_str_eq(sets[1].name, "valid");
    sequence_set_free(&sets[0]);
    sequence_set_free(&sets[1]);
    remove_folder(dir);
}

// Each bad file: the folder's train.jsonl holds `text` (NULL: no such file) and the read fails
// with a message that names the file and holds every expected piece.
Test(jsonl, bad_files_fail_with_one_clear_message) {
    const char *good = "{\"context\": \"a = 0 ;\", \"question\": \"print a\", \"answer\": \"0\"}\n";
    const struct {
        const char *text, *pieces[3];
    } cases[] = {
        {NULL, {"cannot open", "train.jsonl", "official generator"}},
        {"", {"holds no samples", "train.jsonl"}},
        {"\n  \n", {"holds no samples"}},
        {"{\"context\": \"a = 0 ;\", \"question\": \"print a\"}\n",
         {"line 1", "no \"answer\" field"}},
        {"{\"context\": \"a = 0 ;\", \"answer\": \"0\"}\n", {"line 1", "no \"question\" field"}},
        {"{\"context\": \"a = 0 ;\", \"question\": \"print a\", \"answer\": 0}\n",
         {"line 1", "\"answer\" is a number, not a string"}},
        {"{\"context\": [\"a = 0 ;\", 7], \"question\": \"print a\", \"answer\": \"0\"}\n",
         {"line 1", "\"context\" list holds a number"}},
        {"{\"context\": \"a = 0 ;\", \"question\": [\"print a\"], \"answer\": \"0\"}\n",
         {"line 1", "\"question\" is a list, not a string"}},
        {"{\"context\": \"a = 0 ;\", \"question\": \"print a\", \"answer\": \"0\"\n",
         {"line 1", "not a JSON object"}},
        {"[1, 2]\n", {"line 1", "not a JSON object"}},
        {"{\"context\": \"a = 0 ;\", \"question\": \"print a\", \"answer\": \"0\"} x\n",
         {"line 1", "not a JSON object"}},
        {"{\"context\": \"a = 0 ; pass;\", \"question\": \"print a\", \"answer\": \"0\"}\n"
         "{\"context\": \"a = 0 ; nop;\", \"question\": \"print a\", \"answer\": \"0\"}\n",
         {"line 2", "'nop;' is not a token of task counting", "--task"}},
        {"{\"context\": \"a = 0 ;\", \"question\": \"print a\", \"answer\": \" \"}\n",
         {"line 1", "empty \"answer\""}},
        {"{\"context\": \"\", \"question\": \"\", \"answer\": \"0\"}\n",
         {"line 1", "neither context nor question"}},
        // A NUL would silently cut the string where it stands; an escaped backslash is no NUL.
        {"{\"context\": \"a = 0 ;\", \"question\": \"print a\", \"answer\": \"0\"}\n"
         "{\"context\": \"a = 0 ;\\u0000 b = 1 ;\", \"question\": \"print a\", \"answer\": \"0\"}\n",
         {"line 2", "\\u0000"}},
        {"{\"context\": \"a = 0 ;\", \"question\": \"print a\", \"answer\": \"0\\u0000\"}\n",
         {"line 1", "\\u0000"}},
        // Python's json keeps the last of duplicate keys, cJSON the first: neither is safe.
        {"{\"context\": \"a = 0 ;\", \"question\": \"print a\", \"answer\": \"0\", "
         "\"answer\": \"1\"}\n",
         {"line 1", "\"answer\" twice"}},
    };
    const Task *task = task_named("counting");
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char dir[] = "/tmp/pelab-jsonl-XXXXXX";
        cr_assert_not_null(mkdtemp(dir));
        if (cases[c].text) write_file(dir, "train.jsonl", cases[c].text);
        write_file(dir, "valid.jsonl", good);
        write_file(dir, "test.jsonl", good);
        SequenceSet sets[JSONL_MAX_SPLITS];
        char err[512] = "";
        cr_assert_eq(jsonl_read_folder(dir, task, 64, sets, err, sizeof err), -1,
                     "case %zu was accepted", c);
        char path[128];
        snprintf(path, sizeof path, "%s/train.jsonl", dir);
        cr_assert(strstr(err, path) != NULL, "case %zu: message names not %s: %s", c, path, err);
        cr_assert(strchr(err, '\n') == NULL, "case %zu: more than one line: %s", c, err);
        for (int p = 0; p < 3 && cases[c].pieces[p]; p++)
            cr_assert(strstr(err, cases[c].pieces[p]) != NULL, "case %zu: no '%s' in: %s", c,
                      cases[c].pieces[p], err);
        remove_folder(dir);
    }
}
