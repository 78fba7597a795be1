#!/usr/bin/env bash
# The measurements of all-mpnet-base-v2 in models/README.md, on one core (taskset) and one thread everywhere:
# dense FP32 exports of all-mpnet-base-v2 and all-MiniLM-L6-v2 as sentence encoders, their STS-B Spearman (the whole
# STS-B train file) and SQuAD retrieval (2% of the articles) on ONNX Runtime, the MPNet graph on DeepSparse
# (fraction_of_supported_ops), and the files of a 90%-sparse INT8 MPNet (and MiniLM, for comparison). Results go to
# runs/mpnet-measure/ as JSON; about 30 minutes on one core. Needs tools/fetch_mpnet.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
DATA=${DATA:-../shared/data}
OUT=runs/mpnet-measure
export OMP_NUM_THREADS=1 NM_DISABLE_ANALYTICS=1 HF_HUB_OFFLINE=1 PYTHONPATH=$PWD
run() { taskset -c "${CORE:-0}" "$PYTHON" "$@"; }
mkdir -p "$OUT"
STS=(--train-file "$DATA/stsb/train.tsv" --validation-file "$DATA/stsb/train.tsv" --threads 1 --json)
RETRIEVAL=(--retrieval-file "$DATA/squad_v1/train-v1.1.explorer-derived.json.gz" --validation-fraction 0.02)
for model in all-mpnet-base-v2 all-MiniLM-L6-v2; do
  run -m oberta.cli export --task sentence-embedding --model "$model" --output "$OUT/$model-dense" --name "$model" \
    --max-length 128
  run -m oberta.cli evaluate --model "$OUT/$model-dense" "${STS[@]}" "${RETRIEVAL[@]}" > "$OUT/$model-dense-onnxruntime.json"
  run tools/sparse_int8_size.py --model "$model" --sparsity 0.9 --output "$OUT/$model-int8-90" \
    --calibration-file "$DATA/stsb/train.tsv" --threads 1 > "$OUT/$model-int8-90-size.json"
done
run -m oberta.cli evaluate --model "$OUT/all-mpnet-base-v2-dense" "${STS[@]}" --engine deepsparse \
  > "$OUT/all-mpnet-base-v2-dense-deepsparse.json"
run -m oberta.cli evaluate --model "$OUT/all-mpnet-base-v2-int8-90" "${STS[@]}" --engine deepsparse \
  > "$OUT/all-mpnet-base-v2-int8-90-deepsparse.json"
ls "$OUT"/*.json
