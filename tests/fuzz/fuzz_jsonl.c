// libFuzzer target: a JSON-lines file of the official counting generator (data/jsonl.h) read
// for task counting with a context of 64, as --data FOLDER reads each of its files.
#include <stddef.h>
#include <stdint.h>

#include "../../data/jsonl.h"
#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    SequenceSet set;
    char err[1024];
    if (jsonl_read_split(fuzz_file(data, size), task_find("counting"), 64, &set, err,
                         sizeof err) == 0)
        sequence_set_free(&set);
    return 0;
}
