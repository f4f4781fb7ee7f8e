#!/usr/bin/env bash
# Start a real single-node Slurm cluster for `scaling`'s slurm test tier (and for trying the
# launcher by hand): munged + slurmctld + slurmd on loopback, 8 fake GPUs, no accounting.
#
#   bash slurm/ci/start_cluster.sh            # ~15 s; prints the line to source
#   source /tmp/scaling-slurm-ci/env.sh       # SLURM_CONF for sinfo/sbatch/scaling launch
#   python -m pytest tests/slurm --slurm -q
#   bash slurm/ci/stop_cluster.sh             # stops exactly what this script started
#
# SCALING_SLURM_DIR (default /tmp/scaling-slurm-ci) holds the config, state, spool, logs, the
# munge socket and the pid files. Ports: SCALING_SLURMCTLD_PORT (6917), SCALING_SLURMD_PORT (6918).
# Installs Debian's slurm-wlm and munge with apt when they are missing.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DIR=${SCALING_SLURM_DIR:-/tmp/scaling-slurm-ci}
CTLD_PORT=${SCALING_SLURMCTLD_PORT:-6917}
SLURMD_PORT=${SCALING_SLURMD_PORT:-6918}
T0=$(date +%s.%N)

log() { echo "[start_cluster] $*"; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if alive "$DIR/slurmctld.pid" && alive "$DIR/slurmd.pid" && SLURM_CONF="$DIR/slurm.conf" sinfo -h >/dev/null 2>&1; then
  log "already running ($DIR); source $DIR/env.sh"
  exit 0
fi
if [ -e "$DIR/pids" ]; then  # a half-started or crashed previous cluster of ours: clean it first
  bash "$HERE/stop_cluster.sh" >/dev/null 2>&1 || true
fi

# 1. packages
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  log "installing slurm-wlm and munge (apt)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq slurm-wlm munge >/dev/null
fi

# 2. directories, fake GPUs, config for this host
mkdir -p "$DIR"/{state,spool,log,munge,gpus}
chmod 700 "$DIR/munge"
for i in 0 1 2 3 4 5 6 7; do : > "$DIR/gpus/gpu$i"; done
HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
for f in slurm.conf gres.conf; do
  sed -e "s|@HOST@|$HOST|g" -e "s|@DIR@|$DIR|g" -e "s|@CPUS@|$CPUS|g" -e "s|@MEM_MB@|$MEM_MB|g" \
      -e "s|@CTLD_PORT@|$CTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" "$HERE/$f.in" > "$DIR/$f"
done
export SLURM_CONF="$DIR/slurm.conf"
echo "export SLURM_CONF=$DIR/slurm.conf" > "$DIR/env.sh"
: > "$DIR/pids"

# 3. munge on a private socket (the system munged, if any, is left alone)
KEY=/etc/munge/munge.key
if [ ! -r "$KEY" ]; then
  KEY="$DIR/munge/munge.key"
  [ -s "$KEY" ] || { dd if=/dev/urandom of="$KEY" bs=1024 count=1 status=none; chmod 400 "$KEY"; }
fi
munged --force --socket="$DIR/munge/munge.socket" --key-file="$KEY" --pid-file="$DIR/munge/munged.pid" \
  --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed"
for _ in $(seq 50); do [ -s "$DIR/munge/munged.pid" ] && break; sleep 0.1; done
echo "munged $(cat "$DIR/munge/munged.pid")" >> "$DIR/pids"

# 4. slurmctld and slurmd (both daemonise and write their pid files)
slurmctld -c -i
for _ in $(seq 100); do [ -s "$DIR/slurmctld.pid" ] && break; sleep 0.1; done
echo "slurmctld $(cat "$DIR/slurmctld.pid")" >> "$DIR/pids"
slurmd -N "$HOST"
for _ in $(seq 100); do [ -s "$DIR/slurmd.pid" ] && break; sleep 0.1; done
echo "slurmd $(cat "$DIR/slurmd.pid")" >> "$DIR/pids"

# 5. wait for the node to be idle, then a smoke test that fails fast on a hung cluster
state=""
for _ in $(seq 120); do
  state=$(sinfo -h -N -o "%t" 2>/dev/null | head -1 || true)
  [ "$state" = "idle" ] && break
  if [ "$state" = "drain" ] || [ "$state" = "down" ] || [ "$state" = "down*" ]; then
    scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
  fi
  sleep 0.5
done
if [ "$state" != "idle" ]; then
  log "node $HOST is '${state:-absent}', not idle after 60 s; logs in $DIR/log"
  tail -5 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" 2>/dev/null || true
  exit 1
fi
if ! timeout 60 srun -N1 -n1 --mem=100 -t 1 true; then
  log "smoke test 'srun true' failed or hung; logs in $DIR/log"
  exit 1
fi
T1=$(date +%s.%N)
log "up in $(awk "BEGIN {printf \"%.1f\", $T1 - $T0}") s: node $HOST, $CPUS CPUs, ${MEM_MB} MB, 8 fake GPUs, partition ci"
log "use it with: source $DIR/env.sh"
