"""The teacher stage: logits computed once (on the teacher's own tokenization, or per token of the student's
features), read back on a rerun, and refused where a task needs a teacher that tokenizes as the student does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import MPNetForSequenceClassification

from compression.compress import CompressConfig, compress
from compression.recipe import Recipe
from compression.run_clock import RunClock
from compression.stages import teacher as teacher_stage
from compression.stages.prepare import prepare
from compression.stages.teacher import attach_teacher_logits, load_teacher, teacher_score
from compression.tasks import DataConfig, task_for
from compression.training import (
    TEACHER_LOGITS,
    DistillationTrainer,
    distillation_loss,
    training_arguments,
    with_teacher_logits,
)
from compression.training_loop import TrainingLoop
from service.runtime.errors import ConfigError
from tests.tiny_models import (
    make_tiny_encoder_base,
    tiny_classifier,
    tiny_question_answering,
    tiny_subword_tokenizer,
    tiny_token_classifier,
    tiny_tokenizer,
)

FIXTURES = Path(__file__).parent.parent / "fixtures"


def _classifier_dir(path: Path, arch: str, seed: int) -> Path:
    tiny_classifier(arch, seed=seed).save_pretrained(path)
    tiny_tokenizer(arch).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _classifier_dir(tmp_path_factory.mktemp("student"), "bert", seed=0)


@pytest.fixture(scope="module")
def roberta_teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A teacher whose tokenizer frames and numbers tokens otherwise than the student's."""
    return _classifier_dir(tmp_path_factory.mktemp("teacher"), "roberta", seed=1)


def _data() -> DataConfig:
    return DataConfig(train_file=str(FIXTURES / "sentiment.tsv"), validation_fraction=0.25, max_length=32)


def test_the_logits_are_the_teachers_own_on_its_own_tokens(student_dir: Path, roberta_teacher_dir: Path,
                                                            tmp_path: Path) -> None:
    task = task_for("text-classification")
    prepared = prepare(_data(), str(student_dir), task.load_model(str(student_dir)))
    teacher = load_teacher(task, str(roberta_teacher_dir), prepared)
    assert teacher.own_tokenizer and teacher.input_names == ["input_ids", "attention_mask"]
    attach_teacher_logits(teacher, prepared, _data(), "fp32", tmp_path)
    roberta = tiny_tokenizer("roberta")
    for example, feature in zip(prepared.data.train, prepared.train, strict=True):
        with torch.no_grad():
            expected = teacher.model(**roberta(example.text, return_tensors="pt")).logits[0].numpy()
        np.testing.assert_allclose(feature[TEACHER_LOGITS], expected, atol=1e-5)
        assert feature["input_ids"] == tiny_tokenizer("bert")(example.text)["input_ids"]  # the student's own
    score = teacher_score(teacher, prepared, _data())
    assert set(score) == {"accuracy"} and 0.0 <= score["accuracy"] <= 1.0


