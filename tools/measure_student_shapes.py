"""How fast each student shape runs, before training one: layers kept, heads and neurons per layer, and the
sparsity and its pattern (single weights or 4-blocks).

For each shape, all-MiniLM-L6-v2 with a random 2-class head keeps the shape's layers, loses heads and neurons by
second-order scores on a few sentences (compression/structure.py), is magnitude-pruned to each --sparsity overall
in each --structure (single weights, or groups of 4 along the input dimension as DeepSparse's INT8 kernels favour),
exported (dead structures dropped) and quantized with the default recipe settings (DeepSparse: static INT8;
ONNX Runtime: fused-dynamic). Then, in one interleaved run at sequence length 128, each shape's DeepSparse and ONNX
Runtime files and the OpenVINO + NNCF INT8 model of the dense 6-layer model (the best dense peer on an AMX host)
are timed at batch 1 and 16. Speed only: the weights are not trained.

    python tools/measure_student_shapes.py --output runs/shapes L6 L3 L3-h6-n768
    python tools/measure_student_shapes.py --output runs/blocks L3-h6-n768 --sparsity 0.8 0.9 \
        --structure unstructured 4-block
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("NM_DISABLE_ANALYTICS", "1")

from transformers import AutoTokenizer, BertForSequenceClassification

from benchmarks.artifacts import CALIBRATION_TEXTS
from benchmarks.peer_openvino import openvino_int8, openvino_runner
from compression.base_models import resolve_base_model
from compression.export import export_model_dir, export_onnx, sample_inputs
from compression.pruning.pruner import Pruner, find_layers
from compression.quantize import quantize_for_engine
from compression.recipe import STRUCTURE_GROUPS, QuantizationRecipe
from compression.structure import keep_layers, prune_structures
from service.runtime.engines.base import EngineOptions
from service.runtime.engines.deepsparse_engine import DeepSparseEngine
from service.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine

SHAPES = {  # name: (layers kept, heads per layer, neurons per layer; None keeps all)
    "L6": ([0, 1, 2, 3, 4, 5], None, None),
    "L6-h6-n768": ([0, 1, 2, 3, 4, 5], 6, 768),
    "L6-h8-n768": ([0, 1, 2, 3, 4, 5], 8, 768),
    "L5-h8-n768": ([0, 1, 2, 4, 5], 8, 768),
    "L5-h8-n1024": ([0, 1, 2, 4, 5], 8, 1024),
    "L4-h8-n768": ([0, 1, 3, 5], 8, 768),
    "L3": ([0, 2, 4], None, None),
    "L3-h6-n768": ([0, 2, 4], 6, 768),
    "L3-h4-n512": ([0, 2, 4], 4, 512),
}
TEXTS = ["a gorgeous, witty, seductive movie.", "it is a dull and lifeless film with no point at all.",
         "the cast is good, but the story drags on without ever finding its heart."] * 4
LENGTH = 128
Runner = Callable[[dict[str, np.ndarray]], object]


def case_name(shape: str, sparsity: float, structure: str) -> str:
    """The directory and row name of one built case, e.g. ``L3-h6-n768-90-4-block``."""
    return f"{shape}-{round(sparsity * 100)}-{structure}"


def build(output: Path, names: list[str], sparsities: list[float], structures: list[str]) -> list[str]:
    """Each case's served model directory (shape, sparsity, structure), and the dense model's OpenVINO peer, under
    output; returns the cases' names."""
    base = resolve_base_model("all-MiniLM-L6-v2")
    tokenizer = AutoTokenizer.from_pretrained(base)
    recipe = QuantizationRecipe.model_validate({})
    calibration = [{k: v.numpy() for k, v in tokenizer(TEXTS, padding="max_length", max_length=LENGTH,
                                                        return_tensors="pt").items()}]
    cases = []
    for shape, sparsity, structure in itertools.product(names, sparsities, structures):
        name = case_name(shape, sparsity, structure)
        layers, heads, neurons = SHAPES[shape]
        torch.manual_seed(0)
        model = BertForSequenceClassification.from_pretrained(base, num_labels=2, attn_implementation="eager").eval()
        keep_layers(model, layers)
        if heads or neurons:
            prune_structures(model, [dict(tokenizer(TEXTS, padding=True, return_tensors="pt"))], heads, neurons)
        group = STRUCTURE_GROUPS[structure]
        Pruner(find_layers(model), scorer="magnitude", scope="global", group=group).prune(sparsity)
        directory = output / name
        export_model_dir(model, tokenizer, directory, name, LENGTH)
        fp32 = directory / "fp32.onnx"
        (directory / "model.onnx").rename(fp32)
        quantize_for_engine(fp32, directory / "model.deepsparse.onnx", "deepsparse", calibration,
                            settings=recipe.deepsparse)
        quantize_for_engine(fp32, directory / "model.onnx", "onnxruntime", [], settings=recipe.onnxruntime)
        print(f"built {name}", flush=True)
        cases.append(name)
    torch.manual_seed(0)
    dense = BertForSequenceClassification.from_pretrained(base, num_labels=2, attn_implementation="eager").eval()
    input_names = export_onnx(dense, tokenizer, output / "dense.onnx")
    openvino_int8(output / "dense.onnx", output / "openvino.xml",
                  [sample_inputs(tokenizer, input_names, (text,)) for text in CALIBRATION_TEXTS])
    return cases


