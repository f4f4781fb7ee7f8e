#!/usr/bin/env bash
# The prepared GPU check (issue 22): perf/gpu_check.py on one GPU, after installing what the GPU
# machine lacks from wheels carried with the working tree (the machine has torch and transformers,
# no network). docs/training.md, "The prepared GPU check", says how to run it.
#
#   bash perf/gpu_check.sh --fetch-wheels [DIR] [--python-version 3.12]   # here, with network: fill DIR
#   bash perf/gpu_check.sh [--wheels DIR] [-- ARGS for gpu_check.py]      # there: install, then check
#   bash perf/gpu_check.sh --cpu                                          # the dry mode (tiny, CPU)
#
# DIR defaults to build/gpu_check_wheels (build/ is git-ignored: carry it explicitly). The JSON goes
# to $OUT/gpu_check.json ($OUT defaults to ./gpu_check_out). Under 8 minutes on one H100.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=build/gpu_check_wheels
PY=${PYTHON:-python}

# pure-python wheels (any Python) at the versions the tests ran (tests/constraints.txt)
PURE="trl==1.16.0 peft==0.21.2 accelerate==1.15.0 math-verify==0.9.0 latex2sympy2_extended==1.11.0
antlr4-python3-runtime==4.13.2 hjson==3.1.0 py-cpuinfo==9.0.0 einops==0.8.2 pydantic==2.13.4
datasets==5.2.0 dill==0.4.1 fsspec==2026.9.0"
# binary wheels, for the GPU machine's Python (--python-version)
BINARY="msgpack==1.2.4 ninja==1.13.2 pydantic-core==2.46.4 xxhash==4.1.0 multiprocess==0.70.19"
SDIST="deepspeed==0.19.8"  # built on the GPU machine against its own torch (ops JIT-compile at first use)
# import name -> distribution, installed only when the import fails there
MODULES="trl:trl peft:peft accelerate:accelerate math_verify:math-verify latex2sympy2_extended:latex2sympy2_extended
antlr4:antlr4-python3-runtime datasets:datasets dill:dill fsspec:fsspec multiprocess:multiprocess xxhash:xxhash
hjson:hjson cpuinfo:py-cpuinfo msgpack:msgpack ninja:ninja einops:einops pydantic:pydantic pydantic_core:pydantic-core
deepspeed:deepspeed"

fetch() {
  local dir=$1 pyver=$2
  mkdir -p "$dir"
  # shellcheck disable=SC2086
  "$PY" -m pip download --no-deps -q -d "$dir" $PURE
  # shellcheck disable=SC2086
  "$PY" -m pip download --no-deps -q -d "$dir" --only-binary=:all: --python-version "$pyver" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 $BINARY
  # shellcheck disable=SC2086
  "$PY" -m pip download --no-deps --no-binary=:all: -q -d "$dir" $SDIST
  du -sh "$dir"
  echo "carry $dir with the working tree (64 MiB in all); pyarrow/pandas are not fetched (the GPU machine's own)"
}

install_missing() {
  local dir=$1 missing=()
  for pair in $MODULES; do
    mod=${pair%%:*} dist=${pair##*:}
    "$PY" -c "import $mod" >/dev/null 2>&1 || missing+=("$dist")
  done
  if [ ${#missing[@]} -eq 0 ]; then echo "gpu_check: every package is installed"; return; fi
  echo "gpu_check: installing from $dir: ${missing[*]}"
  [ -d "$dir" ] || { echo "gpu_check: no wheel directory $dir (run --fetch-wheels on a machine with network)" >&2; return 1; }
  for dist in "${missing[@]}"; do
    # one at a time: a package that does not build (deepspeed) is recorded by gpu_check.py, not fatal here
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --find-links "$dir" "$dist" \
      || echo "gpu_check: could not install $dist (gpu_check.py records what that skips)"
  done
}

case "${1:-}" in
  --fetch-wheels)
    shift
    dir=$WHEELS pyver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then dir=$1; shift; fi
    if [ "${1:-}" = "--python-version" ]; then pyver=$2; shift 2; fi
    fetch "$dir" "$pyver"
    ;;
  --cpu)
    shift
    exec "$PY" perf/gpu_check.py --cpu "$@"
    ;;
  *)
    if [ "${1:-}" = "--wheels" ]; then WHEELS=$2; shift 2; fi
    [ "${1:-}" = "--" ] && shift
    install_missing "$WHEELS"
    exec "$PY" perf/gpu_check.py "$@"
    ;;
esac
