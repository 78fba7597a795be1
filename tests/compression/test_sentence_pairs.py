"""Sentence-pair classification files: MRPC (BOM, Quality / #1 String / #2 String), RTE and STS-B (binned scores)."""

from __future__ import annotations

from pathlib import Path

import pytest

from compression.data import Example, load_examples
from compression.tasks import DataConfig, task_for
from compression.tasks.text_classification import round_label

FIXTURES = Path(__file__).parent.parent / "fixtures"


def test_mrpc_columns_are_detected_despite_the_byte_order_mark() -> None:
    examples = load_examples(FIXTURES / "mrpc.tsv")
    assert examples[0] == Example("a gorgeous witty movie", "1", "a witty and gorgeous movie")
    assert {e.label for e in examples} == {"0", "1"}


def test_rte_pairs_keep_their_label_names() -> None:
    data = task_for("text-classification").prepare(DataConfig(str(FIXTURES / "pairs.tsv"), validation_fraction=0.25))
    assert data.labels == ["entailment", "not_entailment"]
    assert all(e.text_pair for e in data.train + data.validation)


def test_stsb_scores_are_binned_into_six_classes() -> None:
    config = DataConfig(str(FIXTURES / "stsb.tsv"), validation_fraction=0.25, round_labels=True)
    data = task_for("text-classification").prepare(config)
    examples = sorted(data.train + data.validation, key=lambda e: e.text)
    assert data.labels == ["0", "1", "2", "3", "4", "5"]
    assert {e.text: e.label for e in examples}["the film was awful"] == "5"  # 4.5 rounds half up
    assert {e.text: e.label for e in examples}["the plot was fun"] == "3"  # 2.5 as well
    assert round_label(Example("a", "3.4", "b")).label == "3"
    with pytest.raises(ValueError, match="not a number"):
        round_label(Example("a", "positive", "b"))
    unbinned = task_for("text-classification").prepare(DataConfig(str(FIXTURES / "stsb.tsv"), validation_fraction=0.25))
    assert len(unbinned.labels) == 8  # every distinct score would be a class


def test_options_of_other_tasks_are_refused() -> None:
    for task, path in (("question-answering", "squad_tiny.json"), ("token-classification", "conll_tiny.txt")):
        with pytest.raises(ValueError, match="for text classification"):
            task_for(task).prepare(DataConfig(str(FIXTURES / path), task=task, round_labels=True))
        with pytest.raises(ValueError, match="--validation-split is for text classification"):
            task_for(task).prepare(DataConfig(str(FIXTURES / path), task=task, validation_split="random"))
