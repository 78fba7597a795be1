"""Token classification for training: CoNLL loading, labels on first sub-tokens, entity F1, distillation masking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers.modeling_outputs import TokenClassifierOutput

from compression.tasks import DataConfig, task_for
from compression.tasks.entity_metric import entity_scores
from compression.tasks.token_classification import Sentence, load_conll, tag_order
from compression.training import distillation_loss, output_distillation_loss
from tests.tiny_models import tiny_subword_tokenizer

CONLL = Path(__file__).parent.parent / "fixtures" / "conll_tiny.txt"
INPUTS = ["input_ids", "attention_mask", "token_type_ids"]


def test_conll_files_load_as_sentences(tmp_path: Path) -> None:
    sentences = load_conll(CONLL)
    assert len(sentences) == 8
    assert sentences[0].words[:2] == ("John", "Smithson") and sentences[0].tags[:2] == ("B-PER", "I-PER")
    assert all("-DOCSTART-" not in s.words for s in sentences)
    assert tag_order(sentences) == ["O", "B-LOC", "I-LOC", "B-ORG", "B-PER", "I-PER"]
    bad = tmp_path / "bad.txt"
    bad.write_text("John B-PER\nlonely\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2: a token line needs a tag"):
        load_conll(bad)
    odd = tmp_path / "odd.txt"
    odd.write_text("John PER\n")
    with pytest.raises(ValueError, match="IOB2"):
        tag_order(load_conll(odd))


def test_labels_sit_on_first_sub_tokens_only() -> None:
    tokenizer = tiny_subword_tokenizer()
    config = DataConfig(str(CONLL), task="token-classification", max_length=8)
    task = task_for("token-classification")
    data = task.prepare(config)
    sentence = Sentence(("John", "Smithson", "visited", "Versailles", ",", "near", "Paris"),
                        ("B-PER", "I-PER", "O", "B-LOC", "O", "O", "B-LOC"))
    feature = task.features(tokenizer, [sentence], data, config, INPUTS)[0]
    tokens = [*tokenizer.backend_tokenizer.encode(sentence.text).tokens[:7], "[SEP]"]
    assert tokens == ["[CLS]", "john", "smith", "##son", "visited", "vers", "##ail", "[SEP]"]  # cut at 8 tokens
    tag = {name: i for i, name in enumerate(data.labels)}
    assert feature["labels"].tolist() == [-100, tag["B-PER"], tag["I-PER"], -100, tag["O"], tag["B-LOC"], -100, -100]
    assert feature["input_ids"].tolist() == [*tokenizer.backend_tokenizer.encode(sentence.text).ids[:7], 3]


def test_evaluation_scores_entities_of_whole_sentences() -> None:
    config = DataConfig(str(CONLL), task="token-classification", max_length=8)
    task = task_for("token-classification")
    data = task.prepare(config)
    sentences = [Sentence(("John", "Smithson", "visited", "Versailles", "near", "Paris"),
                          ("B-PER", "I-PER", "O", "B-LOC", "O", "B-LOC"))]
    evaluation = task.evaluation(tiny_subword_tokenizer(), sentences, data, config, INPUTS)
    logits = np.zeros((8, len(data.labels)), dtype=np.float32)
    for position, name in {1: "B-PER", 2: "I-PER", 4: "O", 5: "B-LOC", 3: "B-ORG"}.items():
        logits[position, data.labels.index(name)] = 5.0
    scores = evaluation.score([[logits]])  # "Paris" was cut off: one of three entities missed
    assert scores == {"precision": 1.0, "recall": pytest.approx(2 / 3), "f1": pytest.approx(0.8)}


def test_entity_scores_need_exact_span_and_type() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    predicted: list[list[str | None]] = [["B-PER", "O", "O", "B-LOC"], ["B-LOC", "O"]]
    assert entity_scores(gold, predicted) == {"precision": pytest.approx(1 / 3), "recall": pytest.approx(1 / 3),
                                              "f1": pytest.approx(1 / 3)}
    assert entity_scores([["O"]], [["O"]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert entity_scores(gold, gold)["f1"] == 1.0


def test_token_distillation_ignores_unlabelled_positions() -> None:
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    labels = torch.tensor([[-100, 1, -100, 0, -100], [-100, 2, 2, -100, -100]])
    loss = output_distillation_loss(
        TokenClassifierOutput(logits=student), TokenClassifierOutput(logits=teacher), {"labels": labels}, 2.0
    )
    kept = labels != -100
    assert loss.item() == pytest.approx(distillation_loss(student[kept], teacher[kept], 2.0).item())
    noisy_student, noisy_teacher = student.clone(), teacher.clone()
    noisy_student[~kept], noisy_teacher[~kept] = 40.0, -40.0
    noisy = TokenClassifierOutput(logits=noisy_student), TokenClassifierOutput(logits=noisy_teacher)
    again = output_distillation_loss(*noisy, {"labels": labels}, 2.0)
    assert again.item() == pytest.approx(loss.item())


def test_training_sentences_inside_a_validation_sentence_leave_training(tmp_path: Path) -> None:
    """CoNLL repeats headings and table lines across its files: a copy or a fragment of a validation sentence is not
    trained on; a training sentence that merely holds a validation sentence stays, and that validation sentence is
    left unscored, so no overlap is left either way."""
    validation = tmp_path / "valid.txt"
    validation.write_text("Louis B-PER\nlived O\nin O\nVersailles B-LOC\n\nScorers O\n: O\n\n")
    config = DataConfig(str(CONLL), validation_file=str(validation), task="token-classification", max_length=16)
    data = task_for("token-classification").prepare(config)
    texts = [s.text for s in data.train]  # "Louis lived in Versailles , near Paris ." holds a validation sentence
    assert len(texts) == len(load_conll(CONLL)) and data.record.dropped_from_train == 0
    assert [s.text for s in data.validation] == ["Scorers :"] and data.record.dropped_from_validation == 1
    assert (data.record.validation_in_train, data.record.train_in_validation) == (0, 0)
    extra = tmp_path / "train.txt"
    extra.write_text(CONLL.read_text() + "\nScorers O\n: O\n\nLouis B-PER\nlived O\n\n")
    data = task_for("token-classification").prepare(
        DataConfig(str(extra), validation_file=str(validation), task="token-classification", max_length=16))
    assert data.record.dropped_from_train == 2  # the copy of "Scorers :" and the fragment "Louis lived"
    assert data.record.train_in_validation == 0
