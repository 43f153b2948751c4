#!/usr/bin/env bash
# Stop what scripts/slurm_up.sh started: cancel the test cluster's jobs, stop slurmd and
# slurmctld, and munged if slurm_up.sh started it, by the PIDs it recorded in
# $SAMAT_SLURM_DIR/run (default <repo>/.slurm/run); remove the slurm.conf it wrote. Logs stay in
# $SAMAT_SLURM_DIR/log. Does nothing to a Slurm this script's bring-up did not start.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${SAMAT_SLURM_DIR:-$REPO/.slurm}
CONF=${SLURM_CONF:-/etc/slurm/slurm.conf}
MARK="# written by samat scripts/slurm_up.sh"

pids=()
signal_stop() {  # signal_stop PIDFILE NAME: SIGTERM the recorded process if it is still NAME
  local file=$1 name=$2 pid
  [ -s "$file" ] || return 0
  pid=$(cat "$file"); rm -f "$file"
  [ "$(ps -o comm= -p "$pid" 2>/dev/null)" = "$name" ] || return 0  # gone, or PID reused
  kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
}

if [ -s "$DIR/run/slurmctld.bgpid" ] && [ -f "$CONF" ] && grep -qF "$MARK" "$CONF"; then
  jobs=$(timeout 5 squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
  if [ -n "${jobs// /}" ]; then
    echo "slurm_down: cancelling job(s) $jobs"
    # shellcheck disable=SC2086
    timeout 10 scancel $jobs 2>/dev/null
    for _ in $(seq 1 100); do
      [ -z "$(timeout 5 squeue -h -t R,CG -o %A 2>/dev/null)" ] && break; sleep 0.1
    done
  fi
fi
signal_stop "$DIR/run/slurmd.bgpid" slurmd
signal_stop "$DIR/run/slurmctld.bgpid" slurmctld
signal_stop "$DIR/run/munged.pid" munged
for pid in ${pids[@]+"${pids[@]}"}; do  # each takes 1-2 s to shut down; wait up to 10 s, then SIGKILL
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "slurm_down: pid $pid still alive after 10 s: SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null
  fi
done
if [ -f "$CONF" ] && grep -qF "$MARK" "$CONF"; then
  rm -f "$CONF"
fi
echo "slurm_down: stopped (logs in $DIR/log)"
exit 0
