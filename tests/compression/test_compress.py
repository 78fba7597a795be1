"""`oberta compress` end to end on a tiny model: pruning, distillation, INT8 export, and exact resume."""

from __future__ import annotations

import json
import logging
from copy import deepcopy
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import load_file

from compression.compress import CompressConfig, compress
from compression.finetune import DataConfig
from compression.pruning.callback import PruningCallback
from compression.quantize import weight_sparsity
from compression.recipe import Recipe, StudentRecipe, load_recipe
from compression.run_clock import RunClock
from compression.stages.config import plan
from compression.stages.record import BuildRecord
from compression.structure_compaction import STRUCTURES_FILE
from compression.training import final_evaluation, training_arguments
from oberta.cli import main
from service.runtime.card import load_card
from service.runtime.errors import ConfigError, MissingFile
from tests.tiny_models import tiny_classifier

FIXTURES = Path(__file__).parent.parent / "fixtures"


def tiny_recipe(scorer: str = "obs", structure: str = "unstructured") -> Recipe:
    return Recipe.model_validate({
        "training": {"epochs": 2, "batch_size": 8, "learning_rate": 1e-3, "save_steps": 3, "eval_steps": 100,
                     "max_length": 32},
        "pruning": {"scorer": scorer, "structure": structure, "initial_sparsity": 0.5, "final_sparsity": 0.8,
                    "end_epoch": 1.5, "update_interval_epochs": 0.5,
                    "obs": {"block_size": 8, "num_grads": 4, "grad_batch_size": 4}},
        "quantization": {"calibration_samples": 16},
    })


def _config(recipe: Recipe, dense_dir: Path, output: Path) -> CompressConfig:
    data = DataConfig(train_file=str(FIXTURES / "sentiment.tsv"), validation_fraction=0.25)
    return CompressConfig(recipe=recipe, recipe_source="test", model=str(dense_dir), teacher=str(dense_dir),
                          data=data, output_dir=str(output), name="tiny-sparse", threads=1)


def test_a_smaller_student_drops_layers_heads_and_neurons_and_keeps_them_dropped(dense_dir: Path,
                                                                                 tmp_path: Path) -> None:
    recipe = tiny_recipe().model_copy(update={"student": StudentRecipe(layers=[1], heads=1, neurons=32)})
    card = compress(_config(recipe, dense_dir, tmp_path / "run"))
    assert card.build["student_layers"] == [1] and len(card.build["removed_heads"]) == 1
    assert card.build["layer_shapes"] == {"heads": [1], "neurons": [32]}
    weights = load_file(str(tmp_path / "run" / "trained" / "model.safetensors"))
    assert "bert.encoder.layer.1.output.dense.weight" not in weights  # one layer left
    output = weights["bert.encoder.layer.0.output.dense.weight"]
    assert int((output == 0).all(dim=0).sum()) >= 32  # the removed neurons stayed zero through training
    for name in card.files.values():
        session = ort.InferenceSession(str(tmp_path / "run" / "model" / name), providers=["CPUExecutionProvider"])
        feed = {i.name: np.ones((2, 5), dtype=np.int64) for i in session.get_inputs()}
        assert session.run(None, feed)[0].shape == (2, 2)


def test_a_student_of_layers_the_model_lacks_is_refused_in_one_line(dense_dir: Path, tmp_path: Path) -> None:
    recipe = tiny_recipe().model_copy(update={"student": StudentRecipe(layers=[0, 5])})
    with pytest.raises(ConfigError, match=r"recipe student\.layers: layers to keep must be distinct indices below 2"):
        compress(_config(recipe, dense_dir, tmp_path / "run"))


@pytest.mark.parametrize(("scorer", "structure"), [("obs", "unstructured"), ("magnitude", "4-block")])
def test_compress_exports_a_sparse_int8_model(dense_dir: Path, tmp_path: Path, scorer: str, structure: str) -> None:
    card = compress(_config(tiny_recipe(scorer, structure), dense_dir, tmp_path / "run"))
    model_dir = tmp_path / "run" / "model"
    assert load_card(model_dir) == card
    assert card.precision == "int8"
    assert set(card.files) == {"deepsparse", "onnxruntime"}
    assert card.sparsity is not None and card.sparsity == pytest.approx(0.8, abs=0.01)
    assert card.build["pruning_history"][-1]["sparsity"] == pytest.approx(0.8, abs=0.01)
    for name in card.files.values():
        assert weight_sparsity(model_dir / name)["sparsity"] == pytest.approx(0.8, abs=0.01)
        session = ort.InferenceSession(str(model_dir / name), providers=["CPUExecutionProvider"])
        feed = {i.name: np.ones((2, 5), dtype=np.int64) for i in session.get_inputs()}
        assert session.run(None, feed)[0].shape == (2, 2)
    for key in ("student_fp32_accuracy", "teacher_accuracy", "int8_onnxruntime_graph_accuracy"):
        assert 0.0 <= card.metrics[key] <= 1.0
    # the student's metrics come from the Trainer's evaluation at the last step: the same as the exported FP32 graph
    assert card.metrics["student_fp32_accuracy"] == card.metrics["fp32_onnx_accuracy"]
    assert not [key for key in card.metrics if key.startswith("student_fp32_") and key != "student_fp32_accuracy"]
    if structure == "4-block":
        weights = load_file(str(tmp_path / "run" / "trained" / "model.safetensors"))
        query = weights["bert.encoder.layer.0.attention.self.query.weight"].reshape(-1, 4)
        assert torch.all((query == 0).all(dim=1) | (query != 0).all(dim=1)), "zeros come in whole groups of 4"


