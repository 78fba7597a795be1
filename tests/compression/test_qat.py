"""Quantization-aware training: the fake quantization rounds as the INT8 files do, its ranges reach the DeepSparse
file, and `oberta compress` with ``quantization.method: qat`` trains, holds the masks, resumes and compares."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.quant_utils import compute_scale_zp
from safetensors.torch import load_file

from compression.compress import STATIC_COMPARISON, _ship_the_better, compress
from compression.export import export_onnx
from compression.pruning.pruner import ENCODER_LINEARS, Pruner, find_layers
from compression.qat import FakeQuantization, fake_quantize_weight, load_activation_ranges, uint8_scale_zero
from compression.quantize import BatchReader, integer_matmuls, onnx_scope, quantize_for_engine, range_overrides
from compression.quantizer_logs import quiet_quantizer
from compression.recipe import QuantizationRecipe, Recipe, StudentRecipe
from compression.run_clock import CLOCK_FILE
from compression.stages.qat import QAT_CHECKPOINTS, QAT_TRAINED, HoldMasksSaveRanges
from compression.structure_compaction import STRUCTURES_FILE
from service.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine
from service.runtime.errors import ConfigError
from tests.compression.test_compress import _config, tiny_recipe
from tests.tiny_models import tiny_classifier, tiny_tokenizer

NAMES = ("input_ids", "attention_mask", "token_type_ids")
TEXTS = ["a gorgeous, witty, seductive movie.", "dull.", "the cast is good, but the story drags on and on."]


def _layers(model: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    return {layer.name: layer.module for layer in find_layers(model, (ENCODER_LINEARS,))}


def test_weights_round_per_output_channel_to_symmetric_int8_and_zeros_stay_zero() -> None:
    weight = torch.randn(6, 10)
    weight[0, :3] = 0.0
    weight[2] *= 50  # one row far wider than the others keeps its own scale
    rounded = fake_quantize_weight(weight)
    scales = weight.abs().amax(dim=1, keepdim=True) / 127
    steps = rounded / scales
    torch.testing.assert_close(steps, steps.round(), atol=1e-4, rtol=0)  # on each row's own grid
    assert float((rounded - weight).abs().div(scales).max()) <= 0.5 + 1e-5
    assert bool((rounded[0, :3] == 0).all())


@pytest.mark.parametrize(("low", "high"), [(-1.5, 3.0), (0.2, 4.0), (-2.0, -0.5), (0.0, 0.0)])
def test_input_scale_and_zero_point_are_onnxruntimes(low: float, high: float) -> None:
    scale, zero = uint8_scale_zero(low, high)
    expected_zero, expected_scale = compute_scale_zp(np.float32(low), np.float32(high), np.uint8(0), np.uint8(255))
    assert scale == pytest.approx(float(expected_scale), rel=1e-6) and zero == int(expected_zero)


def test_fake_quantization_attaches_observes_holds_and_detaches() -> None:
    model = tiny_classifier("bert").eval()
    tokenizer = tiny_tokenizer("bert")
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    keys = set(model.state_dict())
    with torch.no_grad():
        plain = model(**batch).logits
        quantization = FakeQuantization(_layers(model), averaging_constant=0.5)
        quantization.attach()
        model.train()
        model(**batch)
        first = dict(quantization.observed_ranges())
        model(**{k: v[:1] for k, v in batch.items()})  # a second, different batch moves the ranges halfway
        moved = quantization.observed_ranges()
        model.eval()
        simulated = model(**batch).logits
        assert quantization.observed_ranges() == moved  # evaluation holds them
        quantization.detach()
        again = model(**batch).logits
    assert len(first) == 12 and first != moved
    assert not torch.equal(simulated, plain) and torch.allclose(simulated, plain, atol=0.05)
    torch.testing.assert_close(again, plain)
    assert set(model.state_dict()) == keys  # nothing of the simulation is saved with the model


def test_scopes_follow_the_exporters_node_names() -> None:
    assert onnx_scope("bert.encoder.layer.11.output.dense") == "bert/encoder/layer.11/output/dense"


def _exported(tmp_path: Path) -> tuple[torch.nn.Module, Path]:
    model = tiny_classifier("bert").eval()
    Pruner(find_layers(model), scorer="magnitude", scope="per-layer").prune(0.5)
    path = tmp_path / "fp32.onnx"
    with torch.no_grad():
        export_onnx(model, tiny_tokenizer("bert"), path)
    return model, path


def test_ranges_become_the_input_ranges_of_the_deepsparse_file(tmp_path: Path) -> None:
    model, fp32 = _exported(tmp_path)
    ranges = {name: (-1.0 - i / 10, 2.0 + i / 10) for i, name in enumerate(_layers(model))}
    overrides = range_overrides(fp32, ranges)
    assert len(overrides) == 8  # query, key and value read one tensor: 4 inputs a layer, 2 layers
    shared = [ranges[f"bert.encoder.layer.0.attention.self.{n}"] for n in ("query", "key", "value")]
    [union] = overrides["/model/bert/embeddings/LayerNorm/Add_1_output_0"]
    assert union["rmin"] == pytest.approx(min(low for low, _ in shared))
    assert union["rmax"] == pytest.approx(max(high for _, high in shared))
    with pytest.raises(ValueError, match=r"layer\.7\.output\.dense: expected one MatMul"):
        range_overrides(fp32, {"bert.encoder.layer.7.output.dense": (0.0, 1.0)})

    tokenizer = tiny_tokenizer("bert")
    batch = dict(tokenizer(TEXTS, padding=True, return_tensors="np"))
    settings = QuantizationRecipe.model_validate({}).deepsparse.model_copy(update={"per_channel": True})
    out = quantize_for_engine(fp32, tmp_path / "qat.onnx", "deepsparse", [batch], settings=settings,
                              activation_ranges=ranges)
    graph = onnx.load(str(out)).graph
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    output_dense = ranges["bert.encoder.layer.1.output.dense"]
    expected_scale, _ = uint8_scale_zero(*output_dense)
    quantizers = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    scales = {float(initializers[n.input[1]]) for n in quantizers if n.input[1] in initializers}
    assert any(abs(s - expected_scale) < 1e-7 for s in scales)


class _HiddenStates(torch.nn.Module):
    """A BERT encoder whose one output is its last hidden state (the layers QAT simulates, and nothing after)."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.model = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
                ) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state


