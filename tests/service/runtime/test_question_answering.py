"""Question answering: windows with stride, offset mapping, span scoring, and merging windows."""

from __future__ import annotations

import numpy as np
import pytest
from tokenizers import Encoding, Tokenizer

from service.runtime.errors import BadInput
from service.runtime.tasks import PredictOptions
from service.runtime.tasks.question_answering import (
    QuestionAnswering,
    QuestionAnsweringSettings,
    QuestionWindows,
    Span,
    Window,
    best_spans,
    check_window_settings,
    context_tokens,
    window_spans,
)
from tests.tiny_models import tiny_subword_tokenizer

SHORT = "Louis lived in Versailles, near Paris."
LONG = ("The king of France lived in Paris. " * 4) + "John Smithson built a palace near London. " + "The palace."


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return tiny_subword_tokenizer().backend_tokenizer


def _logits(encoding: Encoding, peaks: dict[int, float]) -> np.ndarray:
    logits = np.zeros(len(encoding.ids) + 3, dtype=np.float32)  # longer than the window, as a padded engine row
    for position, value in peaks.items():
        logits[position] = value
    return logits


def _find(encoding: Encoding, context: str, text: str, last: bool = False) -> int | None:
    """The window position of the context token starting (or, with last, ending) where `text` does, if any."""
    start = context.index(text)
    for position in context_tokens(encoding):
        begin, end = encoding.offsets[position]
        if (end if last else begin) == (start + len(text) if last else start):
            return int(position)
    return None


def _position(encoding: Encoding, context: str, text: str, last: bool = False) -> int:
    position = _find(encoding, context, text, last)
    assert position is not None, f"{text!r} is not in this window"
    return position


def test_windows_cut_the_question_and_overlap_by_the_stride(tokenizer: Tokenizer) -> None:
    windows = QuestionWindows(tokenizer, max_length=20, doc_stride=3, max_query_length=4)
    assert windows.cut_questions(["Who built the palace of Versailles?", "Who?"]) == ["Who built the palace", "Who?"]
    encodings = windows.encode([("Who built the palace of Versailles?", LONG)])[0]
    assert len(encodings) > 3
    covered: list[tuple[int, int]] = []
    for index, encoding in enumerate(encodings):
        assert len(encoding.ids) <= 20
        assert encoding.tokens[:6] == ["[CLS]", "who", "built", "the", "palace", "[SEP]"]
        offsets = [encoding.offsets[int(p)] for p in context_tokens(encoding)]
        for (start, end), token in zip(offsets, encoding.tokens[6:-1], strict=True):
            assert LONG[start:end].lower() == token.removeprefix("##")  # offsets point into the context
        if index:
            assert covered[-3:] == offsets[:3]  # consecutive windows share doc_stride tokens
            covered.extend(offsets[3:])
        else:
            covered.extend(offsets)
    every_token = tokenizer.encode(LONG, add_special_tokens=False).offsets
    assert covered == every_token  # together the windows hold the context once, in order


def test_window_settings_must_leave_room_to_move_on() -> None:
    check_window_settings(max_length=384, doc_stride=128, max_query_length=64)
    with pytest.raises(ValueError, match="leaves 60 context tokens"):
        check_window_settings(max_length=128, doc_stride=128, max_query_length=64)


def test_window_spans_map_tokens_to_character_offsets(tokenizer: Tokenizer) -> None:
    encoding = QuestionWindows(tokenizer, 64, 8, 16).encode([("Where did Louis live?", SHORT)])[0][0]
    first = _position(encoding, SHORT, "Versailles")  # vers ##ail ##les
    last = _position(encoding, SHORT, "Versailles", last=True)
    assert last - first == 2
    start, end = _logits(encoding, {first: 8.0}), _logits(encoding, {last: 8.0})
    spans, no_answer = window_spans(start, end, encoding, SHORT, max_answer_length=30, top_k=3)
    assert spans[0] == Span("Versailles", spans[0].score, 15, 25)
    allowed = np.concatenate([[0], context_tokens(encoding)])
    p_start = np.exp(start[allowed]) / np.exp(start[allowed]).sum()
    p_end = np.exp(end[allowed]) / np.exp(end[allowed]).sum()
    assert spans[0].score == pytest.approx(p_start[allowed == first][0] * p_end[allowed == last][0])
    assert no_answer == pytest.approx(p_start[0] * p_end[0])
    assert [s.score for s in spans] == sorted((s.score for s in spans), reverse=True) and len(spans) == 3
    short, _ = window_spans(start, end, encoding, SHORT, max_answer_length=2, top_k=5)
    assert all(span.answer != "Versailles" for span in short)  # three tokens is too long
    assert all(span.end > span.start for span in short)


