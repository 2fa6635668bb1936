#include "jsonl.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define LINE_FORMAT                                                                             \
    "each line must be one JSON object with the string fields \"context\", \"question\" and " \
    "\"answer\", as the official generator writes them"
#define FOLDER_FORMAT                                                                      \
    "a data folder holds train.jsonl, valid.jsonl and (optionally) test.jsonl as the official " \
    "generator writes them"

static const char *const field_names[] = {"context", "question", "answer"};
enum { CONTEXT, QUESTION, ANSWER, N_FIELDS };

typedef struct {
    const char *name;
    int32_t id;
} NamedToken;

typedef struct {
    size_t end;        // one past the line's last token
    int answer_words;  // tokens of its answer, which are its last ones
} LineSpan;

// One file as it is read: every line's tokens one after the other.
typedef struct {
    const char *path;
    const Task *task;
    NamedToken *vocab;      // the task's token names, sorted for bsearch
    int32_t *tokens;        // all lines' tokens
    size_t n_tokens, cap_tokens;
    LineSpan *lines;
    int n_lines, cap_lines;
    char *err;
    size_t errlen;
} Reader;

static int fail(Reader *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, r->errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const NamedToken *)a)->name, ((const NamedToken *)b)->name);
}

static int add_token(Reader *r, int32_t id) {
    if (r->n_tokens == r->cap_tokens) {
        size_t cap = r->cap_tokens ? 2 * r->cap_tokens : 65536;
        int32_t *bigger = realloc(r->tokens, cap * sizeof *bigger);
        if (!bigger) return fail(r, "out of memory reading %s", r->path);
        r->tokens = bigger;
        r->cap_tokens = cap;
    }
    r->tokens[r->n_tokens++] = id;
    return 0;
}

// The official tokenizer's words of text: lower case, a space before each '.', ',' and '?',
// split at whitespace. Adds their tokens and returns how many, or -1.
static int add_words(Reader *r, const char *text, int line) {
    size_t len = strlen(text);
    char *spaced = malloc(2 * len + 1), *out = spaced;
    if (!spaced) return fail(r, "out of memory reading %s", r->path);
    for (const char *c = text; *c; c++) {
        if (*c == '.' || *c == ',' || *c == '?') *out++ = ' ';
        *out++ = (char)tolower((unsigned char)*c);
    }
    *out = '\0';
    int words = 0;
    char *save;
    for (char *word = strtok_r(spaced, " \t\n\v\f\r", &save); word;
         word = strtok_r(NULL, " \t\n\v\f\r", &save), words++) {
        NamedToken key = {.name = word};
        const NamedToken *hit =
            bsearch(&key, r->vocab, (size_t)r->task->vocab_size, sizeof key, by_name);
        if (!hit) {
            fail(r,
                 "%s line %d: the word '%.40s' is not a token of task %s; read the file with the "
                 "--task whose data it is, or regenerate it",
                 r->path, line, word, r->task->name);
            free(spaced);
            return -1;
        }
        if (add_token(r, hit->id)) {
            free(spaced);
            return -1;
        }
    }
    free(spaced);
    return words;
}

static const char *type_of(const cJSON *item) {
    if (cJSON_IsNumber(item)) return "number";
    if (cJSON_IsBool(item)) return "boolean";
    if (cJSON_IsNull(item)) return "null";
    if (cJSON_IsArray(item)) return "list";
    if (cJSON_IsObject(item)) return "object";
    return "value of another type";
}

// The words of one field; the official reader also takes a context given as a list of strings.
static int add_field(Reader *r, const cJSON *object, int field, int line) {
    const char *key = field_names[field];
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    if (!item) return fail(r, "%s line %d has no \"%s\" field; " LINE_FORMAT, r->path, line, key);
    if (cJSON_IsString(item)) return add_words(r, item->valuestring, line);
    int words = 0;
    if (field == CONTEXT && cJSON_IsArray(item)) {
        const cJSON *part;
        cJSON_ArrayForEach(part, item) {
            if (!cJSON_IsString(part))
                return fail(r,
                            "%s line %d: the \"context\" list holds a %s, not a string; "
                            LINE_FORMAT, r->path, line, type_of(part));
            int more = add_words(r, part->valuestring, line);
            if (more < 0) return -1;
            words += more;
        }
        return words;
    }
    return fail(r, "%s line %d: \"%s\" is a %s, not a string; " LINE_FORMAT, r->path, line, key,
                type_of(item));
}

