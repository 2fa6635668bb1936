// libFuzzer harness of bin/train's command line (train/cli.c: the flag table, its parsers,
// presets, range checks and the checks of the run as a whole). One input is one command line,
// its arguments separated by newlines. Properties, beyond "no crash, no sanitizer report":
// a refusal is one non-empty line; an accepted run's config survives its JSON form unchanged
// (what a checkpoint stores is what --resume reads back).
//
// Inputs holding '/' are skipped and the harness runs in an empty folder of its own, so the
// paths it parses (--resume, --init, --out) name nothing that exists: the parser is fuzzed, not
// the checkpoint reader (that has its own harness).
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../common/h5file.h"
#include "../../train/cli.h"
#include "../../train/config.h"

#define MAX_ARGS 64
#define MAX_TEXT 4096

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    char dir[] = "/tmp/pelab-fuzz-flags-XXXXXX";
    if (!mkdtemp(dir) || chdir(dir) != 0) abort();
    if (!freopen("/dev/null", "w", stdout)) abort();  // --help
    h5_quiet();
    return 0;
}

static void check(int ok, const char *what, const char *detail) {
    if (ok) return;
    fprintf(stderr, "fuzz_flags: %s: %s\n", what, detail);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > MAX_TEXT || memchr(data, '/', size)) return 0;
    static char text[MAX_TEXT + 1];
    memcpy(text, data, size);
    text[size] = '\0';
    char *argv[MAX_ARGS + 1] = {"train"};
    int argc = 1;
    for (char *save, *arg = strtok_r(text, "\n", &save); arg && argc < MAX_ARGS;
         arg = strtok_r(NULL, "\n", &save))
        argv[argc++] = arg;
    argv[argc] = NULL;

    static CliArgs args;  // static: CliArgs holds path buffers
    char err[1024] = "";
    if (cli_parse(argc, argv, &args, err, sizeof err) != 0) {
        check(err[0] != '\0', "a refusal without a message", "(empty)");
        check(strchr(err, '\n') == NULL, "a refusal of more than one line", err);
        return 0;
    }
    if (args.help) return 0;
    char *json = run_config_to_json(&args.run);
    check(json != NULL, "run_config_to_json failed", "");
    RunConfig back;
    char why[512] = "";
    check(run_config_from_json(json, &back, why, sizeof why) == 0, "the config does not read back",
          why);
    char *again = run_config_to_json(&back);
    check(again && strcmp(json, again) == 0, "the config changes through JSON", json);
    free(json);
    free(again);
    return 0;
}
