#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for `make test-slurm`: munged, slurmctld and
# slurmd of Debian's packages (slurm-wlm, munge), started by hand with a localhost slurm.conf,
# everything (key, sockets, state, logs) in one folder. Needs root, as the daemons do; systemd
# is not needed (Debian's packages start no services where it is absent).
#
#   tests/slurm/start-local-cluster.sh [DIR]     start; prints the SLURM_CONF to export
#   tests/slurm/stop-local-cluster.sh [DIR]      stop (by the pid files in DIR)
#
# DIR defaults to build/slurm. Ports: PELAB_SLURM_PORT (slurmctld, default 6817) and the next
# one (slurmd).
set -euo pipefail
dir=$(realpath -m "${1:-build/slurm}")
port=${PELAB_SLURM_PORT:-6817}

if [ "$(id -u)" != 0 ]; then
    echo "start-local-cluster.sh: slurmctld and slurmd run as root here; run it as root (sudo)" >&2
    exit 2
fi
for tool in munged mungekey slurmctld slurmd sinfo; do
    if ! command -v "$tool" >/dev/null; then
        echo "start-local-cluster.sh: $tool is missing; apt-get install slurm-wlm munge" >&2
        exit 2
    fi
done
if [ -e "$dir/slurmctld.pid" ] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null; then
    echo "start-local-cluster.sh: a cluster is running from $dir already; stop it first with" \
         "tests/slurm/stop-local-cluster.sh $dir" >&2
    exit 2
fi

rm -rf "$dir"
mkdir -p "$dir/munge" "$dir/state" "$dir/spool"
chmod 700 "$dir/munge"
mungekey --create --keyfile="$dir/munge/munge.key"
# munged refuses root-owned setups unless forced; this key and socket are private to $dir.
munged --force --socket="$dir/munge/socket" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
    --seed-file="$dir/munge/munged.seed"

cpus=$(nproc)
memory=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
cat >"$dir/slurm.conf" <<EOF
ClusterName=pelab
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
# cred_expire: how long a requeued job waits before it may start again (default 120 s).
AuthInfo=socket=$dir/munge/socket,cred_expire=10
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
# No cgroups: processes tracked by their parents, tasks not bound to cores.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
# No slurmdbd: job states come from squeue and scontrol, finished jobs kept 10 minutes.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.txt
MinJobAge=600
ReturnToService=2
MpiDefault=none
NodeName=localhost CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=local Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF

export SLURM_CONF=$dir/slurm.conf
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF" -N localhost
for _ in $(seq 100); do
    if [ "$(sinfo -h -n localhost -o %t 2>/dev/null)" = idle ]; then
        echo "local Slurm cluster up: 1 node, $cpus CPUs, ${memory} MB; export SLURM_CONF=$SLURM_CONF"
        exit 0
    fi
    sleep 0.1
done
echo "start-local-cluster.sh: the node did not come up in 10 s; see $dir/slurmctld.log and" \
     "$dir/slurmd.log" >&2
tail -5 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
exit 1
