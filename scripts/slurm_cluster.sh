#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for trying `hydra/launcher=slurm` and for
# `make test-integration`: munged, slurmctld and slurmd started directly (no systemd), as root.
#
#   scripts/slurm_cluster.sh up       # installs slurm-wlm + munge (apt) if missing, writes the config, starts
#   scripts/slurm_cluster.sh status   # sinfo
#   scripts/slurm_cluster.sh down     # stops the daemons it started (the state dir stays for the logs)
#   eval "$(scripts/slurm_cluster.sh env)"   # SLURM_CONF for sbatch/squeue/scancel in this shell
#
# Everything lives in $NLPEXP_SLURM_DIR (default /tmp/nlpexp-slurm): slurm.conf, the daemons' logs and
# state. Clients find the cluster through SLURM_CONF=<dir>/slurm.conf. No accounting daemon (slurmdbd needs
# MySQL): sacct does not work, which submitit tolerates (it reads a job's result file).
set -euo pipefail

DIR=${NLPEXP_SLURM_DIR:-/tmp/nlpexp-slurm}
CONF=$DIR/slurm.conf
HOST=$(hostname -s)

need_root() {
    [[ $(id -u) -eq 0 ]] || { echo "error: $0 $1 needs root (it starts munged and the SLURM daemons)" >&2; exit 2; }
}

install_packages() {
    command -v slurmctld >/dev/null && command -v munged >/dev/null && return
    command -v apt-get >/dev/null || { echo "error: slurm-wlm and munge are not installed and there is no apt-get" >&2; exit 2; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

start_munge() {
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge /etc/munge
    [[ -s /etc/munge/munge.key ]] || runuser -u munge -- mungekey --create --keyfile /etc/munge/munge.key
    if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        runuser -u munge -- /usr/sbin/munged
        mkdir -p "$DIR" && cp /run/munge/munged.pid "$DIR/munged.pid"  # ours: `down` stops it (not one found running)
        for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return; sleep 0.1; done
        echo "error: munged did not start (see /var/log/munge/munged.log)" >&2; exit 1
    fi
}

write_config() {
    local cpus mem
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))  # MB, leave some to the OS
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
    cat > "$CONF" <<EOF
# Written by scripts/slurm_cluster.sh: one node, everything as root, no systemd, no cgroups, no accounting.
ClusterName=nlpexp
SlurmctldHost=$HOST
SlurmctldPort=6817
SlurmdPort=6818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
MaxArraySize=10000
InactiveLimit=0
KillWait=10
MinJobAge=300
SchedulerType=sched/backfill
NodeName=$HOST CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
}

up() {
    need_root up
    install_packages
    start_munge
    down quiet
    write_config
    # -c: no job of an earlier cluster (its processes gone with it, e.g. a killed test) holds the one node
    /usr/sbin/slurmctld -c -f "$CONF"
    /usr/sbin/slurmd -f "$CONF"
    export SLURM_CONF=$CONF
    for _ in $(seq 60); do
        if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            sinfo
            echo "up: export SLURM_CONF=$CONF"
            return
        fi
        scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
        sleep 1
    done
    echo "error: the node did not come up; logs in $DIR/log" >&2
    sinfo >&2 || true
    exit 1
}

down() {
    local pidfile
    local daemons=("$DIR/slurmd.pid" "$DIR/slurmctld.pid")
    [[ ${1:-} == quiet ]] || daemons+=("$DIR/munged.pid")
    for pidfile in "${daemons[@]}"; do
        [[ -s $pidfile ]] || continue
        local pid
        pid=$(cat "$pidfile")
        if kill "$pid" 2>/dev/null; then
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        fi
        rm -f "$pidfile"
    done
    [[ ${1:-} == quiet ]] || echo "down (logs and state in $DIR)"
}

case ${1:-} in
    up) up ;;
    down) down ;;
    status) SLURM_CONF=$CONF sinfo ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
