#!/usr/bin/env bash
# Writes the seed corpus of the fuzz targets (tests/fuzz/corpus/<target>/) from files pelab
# itself writes: small checkpoints of a few encodings, small kvret dataset files, and the
# counting fixture's JSON lines. Run from the repository root after `make`; the seeds are
# committed, so this only needs running again when a format changes.
set -euo pipefail
corpus=tests/fuzz/corpus
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -rf "$corpus"/fuzz_checkpoint "$corpus"/fuzz_dataset "$corpus"/fuzz_jsonl
mkdir -p "$corpus"/fuzz_checkpoint "$corpus"/fuzz_dataset "$corpus"/fuzz_jsonl

tiny=(--layers 1 --dim 8 --heads 2 --seq-len 8 --batch 2 --steps 1 --eval-every 0 --eval-seqs 2
      --threads 1)
for pe in rope abs cope; do
    bin/train "${tiny[@]}" --pe "$pe" --out "$tmp/$pe" >/dev/null
    cp "$tmp/$pe/model.h5" "$corpus/fuzz_checkpoint/$pe.h5"
done
bin/train "${tiny[@]}" --pe rope --moice-bases short --out "$tmp/moice" >/dev/null
cp "$tmp/moice/model.h5" "$corpus/fuzz_checkpoint/moice.h5"

kv=(--task kvret --kv-pairs 10 --eval-seqs 2)
bin/train "${kv[@]}" --train-seqs 3 --write-data "$corpus/fuzz_dataset/train.h5" >/dev/null
bin/train "${kv[@]}" --write-data "$corpus/fuzz_dataset/eval-only.h5" >/dev/null

for f in train valid test; do cp tests/fixtures/counting/$f.jsonl "$corpus/fuzz_jsonl/"; done
head -n 1 tests/fixtures/counting/train.jsonl > "$corpus/fuzz_jsonl/one-line.jsonl"