def test_the_simulation_computes_what_the_int8_layers_compute(tmp_path: Path) -> None:
    """With the simulated ranges, ONNX Runtime's INT8 weight layers (per-column weights, integer products) give the
    fake-quantized encoder's hidden states, a thousand times closer than the FP32 encoder's (products exact as
    served, also on a CPU without VNNI)."""
    encoder = _HiddenStates(tiny_classifier("bert").bert).eval()
    Pruner(find_layers(encoder), scorer="magnitude", scope="per-layer").prune(0.5)
    batch = tiny_tokenizer("bert")(TEXTS, padding=True, return_tensors="pt")
    inputs = tuple(batch[name] for name in NAMES)
    fp32 = tmp_path / "encoder.onnx"
    with torch.no_grad():
        torch.onnx.export(encoder, inputs, str(fp32), input_names=list(NAMES), output_names=["hidden"],
                          opset_version=14, dynamo=False)
        plain = encoder(*inputs).numpy()
        quantization = FakeQuantization(_layers(encoder))
        quantization.attach()
        simulated = encoder(*inputs).numpy()  # in evaluation the first batch sets the ranges
    feed = {name: value.numpy() for name, value in batch.items()}
    with quiet_quantizer():
        quantize_static(str(fp32), str(tmp_path / "int8.onnx"), BatchReader([feed]), quant_format=QuantFormat.QOperator,
                        op_types_to_quantize=["MatMul"], per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, extra_options={
                            "WeightSymmetric": True, "MatMulConstBOnly": True,
                            "TensorQuantOverrides": range_overrides(fp32, quantization.observed_ranges())})
    model = onnx.load(str(tmp_path / "int8.onnx"))
    assert integer_matmuls(model) == 12
    onnx.save(model, str(tmp_path / "integer.onnx"))
    int8 = OnnxRuntimeEngine(tmp_path / "integer.onnx", threads=1).run(feed)[0]  # products exact on any CPU
    assert np.linalg.norm(int8 - simulated) < np.linalg.norm(int8 - plain) / 1000


