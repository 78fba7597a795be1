"""`oberta finetune`, `export` and `compress` end to end for question answering and token classification."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from compression.compress import CompressConfig, compress
from compression.quantize import weight_sparsity
from compression.recipe import Recipe
from compression.tasks import DataConfig
from oberta.cli import main
from service.runtime.card import load_card
from service.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine
from service.runtime.tasks import PredictOptions, build_task
from service.runtime.tasks.encoding import load_tokenizer
from tests.tiny_models import tiny_question_answering, tiny_subword_tokenizer, tiny_token_classifier

FIXTURES = Path(__file__).parent.parent / "fixtures"
QA_OPTIONS = ["--max-length", "32", "--doc-stride", "4", "--max-query-length", "8", "--max-answer-length", "6"]
RUN_OPTIONS = ["--epochs", "1", "--batch-size", "4", "--eval-steps", "50", "--save-steps", "50", "--threads", "1",
               "--validation-fraction", "0.34"]


@pytest.fixture(scope="module")
def qa_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("qa-base")
    tokenizer = tiny_subword_tokenizer()
    tiny_question_answering(vocab_size=len(tokenizer.get_vocab())).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def ner_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ner-base")
    tokenizer = tiny_subword_tokenizer()
    tiny_token_classifier(tags=("O", "B-X", "I-X"), vocab_size=len(tokenizer.get_vocab())).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_recipe() -> Recipe:
    return Recipe.model_validate({
        "training": {"epochs": 2, "batch_size": 4, "learning_rate": 1e-3, "save_steps": 100, "eval_steps": 100,
                     "max_length": 32},
        "pruning": {"initial_sparsity": 0.5, "final_sparsity": 0.8, "end_epoch": 1.5, "update_interval_epochs": 0.5,
                    "obs": {"block_size": 8, "num_grads": 4, "grad_batch_size": 4}},
        "quantization": {"calibration_samples": 8},
    })


def _onnx_outputs(path: Path) -> dict[str, tuple[int | str, ...]]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {i.name: np.ones((2, 7), dtype=np.int64) for i in session.get_inputs()}
    return {o.name: r.shape for o, r in zip(session.get_outputs(), session.run(None, feed), strict=True)}


def test_question_answering_finetune_export_and_compress(qa_base: Path, tmp_path: Path) -> None:
    run = tmp_path / "teacher"
    squad = str(FIXTURES / "squad_tiny.json")
    common = ["--task", "question-answering", "--train-file", squad, *QA_OPTIONS]
    assert main(["finetune", "--model", str(qa_base), "--output", str(run), *common, *RUN_OPTIONS]) == 0
    info = json.loads((run / "final" / "oberta_training.json").read_text())
    assert info["task"] == "question-answering" and info["train_features"] > info["train_examples"]
    assert {"exact_match", "f1"} <= set(info["validation_metrics"])
    assert info["validation"] == {"method": "articles", "fraction": 0.34, "seed": 42, "file": squad}  # not counted
    assert [point["step"] for point in info["validation_curve"]][-1] > 0
    assert info["validation_curve"][-1]["f1"] == info["validation_metrics"]["f1"]  # the curve ends at the score

    wrong = ["export", "--model", str(run / "final"), "--output", str(tmp_path / "wrong"), "--name", "x"]
    assert main(wrong) == 2  # a question-answering checkpoint exported as a classifier is refused

    exported = tmp_path / "dense"
    assert main(["export", "--task", "question-answering", "--model", str(run / "final"), "--output", str(exported),
                 "--name", "qa-dense", *QA_OPTIONS]) == 0
    card = load_card(exported)
    assert (card.task, card.labels, card.max_length) == ("question-answering", [], 32)
    assert card.task_settings == {"doc_stride": 4, "max_query_length": 8, "max_answer_length": 6}
    assert _onnx_outputs(exported / "model.onnx") == {"start_logits": (2, 7), "end_logits": (2, 7)}

    data = DataConfig(squad, task="question-answering", validation_fraction=0.34,
                      task_settings={"doc_stride": 4, "max_query_length": 8})
    config = CompressConfig(recipe=tiny_recipe(), recipe_source="test", model=str(run / "final"),
                            teacher=str(run / "final"), data=data, output_dir=str(tmp_path / "sparse"), name="qa",
                            threads=1)
    card = compress(config)
    model_dir = tmp_path / "sparse" / "model"
    assert (card.task, card.precision, card.task_settings) == (
        "question-answering", "int8", {"doc_stride": 4, "max_query_length": 8, "max_answer_length": 30}
    )
    assert card.sparsity == pytest.approx(0.8, abs=0.01)
    assert card.build["teacher_training"]["validation_curve"] == info["validation_curve"]  # how the teacher learned
    assert card.build["teacher_training"]["training_device"] == "cpu"  # where and how long each stage ran
    assert card.build["teacher_training"]["wall_clock"]["sittings"] == {"training": 1}
    assert card.build["wall_clock"]["sittings"] == {"teacher_logits": 1, "training": 1}
    assert card.build["training_wall_clock_seconds"] == card.build["wall_clock"]["seconds"]["training"]
    assert card.build["teacher_logits"] == "precomputed"  # one row per token, computed before training
    for prefix in ("student_fp32", "teacher", "int8_onnxruntime_graph", "int8_deepsparse_graph", "fp32_onnx"):
        assert 0.0 <= card.metrics[f"{prefix}_exact_match"] <= card.metrics[f"{prefix}_f1"] <= 1.0
    for name in card.files.values():
        assert weight_sparsity(model_dir / name)["sparsity"] == pytest.approx(0.8, abs=0.01)
        assert _onnx_outputs(model_dir / name) == {"start_logits": (2, 7), "end_logits": (2, 7)}

    tokenizer, pad_id = load_tokenizer(model_dir / card.tokenizer, card.max_length, "truncate")
    engine = OnnxRuntimeEngine(model_dir / card.files["onnxruntime"])
    task = build_task(card, tokenizer, pad_id, engine.input_names)
    context = "The king of France lived in Paris. " * 5
    items = task.preprocess([{"question": "Where did the king live?", "context": context}])
    outputs = engine.run(task.collate(items))
    answer = task.answers(items, [[o[row] for o in outputs] for row in range(len(items))], PredictOptions())[0]
    assert len(items) > 1 and answer["answer"] == context[answer["start"]:answer["end"]]


def test_token_classification_finetune_and_compress(ner_base: Path, tmp_path: Path) -> None:
    run = tmp_path / "teacher"
    conll = str(FIXTURES / "conll_tiny.txt")
    options = ["--task", "token-classification", "--train-file", conll, "--max-length", "32"]
    assert main(["finetune", "--model", str(ner_base), "--output", str(run), *options, *RUN_OPTIONS]) == 0
    info = json.loads((run / "final" / "oberta_training.json").read_text())
    assert info["labels"] == ["O", "B-LOC", "I-LOC", "B-ORG", "B-PER", "I-PER"]
    assert {"precision", "recall", "f1"} <= set(info["validation_metrics"])
    assert info["validation"] == {"method": "random", "fraction": 0.34, "seed": 42, "file": conll,
                                  "counted_on": "sentences", "validation_in_train": 0, "train_in_validation": 0,
                                  "dropped_from_train": 0, "dropped_from_validation": 0}

    data = DataConfig(conll, task="token-classification", validation_fraction=0.34)
    config = CompressConfig(recipe=tiny_recipe(), recipe_source="test", model=str(run / "final"),
                            teacher=str(run / "final"), data=data, output_dir=str(tmp_path / "sparse"), name="ner",
                            threads=1)
    card = compress(config)
    assert (card.task, card.labels, card.task_settings) == ("token-classification", info["labels"], {})
    assert card.build["validation"] == info["validation"]
    for prefix in ("student_fp32", "teacher", "int8_onnxruntime_graph", "int8_deepsparse_graph", "fp32_onnx"):
        assert {f"{prefix}_{name}" for name in ("precision", "recall", "f1")} <= set(card.metrics)
    for name in card.files.values():
        assert _onnx_outputs(tmp_path / "sparse" / "model" / name) == {"logits": (2, 7, 6)}


def test_a_model_with_other_tags_is_refused(ner_base: Path, tmp_path: Path) -> None:
    data = DataConfig(str(FIXTURES / "conll_tiny.txt"), task="token-classification")
    config = CompressConfig(recipe=tiny_recipe(), recipe_source="test", model=str(ner_base), data=data,
                            output_dir=str(tmp_path), name="ner", threads=1)
    with pytest.raises(ValueError, match=r"the model has tags \['O', 'B-X', 'I-X'\]"):
        compress(config)
