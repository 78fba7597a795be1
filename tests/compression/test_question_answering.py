"""Question answering for training: SQuAD loading, window labels from offsets, EM/F1, and distillation masking."""

from __future__ import annotations

import gzip
import lzma
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers.modeling_outputs import QuestionAnsweringModelOutput

from compression.tasks import DataConfig, task_for
from compression.tasks.question_answering import QAExample, answer_tokens, load_squad
from compression.tasks.squad_metric import exact_match, normalize_answer, squad_scores, token_f1
from compression.training import distillation_loss, output_distillation_loss
from service.runtime.tasks.question_answering import QuestionWindows, context_tokens
from tests.tiny_models import tiny_subword_tokenizer

FIXTURES = Path(__file__).parent.parent / "fixtures"
SQUAD = FIXTURES / "squad_tiny.json"
INPUTS = ["input_ids", "attention_mask", "token_type_ids"]


def test_squad_files_load_grouped_by_article(tmp_path: Path) -> None:
    articles = load_squad(SQUAD)
    assert [len(article) for article in articles] == [2, 3, 2]
    first = articles[0][0]
    assert (first.id, first.question, first.answers) == ("q1", "Where did Louis live?", (("Versailles", 15),))
    for packed, compress in ((tmp_path / "squad.json.gz", gzip.compress), (tmp_path / "squad.json.xz", lzma.compress)):
        packed.write_bytes(compress(SQUAD.read_bytes()))
        assert load_squad(packed) == articles
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [{"paragraphs": [{"qas": [{"question": "q", "answers": []}]}]}]}')
    with pytest.raises(ValueError, match="not SQuAD JSON"):
        load_squad(bad)


def test_validation_is_carved_by_article() -> None:
    data = task_for("question-answering").prepare(DataConfig(str(SQUAD), task="question-answering",
                                                             validation_fraction=0.34, seed=1))
    contexts = {e.context for e in data.train}
    assert data.validation and not contexts & {e.context for e in data.validation}
    assert len(data.train) + len(data.validation) == 7 and data.labels == []


def test_window_labels_point_at_the_answer_tokens() -> None:
    examples = [e for article in load_squad(SQUAD) for e in article]
    tokenizer = tiny_subword_tokenizer()
    config = DataConfig(str(SQUAD), task="question-answering", max_length=24,
                        task_settings={"doc_stride": 4, "max_query_length": 8})
    task = task_for("question-answering")
    features = task.features(tokenizer, examples, task.prepare(config), config, INPUTS)
    windows = QuestionWindows(tokenizer.backend_tokenizer, 24, 4, 8).encode([(e.question, e.context) for e in examples])
    assert len(features) == sum(len(w) for w in windows) > len(examples)
    encodings = [(example, encoding) for example, group in zip(examples, windows, strict=True) for encoding in group]
    labelled = 0
    for feature, (example, encoding) in zip(features, encodings, strict=True):
        assert feature["input_ids"].tolist() == encoding.ids and feature["input_ids"].dtype == np.int32
        first, last = feature["start_positions"], feature["end_positions"]
        if first == 0:
            assert last == 0
            continue
        labelled += 1
        text, start = example.answers[0]
        span = example.context[encoding.offsets[first][0]:encoding.offsets[last][1]]
        assert span == text and encoding.offsets[first][0] == start
    assert labelled >= len(examples)  # every answer is whole in at least one window


def test_an_answer_cut_by_the_window_edge_labels_the_first_token() -> None:
    tokenizer = tiny_subword_tokenizer().backend_tokenizer
    context = "Louis lived in Versailles near Paris"
    encoding = QuestionWindows(tokenizer, 11, 2, 4).encode([("Who?", context)])[0][0]  # [CLS] who ? [SEP] ...
    last_offset = encoding.offsets[int(context_tokens(encoding)[-1])][1]
    assert context[:last_offset] == "Louis lived in Versailles"
    assert answer_tokens(encoding, 0, 5) == (4, 4)
    assert answer_tokens(encoding, 15, 25) == (7, 9)  # vers ##ail ##les
    assert answer_tokens(encoding, 15, 30) == (0, 0)  # "Versailles near" runs past the window


@pytest.mark.parametrize(
    ("text", "normalized"),
    [("The Eiffel Tower!", "eiffel tower"), ("  a  cat, an apple ", "cat apple"), ("theatre", "theatre")],
)
def test_answer_normalisation(text: str, normalized: str) -> None:
    assert normalize_answer(text) == normalized


def test_exact_match_and_f1() -> None:
    assert exact_match("the Eiffel tower.", "Eiffel Tower") == 1.0
    assert token_f1("Eiffel tower in Paris", "the Eiffel Tower") == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert token_f1("London", "Paris") == 0.0 and token_f1("", "") == 1.0 and token_f1("", "Paris") == 0.0
    scores = squad_scores(["Paris", "in London"], [["Paris", "paris france"], ["Berlin", "London"]])
    assert scores["exact_match"] == pytest.approx(0.5)
    assert scores["f1"] == pytest.approx((1.0 + 2 / 3) / 2)


def test_evaluation_decodes_spans_across_windows() -> None:
    example = QAExample("x", "Who built a palace?", "The king of France lived in Paris. " * 3 + "John Smithson built a "
                        "palace near London.", (("John Smithson", 105), ("John", 105)))
    assert example.context[105:118] == "John Smithson"
    config = DataConfig(str(SQUAD), task="question-answering", max_length=20,
                        task_settings={"doc_stride": 4, "max_query_length": 8})
    task = task_for("question-answering")
    evaluation = task.evaluation(tiny_subword_tokenizer(), [example], task.prepare(config), config, INPUTS)
    rows = []
    for feature in evaluation.features:
        start, end = np.zeros(24, dtype=np.float32), np.zeros(24, dtype=np.float32)
        if feature["start_positions"]:
            start[feature["start_positions"]], end[feature["end_positions"]] = 9.0, 9.0
        start[0] = end[0] = 20.0  # a confident "no answer" does not count in SQuAD v1.1 evaluation
        rows.append([start, end])
    assert len(rows) > 1
    assert evaluation.score(rows) == {"exact_match": 1.0, "f1": 1.0}


def test_question_answering_distillation_ignores_padding() -> None:
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 2, 6), torch.randn(2, 2, 6)  # [start/end, batch, sequence]
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    padded_student, padded_teacher = student.clone(), teacher.clone()
    padded_student[:, 1, 4:], padded_teacher[:, 1, 4:] = 50.0, -50.0  # garbage at padding
    loss = output_distillation_loss(
        QuestionAnsweringModelOutput(start_logits=padded_student[0], end_logits=padded_student[1]),
        QuestionAnsweringModelOutput(start_logits=padded_teacher[0], end_logits=padded_teacher[1]),
        {"attention_mask": mask}, temperature=2.0,
    )
    expected = []
    for side in range(2):
        per_example = [distillation_loss(student[side, i:i + 1, :n], teacher[side, i:i + 1, :n], 2.0)
                       for i, n in enumerate((6, 4))]
        expected.append(sum(per_example) / 2)
    assert loss.item() == pytest.approx(((expected[0] + expected[1]) / 2).item(), rel=1e-5)
