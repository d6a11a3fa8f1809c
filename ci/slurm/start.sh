#!/usr/bin/env bash
# Start a one-node SLURM cluster on localhost for tests/test_slurm.py (CI, as root, no systemd).
#
# munged + slurmctld + slurmd, no accounting (status queries go through squeue), one partition
# "debug", one fake GPU (gres.conf File=/dev/null) so that --gpus / --gres requests are accepted
# and counted like on a GPU cluster. Installs Debian's slurm and munge with apt-get if missing.
# State, logs and pid files live in $SLURM_CI_DIR (default /var/tmp/nvfp4bench-slurm), wiped on
# every start, so a node drained by an earlier run comes back idle. Stop with ci/slurm/stop.sh.
#
# See ../shared/SLURM_NOTES.md for why each setting is what it is.
set -euo pipefail

start_ns=$(date +%s%N)
elapsed() { echo "$(((($(date +%s%N) - start_ns) / 1000000)))" | awk '{printf "%.1f", $1 / 1000}'; }
say() { echo "[slurm-ci +$(elapsed)s] $*"; }

SLURM_CI_DIR=${SLURM_CI_DIR:-/var/tmp/nvfp4bench-slurm}
PARTITION=${SLURM_CI_PARTITION:-debug}
# Well above the status poll interval: finished jobs must stay visible to squeue until seen.
MIN_JOB_AGE=${SLURM_CI_MIN_JOB_AGE:-600}

if [[ $(id -u) -ne 0 ]]; then
    echo "ci/slurm/start.sh: must run as root (it installs packages and writes /etc/slurm)" >&2
    exit 1
fi

# Already up (a second start in the same CI job): leave it alone.
if [[ -f $SLURM_CI_DIR/slurmctld.pid && -f $SLURM_CI_DIR/slurmd.pid ]] &&
    kill -0 "$(cat "$SLURM_CI_DIR/slurmctld.pid")" 2>/dev/null &&
    kill -0 "$(cat "$SLURM_CI_DIR/slurmd.pid")" 2>/dev/null &&
    [[ $(sinfo -h -N -o %T 2>/dev/null) == idle* ]]; then
    say "already running (node $(sinfo -h -N -o '%N %T'))"
    exit 0
fi

missing=()
for tool in slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client munged:munge; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || [[ -x /usr/sbin/${tool%%:*} ]] || missing+=("${tool#*:}")
done
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
    say "installed"
fi

node=$(hostname -s)
rm -rf "$SLURM_CI_DIR"
mkdir -p "$SLURM_CI_DIR"/{state,spool,log} /etc/slurm

# munge: the package made /etc/munge/munge.key; munged refuses to start twice.
mkdir -p /run/munge
chown munge:munge /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    if [[ ! -s /etc/munge/munge.key ]]; then
        /usr/sbin/mungekey --create --force 2>/dev/null ||
            dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.1
    done
fi
munge -n | unmunge >/dev/null
say "munged up"

# The node as slurmd sees it (CPUs, sockets, memory), plus one GPU.
node_line=$(/usr/sbin/slurmd -C | head -n 1)
cat >/etc/slurm/slurm.conf <<CONF
# Written by nvfp4bench ci/slurm/start.sh: a one-node test cluster, not for production.
ClusterName=nvfp4bench-ci
SlurmctldHost=${node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=${MIN_JOB_AGE}
KillWait=5
GresTypes=gpu
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
StateSaveLocation=${SLURM_CI_DIR}/state
SlurmdSpoolDir=${SLURM_CI_DIR}/spool
SlurmctldPidFile=${SLURM_CI_DIR}/slurmctld.pid
SlurmdPidFile=${SLURM_CI_DIR}/slurmd.pid
SlurmctldLogFile=${SLURM_CI_DIR}/log/slurmctld.log
SlurmdLogFile=${SLURM_CI_DIR}/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
${node_line} NodeAddr=127.0.0.1 Gres=gpu:1 State=UNKNOWN
PartitionName=${PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
cat >/etc/slurm/gres.conf <<CONF
# A GPU without a device: Slurm 22.05 drops a GPU with no File= and rejects a regular file.
NodeName=${node} Name=gpu File=/dev/null
CONF

/usr/sbin/slurmctld
/usr/sbin/slurmd
say "slurmctld and slurmd started, waiting for node ${node} to be idle"
for _ in $(seq 600); do
    state=$(sinfo -h -N -o %T 2>/dev/null || true)
    [[ $state == idle* ]] && break
    if [[ $state == drain* || $state == down* ]]; then
        scontrol update nodename="$node" state=resume 2>/dev/null || true
    fi
    sleep 0.1
done
if [[ $(sinfo -h -N -o %T 2>/dev/null) != idle* ]]; then
    echo "ci/slurm/start.sh: node ${node} is not idle: $(sinfo -N -l 2>&1)" >&2
    tail -n 20 "$SLURM_CI_DIR"/log/*.log >&2 || true
    exit 1
fi
say "cluster up: $(sinfo -h -o '%P %D %T %G')"
echo "slurm-ci start-up time: $(elapsed) s"
