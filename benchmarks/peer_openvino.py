"""The dense INT8 model a user makes with OpenVINO and NNCF (the optional extra ``peers``).

The FP32 ONNX file is converted with ``openvino.convert_model``, quantized by ``nncf.quantize`` with the transformer
preset on calibration inputs, and compiled for the CPU per measured shape: batch 1 with the LATENCY hint (one request
uses every thread); larger batches with the THROUGHPUT hint, the batch split over the requests it asks for, run at
once (a single request would run on one stream's share of the threads), or with LATENCY where it does not split
evenly.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

MISSING = "openvino and nncf are not installed: pip install 'oberta[peers]'"

OpenVinoRunner = Callable[[Mapping[str, np.ndarray]], list[np.ndarray]]


def openvino_missing() -> str | None:
    """Why the OpenVINO peer cannot be built here, or None when it can."""
    if importlib.util.find_spec("openvino") is None or importlib.util.find_spec("nncf") is None:
        return MISSING
    return None


def openvino_int8(fp32_path: Path, output_path: Path, calibration: list[dict[str, np.ndarray]]) -> Path:
    """Convert and quantize the FP32 file; writes OpenVINO IR (``output_path`` .xml and its .bin) and returns it."""
    import nncf
    import openvino as ov

    nncf.set_log_level(logging.WARNING)
    model = ov.convert_model(str(fp32_path))
    quantized = nncf.quantize(
        model, nncf.Dataset(calibration), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calibration)
    )
    ov.save_model(quantized, str(output_path))
    return output_path


def hint_for(batch_size: int) -> str:
    """The performance hint for a batch size: LATENCY for single items, THROUGHPUT for batches."""
    return "LATENCY" if batch_size == 1 else "THROUGHPUT"


def _compile(core: Any, path: Path, batch: int, length: int, hint: str, threads: int | None) -> Any:
    model = core.read_model(str(path))
    model.reshape({port.get_any_name(): [batch, length] for port in model.inputs})
    config: dict[str, Any] = {"PERFORMANCE_HINT": hint}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return core.compile_model(model, "CPU", config)


def openvino_runner(
    path: Path, batch_size: int, length: int, threads: int | None
) -> tuple[OpenVinoRunner, dict[str, Any]]:
    """A runner of full [batch_size, length] batches on the CPU, compiled for that shape, and its settings."""
    import openvino as ov

    core = ov.Core()
    hint = hint_for(batch_size)
    compiled = _compile(core, path, batch_size, length, hint, threads)
    requests = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    if requests > 1 and batch_size % requests == 0:
        compiled = _compile(core, path, batch_size // requests, length, hint, threads)
    elif requests > 1:  # the batch does not split evenly: one request, then with every thread
        hint, requests = "LATENCY", 1
        compiled = _compile(core, path, batch_size, length, hint, threads)
    infer_requests = [compiled.create_infer_request() for _ in range(requests)]
    outputs = len(compiled.outputs)

    def run(inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        rows = len(next(iter(inputs.values()))) // requests
        for index, request in enumerate(infer_requests):
            request.start_async({name: value[index * rows : (index + 1) * rows] for name, value in inputs.items()})
        for request in infer_requests:
            request.wait()
        return [np.concatenate([request.get_output_tensor(output).data for request in infer_requests])
                for output in range(outputs)]

    info = {"version": ov.get_version(), "hint": hint, "requests": requests, "threads": threads or "default"}
    return run, info
