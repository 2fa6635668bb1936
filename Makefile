# pelab build. `make demo` trains a small model, `make test` runs every test; both install the
# Debian packages they miss first (scripts/deps.sh: apt-get, with sudo when not root, and nothing
# at all when every package is there).

CC      ?= gcc
PYTHON  := /usr/bin/python3

# -march=native only where the compiler accepts it (some toolchains and emulators do not).
NATIVE  := $(shell echo 'int main(void){return 0;}' | $(CC) -march=native -x c - -o /dev/null 2>/dev/null && echo -march=native)
# Libraries through pkg-config, on any architecture. Debian's openblas.pc follows the
# alternatives system, which may point at the pthreads build; the OpenMP build's own .pc comes
# first so that OpenBLAS and our loops share one OpenMP thread pool, and the rpath loads that
# same build at run time. OpenMP itself is the compiler's -fopenmp.
comma := ,
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
PKG_CONFIG_PATH := /usr/lib/$(MULTIARCH)/openblas-openmp/pkgconfig:$(PKG_CONFIG_PATH)
export PKG_CONFIG_PATH
PKGS     := openblas hdf5 libcjson libcrypto
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
PKG_RPATH  := $(patsubst -L%,-Wl$(comma)-rpath$(comma)%,$(filter -L%,$(PKG_LIBS)))

OPT     ?= -O3 $(NATIVE)
# -std=c11 turns off fusing a * b + c into one FMA instruction (GCC's ISO mode); the hand-written
# kernels (attention products, exp, GELU, layer norm) are chains of exactly that, so fusing is
# asked for again. Results stay the same bits for a given build, seed and thread count.
CFLAGS  += -std=c11 -D_DEFAULT_SOURCE $(OPT) -ffp-contract=fast -g -Wall -Wextra -fopenmp $(PKG_CFLAGS)
# hdf5_hl (the HDF5 high-level API) has no .pc of its own; it sits beside libhdf5.
LDLIBS  += $(PKG_RPATH) $(filter -L%,$(PKG_LIBS)) -lhdf5_hl $(PKG_LIBS) -lm
BUILD   ?= build

# ---- MPI (docs/mpi.md): `make MPI=1` builds bin/train-mpi, the trainer that mpirun or srun
# runs as data-parallel ranks, from objects of its own; bin/train stays free of MPI.
ifeq ($(MPI),1)
BUILD   := build-mpi
CFLAGS  += -DPELAB_MPI $(shell pkg-config --cflags ompi-c)
LDLIBS  += $(shell pkg-config --libs ompi-c)
.DEFAULT_GOAL := bin/train-mpi
endif
# ---- end MPI

# Everything but the programs' main files is the pelab library.
LIB_SRC  := $(wildcard common/*.c model/*.c tasks/*.c data/*.c) \
            $(filter-out train/main.c train/eval_main.c,$(wildcard train/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/unit/test_*.c)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)
# Programs the Python tests drive: tests/<layer>/tool_<name>.c becomes bin/<name>.
TOOL_SRC := $(wildcard tests/*/tool_*.c)
TOOLS    := $(foreach t,$(TOOL_SRC),bin/$(patsubst tool_%.c,%,$(notdir $(t))))

.PHONY: all demo demo-compare test test-c test-py test-slurm bench deps deps-test deps-slurm clean sanitize

all: bin/train bin/eval bin/sweep $(TOOLS)

# -MMD writes each object's header dependencies (every header it includes, tests' too) beside
# it; -MP keeps the build going when a header is deleted.
$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# $(BUILD)/bin/: the programs of another build folder (make sanitize's).
bin/train $(BUILD)/bin/train: $(BUILD)/train/main.o $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

bin/eval $(BUILD)/bin/eval: $(BUILD)/train/eval_main.o $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

define tool_rule
bin/$(patsubst tool_%.c,%,$(notdir $(1))): $(BUILD)/$(1:.c=.o) $$(LIB_OBJ)
	@mkdir -p bin
	$$(CC) $$(CFLAGS) $$^ -o $$@ $$(LDLIBS)
endef
$(foreach t,$(TOOL_SRC),$(eval $(call tool_rule,$(t))))

# bin/sweep is the Python program in sweep/, linked so that it runs from any folder.
bin/sweep: sweep/cli.py
	@mkdir -p bin
	ln -sf ../sweep/cli.py $@

bin/unit_tests: $(TEST_OBJ) $(LIB_OBJ)
	@mkdir -p bin
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS) -lcriterion

# CoPE's point at classroom size: selective copy (classroom preset) with abs, rope and cope over
# three seeds (docs/results/README.md, selective copy: seed 1 measured, every encoding but cope
# errs on the dense and sparse splits); checkpoints/compare-selcopy/curves.png and a table.
# Nine runs of 2000 steps (the time a run takes is in each run's summary line).
# The paper's point at classroom size: counting with programs longer than the context, cope
# against abs (docs/results/counting-3var-long), one seed each, with the table and curves.
demo-compare: deps
	$(MAKE) bin/train
	$(PYTHON) train/compare.py --task counting --preset long --pes abs cope --seeds 1 --out checkpoints/demo-compare

# The demo: Flip-Flop, classroom preset, a few minutes on two cores.
demo: deps
	$(MAKE) bin/train
	bin/train --out checkpoints/demo --force --attention-maps 2
	$(PYTHON) train/plot_metrics.py checkpoints/demo --out checkpoints/demo/curves.png
	$(PYTHON) train/plot_attention.py checkpoints/demo/attention.h5

test: deps deps-test
	$(MAKE) all bin/unit_tests
	$(MAKE) test-c test-py

test-c:
	bin/unit_tests --jobs 1

test-py:
	$(PYTHON) -m pytest -q tests/cli tests/reference

