#!/usr/bin/env bash
# The training stages of the QA, sentiment and sentence-embedding models on a lent GPU machine (tools/gpu/README.md).
# Runs from the repository root with .gpu/ (made by tools/gpu/prepare.sh) beside the code; writes logs and
# packed trained models to $OUT. Training stops BUDGET seconds after the start, and a run stopped that way
# still sends back its newest checkpoint: give the command at least 90 s more than BUDGET to pack and return.
set -uo pipefail
: "${OUT:?set OUT to the folder that receives logs and packed models}"
export NM_DISABLE_ANALYTICS=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=true PYTHONUNBUFFERED=1 TQDM_DISABLE=1
BUDGET=${BUDGET:-500}
MAX_TRAIN=${MAX_TRAIN:-}            # smoke runs: first N training examples only
QA_RECIPE=${QA_RECIPE:-obert-gpu-squad}
SST_RECIPES=${SST_RECIPES:-obert-gpu-sst2}
EMBED_RECIPE=${EMBED_RECIPE:-obert-gpu-embeddings}
TASKS=${TASKS:-qa sst2}             # which chains run (in parallel on the one GPU): qa, sst2, embeddings
BASE=.gpu/minilm-fp16
DATA=${DATA:-.gpu/data}
LIMIT=()
[ -n "$MAX_TRAIN" ] && LIMIT=(--max-train-examples "$MAX_TRAIN")

if [ -d .gpu/whl ] && ! python3 -c "import pydantic" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
mkdir -p runs
left() { local n=$((BUDGET - SECONDS)); echo $((n > 1 ? n : 1)); }
oberta() {
  timeout --signal=KILL "$(left)" python3 -c 'import sys; from oberta.cli import main; sys.exit(main())' "$@"
}
stamp() { echo "[$(date +%T) +${SECONDS}s] $*"; }

# Pack RUN/trained, or when training was stopped, RUN's newest checkpoint, as $OUT/STEM.tar.xz.partN.
pack_run() {
  local run=$1 stem=$2 source
  source=$run/trained
  if [ ! -f "$run/training_result.json" ]; then
    source=$(ls -d "$run"/checkpoint-* 2>/dev/null | sort -V | tail -1)
    stem=$stem-partial
  fi
  [ -n "$source" ] && python3 tools/gpu/transfer.py pack "$source" "$BASE" "$OUT/$stem"
}

python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__,
  "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'

question_answering() {
  local qa=(--task question-answering --train-file "$DATA/squad.json.xz" --doc-stride 128 --max-query-length 64)
  stamp "QA teacher"
  oberta finetune "${qa[@]}" "${LIMIT[@]}" --model "$BASE" --max-length 384 --epochs 2 --learning-rate 1e-4 \
    --batch-size 64 --eval-steps 100000 --save-steps 100000 --output runs/squad-teacher || return 1
  stamp "QA student"
  mkdir -p runs/squad-student && cp runs/squad-teacher/final/oberta_training.json runs/squad-student/teacher_training.json
  oberta compress "${qa[@]}" "${LIMIT[@]}" --recipe "$QA_RECIPE" --model runs/squad-teacher/final --stage train \
    --output runs/squad-student --name qa
  pack_run runs/squad-student qa
  stamp "QA done"
}

sentiment() {
  local sst=(--train-file "$DATA/sst2.tsv.xz" --label-names negative,positive)
  stamp "SST-2 teacher"
  oberta finetune "${sst[@]}" "${LIMIT[@]}" --model "$BASE" --epochs 1 --eval-steps 100000 --save-steps 100000 \
    --output runs/sst2-teacher || return 1
  local recipe name
  for recipe in $SST_RECIPES; do
    name=$(basename "$recipe" .yaml)
    (
      stamp "SST-2 student $name"
      mkdir -p "runs/sst2-$name" && cp runs/sst2-teacher/final/oberta_training.json "runs/sst2-$name/teacher_training.json"
      oberta compress "${sst[@]}" "${LIMIT[@]}" --recipe "$recipe" --model runs/sst2-teacher/final --stage train \
        --output "runs/sst2-$name" --name sentiment
      pack_run "runs/sst2-$name" "sst2-$name"
      stamp "SST-2 student $name done"
    ) > "runs/sst2-$name.log" 2>&1 &
  done
  wait
  cat runs/sst2-*.log
}

# The dense base model is the teacher of its own compressed embeddings: no fine-tuning, no labels.
sentence_embeddings() {
  stamp "embedding student"
  oberta compress --task sentence-embedding --recipe "$EMBED_RECIPE" --model "$BASE" "${LIMIT[@]}" \
    --train-file "$DATA/corpus.txt.xz" --validation-file "$DATA/stsb.tsv.xz" --retrieval-file "$DATA/squad.json.xz" \
    --stage train --output runs/embeddings --name embeddings
  pack_run runs/embeddings embeddings
  stamp "embeddings done"
}

[[ " $TASKS " == *" qa "* ]] && question_answering > "$OUT/qa.log" 2>&1 &
[[ " $TASKS " == *" embeddings "* ]] && sentence_embeddings > "$OUT/embeddings.log" 2>&1 &
[[ " $TASKS " == *" sst2 "* ]] && sentiment > "$OUT/sst2.log" 2>&1 &
wait
stamp "all done"
ls -la "$OUT"
