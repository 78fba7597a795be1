"""`oberta evaluate`: a served directory's files scored on validation data, checked against the server's own answers."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import spearmanr

from compression import served_evaluation
from compression.data import load_examples
from oberta.cli import main
from service.runtime.card import load_card, save_card
from service.runtime.engines.deepsparse_engine import deepsparse_support
from service.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine
from service.runtime.engines.registry import INEXACT_DEEPSPARSE
from service.runtime.tasks import PredictOptions, build_task
from service.runtime.tasks.encoding import load_tokenizer
from tests.tiny_models import make_tiny_model_dir

FIXTURES = Path(__file__).parent.parent / "fixtures"
SENTIMENT = str(FIXTURES / "sentiment.tsv")
SQUAD = str(FIXTURES / "squad_tiny.json")
DEEPSPARSE_USABLE, DEEPSPARSE_REASON = deepsparse_support()
STS_PAIRS = (  # in the tiny encoders' vocabulary, so that no two texts have the same tokens (no tied similarities)
    ("the king of france", "louis lived in versailles", 3.0), ("the king lived in paris", "who lived in paris", 4.2),
    ("a palace built by john smithson", "john smithson works at google", 1.5),
    ("new york and london", "london and paris", 2.4), ("who built the palace", "what is a palace", 3.1),
    ("louis visited new york", "the king visited london", 2.0),
    ("google works in new york", "where did john live", 0.5),
)


def served_answers(model_dir: Path, texts: list[str]) -> list[dict[str, Any]]:
    """The answers the server's processor gives, on ONNX Runtime."""
    card = load_card(model_dir)
    tokenizer, pad_id = load_tokenizer(model_dir / card.tokenizer, card.max_length, "truncate")
    engine = OnnxRuntimeEngine(model_dir / card.files["onnxruntime"])
    task = build_task(card, tokenizer, pad_id, engine.input_names)
    items = task.preprocess(texts)
    outputs = engine.run(task.collate(items))
    return task.answers(items, [[output[row] for output in outputs] for row in range(len(items))], PredictOptions())


def evaluate_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["evaluate", *args, "--threads", "1", "--json"]) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


