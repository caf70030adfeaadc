#!/usr/bin/env bash
# The device command (run THERE, from the repository root, with .devcarry carried; see prepare.sh):
#   device run: command "bash benchmarks/device/gpu_check.sh", carry [".devcarry"], timeout_s 540
# Installs the carried wheels and this project (offline) under /tmp, then runs gpu_check.py,
# whose log and JSON land in $OUT.
set -eo pipefail
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .devcarry/whl/*.whl
"$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/cb .
export PYTHONPATH=/tmp/cb:/tmp/site PYTHONUNBUFFERED=1
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" | tee "$OUT/versions.txt"
"$PY" benchmarks/gpu_check.py --data .devcarry/cifar10-jpeg.tar.gz --out "$OUT" "$@" 2>&1 | tee "$OUT/stdout.txt"
