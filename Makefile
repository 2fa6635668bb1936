# pelab build. `make demo` trains a small model, `make test` runs every test; both install the
# Debian packages they miss first (apt-get, with sudo when not root).

CC      ?= gcc
PYTHON  := /usr/bin/python3
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# -march=native only where the compiler accepts it (some toolchains and emulators do not).
NATIVE  := $(shell echo 'int main(void){return 0;}' | $(CC) -march=native -x c - -o /dev/null 2>/dev/null && echo -march=native)
BLAS_INC := /usr/include/x86_64-linux-gnu/openblas-openmp
BLAS_LIB := /usr/lib/x86_64-linux-gnu/openblas-openmp
HDF5_INC := /usr/include/hdf5/serial
HDF5_LIB := /usr/lib/x86_64-linux-gnu/hdf5/serial

OPT     ?= -O3 $(NATIVE)
CFLAGS  += -std=c11 -D_DEFAULT_SOURCE $(OPT) -g -Wall -Wextra -fopenmp \
           -I$(BLAS_INC) -I$(HDF5_INC)
LDLIBS  += -L$(BLAS_LIB) -Wl,-rpath,$(BLAS_LIB) -lopenblas -L$(HDF5_LIB) -lhdf5_hl -lhdf5 \
           -lcjson -lm
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
LIB_SRC  := $(wildcard model/*.c tasks/*.c data/*.c) \
            $(filter-out train/main.c train/eval_main.c,$(wildcard train/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)
TOOL_SRC := $(wildcard tests/tool_*.c)
TOOLS    := $(TOOL_SRC:tests/tool_%.c=bin/%)

BUILD_PKGS := gcc make libopenblas-openmp-dev libhdf5-dev libcjson-dev python3-h5py python3-matplotlib
TEST_PKGS  := libcriterion-dev python3-torch python3-numpy python3-pytest

.PHONY: all demo test test-c test-py bench deps deps-test clean sanitize

all: bin/train bin/eval $(TOOLS)

$(BUILD)/%.o: %.c $(wildcard model/*.h tasks/*.h data/*.h train/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

bin/train: $(BUILD)/train/main.o $(LIB_OBJ)
	@mkdir -p bin
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

bin/eval: $(BUILD)/train/eval_main.o $(LIB_OBJ)
	@mkdir -p bin
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

bin/%: $(BUILD)/tests/tool_%.o $(LIB_OBJ)
	@mkdir -p bin
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

bin/unit_tests: $(TEST_OBJ) $(LIB_OBJ)
	@mkdir -p bin
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS) -lcriterion

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
	$(PYTHON) -m pytest -q tests

bench: deps deps-test
	$(MAKE) all
	$(PYTHON) tests/bench.py

# ASan + UBSan build of the unit tests, in a build folder of its own.
sanitize: deps deps-test
	$(MAKE) BUILD=build-san OPT="-O1 -fsanitize=address,undefined -fno-omit-frame-pointer" \
	    LDLIBS="$(LDLIBS) -fsanitize=address,undefined" bin/unit_tests-san

bin/unit_tests-san: $(TEST_OBJ) $(LIB_OBJ)
	@mkdir -p bin
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS) -lcriterion
	ASAN_OPTIONS=detect_leaks=1 bin/unit_tests-san --jobs 1

deps:
	@missing=$$(for p in $(BUILD_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "installing:" $$missing; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; fi

deps-test:
	@missing=$$(for p in $(TEST_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "installing:" $$missing; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; fi

clean:
	rm -rf build build-san build-mpi bin


# ---- MPI (docs/mpi.md): `make test-mpi` checks that 2 ranks train as 1 process does.
MPI_PKGS := libopenmpi-dev openmpi-bin
.PHONY: test-mpi bench-mpi

bin/train-mpi: $(BUILD)/train/main.o $(LIB_OBJ)
	@mkdir -p bin
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

test-mpi: deps deps-test
	$(MAKE) deps BUILD_PKGS="$(MPI_PKGS)"
	$(MAKE) bin/train
	$(MAKE) MPI=1 bin/train-mpi
	$(PYTHON) -m pytest -q tests/test_mpi.py

# 1 process against 2 ranks, interleaved (prints tokens/s; tests/bench_mpi.py)
bench-mpi: deps deps-test
	$(MAKE) bin/train
	$(MAKE) MPI=1 bin/train-mpi
	$(PYTHON) tests/bench_mpi.py
# ---- end MPI