@pytest.fixture(scope="module")
def two_file_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 2-label classifier whose card lists a file per engine (the same graph twice)."""
    model_dir = make_tiny_model_dir(tmp_path_factory.mktemp("classifier"), num_labels=2)
    shutil.copyfile(model_dir / "model.onnx", model_dir / "model.deepsparse.onnx")
    card = load_card(model_dir)
    save_card(card.model_copy(update={"files": {"onnxruntime": "model.onnx", "deepsparse": "model.deepsparse.onnx"}}),
              model_dir)
    return model_dir


def expected_accuracy(model_dir: Path) -> float:
    """The share of the file's examples whose served label is theirs (data label i is the card's label i)."""
    examples = load_examples(SENTIMENT)
    answers = served_answers(model_dir, [example.text for example in examples])
    labels = load_card(model_dir).labels
    return float(np.mean([answer["label"] == labels[int(example.label)]
                          for answer, example in zip(answers, examples, strict=True)]))


def test_each_file_of_a_classifier_is_scored_as_the_server_answers(
    two_file_classifier: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = evaluate_json(capsys, "--model", str(two_file_classifier), "--train-file", SENTIMENT,
                           "--validation-file", SENTIMENT)
    assert result["task"] == "text-classification" and result["validation"]["method"] == "file"
    assert result["validation_examples"] == len(load_examples(SENTIMENT))
    accuracy = expected_accuracy(two_file_classifier)
    assert [(s["file"], s["listed_for"], s["runtime"]) for s in result["scores"]] == [
        ("model.onnx", ["onnxruntime"], "onnxruntime"), ("model.deepsparse.onnx", ["deepsparse"], "onnxruntime")]
    assert [s["metrics"] for s in result["scores"]] == [{"accuracy": pytest.approx(accuracy)}] * 2
    assert result["scores"][0]["engine_info"]["intra_op_num_threads"] == 1


@pytest.mark.skipif(not DEEPSPARSE_USABLE, reason=DEEPSPARSE_REASON)
def test_the_deepsparse_file_runs_on_deepsparse(
    two_file_classifier: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = evaluate_json(capsys, "--model", str(two_file_classifier), "--train-file", SENTIMENT,
                           "--validation-file", SENTIMENT, "--engine", "deepsparse")
    assert len(result["scores"]) == 1
    on_deepsparse = result["scores"][0]
    assert (on_deepsparse["file"], on_deepsparse["runtime"]) == ("model.deepsparse.onnx", "deepsparse")
    assert on_deepsparse["metrics"] == {"accuracy": pytest.approx(expected_accuracy(two_file_classifier))}
    assert 0 < on_deepsparse["engine_info"]["fraction_of_supported_ops"] <= 1
    # every shape compiled first: batches of 1 and 16 at each sequence bucket up to the card's max_length, 64
    assert on_deepsparse["engine_info"]["compiled_shapes"] == [[1, 32], [1, 64], [16, 32], [16, 64]]


@pytest.mark.skipif(not DEEPSPARSE_USABLE, reason=DEEPSPARSE_REASON)
def test_deepsparse_asked_for_an_int8_model_on_a_cpu_without_vnni_warns(
    two_file_classifier: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("service.runtime.engines.registry.products_saturate", lambda: True)
    card = load_card(two_file_classifier)
    path = two_file_classifier / card.files["deepsparse"]
    with caplog.at_level(logging.WARNING, logger="compression.served_evaluation"):
        served_evaluation.load_engine("deepsparse", path, card, threads=1)
        assert not caplog.records  # an FP32 model computes no integer products
        served_evaluation.load_engine("deepsparse", path, card.model_copy(update={"precision": "int8"}), threads=1)
    assert [record.getMessage() for record in caplog.records] == [f"--engine deepsparse: {INEXACT_DEEPSPARSE}"]


def test_a_sentence_embedding_model_gets_sts_and_retrieval(
    embedding_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus, sts = tmp_path / "corpus.txt", tmp_path / "sts.tsv"
    corpus.write_text("the king lived in paris\nwho built the palace\n")
    sts.write_text("sentence1\tsentence2\tscore\n" + "".join(f"{a}\t{b}\t{score}\n" for a, b, score in STS_PAIRS))
    args = ["--model", str(embedding_dir), "--train-file", str(corpus), "--validation-file", str(sts)]
    result = evaluate_json(capsys, *args, "--retrieval-file", SQUAD, "--validation-fraction", "0.34")
    metrics = result["scores"][0]["metrics"]
    pairs = [(example.text, str(example.text_pair), float(example.label)) for example in load_examples(sts)]
    texts = sorted({text for pair in pairs for text in pair[:2]})
    vectors = {text: np.asarray(answer["embedding"])
               for text, answer in zip(texts, served_answers(embedding_dir, texts), strict=True)}
    cosines = [float(vectors[a] @ vectors[b]) for a, b, _ in pairs]  # of unit vectors
    gold = [score for _, _, score in pairs]
    assert metrics["sts_spearman"] == pytest.approx(spearmanr(cosines, gold).statistic, abs=1e-6)
    assert {"retrieval_recall_at_1", "retrieval_recall_at_10", "retrieval_mrr"} <= set(metrics)
    assert result["validation"]["retrieval"]["articles"] == 1

    assert main(["evaluate", *args, "--threads", "1"]) == 0
    assert f"model.onnx [onnxruntime, deepsparse file] on onnxruntime: sts_spearman {metrics['sts_spearman']:.4f}" in (
        capsys.readouterr().out)


def test_a_model_whose_labels_do_not_fit_the_data_is_refused(
    bert_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", "--model", str(bert_dir), "--train-file", SENTIMENT]) == 2
    assert "the model has 3 labels" in capsys.readouterr().err