def qat_recipe() -> Recipe:
    recipe = tiny_recipe()
    return recipe.model_copy(update={"quantization": QuantizationRecipe.model_validate({
        "method": "qat", "calibration_samples": 16, "qat": {"epochs": 1.0, "learning_rate": 1e-4},
        "deepsparse": {"int8_attention": True, "integer_matmuls": True, "per_channel": True},
    })})


def test_qat_needs_per_column_weights_in_the_deepsparse_file() -> None:
    with pytest.raises(ValueError, match="per_channel: true"):
        QuantizationRecipe.model_validate({"method": "qat"})


def test_compress_with_qat_ships_its_files_and_compares_them_with_static(dense_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    card = compress(_config(qat_recipe(), dense_dir, run))
    assert card is not None and card.precision == "int8"
    shipped = card.build["qat"]["shipped"]
    for engine, name in card.files.items():
        for kind in ("qat_int8", "static_int8"):
            assert 0.0 <= card.metrics[f"{kind}_{engine}_graph_accuracy"] <= 1.0
        assert card.metrics[f"int8_{engine}_graph_accuracy"] == card.metrics[
            f"{shipped[engine]}_int8_{engine}_graph_accuracy"]
        static_file = (run / STATIC_COMPARISON / name).read_bytes()
        assert ((run / "model" / name).read_bytes() == static_file) == (shipped[engine] == "static")
    assert 0.0 <= card.metrics["student_qat_simulated_int8_accuracy"] <= 1.0
    assert card.metrics["fp32_onnx_accuracy"] == card.metrics["student_qat_fp32_accuracy"]  # the QAT model's
    assert card.build["qat"]["layers"] == 12 and card.build["qat"]["epochs"] == 1.0
    assert card.sparsity == pytest.approx(0.8, abs=0.01)  # the masks held through QAT
    trained = load_file(str(run / "trained" / "model.safetensors"))
    qat = load_file(str(run / QAT_TRAINED / "model.safetensors"))
    name = "bert.encoder.layer.0.intermediate.dense.weight"
    assert torch.equal(qat[name] == 0, trained[name] == 0) and not torch.equal(qat[name], trained[name])
    ranges = load_activation_ranges(run / QAT_TRAINED)
    assert len(ranges) == 12 and all(low <= 0.0 <= high or low < high for low, high in ranges.values())

    checkpoints = sorted((run / QAT_CHECKPOINTS).glob("checkpoint-*"))
    assert checkpoints and (checkpoints[-1] / "activation_ranges.json").is_file()
    again = compress(replace(_config(qat_recipe(), dense_dir, run), stage="export"))
    assert again is not None and again.metrics == card.metrics  # the export stage reads qat-trained/ back
    saved = json.loads((run / "training_result.json").read_text())
    assert {**saved["build"]["qat"], "shipped": shipped} == card.build["qat"]  # the export adds what it shipped

    # A rerun resumes both stages with no steps left: the time of the earlier sittings stays in the card.
    clock = json.loads((run / CLOCK_FILE).read_text())
    assert clock["sittings"] == {"teacher_logits": 1, "training": 1, "qat": 1}
    clock["seconds"].update(training=5000.0, qat=700.0)
    (run / CLOCK_FILE).write_text(json.dumps(clock))
    rerun = compress(_config(qat_recipe(), dense_dir, run))
    assert rerun is not None and rerun.metrics == card.metrics
    assert 5000 <= rerun.build["training_wall_clock_seconds"] < 5000 + 120
    assert 700 <= rerun.build["qat"]["training_wall_clock_seconds"] < 700 + 60
    assert rerun.build["wall_clock"]["sittings"] == {"teacher_logits": 1, "training": 2, "qat": 2}  # logits kept


def test_each_engine_ships_the_better_file_static_being_the_fallback(tmp_path: Path) -> None:
    model_dir, static = tmp_path / "model", tmp_path / "static"
    files = {"deepsparse": "model.deepsparse.onnx", "onnxruntime": "model.onnx"}
    for folder in (model_dir, static):
        folder.mkdir()
        for name in files.values():
            (folder / name).write_text(f"{folder.name} {name}")
    metrics: dict[str, Any] = {
        "qat_int8_deepsparse_graph_f1": 0.80, "qat_int8_deepsparse_graph_recall": 0.7,
        "static_int8_deepsparse_graph_f1": 0.81, "static_int8_deepsparse_graph_recall": 0.6,
        "qat_int8_onnxruntime_graph_f1": 0.82, "static_int8_onnxruntime_graph_f1": 0.82,
    }
    assert _ship_the_better(model_dir, static, files, metrics, "f1") == {"deepsparse": "static",
                                                                         "onnxruntime": "qat"}
    assert (model_dir / "model.deepsparse.onnx").read_text() == "static model.deepsparse.onnx"
    assert (model_dir / "model.onnx").read_text() == "model model.onnx"  # a tie keeps QAT
    assert (metrics["int8_deepsparse_graph_f1"], metrics["int8_deepsparse_graph_recall"]) == (0.81, 0.6)
    assert metrics["int8_onnxruntime_graph_f1"] == 0.82


def test_exporting_qat_without_its_training_says_what_to_run(dense_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "static-run"
    compress(replace(_config(tiny_recipe(), dense_dir, run), stage="train"))
    with pytest.raises(ConfigError, match="no finished quantization-aware training"):
        compress(replace(_config(qat_recipe(), dense_dir, run), stage="export"))


class _Killed(Exception):
    pass


@pytest.mark.parametrize("student", [StudentRecipe(), StudentRecipe(layers=[1], heads=1, neurons=32)],
                         ids=["whole-model", "compacted-structures"])
def test_a_killed_qat_run_resumes_to_the_same_model_and_ranges(
    dense_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, student: StudentRecipe
) -> None:
    recipe = qat_recipe().model_copy(update={"student": student})
    compress(_config(recipe, dense_dir, tmp_path / "whole"))
    original = HoldMasksSaveRanges.on_optimizer_step

    def kill_after_a_checkpoint(self: HoldMasksSaveRanges, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        original(self, args, state, control, **kwargs)
        if state.global_step == 4:  # checkpoint-3 was saved; this step's ranges are lost with the process
            raise _Killed

    with monkeypatch.context() as patch:
        patch.setattr(HoldMasksSaveRanges, "on_optimizer_step", kill_after_a_checkpoint)
        with pytest.raises(_Killed):
            compress(_config(recipe, dense_dir, tmp_path / "resumed"))
    assert (tmp_path / "resumed" / QAT_CHECKPOINTS / "checkpoint-3" / "activation_ranges.json").is_file()
    compacted = student.heads is not None  # QAT trains the smaller matrices, as the training stage did
    assert (tmp_path / "resumed" / QAT_CHECKPOINTS / STRUCTURES_FILE).is_file() == compacted
    compress(_config(recipe, dense_dir, tmp_path / "resumed"))
    whole, resumed = (load_file(str(tmp_path / run / QAT_TRAINED / "model.safetensors"))
                      for run in ("whole", "resumed"))
    for key in whole:
        torch.testing.assert_close(resumed[key], whole[key], rtol=1e-5, atol=1e-6, msg=key)
    trained = load_file(str(tmp_path / "whole" / "trained" / "model.safetensors"))
    assert {key: value.shape for key, value in whole.items()} == {key: value.shape for key, value in trained.items()}
    for key in whole:  # full-size again, zero wherever training left zeros (removed structures included)
        assert torch.equal(whole[key][trained[key] == 0], torch.zeros_like(whole[key][trained[key] == 0])), key
    ranges = [load_activation_ranges(tmp_path / run / QAT_TRAINED) for run in ("whole", "resumed")]
    assert ranges[0].keys() == ranges[1].keys()
    for name, (low, high) in ranges[0].items():
        assert ranges[1][name] == pytest.approx((low, high), rel=1e-5, abs=1e-6), name
