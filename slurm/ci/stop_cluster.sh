#!/usr/bin/env bash
# Stop the CI cluster started by start_cluster.sh: cancel its jobs, then stop exactly the
# daemons whose pids start_cluster.sh recorded in $SCALING_SLURM_DIR/pids (nothing else).
set -uo pipefail
DIR=${SCALING_SLURM_DIR:-/tmp/scaling-slurm-ci}
PIDS="$DIR/pids"
if [ ! -f "$PIDS" ]; then
  echo "[stop_cluster] nothing to stop ($PIDS not found)"
  exit 0
fi
export SLURM_CONF="$DIR/slurm.conf"
if scontrol ping >/dev/null 2>&1; then
  scancel --full --quiet $(squeue -h -o %A 2>/dev/null) 2>/dev/null || true
  for _ in $(seq 30); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.5; done
fi
# stop in reverse start order: slurmd, slurmctld, munged
tac "$PIDS" | while read -r name pid; do
  [ -n "${pid:-}" ] || continue
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "$name"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    echo "[stop_cluster] stopped $name ($pid)"
  fi
done
rm -f "$PIDS" "$DIR/slurmctld.pid" "$DIR/slurmd.pid"
rm -rf "$DIR/state" "$DIR/spool"
echo "[stop_cluster] done (logs kept in $DIR/log)"
