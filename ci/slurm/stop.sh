#!/usr/bin/env bash
# Stop the test cluster of ci/slurm/start.sh: slurmd, slurmctld, then munged, each by its PID.
set -uo pipefail
SLURM_CI_DIR=${SLURM_CI_DIR:-/var/tmp/nvfp4bench-slurm}

stop_pid() { # name pid: SIGTERM, wait up to 10 s, then SIGKILL
    local name=$1 pid=$2
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid"
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || {
            echo "stopped $name ($pid)"
            return 0
        }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null && echo "killed $name ($pid)"
}

for daemon in slurmd slurmctld; do
    pidfile=$SLURM_CI_DIR/$daemon.pid
    [[ -f $pidfile ]] && stop_pid "$daemon" "$(cat "$pidfile")"
    rm -f "$pidfile"
done
# munged writes its pid next to its socket.
for pidfile in /run/munge/munged.pid /var/run/munge/munged.pid; do
    if [[ -f $pidfile ]]; then
        stop_pid munged "$(cat "$pidfile")"
        break
    fi
done
# start.sh writes these on every start. Left behind, they point at a controller that no longer
# runs, and every `import snakemake.api` (the SLURM plugin) then waits ~9 s for it.
rm -f /etc/slurm/slurm.conf /etc/slurm/gres.conf
exit 0
