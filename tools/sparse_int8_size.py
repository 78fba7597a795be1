"""What the files of a sparse INT8 sentence-embedding model weigh, without training one.

The base encoder's Linear layers are pruned by magnitude to --sparsity (the layers `oberta compress` prunes), then
exported and quantized with a recipe's quantization settings as `oberta compress` does, into a served model
directory (card included, so `oberta evaluate --engine deepsparse` can compile it and report DeepSparse's
fraction_of_supported_ops). ONNX files store a pruned weight as a dense zero, so a file's size follows from the
shapes alone, not from which weights were pruned; the accuracy of this untrained model says nothing about a trained
one. Prints as JSON each file's megabytes (also gzipped, for the INT8 files) and weight sparsity, and its largest
tensors.

    python tools/sparse_int8_size.py --model all-mpnet-base-v2 --sparsity 0.9 --output runs/mpnet-int8-90 \\
        --calibration-file ../shared/data/stsb/train.tsv
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import shutil
import sys
from pathlib import Path
from typing import Any

import onnx
import torch
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compression.base_models import loading_from, resolve_base_model
from compression.data import load_texts
from compression.embedding_model import load_embedding_model, model_settings
from compression.evaluate import batches
from compression.export import ONNX_FILE, export_model_dir
from compression.pruning.pruner import Pruner, find_layers
from compression.quantize import quantize_model_dir, weight_sparsity
from compression.recipe import load_recipe
from compression.stages.card import file_megabytes
from service.runtime.card import save_card

FP32_FILE = "model.fp32.onnx"
TASK = "sentence-embedding"


def largest_tensors(path: Path, count: int = 3) -> list[dict[str, Any]]:
    """The file's largest stored tensors: name, shape, element type and megabytes."""
    arrays = [(tensor.name, numpy_helper.to_array(tensor)) for tensor in onnx.load(str(path)).graph.initializer]
    arrays.sort(key=lambda item: item[1].nbytes, reverse=True)
    return [{"name": name, "shape": list(array.shape), "type": str(array.dtype),
             "megabytes": round(array.nbytes / 1e6, 2)} for name, array in arrays[:count]]


def gzip_megabytes(path: Path) -> float:
    """The file's size gzipped (level 6), in MB: what its runs of pruned zeros save when stored compressed."""
    return round(len(gzip.compress(path.read_bytes(), compresslevel=6)) / 1e6, 2)


def calibration_batches(tokenizer: Any, texts: list[str], input_names: list[str], max_length: int,
                        pad_id: int) -> list[dict[str, Any]]:
    """The texts tokenized and padded to one length in batches of 16, as the quantize stage calibrates."""
    encoded = tokenizer(texts, truncation=True, max_length=max_length, padding=False)
    features = [{name: encoded[name][i] for name in input_names} for i in range(len(texts))]
    length = max(len(feature["input_ids"]) for feature in features)
    return batches(features, input_names, 16, pad_id, length)


def build(model: str, sparsity: float, recipe: str, output: Path, calibration_file: str, samples: int,
          max_length: int, seed: int) -> dict[str, Any]:
    """Prune, export and quantize into ``output``; returns the sizes, sparsities and largest tensors."""
    from transformers import AutoTokenizer

    path = resolve_base_model(model)
    encoder = load_embedding_model(path)
    pruner = Pruner(find_layers(encoder), scorer="magnitude")
    pruner.prune(sparsity)
    pruner.remove_hooks()
    with loading_from(path):
        tokenizer = AutoTokenizer.from_pretrained(path)
    command = "python " + " ".join(sys.argv)
    card = export_model_dir(encoder, tokenizer, output, output.name, max_length, task=TASK,
                            task_settings=model_settings(encoder).model_dump(),
                            build={"command": command, "source": model, "magnitude_sparsity": sparsity})
    fp32 = output / FP32_FILE
    shutil.move(str(output / ONNX_FILE), fp32)
    texts = load_texts(calibration_file)
    texts = random.Random(seed).sample(texts, min(samples, len(texts)))
    quantization = load_recipe(recipe).quantization
    calibration = calibration_batches(tokenizer, texts, card.inputs, max_length, tokenizer.pad_token_id or 0)
    files = quantize_model_dir(fp32, output, calibration, quantization)
    sparsities = {name: round(float(weight_sparsity(output / name)["sparsity"]), 4)
                  for name in sorted({FP32_FILE, *files.values()})}
    save_card(card.model_copy(update={"files": files, "precision": "int8",
                                      "sparsity": sparsities[files["deepsparse"]]}), output)
    return {
        "command": command,
        "megabytes": file_megabytes(output, {"fp32": FP32_FILE, **files}),
        "gzip_megabytes": {name: gzip_megabytes(output / name) for name in sorted(set(files.values()))},
        "weight_sparsity": sparsities,
        "largest_tensors": {name: largest_tensors(output / name) for name in sorted({FP32_FILE, *files.values()})},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="base sentence-transformers model (path or alias)")
    parser.add_argument("--sparsity", type=float, default=0.9, help="share of the encoder's Linear weights pruned")
    parser.add_argument("--recipe", default="obert-cpu-embeddings", help="recipe whose quantization settings apply")
    parser.add_argument("--output", required=True, type=Path, help="served model directory to write")
    parser.add_argument("--calibration-file", required=True, help="texts to calibrate on (.txt, .tsv, ...)")
    parser.add_argument("--calibration-samples", type=int, default=64, help="texts drawn for calibration (64)")
    parser.add_argument("--max-length", type=int, default=128, help="served sequence length (128)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the calibration sample (42)")
    parser.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = build(args.model, args.sparsity, args.recipe, args.output, args.calibration_file,
                   args.calibration_samples, args.max_length, args.seed)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
