#!/usr/bin/env bash
# Run HERE (the development machine, which reaches the package registry) before a device check:
# builds .devcarry/ in the repository root, ignored by git, holding
#   whl/                   wheels (CPython 3.12, x86-64) of the dependencies the GPU machine's image
#                          lacks: pyautoattack, sqlmodel + SQLAlchemy + pydantic, opacus, cleanlab;
#   cifar10-jpeg.tar.gz    the CIFAR-10 JPEG archive from ../shared/datasets (never committed).
# The device call then names .devcarry in `carry` and runs benchmarks/device/gpu_check.sh.
# Together under the 64 MiB the device tool carries (pyautoattack's wheel loses its 44 MB example model).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
grep -qx '/.devcarry/' .git/info/exclude 2>/dev/null || echo '/.devcarry/' >> .git/info/exclude
rm -rf .devcarry && mkdir -p .devcarry/whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "${PYVER:-3.12}" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .devcarry/whl \
    pyautoattack==0.2.0 sqlmodel==0.0.50 SQLAlchemy==2.1.9 greenlet pydantic==2.14.4 pydantic-core==2.50.5 \
    annotated-types typing-inspection==0.4.5 opacus==1.6.0 cleanlab==2.9.0 termcolor==3.3.0
"$PY" - <<'PYEOF'
import glob, os, zipfile
src = glob.glob(".devcarry/whl/pyautoattack-*.whl")[0]
with zipfile.ZipFile(src) as zi, zipfile.ZipFile(src + ".slim", "w", zipfile.ZIP_DEFLATED) as zo:
    for item in zi.infolist():
        if "/examples/" not in item.filename:
            zo.writestr(item, zi.read(item.filename))
os.replace(src + ".slim", src)
PYEOF
cp "${CIFAR_TGZ:-../shared/datasets/cifar10-jpeg.tar.gz}" .devcarry/
du -sh .devcarry
