#!/usr/bin/env bash
# Bring up a single-node Slurm on this machine, on 127.0.0.1 only: munged, slurmctld and slurmd
# (one node, all its CPUs, partition "debug", cluster "samat-test"), for samat's Slurm tests and
# for trying `samat sweep --launcher slurm` on a laptop. No systemd needed.
#
#   scripts/slurm_up.sh          # as root; then: sinfo, sbatch, samat sweep ... --launcher slurm
#   scripts/slurm_down.sh        # stops what this started
#
# Installs Debian's slurm-wlm and munge with apt-get when they are missing (root + apt needed).
# State, logs and PIDs go to $SAMAT_SLURM_DIR (default: <repo>/.slurm, git-ignored); the
# configuration to $SLURM_CONF (default /etc/slurm/slurm.conf), which is only overwritten if an
# earlier run of this script wrote it. If Slurm already answers (sinfo), nothing is changed.
# Exit 0 when Slurm answers; otherwise exit 1 with the reason on stderr and in
# $SAMAT_SLURM_DIR/unavailable (the tests' skip message quotes it).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${SAMAT_SLURM_DIR:-$REPO/.slurm}
CONF=${SLURM_CONF:-/etc/slurm/slurm.conf}
MARK="# written by samat scripts/slurm_up.sh"
CTLD_PORT=${SAMAT_SLURM_CTLD_PORT:-6817}
SLURMD_PORT=${SAMAT_SLURM_SLURMD_PORT:-6818}

mkdir -p "$DIR"/{ctld,spool,log,run} || { echo "slurm_up: cannot create $DIR" >&2; exit 1; }
rm -f "$DIR/unavailable"
T0=$(date +%s.%N)
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
say() { echo "slurm_up: [$(elapsed) s] $*"; }
fail() { echo "$*" > "$DIR/unavailable"; echo "slurm_up: $*" >&2; exit 1; }
answers() { timeout 5 sinfo -h -o %T >/dev/null 2>&1; }
wait_for() {  # wait_for SECONDS COMMAND...: poll every 0.1 s until COMMAND succeeds
  local deadline=$(($(date +%s) + $1)); shift
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

if command -v sinfo >/dev/null && answers; then
  say "Slurm answers already ($(sinfo -h -o '%P %D %T' | head -1)); nothing changed"
  exit 0
fi
[ "$(id -u)" = 0 ] || fail "not root: starting munged, slurmctld and slurmd needs root (sudo $0)"

# ---- packages -----------------------------------------------------------------------------
missing=()
for bin in slurmctld slurmd sinfo sbatch srun munged; do
  command -v "$bin" >/dev/null || [ -x "/usr/sbin/$bin" ] || missing+=("$bin")
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null \
    || fail "${missing[*]} not installed and no apt-get here: install Slurm and munge yourself"
  say "installing slurm-wlm munge with apt-get (missing: ${missing[*]}; log $DIR/log/apt.log)"
  if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
         --no-install-recommends slurm-wlm munge; } > "$DIR/log/apt.log" 2>&1; then
    fail "apt-get install slurm-wlm munge failed: $(grep -E '^E:' "$DIR/log/apt.log" | head -1) (log $DIR/log/apt.log)"
  fi
  say "installed"
fi
export PATH=$PATH:/usr/sbin

# ---- munge (authentication; a Unix socket, no network) ---------------------------------------
if [ ! -s /etc/munge/munge.key ]; then           # Debian's munge postinst normally made it
  mungekey --create --force >/dev/null 2>&1 || fail "cannot create /etc/munge/munge.key"
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
fi
install -d -o munge -g munge -m 0755 /run/munge  # systemd's RuntimeDirectory; absent without it
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
if ! munge_ok; then
  runuser -u munge -- munged || fail "munged did not start (see /var/log/munge/munged.log)"
  wait_for 5 munge_ok || fail "munged does not answer (see /var/log/munge/munged.log)"
  cp /run/munge/munged.pid "$DIR/run/munged.pid"  # ours to stop in slurm_down.sh
fi
say "munged ok"

# ---- slurm.conf ---------------------------------------------------------------------------
if [ -e "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
  fail "$CONF exists and was not written by this script (a real cluster's?); set SLURM_CONF=<a new path> to bring up a test cluster beside it"
fi
HOST=$(hostname -s)
NCPU=$(nproc)
MEM=$(awk '/^MemTotal:/ { m = int($2 / 1024) - 1024; print (m > 512 ? m : 512) }' /proc/meminfo)
mkdir -p "$(dirname "$CONF")"
cat > "$CONF" <<CONF
$MARK (state in $DIR)
ClusterName=samat-test
SlurmctldHost=${HOST}(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
# bind to the address of SlurmctldHost / NodeAddr, not to every address of the machine
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# a requeued job may start again after 10 s instead of 120 s
AuthInfo=cred_expire=10
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
# no cgroups needed: plain process tracking, no task binding or accounting
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# schedule often, so that new and requeued jobs start within seconds
SchedulerParameters=bf_interval=1,sched_interval=2
# refuse impossible requests at submission instead of leaving them PENDING forever
EnforcePartLimits=ALL
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=10
Waittime=0
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${NCPU} RealMemory=${MEM} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

# ---- slurmctld + slurmd (foreground -D, detached with setsid) ------------------------------
# -c: start from a clean queue (jobs of an earlier bring-up would otherwise be restored)
setsid slurmctld -D -c -f "$CONF" > "$DIR/log/slurmctld.stdout" 2>&1 < /dev/null &
CTLD=$!
echo $CTLD > "$DIR/run/slurmctld.bgpid"
# ours must answer: a controller left running by someone else may hold the port (ours then dies)
ours_answers() { kill -0 "$CTLD" 2>/dev/null && scontrol ping >/dev/null 2>&1; }
wait_for 15 ours_answers && sleep 0.5 && kill -0 "$CTLD" 2>/dev/null \
  || fail "slurmctld did not start or does not answer after 15 s: $(tail -1 "$DIR/log/slurmctld.log" 2>/dev/null) (another slurmctld on port $CTLD_PORT? stop it, or set SAMAT_SLURM_CTLD_PORT)"
say "slurmctld ok"
setsid slurmd -D -f "$CONF" > "$DIR/log/slurmd.stdout" 2>&1 < /dev/null &
SLURMD=$!
echo $SLURMD > "$DIR/run/slurmd.bgpid"
idle() { kill -0 "$SLURMD" 2>/dev/null && [ "$(sinfo -h -o %T 2>/dev/null)" = idle ]; }
wait_for 20 idle \
  || fail "node not idle after 20 s (state: $(sinfo -h -o %T 2>&1 | head -1)): $(tail -1 "$DIR/log/slurmd.log" 2>/dev/null)"
say "slurmd ok: $(sinfo -h -o 'partition %P, %D node (%N), %c CPUs, %T')"
