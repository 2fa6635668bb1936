// The command line of bin/train: flags, presets, validation and --help.
//
// Precedence: built-in defaults < the task's preset (--preset, default its first) < explicit
// flags. With --resume the checkpoint's config replaces defaults and preset, and only the flags
// that do not change the run already trained (--steps, --threads, evaluation, saving, output)
// may differ from it. With --init the model's shape comes from the checkpoint, everything else
// as for a new run.
#ifndef PELAB_CLI_H
#define PELAB_CLI_H

#include <stddef.h>
#include <stdio.h>

#include "../data/run_data.h"
#include "config.h"
#include "flags.h"


typedef struct {
    RunConfig run;
    char out[FLAGS_PATH_LEN];      // output folder: <out>/model.h5, <out>/metrics.jsonl
    char resume[FLAGS_PATH_LEN];   // checkpoint to continue bit for bit, or ""
    char init[FLAGS_PATH_LEN];     // checkpoint whose weights start a new run, or ""
    int force;           // may replace the run already in `out`
    int allow_data_change;  // --resume on a --data whose bytes differ from the checkpoint's record
    long stop_at;        // stop and save after this step (0: run to --steps)
    int attention_maps;  // sequences per split whose attention goes to <out>/attention.h5 (0: none)
    char write_data[FLAGS_PATH_LEN];  // write the run's sets to this dataset file and exit, or ""
    // --data with no context given (no --seq-len, no --preset named that sets one, no --init):
    // the context becomes the longest sequence read (cli_check_data), nothing is cut.
    int fit_context;
    int help;
    int dry_run;         // print the resolved configuration and exit
    // Where each flag's final value came from (CliSource), by the flag table's order.
    unsigned char source[FLAGS_MAX];
} CliArgs;

// The origin of a value: the built-in default, the task's preset, the command line, the
// checkpoint of --resume or --init, or derived from other values (--ffn from --dim, the context
// from the task or the data, ...).
typedef enum { FROM_DEFAULT, FROM_PRESET, FROM_FLAG, FROM_CHECKPOINT, FROM_DERIVED } CliSource;

// Fills args from argv and validates the result as a whole (value ranges, model, task, the
// checkpoint given to --resume or --init, the output folder). Returns 0, or -1 with one line in
// err naming the problem and its fix. With --help, prints the help to stdout and sets args->help.
// Parsing reads no data: sets from --data are checked once the data layer has read them.
int cli_parse(int argc, char **argv, CliArgs *args, char *err, size_t errlen);

// Where the run's sequences come from, as parsed (run_data_load).
DataSource cli_data_source(const CliArgs *args);
// After run_data_load: fits the context to the longest sequence where args->fit_context, then
// checks the sets against the run with cli_parse's messages (they fit the context, there is a
// training set holding a batch, the encoding can run every split). 0, or -1 with err.
int cli_check_data(CliArgs *args, const RunData *data, char *err, size_t errlen);
// --dry-run: the resolved run as JSON on out: {"config": the run config as checkpoints store it,
// "flags": {"<flag>": {"value": "<as the flag would be written>", "from": "default" | "preset" |
// "flag" | "checkpoint" | "derived"}}}.
void cli_print_resolved(const CliArgs *args, FILE *out);

#endif