class _Killed(Exception):
    pass


@pytest.mark.parametrize("student", [StudentRecipe(), StudentRecipe(layers=[1], heads=1, neurons=32)],
                         ids=["whole-model", "compacted-structures"])
def test_a_killed_run_resumes_to_the_same_result(
    dense_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, student: StudentRecipe
) -> None:
    recipe = tiny_recipe().model_copy(update={"student": student})
    compress(_config(recipe, dense_dir, tmp_path / "whole"))
    original = PruningCallback.on_step_end

    def kill_at_step_seven(self: PruningCallback, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        original(self, args, state, control, **kwargs)
        if state.global_step == 7:
            raise _Killed

    with monkeypatch.context() as patch:
        patch.setattr(PruningCallback, "on_step_end", kill_at_step_seven)
        with pytest.raises(_Killed):
            compress(_config(recipe, dense_dir, tmp_path / "resumed"))
    assert (tmp_path / "resumed" / "checkpoint-6").is_dir()
    assert not (tmp_path / "resumed" / "trained").exists()
    killed_sitting = RunClock(tmp_path / "resumed").seconds["training"]  # counted up to checkpoint-6
    card = compress(_config(recipe, dense_dir, tmp_path / "resumed"))
    assert card is not None and card.build["wall_clock"]["sittings"]["training"] == 2
    assert card.build["training_wall_clock_seconds"] == round(RunClock(tmp_path / "resumed").seconds["training"])
    assert RunClock(tmp_path / "resumed").seconds["training"] > killed_sitting > 0
    assert (tmp_path / "resumed" / STRUCTURES_FILE).is_file() == (student.heads is not None)  # trained compacted
    whole = load_file(str(tmp_path / "whole" / "trained" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "resumed" / "trained" / "model.safetensors"))
    assert whole.keys() == resumed.keys()
    for key in whole:
        torch.testing.assert_close(resumed[key], whole[key], rtol=1e-5, atol=1e-6, msg=key)


def test_evaluation_keeps_dataset_order_while_training_groups_by_length(tmp_path: Path) -> None:
    from transformers import TrainingArguments

    from compression.training import DistillationTrainer

    features = [{"input_ids": [1] * n, "attention_mask": [1] * n, "labels": 0} for n in (9, 2, 7, 3, 8, 1)]
    args = TrainingArguments(output_dir=str(tmp_path), train_sampling_strategy="group_by_length",
                             per_device_eval_batch_size=2, per_device_train_batch_size=2, report_to="none")
    trainer = DistillationTrainer(model=tiny_classifier("bert"), args=args, train_dataset=features,
                                  eval_dataset=features)
    assert list(trainer._get_eval_sampler(features)) == list(range(len(features)))  # type: ignore[arg-type]
    assert sorted(trainer._get_train_sampler()) == list(range(len(features)))  # type: ignore[arg-type]


def test_final_evaluation_is_the_one_logged_at_the_last_step() -> None:
    def trainer(history: list[dict[str, float]], step: int) -> Any:
        return SimpleNamespace(state=SimpleNamespace(log_history=history, global_step=step))

    logged = [{"loss": 0.5, "step": 10}, {"eval_loss": 0.4, "eval_f1": 0.8, "eval_runtime": 3.0, "step": 10}]
    assert final_evaluation(trainer(logged, 10)) == {"f1": 0.8}
    assert final_evaluation(trainer(logged, 12)) is None  # evaluated before the last step: stale
    assert final_evaluation(trainer(logged[:1], 10)) is None
    assert final_evaluation(trainer(logged, 10), "run/checkpoint-8") == {"f1": 0.8}  # resumed and trained on
    assert final_evaluation(trainer(logged, 10), "run/checkpoint-10") is None  # resumed with no step left


def test_training_and_export_run_as_separate_stages(dense_dir: Path, tmp_path: Path) -> None:
    """The training stage (a GPU machine's part) stops at trained/; the export stage picks up its record."""
    run = tmp_path / "staged"
    config = _config(tiny_recipe(), dense_dir, run)
    assert compress(replace(config, stage="train")) is None
    assert (run / "trained" / "model.safetensors").is_file() and not (run / "model").exists()
    result = json.loads((run / "training_result.json").read_text())
    per_column = config.recipe.model_copy(deep=True)
    per_column.quantization.deepsparse.per_channel = True  # a setting changed between the stages
    card = compress(replace(config, recipe=per_column, stage="export", command="oberta compress --stage export"))
    assert card is not None and card.precision == "int8"
    assert card.build["recipe_settings"]["quantization"]["deepsparse"]["per_channel"] is True
    assert {k: card.metrics[k] for k in result["metrics"]} == result["metrics"]
    assert card.build["pruning_history"] == result["build"]["pruning_history"]
    assert card.build["export_command"] == "oberta compress --stage export"
    assert card.sparsity == pytest.approx(0.8, abs=0.01)
    assert card.build["validation"] == result["build"]["validation"]


def test_an_older_training_result_without_a_validation_record_still_exports(dense_dir: Path, tmp_path: Path) -> None:
    """A training result written before validation was recorded: the export stage records it from its own data."""
    run = tmp_path / "older"
    config = _config(tiny_recipe(), dense_dir, run)
    compress(replace(config, stage="train"))
    path = run / "training_result.json"
    result = json.loads(path.read_text())
    recorded = result["build"].pop("validation")
    path.write_text(json.dumps(result))
    card = compress(replace(config, stage="export"))
    assert card is not None and card.build["validation"] == recorded


def test_export_stage_needs_a_finished_training_stage(dense_dir: Path, tmp_path: Path) -> None:
    config = _config(tiny_recipe(), dense_dir, tmp_path / "empty")
    with pytest.raises(MissingFile, match="--stage train"):
        compress(replace(config, stage="export"))


def test_training_loop_settings_reach_the_trainer_by_keyword(tmp_path: Path) -> None:
    loop = tiny_recipe().training.model_copy(update={"lr_schedule": "cosine", "warmup_ratio": 0.1})
    args = training_arguments(loop, output_dir=str(tmp_path), seed=7)
    assert (args.num_train_epochs, args.learning_rate, args.per_device_train_batch_size) == (2, 1e-3, 8)
    assert (args.lr_scheduler_type.value, args.warmup_steps, args.save_steps, args.seed) == ("cosine", 0.1, 3, 7)


def test_a_command_line_override_is_logged_recorded_and_leaves_the_config_alone(
    dense_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = replace(_config(tiny_recipe(), dense_dir, tmp_path / "run"), overrides={"training.max_length": 24})
    before = deepcopy(config)
    with caplog.at_level(logging.INFO):
        card = compress(config)
    assert config == before and config.recipe.training.max_length == 32 and config.data.max_length == 128
    assert "the command line overrides the recipe's training.max_length: 24" in caplog.text
    assert card is not None and card.max_length == 24
    assert card.build["overrides"] == {"training.max_length": 24}
    assert card.build["recipe_settings"]["training"]["max_length"] == 24
    assert card.build["data"]["max_length"] == 24
    record = BuildRecord.model_validate(card.build)  # the card's build is the typed record, dumped
    assert record.file_megabytes and record.quantization and record.opset
    assert record.validation is not None
    assert (record.validation.method, record.validation.validation_in_train) == ("sentences", 0)
    result = json.loads((tmp_path / "run" / "training_result.json").read_text())
    assert result["build"]["overrides"] == {"training.max_length": 24}


def test_compress_max_length_precision_and_quantization_flags_are_overrides_and_only_when_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[CompressConfig] = []
    monkeypatch.setattr("compression.compress.compress", lambda config: seen.append(config))
    common = ["compress", "--recipe", "obert-cpu", "--model", "m", "--output", str(tmp_path), "--name", "x",
              "--train-file", str(FIXTURES / "sentiment.tsv"), "--stage", "train"]
    assert main(common) == 0
    assert main([*common, "--max-length", "256"]) == 0
    assert main([*common, "--precision", "bf16"]) == 0
    assert main([*common, "--quantization", "qat"]) == 0
    assert [config.overrides for config in seen] == [
        {}, {"training.max_length": 256}, {"training.precision": "bf16"},
        {"quantization.method": "qat", "quantization.deepsparse.per_channel": True},
    ]
    assert seen[0].recipe == load_recipe("obert-cpu")
    assert plan(seen[-1]).recipe.quantization.method == "qat"  # a valid recipe with the overrides applied
