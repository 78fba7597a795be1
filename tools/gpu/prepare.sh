#!/usr/bin/env bash
# Fills .gpu/ (git-ignored through .git/info/exclude) with what tools/gpu/run.sh needs on a GPU machine that
# reaches no network: the base encoder in float16, the training data, and wheels of the packages it lacks.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-../shared/data}
PYTHON=${PYTHON:-.venv/bin/python}
mkdir -p .git/info .gpu/data .gpu/whl
grep -qx "/.gpu/" .git/info/exclude 2>/dev/null || echo "/.gpu/" >> .git/info/exclude
"$PYTHON" tools/gpu/transfer.py base all-MiniLM-L6-v2 .gpu/minilm-fp16
cp "$DATA/squad_v1/train-v1.1.explorer-derived.json.gz" .gpu/data/squad.json.gz
gzip -9 -c "$DATA/sst2/train.tsv" > .gpu/data/sst2.tsv.gz
# The GPU image has torch, transformers, onnx and onnxruntime for Python 3.12, but not pydantic.
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .gpu/whl \
  pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5
du -sh .gpu