def test_a_rerun_reads_the_logits_back_and_other_settings_recompute_them(
    student_dir: Path, roberta_teacher_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = task_for("text-classification")
    prepared = prepare(_data(), str(student_dir), task.load_model(str(student_dir)))
    teacher = load_teacher(task, str(roberta_teacher_dir), prepared)
    attach_teacher_logits(teacher, prepared, _data(), "fp32", tmp_path)
    first = [feature[TEACHER_LOGITS].copy() for feature in prepared.train]
    computed: list[str] = []
    real = teacher_stage._compute_logits

    def counting(*args: object) -> np.ndarray:
        computed.append(str(args[3]))
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(teacher_stage, "_compute_logits", counting)
    attach_teacher_logits(teacher, prepared, _data(), "fp32", tmp_path)
    assert computed == []  # read back from the run directory
    np.testing.assert_array_equal(np.stack(first), np.stack([f[TEACHER_LOGITS] for f in prepared.train]))
    attach_teacher_logits(teacher, prepared, _data(), "bf16", tmp_path)
    assert computed == ["bf16"]  # other arithmetic, other logits


def test_a_token_level_task_refuses_a_teacher_with_another_tokenizer(tmp_path: Path) -> None:
    task = task_for("token-classification")
    tags = ("O", "B-LOC", "I-LOC", "B-ORG", "B-PER", "I-PER")  # the fixture's, in order of appearance
    student = tiny_token_classifier(tags=tags, vocab_size=len(tiny_subword_tokenizer().get_vocab()))
    student.save_pretrained(tmp_path / "student")
    tiny_subword_tokenizer().save_pretrained(tmp_path / "student")
    tiny_token_classifier("roberta", tags=tags).save_pretrained(tmp_path / "teacher")
    tiny_tokenizer("roberta").save_pretrained(tmp_path / "teacher")
    data = DataConfig(train_file=str(FIXTURES / "conll_tiny.txt"), task="token-classification", max_length=32)
    prepared = prepare(data, str(tmp_path / "student"), student)
    with pytest.raises(ConfigError, match="token-classification compares outputs token by token"):
        load_teacher(task, str(tmp_path / "teacher"), prepared)


def test_precomputed_logits_teach_without_a_teacher_model(tmp_path: Path) -> None:
    model = tiny_classifier("bert").train()
    args = training_arguments(TrainingLoop(), output_dir=str(tmp_path), seed=0, evaluate=False)
    trainer = DistillationTrainer(model=model, args=args, hardness=1.0, temperature=2.0)
    batch = {"input_ids": torch.tensor([[2, 5, 6, 3]]), "attention_mask": torch.ones(1, 4, dtype=torch.long),
             "labels": torch.tensor([1])}
    target = torch.tensor([[3.0, -1.0]])
    torch.manual_seed(0)
    loss = trainer.compute_loss(model, {**batch, TEACHER_LOGITS: target})
    torch.manual_seed(0)
    student = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    assert torch.allclose(loss, distillation_loss(student, target, 2.0))
    trainer._set_signature_columns_if_needed()
    assert TEACHER_LOGITS in (trainer._signature_columns or [])  # the Trainer keeps the column in batches


def test_a_student_learns_from_a_teacher_with_its_own_tokenizer_end_to_end(
    student_dir: Path, roberta_teacher_dir: Path, tmp_path: Path
) -> None:
    recipe = Recipe.model_validate({
        "training": {"epochs": 1, "batch_size": 8, "learning_rate": 1e-3, "save_steps": 50, "max_length": 32},
        "pruning": {"scorer": "magnitude", "initial_sparsity": 0.5, "final_sparsity": 0.6, "end_epoch": 0.5,
                    "update_interval_epochs": 0.5},
        "quantization": {"calibration_samples": 8},
    })
    config = CompressConfig(recipe=recipe, recipe_source="test", model=str(student_dir),
                            teacher=str(roberta_teacher_dir), data=_data(), output_dir=str(tmp_path / "run"),
                            name="tiny", threads=1)
    card = compress(config)
    assert card is not None
    assert card.build["teacher_logits"] == "precomputed, own tokenizer"
    assert (tmp_path / "run" / teacher_stage.LOGITS_CACHE).is_file()
    assert "teacher_accuracy" in card.metrics and "int8_onnxruntime_graph_accuracy" in card.metrics

    # The student as a teacher assistant: its card's record names what it learned from, with its own teacher's.
    assistant = tmp_path / "run" / "trained"
    second = CompressConfig(recipe=recipe, recipe_source="test", model=str(assistant), teacher=str(assistant),
                            data=_data(), output_dir=str(tmp_path / "second"), name="tiny", threads=1)
    card_of_second = compress(second)
    assert card_of_second is not None
    record = card_of_second.build["teacher_training"]
    assert record["built_by"] == "oberta compress" and record["teacher"] == str(roberta_teacher_dir)
    assert record["validation_metrics"]["accuracy"] == card.metrics["student_fp32_accuracy"]
    assert record["validation_curve"] == card.build["validation_curve"] and record["validation_curve"]
    assert record["sparsity"] == pytest.approx(card.build["pytorch_sparsity"])


def test_bf16_reaches_the_trainer() -> None:
    assert training_arguments(TrainingLoop(precision="bf16"), output_dir="unused", seed=0).bf16
    assert not training_arguments(TrainingLoop(), output_dir="unused", seed=0).bf16


def test_batches_are_pinned_only_for_a_gpu() -> None:
    pinned = training_arguments(TrainingLoop(), output_dir="unused", seed=0).dataloader_pin_memory
    assert pinned is torch.cuda.is_available()


def test_a_bf16_run_exports_fp32_graphs(student_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("compression.precision.native_bf16", lambda: True)  # train in bf16 on any CPU
    recipe = Recipe.model_validate({
        "training": {"epochs": 1, "batch_size": 8, "learning_rate": 1e-3, "save_steps": 50, "max_length": 32,
                     "precision": "bf16"},
        "pruning": {"scorer": "magnitude", "initial_sparsity": 0.5, "final_sparsity": 0.6, "end_epoch": 0.5,
                    "update_interval_epochs": 0.5},
        "quantization": {"calibration_samples": 8},
    })
    config = CompressConfig(recipe=recipe, recipe_source="test", model=str(student_dir), teacher=str(student_dir),
                            data=_data(), output_dir=str(tmp_path / "run"), name="tiny", threads=1)
    card = compress(config)  # ONNX Runtime refuses a graph that mixes bfloat16 and float products
    assert card is not None and card.build["recipe_settings"]["training"]["precision"] == "bf16"
    assert "int8_deepsparse_graph_accuracy" in card.metrics and "fp32_onnx_accuracy" in card.metrics


def test_an_mpnet_teacher_reads_sentence_pairs_its_own_way(student_dir: Path, tmp_path: Path) -> None:
    base = make_tiny_encoder_base(tmp_path / "mpnet-base", arch="mpnet")
    teacher_dir = tmp_path / "mpnet-teacher"
    MPNetForSequenceClassification.from_pretrained(base, num_labels=2).save_pretrained(teacher_dir)
    tiny_subword_tokenizer().save_pretrained(teacher_dir)
    task = task_for("text-classification")
    data = DataConfig(train_file=str(FIXTURES / "pairs.tsv"), validation_fraction=0.25, max_length=32)
    prepared = prepare(data, str(student_dir), task.load_model(str(student_dir)))
    teacher = load_teacher(task, str(teacher_dir), prepared)
    assert teacher.own_tokenizer and teacher.input_names == ["input_ids", "attention_mask"]
    attach_teacher_logits(teacher, prepared, data, "fp32", tmp_path / "run")
    words = tiny_subword_tokenizer()
    assert all(example.text_pair for example in prepared.data.train)
    for example, feature in zip(prepared.data.train, prepared.train, strict=True):
        encoded = words(example.text, example.text_pair, return_tensors="pt")
        with torch.no_grad():
            expected = teacher.model(input_ids=encoded["input_ids"],
                                     attention_mask=encoded["attention_mask"]).logits[0].numpy()
        np.testing.assert_allclose(feature[TEACHER_LOGITS], expected, atol=1e-5)


def _token_level_run(tmp_path: Path, task_name: str) -> tuple[Any, Any, DataConfig]:
    """A tiny student and a same-tokenizer teacher of another seed for question answering or entities, prepared."""
    tokenizer = tiny_subword_tokenizer()
    vocab = len(tokenizer.get_vocab())
    if task_name == "question-answering":
        student, teacher = (tiny_question_answering(vocab_size=vocab, seed=seed) for seed in (0, 1))
        data = DataConfig(train_file=str(FIXTURES / "squad_tiny.json"), task=task_name, validation_fraction=0.34,
                          max_length=32, task_settings={"doc_stride": 4, "max_query_length": 8})
    else:
        tags = ("O", "B-LOC", "I-LOC", "B-ORG", "B-PER", "I-PER")  # the fixture's, in order of appearance
        student, teacher = (tiny_token_classifier(tags=tags, vocab_size=vocab, seed=seed) for seed in (0, 1))
        data = DataConfig(train_file=str(FIXTURES / "conll_tiny.txt"), task=task_name, max_length=32)
    for name, model in (("student", student), ("teacher", teacher)):
        model.save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
    task = task_for(task_name)
    prepared = prepare(data, str(tmp_path / "student"), task.load_model(str(tmp_path / "student")))
    return prepared, load_teacher(task, str(tmp_path / "teacher"), prepared), data


@pytest.mark.parametrize("task_name", ["question-answering", "token-classification"])
def test_token_level_logits_are_computed_once_and_teach_as_the_live_teacher(
    task_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared, teacher, data = _token_level_run(tmp_path, task_name)
    assert not teacher.own_tokenizer
    assert attach_teacher_logits(teacher, prepared, data, "fp32", tmp_path / "run") == "precomputed"
    batch_features = prepared.train[:4]
    lengths = [len(feature["input_ids"]) for feature in batch_features]
    assert len(set(lengths)) > 1  # the batch pads, so padded rows are checked too
    for feature in batch_features:
        with torch.no_grad():
            outputs = teacher.model(**{name: torch.from_numpy(np.asarray([feature[name]])) for name in
                                       prepared.input_names})
        expected = [getattr(outputs, name)[0].reshape(len(feature["input_ids"]), -1) for name in
                    prepared.task.output_names]
        np.testing.assert_allclose(feature[TEACHER_LOGITS], torch.cat(expected, dim=1).numpy(), atol=1e-5)

    collate = with_teacher_logits(prepared.task.collator(prepared.tokenizer))
    batch = collate(batch_features)
    assert batch[TEACHER_LOGITS].shape[:2] == batch["input_ids"].shape
    student = task_for(task_name).load_model(str(tmp_path / "student")).train()
    args = training_arguments(TrainingLoop(), output_dir=str(tmp_path / "out"), seed=0, evaluate=False)
    from_logits = DistillationTrainer(model=student, args=args, hardness=1.0, temperature=2.0)
    live = DistillationTrainer(model=student, args=args, teacher=teacher.model, hardness=1.0, temperature=2.0)
    torch.manual_seed(0)
    precomputed_loss = from_logits.compute_loss(student, dict(batch))
    torch.manual_seed(0)
    live_loss = live.compute_loss(student, {k: v for k, v in batch.items() if k != TEACHER_LOGITS})
    assert torch.allclose(precomputed_loss, live_loss, atol=1e-5)

    computed: list[str] = []
    monkeypatch.setattr(teacher_stage, "_compute_logits", lambda *args: computed.append("again"))
    stored = [feature[TEACHER_LOGITS].copy() for feature in prepared.train]
    attach_teacher_logits(teacher, prepared, data, "fp32", tmp_path / "run")
    assert computed == []  # a resumed run reads the rows back, each with its own length
    for before, feature in zip(stored, prepared.train, strict=True):
        np.testing.assert_array_equal(before, feature[TEACHER_LOGITS])


def test_an_interrupted_computation_resumes_from_its_finished_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared, teacher, data = _token_level_run(tmp_path, "token-classification")
    monkeypatch.setattr(teacher_stage, "LOGITS_CHUNK", 2)
    chunks = -(-len(prepared.train) // 2)
    assert chunks >= 3
    real = teacher_stage.torch_rows
    calls: list[int] = []

    def interrupted_after_two(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the session ends
        return real(*args, **kwargs)

    monkeypatch.setattr(teacher_stage, "torch_rows", interrupted_after_two)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        attach_teacher_logits(teacher, prepared, data, "fp32", run)
    assert len(list((run / teacher_stage.LOGITS_PARTS).glob("*.npz"))) == 2
    calls.clear()
    attach_teacher_logits(teacher, prepared, data, "fp32", run)
    assert len(calls) == chunks - 2  # the two finished chunks are read back
    assert not (run / teacher_stage.LOGITS_PARTS).exists() and (run / teacher_stage.LOGITS_CACHE).is_file()
    assert RunClock(run).sittings == {"teacher_logits": 2} and RunClock(run).seconds["teacher_logits"] > 0
    resumed = [feature[TEACHER_LOGITS] for feature in prepared.train]
    monkeypatch.setattr(teacher_stage, "torch_rows", real)
    attach_teacher_logits(teacher, prepared, data, "fp32", tmp_path / "uninterrupted")
    for row, feature in zip(resumed, prepared.train, strict=True):
        np.testing.assert_array_equal(row, feature[TEACHER_LOGITS])
