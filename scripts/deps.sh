#!/usr/bin/env bash
# Installs the Debian packages pelab needs for PURPOSE (build, test, or slurm), and only those
# missing: a machine that has them all runs no apt-get at all. Idempotent; sudo when not root.
#   scripts/deps.sh build    # compile bin/train, bin/eval, and plot (make demo)
#   scripts/deps.sh test     # the above, plus what the tests need (make test, .ci/run)
#   scripts/deps.sh slurm    # a one-node Slurm cluster for bin/sweep's tests (make test-slurm)
#   scripts/deps.sh mpi      # the above, plus OpenMPI (make MPI=1, make test-mpi; docs/mpi.md)
#   scripts/deps.sh fuzz     # build and test, plus clang and libFuzzer (make fuzz, make fuzz-run)
set -euo pipefail

build=(gcc make pkg-config libopenblas-openmp-dev libhdf5-dev libcjson-dev libssl-dev
       python3-h5py python3-matplotlib)
test=(libcriterion-dev python3-torch python3-numpy python3-pytest)
slurm=(slurm-wlm munge)
mpi=(libopenmpi-dev openmpi-bin)
fuzz=(clang libclang-rt-14-dev)

case "${1:-build}" in
    build) wanted=("${build[@]}") ;;
    test) wanted=("${build[@]}" "${test[@]}") ;;
    slurm) wanted=("${slurm[@]}") ;;
    mpi) wanted=("${build[@]}" "${test[@]}" "${mpi[@]}") ;;
    fuzz) wanted=("${build[@]}" "${test[@]}" "${fuzz[@]}") ;;
    *) echo "usage: $0 build|test|slurm|mpi|fuzz" >&2; exit 2 ;;
esac

missing=()
for p in "${wanted[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
