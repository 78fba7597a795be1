#!/usr/bin/env bash
# Fills .gpu/ (git-ignored through .git/info/exclude) with what tools/gpu/run.sh needs on a GPU machine that
# reaches no network: the base encoder in float16, the training data of the chains in TASKS (as run.sh's TASKS;
# only those, since the working tree and .gpu/ must fit in 64 MiB together), and wheels of the packages it lacks.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-../shared/data}
PYTHON=${PYTHON:-.venv/bin/python}
TASKS=${TASKS:-qa sst2}
has() { [[ " $TASKS " == *" $1 "* ]]; }
rm -rf .gpu/data
mkdir -p .git/info .gpu/data .gpu/whl
grep -qx "/.gpu/" .git/info/exclude 2>/dev/null || echo "/.gpu/" >> .git/info/exclude
"$PYTHON" tools/gpu/transfer.py base all-MiniLM-L6-v2 .gpu/minilm-fp16
# xz: a quarter smaller than gzip, which the 64 MiB need with the embeddings' corpus
if has qa || has embeddings; then  # the embeddings' retrieval validation carves SQuAD articles
  gzip -dc "$DATA/squad_v1/train-v1.1.explorer-derived.json.gz" | xz -9 > .gpu/data/squad.json.xz
fi
if has sst2; then xz -9 -c "$DATA/sst2/train.tsv" > .gpu/data/sst2.tsv.xz; fi
if has embeddings; then  # the corpus of models/README.md's second embedding build; STS-B train is the validation
  "$PYTHON" -m oberta.cli corpus --whole --max-words 200 --max-per-file 30000 --output .gpu/data/corpus.txt \
    "$DATA/sst2/train.tsv" "$DATA/imdb/train.csv.gz" "$DATA/squad_v1/train-v1.1.explorer-derived.json.gz" \
    "$DATA/mrpc/train.tsv" "$DATA/rte/train.tsv" "$DATA/conll2003/train.txt"
  xz -9 -f .gpu/data/corpus.txt
  xz -9 -c "$DATA/stsb/train.tsv" > .gpu/data/stsb.tsv.xz
fi
# The GPU image has torch, transformers, onnx and onnxruntime for Python 3.12, but not pydantic.
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .gpu/whl \
  pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5
du -sh .gpu
