#!/usr/bin/env bash
# Install and start a single-node SLURM (munge, slurmctld, slurmd) for the integration
# tests. Debian 12, run as root, no systemd: the daemons are started directly.
# Idempotent and fast when SLURM already answers.
set -euo pipefail

log() { echo "slurm-setup: $*" >&2; }
start=$(date +%s)
host=$(hostname -s)

node_ready() {
    # The node is usable once it is idle, mixed or allocated (not down/drained).
    sinfo --noheader --nodes="$host" --format=%t 2>/dev/null | grep -Eq '^(idle|mix|alloc)'
}

if command -v sinfo >/dev/null && node_ready; then
    log "SLURM is already running on $host"
    exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v munged >/dev/null; then
    log "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

# munge: one key, one daemon, run as the munge user (munged refuses root-owned setups).
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    log "creating a munge key"
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.1
    done
fi

# A single node with all of this machine's cores and most of its memory.
cpus=$(nproc)
mem_total=$(free -m | awk '/^Mem:/ {print $2}')
margin=$((mem_total / 10 > 512 ? mem_total / 10 : 512))
real_memory=$((mem_total - margin))
install -d /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
conf=/etc/slurm/slurm.conf
new_conf=$(
    cat <<EOF
# Written by appsleuth's .ci/slurm-setup.sh: one node, no accounting.
ClusterName=appsleuth-ci
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=600
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
NodeName=$host CPUs=$cpus RealMemory=$real_memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
)
if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$new_conf" ]; then
    printf '%s\n' "$new_conf" >"$conf"
    # A changed configuration needs fresh daemons.
    for pidfile in /run/slurmd.pid /run/slurmctld.pid; do
        if [ -s "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
    done
    sleep 1
fi

daemon_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if ! daemon_alive /run/slurmctld.pid; then
    log "starting slurmctld"
    slurmctld
fi
if ! daemon_alive /run/slurmd.pid; then
    log "starting slurmd"
    slurmd
fi

for i in $(seq 60); do
    if node_ready; then
        log "node $host is ready after $(($(date +%s) - start)) s"
        sinfo >&2
        exit 0
    fi
    # A node that came up drained or down (e.g. after a restart) is put back to work.
    if [ $((i % 5)) -eq 0 ]; then
        scontrol update nodename="$host" state=resume 2>/dev/null || true
    fi
    sleep 1
done
log "node $host did not become idle; sinfo says:"
sinfo -N -l >&2 || true
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
