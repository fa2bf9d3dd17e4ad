#!/usr/bin/env bash
# A one-node SLURM cluster on loopback, for trying medcli's job arrays (and its test suite).
#
#   apt-get install -y slurmctld slurmd slurm-client munge     # Debian/Ubuntu; installs nothing else
#   eval "$(scripts/slurm_local.sh start /tmp/myslurm)"          # prints: export SLURM_CONF=...
#   sbatch --array=0-3 examples/slurm_array.sh; squeue
#   scripts/slurm_local.sh stop /tmp/myslurm
#
# Everything lives in the state folder (default: a new temporary one): a private MUNGE key and
# socket, slurm.conf, the controller's state, spool, pid and log files. Nothing is written under
# /etc or /var, no system service is touched, and the ports are unprivileged (SLURM_LOCAL_PORT,
# default 16817, and the next one), so it runs beside a real installation.
#
# The configuration is the least a scheduler needs, and says what a real site does differently:
#   * one node, 127.0.0.1, SLURM_LOCAL_CPUS CPUs (default 8, more than the machine may have:
#     config_overrides lets tasks share cores, so that eight array tasks can start at once);
#   * no accounting (no slurmdbd, so no sacct): a job's state and exit code are read with
#     'scontrol show job' (kept MinJobAge=3600 s after the end) or from the jobcomp file;
#   * no cgroups (ProctrackType=proctrack/linuxproc, TaskPlugin=task/none), which containers and CI
#     runners rarely allow: --mem is recorded, not enforced;
#   * SlurmUser/SlurmdUser are whoever runs this script. As root (CI), jobs run as the submitting
#     user; as another user, slurmd cannot switch users, so only that user's jobs run.
#
# Environment: SLURM_LOCAL_CPUS, SLURM_LOCAL_PORT, SLURM_LOCAL_MEM (MB, default: the machine's).
set -euo pipefail

usage() { echo "usage: $0 start|stop|status [STATE_DIR]" >&2; exit 2; }
cmd=${1:-}; [ -n "$cmd" ] || usage
dir=${2:-}

need() {
    for prog in "$@"; do
        command -v "$prog" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "$prog" >/dev/null 2>&1 || {
            echo "slurm_local: $prog not found: apt-get install -y slurmctld slurmd slurm-client munge" >&2; exit 3; }
    done
    export PATH=$PATH:/usr/sbin:/sbin
}

# Wait up to $1 seconds for a command to succeed.
wait_for() {
    local t=$1; shift
    for _ in $(seq $(( t * 5 ))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    return 1
}

start() {
    need munged mungekey slurmctld slurmd scontrol sinfo
    [ -n "$dir" ] || dir=$(mktemp -d "${TMPDIR:-/tmp}/slurm_local.XXXXXX")
    mkdir -p "$dir"/{munge,state,spool,log}
    dir=$(cd "$dir" && pwd)
    chmod 700 "$dir" "$dir/munge"
    local port=${SLURM_LOCAL_PORT:-16817}
    local cpus=${SLURM_LOCAL_CPUS:-8}
    local mem=${SLURM_LOCAL_MEM:-$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)}
    local user; user=$(id -un)
    local sock=$dir/munge/munge.socket

    # MUNGE signs every message between the commands and the daemons: a private key and socket.
    [ -f "$dir/munge/munge.key" ] || mungekey --create --keyfile="$dir/munge/munge.key"
    chmod 600 "$dir/munge/munge.key"
    # --force: munged refuses to run as root without it (CI runs as root).
    munged --socket="$sock" --key-file="$dir/munge/munge.key" --pid-file="$dir/munge/munged.pid" \
        --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed" --force

    cat > "$dir/slurm.conf" <<EOF
# Written by scripts/slurm_local.sh: a one-node cluster on loopback.
ClusterName=medcli-local
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$(( port + 1 ))
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups, no accounting database: what containers and CI runners allow.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
MpiDefault=none
SwitchType=switch/none
# Cores are shared out one by one; the node may claim more CPUs than it has.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
ReturnToService=2
# Finished jobs stay visible to 'scontrol show job' for an hour (there is no sacct).
MinJobAge=3600
MaxArraySize=1001
KillWait=5
InactiveLimit=0
SlurmdTimeout=60
NodeName=localnode NodeAddr=127.0.0.1 NodeHostname=localnode CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localnode Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF=$dir/slurm.conf
    slurmctld -f "$SLURM_CONF"
    slurmd -f "$SLURM_CONF" -N localnode
    if ! wait_for 30 scontrol ping || ! wait_for 30 bash -c "sinfo -h -N -o %t | grep -Eq '^(idle|mix|alloc)'"; then
        echo "slurm_local: the cluster did not come up; logs in $dir/log:" >&2
        tail -n 20 "$dir"/log/*.log >&2 || true
        stop_all
        exit 1
    fi
    echo "export SLURM_CONF=$SLURM_CONF"
}

stop_pid() {  # stop_pid PIDFILE: TERM, wait, KILL
    local f=$1 pid
    [ -f "$f" ] || return 0
    pid=$(cat "$f" 2>/dev/null || true)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || { rm -f "$f"; return 0; }
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"
}

stop_all() {
    # Jobs first (their processes are children of slurmstepd), then the daemons.
    if [ -f "$dir/slurm.conf" ] && scontrol -V >/dev/null 2>&1; then
        SLURM_CONF=$dir/slurm.conf scancel --quiet --full --user "$(id -un)" 2>/dev/null || true
    fi
    stop_pid "$dir/slurmd.pid"
    stop_pid "$dir/slurmctld.pid"
    stop_pid "$dir/munge/munged.pid"
}

case $cmd in
    start) start ;;
    stop)
        [ -n "$dir" ] && [ -d "$dir" ] || { echo "slurm_local: stop needs the state folder given to start" >&2; exit 2; }
        export PATH=$PATH:/usr/sbin:/sbin
        stop_all ;;
    status)
        [ -n "$dir" ] || usage
        SLURM_CONF=$dir/slurm.conf scontrol ping && SLURM_CONF=$dir/slurm.conf sinfo ;;
    *) usage ;;
esac
