"""`oberta bench engines`: items/s and latency of dense and sparse encoders on each engine, interleaved.

Every configuration (shape x model x engine x batch size) runs in short turns, round after round, so that
drift of the machine (other load, clock changes) spreads over all of them instead of biasing one. A configuration
that cannot run here (a peer whose optional packages are missing) is reported as skipped, with the reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from benchmarks.artifacts import SHAPES, Artifacts, build_artifacts
from benchmarks.peer_openvino import openvino_runner
from service.runtime.engines.base import Engine, EngineOptions

log = logging.getLogger(__name__)
Runner = Callable[[dict[str, np.ndarray]], object]


@dataclass
class Case:
    """One measured configuration."""

    shape: str
    model: str
    engine: str
    batch_size: int
    run: Runner
    info: dict[str, Any] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.shape} {self.model} {self.engine} b{self.batch_size}"


def make_inputs(batch_size: int, length: int, input_names: list[str], seed: int = 0) -> dict[str, np.ndarray]:
    """A full (unpadded) batch of random token ids."""
    rng = np.random.default_rng(seed)
    inputs = {
        "input_ids": rng.integers(1000, 30000, (batch_size, length), dtype=np.int64),
        "attention_mask": np.ones((batch_size, length), dtype=np.int64),
        "token_type_ids": np.zeros((batch_size, length), dtype=np.int64),
    }
    return {name: inputs[name] for name in input_names}


def _engine_runner(engine: Engine) -> Runner:
    return lambda inputs: engine.run(inputs)


def _torch_runner(model: torch.nn.Module) -> Runner:
    def run(inputs: dict[str, np.ndarray]) -> object:
        with torch.inference_mode():
            return model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits

    return run


def _load_engine(engine: str, path: Path, batch_size: int, length: int, threads: int | None,
                 exact_int8: bool = True) -> Engine:
    """DeepSparse compiled for the one measured shape, or ONNX Runtime (any file it runs, optimized or not; int8
    weights as uint8 where the CPU's int8 products saturate, unless ``exact_int8`` is off)."""
    if engine == "deepsparse":
        from service.runtime.engines.deepsparse_engine import DeepSparseEngine

        options = EngineOptions(max_length=length, max_batch_size=batch_size, threads=threads,
                                sequence_buckets=(length,), batch_buckets=(batch_size,))
        return DeepSparseEngine(path, options)
    from service.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine

    return OnnxRuntimeEngine(path, threads=threads, spinning=True,  # back-to-back runs: spinning threads are fastest
                             exact_int8=exact_int8)


CASES = (
    ("dense-fp32", "pytorch"),
    ("dense-fp32", "onnxruntime"),
    ("dense-int8", "ort-optimized"),
    ("dense-int8", "ort-fused"),
    ("dense-int8", "openvino"),
    ("sparse-int8", "deepsparse"),
    ("sparse-int8", "onnxruntime"),
)
"""(model, engine) pairs: ``ort-optimized`` is ONNX Runtime on the file its transformer optimizer made, ``ort-fused``
on the dense model in our own ONNX Runtime form (benchmarks/peer_ort.py)."""


def file_key(model: str, engine: str) -> str:
    """The artifacts' key of the file a case runs: the dense FP32 file is shared, the others are per engine."""
    return model if model == "dense-fp32" else f"{model}-{engine}"


def _runner(artifacts: Artifacts, model: str, engine: str, batch_size: int, length: int,
            threads: int | None) -> tuple[Runner, dict[str, Any]]:
    if engine == "pytorch":
        return _torch_runner(artifacts.torch_model), {}
    key = file_key(model, engine)
    notes = dict(artifacts.notes.get(key, {}))
    if engine == "openvino":
        run, info = openvino_runner(artifacts.files[key], batch_size, length, threads)
        return run, {**info, **notes}
    # The dense peers run as a user would run their files; the served models as the server runs them.
    loaded = _load_engine(engine, artifacts.files[key], batch_size, length, threads,
                          exact_int8=not model.startswith("dense"))
    return _engine_runner(loaded), {**loaded.info(), **notes}


SPARSE_ENGINES = ("deepsparse", "onnxruntime")
"""The engines a sparse INT8 model directory has a file for, one each."""


def build_cases(
    artifacts: Artifacts, batch_sizes: list[int], length: int, threads: int | None
) -> tuple[list[Case], list[dict[str, Any]]]:
    """Every (model, engine) pair of one shape at every batch size, the candidates' after the others, and the pairs
    skipped here (with the reason)."""
    cases, skipped = [], []
    candidate_pairs = [(name, engine) for name in artifacts.candidates for engine in SPARSE_ENGINES
                       if file_key(name, engine) in artifacts.files]
    for model, engine in (*CASES, *candidate_pairs):
        reason = artifacts.skipped.get(file_key(model, engine))
        if reason is not None:
            skipped.append({"shape": artifacts.shape.name, "model": model, "engine": engine, "reason": reason})
            continue
        for batch_size in batch_sizes:
            run, info = _runner(artifacts, model, engine, batch_size, length, threads)
            cases.append(Case(artifacts.shape.name, model, engine, batch_size, run, info))
    return cases, skipped


def measure(cases: list[Case], length: int, rounds: int, seconds_per_turn: float) -> None:
    """Warm each case up, then run all of them in turns for ``rounds`` rounds, recording call latencies."""
    inputs = {}
    for case in cases:
        names = ["input_ids", "attention_mask", "token_type_ids"]
        inputs[case.label] = make_inputs(case.batch_size, length, names)
        case.run(inputs[case.label])
    for _ in tqdm(range(rounds), desc="rounds"):
        for case in cases:
            turn_end = time.perf_counter() + seconds_per_turn
            while True:
                start = time.perf_counter()
                case.run(inputs[case.label])
                end = time.perf_counter()
                case.latencies.append(end - start)
                if end >= turn_end:
                    break


def summarize(case: Case) -> dict[str, Any]:
    """Throughput and latency percentiles of one case."""
    latencies = np.array(case.latencies)
    return {
        "shape": case.shape,
        "model": case.model,
        "engine": case.engine,
        "batch_size": case.batch_size,
        "calls": len(latencies),
        "items_per_second": case.batch_size * len(latencies) / float(latencies.sum()),
        "median_ms": float(np.median(latencies) * 1000),
        "p99_ms": float(np.percentile(latencies, 99) * 1000),
        "engine_info": case.info,
    }


def run_benchmark(
    shapes: list[str], sparse_model_files: dict[str, Path] | None, sparsity: float, batch_sizes: list[int],
    length: int, rounds: int, seconds_per_turn: float, threads: int | None, workdir: Path,
    candidates: dict[str, dict[str, Path]] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Build artifacts for each shape, measure all cases interleaved; returns one summary per case, and the cases
    skipped here with the reason. ``candidates`` (name -> engine -> file) are measured on the MiniLM shape only, as
    the sparse model is."""
    if threads:
        torch.set_num_threads(threads)
    cases: list[Case] = []
    skipped: list[dict[str, Any]] = []
    for name in shapes:
        minilm = name == "minilm"
        artifacts = build_artifacts(SHAPES[name], sparsity, workdir / name, sparse_model_files if minilm else None,
                                    candidates if minilm else None)
        built, missing = build_cases(artifacts, batch_sizes, length, threads)
        cases.extend(built)
        skipped.extend(missing)
    for note in skipped:
        log.warning("skipped %s %s %s: %s", note["shape"], note["model"], note["engine"], note["reason"])
    measure(cases, length, rounds, seconds_per_turn)
    return [summarize(case) for case in cases], skipped