def _inputs(batch: int) -> dict[str, np.ndarray]:
    ids = np.random.default_rng(0).integers(1000, 30000, (batch, LENGTH))
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def measure(output: Path, names: list[str], rounds: int, seconds: float, threads: int) -> None:
    """Items/s of every case, the best turn of ``rounds`` interleaved turns of ``seconds`` each."""
    cases: dict[tuple[str, int], tuple[Runner, dict[str, np.ndarray]]] = {}
    for batch in (1, 16):
        inputs = _inputs(batch)
        peer, _ = openvino_runner(output / "openvino.xml", batch, LENGTH, threads)
        cases[("openvino dense INT8 (6 layers)", batch)] = (peer, inputs)
        for name in names:
            options = EngineOptions(max_length=LENGTH, max_batch_size=batch, threads=threads,
                                    sequence_buckets=(LENGTH,), batch_buckets=(batch,))
            deepsparse = DeepSparseEngine(output / name / "model.deepsparse.onnx", options)
            onnxruntime = OnnxRuntimeEngine(output / name / "model.onnx", threads=threads)
            cases[(f"{name} deepsparse", batch)] = (deepsparse.run, inputs)
            cases[(f"{name} onnxruntime", batch)] = (onnxruntime.run, inputs)
    rates: dict[tuple[str, int], list[float]] = {}
    for _ in range(rounds):
        for key, (run, inputs) in cases.items():
            run(inputs)
            calls, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                run(inputs)
                calls += 1
            rates.setdefault(key, []).append(calls * key[1] / (time.perf_counter() - start))
    for key in sorted(rates, key=lambda k: (k[1], k[0])):
        print(f"batch {key[1]:<3} {max(rates[key]):8.1f} items/s  {key[0]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shapes", nargs="+", choices=sorted(SHAPES), help="shapes to build and time")
    parser.add_argument("--output", type=Path, required=True, help="directory for the built files")
    parser.add_argument("--sparsity", type=float, nargs="+", default=[0.9],
                        help="overall sparsity of each shape, one case each (0.9)")
    parser.add_argument("--structure", nargs="+", choices=sorted(STRUCTURE_GROUPS), default=["unstructured"],
                        help="pruning pattern, one case each (unstructured)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per case per round (1)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="engine threads (all cores)")
    args = parser.parse_args()
    cases = build(args.output, args.shapes, args.sparsity, args.structure)
    measure(args.output, cases, args.rounds, args.seconds, args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
