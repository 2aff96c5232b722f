#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for tests/test_slurm.py and for trying `rlvr sweep --launcher
# submitit_slurm` without a real cluster. Debian/Ubuntu, as root:
#
#   sudo tests/slurm/start_cluster.sh          # install (apt-get) if needed, configure, start; idempotent
#   sudo tests/slurm/start_cluster.sh --stop   # stop the daemons it started (munged, slurmctld, slurmd)
#
# What it does (SLURM's "Quick Start Administrator Guide", https://slurm.schedmd.com/quickstart_admin.html):
#   1. installs slurmd, slurmctld, munge and slurm-client with apt-get when one of them is missing;
#   2. writes /etc/slurm/slurm.conf: this host as the controller and the only node (its name from `hostname -s`,
#      its CPUs from `nproc`, 90% of its memory), one partition `debug`, root as SlurmUser, no cgroups
#      (proctrack/linuxproc, task/none: containers often have no writable cgroup tree), consumable CPUs
#      (select/cons_tres, CR_CPU), and no accounting (sacct then fails, squeue still answers);
#   3. writes a munge key when there is none, and starts munged (as user munge), slurmctld and slurmd;
#   4. waits until `sinfo` shows the node idle (or busy), at most 60 s.
# A slurm.conf that this script did not write is never overwritten (it would be a real cluster's): exit 1.
#
# Exit codes: 0 running; 1 the cluster did not come up (the daemons' logs are named); 2 not root;
# 3 SLURM is not installed and apt-get is unavailable or failed.
# Prints `rlvr-slurm: started` or `rlvr-slurm: already running` on success (tests/test_slurm.py reads it).
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARK="# written by rlvr tests/slurm/start_cluster.sh"
STATE=/var/lib/slurm
LOGS=/var/log/slurm
PIDS=/run/rlvr-slurm

say() { echo "rlvr-slurm: $*"; }
die() { echo "rlvr-slurm: error: $2" >&2; exit "$1"; }

[ "$(id -u)" = 0 ] || die 2 "run as root (it installs packages and starts system daemons)"

stop_pidfile() {  # kill the daemon whose pid file this script's daemons wrote, wait for it to go
  local file=$1 pid
  [ -s "$file" ] || return 0
  pid=$(cat "$file")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -f "$file"
}

if [ "${1:-}" = "--stop" ]; then
  stop_pidfile "$PIDS/slurmd.pid"
  stop_pidfile "$PIDS/slurmctld.pid"
  stop_pidfile /run/munge/munged.pid
  say "stopped"
  exit 0
fi
[ $# -eq 0 ] || die 1 "unknown argument '$1'; use no argument to start, --stop to stop"

# 1. packages
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
    || ! command -v sbatch >/dev/null; then
  command -v apt-get >/dev/null || die 3 "SLURM is not installed and there is no apt-get to install it"
  say "installing slurmd slurmctld munge slurm-client"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq slurmd slurmctld munge slurm-client; } >/tmp/rlvr-slurm-apt.log 2>&1 \
    || die 3 "apt-get install failed; see /tmp/rlvr-slurm-apt.log"
fi

# 2. slurm.conf
HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
  die 1 "$CONF exists and was not written by this script (a real cluster's?); not touching it"
fi
mkdir -p /etc/slurm "$STATE/slurmctld" "$STATE/slurmd" "$LOGS" "$PIDS"
NEW=$(cat <<EOF
$MARK
ClusterName=rlvr-test
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
SlurmdParameters=config_overrides
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$PIDS/slurmctld.pid
SlurmdPidFile=$PIDS/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
)
CHANGED=0
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$NEW" ]; then
  printf '%s\n' "$NEW" >"$CONF"
  CHANGED=1
fi

# 3. munge, then the SLURM daemons
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom of=/etc/munge/munge.key bs=128 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/lib/munge /var/log/munge
chown munge:munge /run/munge /var/lib/munge /var/log/munge
running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if [ "$CHANGED" = 1 ]; then  # a new slurm.conf: restart the SLURM daemons this script started
  stop_pidfile "$PIDS/slurmd.pid"
  stop_pidfile "$PIDS/slurmctld.pid"
fi
WAS_UP=1
if ! running /run/munge/munged.pid; then
  WAS_UP=0
  runuser -u munge -- /usr/sbin/munged || die 1 "munged did not start; see /var/log/munge/munged.log"
fi
if ! running "$PIDS/slurmctld.pid"; then
  WAS_UP=0
  slurmctld || die 1 "slurmctld did not start; see $LOGS/slurmctld.log"
fi
if ! running "$PIDS/slurmd.pid"; then
  WAS_UP=0
  slurmd || die 1 "slurmd did not start; see $LOGS/slurmd.log"
fi

# 4. wait for the node
for _ in $(seq 120); do
  state=$(sinfo -h -N -n "$HOST" -o %t 2>/dev/null | head -1 || true)
  case "$state" in
    idle|mix|alloc|comp) break ;;
    down*|drain*|drng*) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 0.5
done
case "$state" in
  idle|mix|alloc|comp) ;;
  *) die 1 "node $HOST is '${state:-not listed}' after 60 s; see $LOGS/slurmctld.log and $LOGS/slurmd.log" ;;
esac
if [ "$WAS_UP" = 1 ]; then say "already running"; else say "started"; fi
say "node $HOST, $CPUS CPUs, partition debug; stop it with: $0 --stop"
