#!/usr/bin/env bash
# Creates benches/peer/.venv with the Python packages the PyTorch comparison
# needs (torch, numpy, safetensors). Safe to run again: an existing venv is
# kept and only missing packages are installed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "creating $venv" >&2
    "$python" -m venv "$venv"
fi

if "$venv/bin/python" -c 'import torch, numpy, safetensors' 2>/dev/null; then
    echo "torch, numpy and safetensors already installed in $venv" >&2
else
    "$venv/bin/python" -m pip install --upgrade pip
    "$venv/bin/python" -m pip install torch numpy safetensors
fi

"$venv/bin/python" -c 'import torch; print("torch", torch.__version__)'
