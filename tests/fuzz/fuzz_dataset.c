// libFuzzer target: a dataset file (data/dataset_file.h) read for task kvret, as --data reads
// it. Every input must end in a set of sequences or a message, never a crash or a hang.
#include <stddef.h>
#include <stdint.h>

#include "../../data/dataset_file.h"
#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    DatasetContents contents;
    char err[1024];
    if (dataset_file_read(fuzz_file(data, size), task_find("kvret"), &contents, err,
                          sizeof err) == 0)
        dataset_contents_free(&contents);
    return 0;
}