# bin/sweep's Slurm backend on a real one-node cluster started here (root; about a minute).
test-slurm: deps deps-test deps-slurm
	$(MAKE) all
	$(SUDO) tests/slurm/start-local-cluster.sh $(BUILD)/slurm
	SLURM_CONF=$(abspath $(BUILD))/slurm/slurm.conf $(PYTHON) -m pytest -q \
	    tests/slurm/slurm_backend.py; rc=$$?; $(SUDO) tests/slurm/stop-local-cluster.sh $(BUILD)/slurm; \
	    exit $$rc

bench: deps deps-test
	$(MAKE) all
	$(PYTHON) tests/bench/bench.py

# ASan + UBSan build of the unit tests and of bin/train and bin/eval, in a build folder of its
# own; the unit tests run, then the command-line tests that train, resume, interrupt, evaluate
# and refuse (SAN_TESTS: a few minutes) drive those programs. Any report fails the run: UBSan
# halts, and ASan's exit status (86) is one no test expects.
SAN_TESTS := tests/cli/test_hardening.py tests/cli/test_cli.py tests/cli/test_eval.py \
             tests/cli/test_datasets_cli.py
sanitize: deps deps-test
	$(MAKE) BUILD=build-san OPT="-O1 $(NATIVE) -fsanitize=address,undefined -fno-omit-frame-pointer" \
	    LDLIBS="$(LDLIBS) -fsanitize=address,undefined" bin/unit_tests-san build-san/bin/train \
	    build-san/bin/eval
	$(MAKE) bin/crosscheck
	PELAB_BIN=build-san/bin PELAB_SANITIZED=1 ASAN_OPTIONS=detect_leaks=1:exitcode=86 \
	    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 $(PYTHON) -m pytest -q $(SAN_TESTS)

bin/unit_tests-san: $(TEST_OBJ) $(LIB_OBJ)
	@mkdir -p bin
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS) -lcriterion
	ASAN_OPTIONS=detect_leaks=1 bin/unit_tests-san --jobs 1

deps:
	@scripts/deps.sh build

deps-test:
	@scripts/deps.sh test

deps-slurm:
	@scripts/deps.sh slurm

clean:
	rm -rf build build-san build-mpi build-fuzz bin


# ---- MPI (docs/mpi.md): `make test-mpi` checks that 2 ranks train as 1 process does;
# `make bench-mpi` times 1 process against 2 ranks, interleaved (prints tokens/s).
.PHONY: test-mpi bench-mpi

bin/train-mpi: $(BUILD)/train/main.o $(LIB_OBJ)
	@mkdir -p bin
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

test-mpi bench-mpi:
	@scripts/deps.sh mpi
	$(MAKE) bin/train
	$(MAKE) MPI=1 bin/train-mpi
	$(PYTHON) $(if $(filter test-mpi,$@),-m pytest -q tests/mpi,tests/bench/bench_mpi.py)
# ---- end MPI

# ---- fuzz (docs/testing.md): `make fuzz` builds every tests/fuzz/fuzz_*.c as a libFuzzer
# target under ASan + UBSan (clang; objects in build-fuzz/, programs bin/fuzz_*); `make
# fuzz-run` runs each for FUZZ_RUNS inputs (at most FUZZ_SECONDS) from a fixed seed, starting
# from its committed seeds (tests/fuzz/corpus/<target>/: files pelab wrote; the inputs it once
# crashed on are the unit tests' to replay); what it finds goes to build-fuzz/corpus/<target>/,
# its log to build-fuzz/<target>.log. Paths are absolute: a target may work in a folder of its
# own (fuzz_flags does, so that the runs it parses write nothing here).
.PHONY: fuzz fuzz-run
FUZZ_CC      ?= clang
FUZZ_RUNS    ?= 100000
FUZZ_SECONDS ?= 60
FUZZ_SRC     := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS    := $(FUZZ_SRC:tests/fuzz/%.c=bin/%)
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer

fuzz:
	@scripts/deps.sh fuzz
	$(MAKE) CC=$(FUZZ_CC) BUILD=build-fuzz OPT="-O1 $(NATIVE) $(FUZZ_SAN) -fsanitize=fuzzer-no-link" \
	    LDLIBS="$(LDLIBS) $(FUZZ_SAN) -fsanitize=fuzzer" $(FUZZ_BINS)

bin/fuzz_%: $(BUILD)/tests/fuzz/fuzz_%.o $(LIB_OBJ)
	@mkdir -p bin
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

# A crash, a leak, a hang (-timeout) or a memory blow-up (-rss_limit_mb) fails the run, with
# the log's end and the input that did it (build-fuzz/<target>-crash-*).
fuzz-run: fuzz
	@for t in $(FUZZ_BINS); do \
	    n=$$(basename $$t); out=$(CURDIR)/build-fuzz; mkdir -p $$out/corpus/$$n; \
	    seeds=$$([ -d tests/fuzz/corpus/$$n ] && echo $(CURDIR)/tests/fuzz/corpus/$$n); \
	    dict=$$([ -f tests/fuzz/$$n.dict ] && echo -dict=$(CURDIR)/tests/fuzz/$$n.dict); \
	    $$t -seed=1 -runs=$(FUZZ_RUNS) -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=$$out/$$n- $$dict \
	        $$out/corpus/$$n $$seeds > build-fuzz/$$n.log 2>&1 \
	        || { tail -n 40 build-fuzz/$$n.log; exit 1; }; \
	    echo "$$n: $$(grep -o 'number_of_executed_units: *[0-9]*' build-fuzz/$$n.log | \
	        grep -o '[0-9]*$$') inputs, no crash, no hang"; \
	done
# ---- end fuzz