static int blank(const char *text) {
    while (isspace((unsigned char)*text)) text++;
    return *text == '\0';
}

// cJSON decodes \u0000 into a C string that ends there, silently dropping the rest. Outside
// strings a backslash is no JSON at all, so every backslash starts an escape of two characters
// or more.
static int has_escaped_nul(const char *text, size_t len) {
    for (size_t i = 0; i + 1 < len; i++) {
        if (text[i] != '\\') continue;
        if (text[i + 1] == 'u' && i + 6 <= len && memcmp(text + i + 2, "0000", 4) == 0) return 1;
        i++;  // the escaped character, which may be a backslash
    }
    return 0;
}

static int by_string(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

// The first key that object holds twice (Python's json keeps the last, cJSON the first: no
// reading of such a line is safe), or NULL. Sorted, so that a line of many keys stays fast.
static const char *duplicate_key(const cJSON *object, const char **scratch) {
    int n = 0;
    for (const cJSON *c = object->child; c; c = c->next) scratch[n++] = c->string;
    qsort(scratch, (size_t)n, sizeof *scratch, by_string);
    for (int i = 1; i < n; i++)
        if (strcmp(scratch[i - 1], scratch[i]) == 0) return scratch[i];
    return NULL;
}

static int add_line(Reader *r, const char *text, size_t len, int line) {
    if (has_escaped_nul(text, len))
        return fail(r, "%s line %d holds a string with \\u0000 (a NUL character), which no token "
                    "has; " LINE_FORMAT, r->path, line);
    const char *end = NULL;
    cJSON *object = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    // Text after the object is an error, as it is for Python's json.loads.
    if (!cJSON_IsObject(object) || !blank(end)) {
        cJSON_Delete(object);
        return fail(r, "%s line %d is not a JSON object; " LINE_FORMAT, r->path, line);
    }
    // A key takes at least 3 bytes ("":), so len / 3 + 1 bounds their count.
    const char **keys = malloc((len / 3 + 1) * sizeof *keys);
    const char *twice = keys ? duplicate_key(object, keys) : NULL;
    if (!keys || twice) {
        int failed = keys ? fail(r, "%s line %d has the key \"%.40s\" twice; " LINE_FORMAT,
                                 r->path, line, twice)
                          : fail(r, "out of memory reading %s", r->path);
        free(keys);
        cJSON_Delete(object);
        return failed;
    }
    free(keys);
    int words[N_FIELDS];
    for (int f = 0; f < N_FIELDS; f++) {
        words[f] = add_field(r, object, f, line);
        if (words[f] < 0) {
            cJSON_Delete(object);
            return -1;
        }
    }
    cJSON_Delete(object);
    if (words[ANSWER] == 0)
        return fail(r, "%s line %d has an empty \"answer\"; every sample needs a word to score",
                    r->path, line);
    if (words[CONTEXT] + words[QUESTION] == 0)
        return fail(r, "%s line %d has neither context nor question; the answer needs words "
                    "before it to be predicted from", r->path, line);
    if (r->n_lines == r->cap_lines) {
        int cap = r->cap_lines ? 2 * r->cap_lines : 1024;
        LineSpan *bigger = realloc(r->lines, (size_t)cap * sizeof *bigger);
        if (!bigger) return fail(r, "out of memory reading %s", r->path);
        r->lines = bigger;
        r->cap_lines = cap;
    }
    r->lines[r->n_lines++] = (LineSpan){.end = r->n_tokens, .answer_words = words[ANSWER]};
    return 0;
}

static int read_lines(Reader *r) {
    FILE *f = fopen(r->path, "r");
    if (!f) return fail(r, "cannot open %s: %s; " FOLDER_FORMAT, r->path, strerror(errno));
    char *text = NULL;
    size_t cap = 0;
    ssize_t len;
    int failed = 0;
    for (int line = 1; !failed && (len = getline(&text, &cap, f)) >= 0; line++) {
        if ((size_t)len != strlen(text))
            failed = fail(r, "%s line %d holds a NUL byte; " LINE_FORMAT, r->path, line);
        else if (!blank(text))
            failed = add_line(r, text, (size_t)len, line);
    }
    if (!failed && ferror(f))
        failed = fail(r, "cannot read %s: %s; " FOLDER_FORMAT, r->path, strerror(errno));
    if (!failed && r->n_lines == 0)
        failed = fail(r, "%s holds no samples; " LINE_FORMAT, r->path);
    free(text);
    fclose(f);
    return failed;
}

// The set's name: the file's name without folder and ".jsonl".
static void name_of(const char *path, char *name, size_t len) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 6 && strcmp(base + n - 6, ".jsonl") == 0) n -= 6;
    snprintf(name, len, "%.*s", (int)n, base);
}

