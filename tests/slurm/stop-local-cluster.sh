#!/usr/bin/env bash
# Stops the cluster tests/slurm/start-local-cluster.sh started from DIR (default build/slurm):
# slurmd, slurmctld and munged, by the pid files there, and waits until they are gone.
set -uo pipefail
dir=$(realpath -m "${1:-build/slurm}")
for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
done
exit 0
