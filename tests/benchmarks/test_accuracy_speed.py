"""The accuracy-versus-speed chart from model cards: the INT8 files scored as shipped, the dense references at the
teacher's score and marked as such, cards without a recorded speed named, and a PNG written."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.accuracy_speed import card_points, draw, panel
from oberta.cli import main
from service.runtime.card import load_card, save_card

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_a_card_gives_its_int8_files_and_the_dense_references_of_its_run() -> None:
    card = load_card(MODELS / "sentiment")
    points = {point.case: point for point in card_points("sentiment", card)}
    speed = card.metrics["speed"]["items_per_second"]
    deepsparse = points["sparse-int8 deepsparse"]
    assert deepsparse.measured and deepsparse.score == card.metrics["int8_deepsparse_graph_accuracy"]
    assert deepsparse.items_per_second == speed["sparse-int8 deepsparse batch 16"]
    assert points["sparse-int8 onnxruntime"].score == card.metrics["int8_onnxruntime_graph_accuracy"]
    peer = points["dense-int8 openvino"]
    assert not peer.measured and peer.score == card.metrics["teacher_accuracy"]
    best = max(p.items_per_second for p in points.values() if p.case.startswith("dense-int8"))
    assert max(p.vs_best_dense_int8 or 0 for p in points.values() if p.case.startswith("dense-int8")) == 1.0
    assert best == max(speed[f"{case} batch 16"] for case in points if case.startswith("dense-int8"))


def test_bench_chart_draws_the_cards_and_names_those_without_speed(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    unmeasured = tmp_path / "unmeasured"
    unmeasured.mkdir()
    card = load_card(MODELS / "ner")
    card.metrics.pop("speed")
    save_card(card, unmeasured)
    code = main(["bench", "chart", "--models", str(MODELS / "sentiment"), f"candidate={unmeasured}", "--output",
                 str(tmp_path / "out")])
    printed = capsys.readouterr().out
    assert code == 0
    assert (tmp_path / "out" / "accuracy-speed.png").read_bytes().startswith(b"\x89PNG")
    assert "sentiment" in printed and "(teacher's score)" in printed
    assert "candidate: no INT8 scores with a recorded speed" in printed
    with pytest.raises(SystemExit, match="two --models share a name"):
        main(["bench", "chart", "--models", str(MODELS / "ner"), f"ner={MODELS / 'qa'}"])


def test_scores_of_different_validations_get_panels_of_their_own() -> None:
    card = load_card(MODELS / "sentiment")
    assert panel(card) == ("text-classification", "sentences")
    random_split = card.model_copy(update={"build": {**card.build, "validation": {"method": "random"}}})
    assert panel(random_split) == ("text-classification", "random")
    unrecorded = card.model_copy(update={"build": {k: v for k, v in card.build.items() if k != "validation"}})
    assert panel(unrecorded) == ("text-classification", "not recorded")


def test_references_that_two_cards_hold_from_one_run_are_drawn_once(tmp_path: Path) -> None:
    card = load_card(MODELS / "ner")
    drawn = draw({"ner": card, "twin": card}, tmp_path / "chart.png", "oberta bench chart")
    references = [point for point in drawn if not point.measured]
    assert len(references) == len(card_points("ner", card)) - 2  # once each, named by the first card
    assert {point.model for point in references} == {"ner"}
    assert sorted(point.model for point in drawn if point.measured) == ["ner", "ner", "twin", "twin"]