// Cuts every line to its last `context` tokens and scores the positions before answer words.
static int fill_set(const Reader *r, int context, SequenceSet *out) {
    int width = 1;
    for (int i = 0; i < r->n_lines; i++) {
        size_t len = r->lines[i].end - (i ? r->lines[i - 1].end : 0);
        if (len > (size_t)width) width = len < (size_t)context ? (int)len : context;
    }
    if (sequence_set_alloc(out, r->n_lines, width)) return -1;
    for (int i = 0; i < r->n_lines; i++) {
        size_t len = r->lines[i].end - (i ? r->lines[i - 1].end : 0);
        int keep = len < (size_t)context ? (int)len : context;
        const int32_t *tokens = r->tokens + r->lines[i].end - keep;
        int first_answer = keep - r->lines[i].answer_words;
        int32_t *inputs = out->inputs + (size_t)i * width;
        int32_t *targets = out->targets + (size_t)i * width;
        memcpy(inputs, tokens, (size_t)keep * sizeof *inputs);
        for (int t = first_answer > 1 ? first_answer - 1 : 0; t < keep - 1; t++)
            targets[t] = tokens[t + 1];
        out->lengths[i] = keep;
    }
    return 0;
}

int jsonl_read_split(const char *path, const Task *task, int context, SequenceSet *out,
                     char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    Reader r = {.path = path, .task = task, .err = err, .errlen = errlen};
    int failed = 0;
    r.vocab = malloc((size_t)task->vocab_size * sizeof *r.vocab);
    if (!r.vocab) failed = fail(&r, "out of memory reading %s", path);
    for (int i = 0; !failed && i < task->vocab_size; i++)
        r.vocab[i] = (NamedToken){.name = task->token_names[i], .id = i};
    if (!failed) qsort(r.vocab, (size_t)task->vocab_size, sizeof *r.vocab, by_name);
    if (!failed) failed = read_lines(&r);
    if (!failed && fill_set(&r, context, out)) failed = fail(&r, "out of memory reading %s", path);
    if (!failed) {
        name_of(path, out->name, sizeof out->name);
        snprintf(out->summary, sizeof out->summary, "%d samples of %s", out->n, path);
    }
    free(r.vocab);
    free(r.tokens);
    free(r.lines);
    return failed ? -1 : 0;
}

int jsonl_read_folder(const char *dir, const Task *task, int context,
                      SequenceSet out[JSONL_MAX_SPLITS], char *err, size_t errlen) {
    static const char *const files[JSONL_MAX_SPLITS] = {"train", "valid", "test"};
    int n = 0;
    for (int s = 0; s < JSONL_MAX_SPLITS; s++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.jsonl", dir, files[s]);
        struct stat st;
        if (s == JSONL_MAX_SPLITS - 1 && stat(path, &st) != 0 && errno == ENOENT) break;
        if (jsonl_read_split(path, task, context, &out[n], err, errlen)) {
            while (n > 0) sequence_set_free(&out[--n]);
            return -1;
        }
        n++;
    }
    return n;
}