def test_the_best_span_across_windows_wins() -> None:
    windows = [
        ([Span("Paris", 0.3, 30, 35), Span("near", 0.1, 25, 29)], 0.2),
        ([Span("London", 0.6, 80, 86), Span("Paris", 0.4, 30, 35)], 0.05),
    ]
    ranked = best_spans(windows, top_k=4, allow_empty=True)
    assert [(s.answer, s.score) for s in ranked] == [("London", 0.6), ("Paris", 0.4), ("near", 0.1), ("", 0.05)]
    assert best_spans(windows, top_k=4, allow_empty=False)[-1].answer == "near"
    assert best_spans([([], 0.7)], top_k=2, allow_empty=False) == [Span("", 0.7, 0, 0)]


def _task(tokenizer: Tokenizer, max_length: int = 24) -> QuestionAnswering:
    settings = QuestionAnsweringSettings(doc_stride=4, max_query_length=6, max_answer_length=8)
    return QuestionAnswering(tokenizer, 0, ["input_ids", "attention_mask", "token_type_ids"], max_length, settings)


def test_answers_merge_the_windows_of_each_input(tokenizer: Tokenizer) -> None:
    task = _task(tokenizer)
    inputs = [{"question": "Who built a palace?", "context": LONG}, {"question": "Where?", "context": SHORT}]
    items = task.preprocess(inputs)
    assert [item.input_index for item in items].count(1) == 1 and len(items) > 3
    rows = []
    for item in items:
        start, end = _logits(item.encoding, {0: 1.0}), _logits(item.encoding, {0: 1.0})
        first, last = _find(item.encoding, LONG, "John"), _find(item.encoding, LONG, "Smithson", last=True)
        if item.input_index == 0 and first is not None and last is not None:
            start[first], end[last] = 9.0, 9.0
        rows.append([start, end])
    batch = task.collate(items)
    assert batch["input_ids"].shape == (len(items), max(len(item.encoding.ids) for item in items))
    answers = task.answers(items, rows, PredictOptions(top_k=2))
    first = answers[0]
    assert (first["answer"], LONG[first["start"]:first["end"]]) == ("John Smithson", "John Smithson")
    assert first["answers"][0]["answer"] == "John Smithson" and len(first["answers"]) == 2
    assert set(answers[1]) == {"answer", "score", "start", "end", "answers"}
    assert set(task.answers(items, rows, PredictOptions())[0]) == {"answer", "score", "start", "end"}


def test_an_unanswerable_question_gets_the_empty_answer_with_its_score(tokenizer: Tokenizer) -> None:
    task = _task(tokenizer)
    items = task.preprocess([{"question": "Who?", "context": SHORT}])
    rows = [[_logits(item.encoding, {0: 12.0}), _logits(item.encoding, {0: 12.0})] for item in items]
    answer = task.answers(items, rows, PredictOptions())[0]
    assert (answer["answer"], answer["start"], answer["end"]) == ("", 0, 0)
    assert 0.9 < answer["score"] <= 1.0


def test_max_answer_length_option_limits_the_span(tokenizer: Tokenizer) -> None:
    task = _task(tokenizer, max_length=64)
    items = task.preprocess([{"question": "Where?", "context": SHORT}])
    item: Window = items[0]
    start = _logits(item.encoding, {_position(item.encoding, SHORT, "Versailles"): 9.5})
    end = _logits(item.encoding, {_position(item.encoding, SHORT, "Paris", last=True): 9.0})
    assert task.answers(items, [[start, end]], PredictOptions())[0]["answer"] == "Versailles, near Paris"  # 6 tokens
    limited = task.answers(items, [[start, end]], PredictOptions(max_answer_length=1))[0]
    assert (limited["answer"], limited["start"], limited["end"]) == ("Vers", 15, 19)  # one sub-token
    start = _logits(item.encoding, {_position(item.encoding, SHORT, "Louis"): 9.0})
    assert task.answers(items, [[start, end]], PredictOptions())[0]["answer"] != SHORT[:-1]  # 9 tokens > 8


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("a text", r"inputs\[0\] must be a \{\"question\": str, \"context\": str\} object"),
        ({"question": "q"}, "must be a"),
        ({"question": "q", "context": "c", "extra": 1}, "must be a"),
        ({"question": "  ", "context": "c"}, r"inputs\[0\]\.question is empty"),
        ({"question": "q", "context": 5}, r"inputs\[0\]\.context must be a string"),
        ({"question": "q", "context": "\u200b"}, r"inputs\[0\]\.context has no tokens"),
        ({"question": "\x00", "context": "c"}, r"inputs\[0\]\.question has no tokens"),
    ],
)
def test_bad_inputs_are_named(tokenizer: Tokenizer, value: object, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        _task(tokenizer).preprocess([value])
