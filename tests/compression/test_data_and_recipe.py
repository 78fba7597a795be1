"""Data loading, validation carving and recipe parsing."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from compression.data import label_names, load_examples, split_validation
from compression.recipe import Recipe, load_recipe, shipped_recipes

FIXTURES = Path(__file__).parent.parent / "fixtures"


def test_tsv_single_sentences_with_detected_columns() -> None:
    examples = load_examples(FIXTURES / "sentiment.tsv")
    assert len(examples) == 48
    assert examples[0].text_pair is None
    assert label_names(examples) == ["0", "1"]


def test_tsv_pairs_and_jsonl() -> None:
    pairs = load_examples(FIXTURES / "pairs.tsv")
    assert all(e.text_pair for e in pairs)
    assert label_names(pairs) == ["entailment", "not_entailment"]
    jsonl = load_examples(FIXTURES / "sentiment.jsonl")
    assert {e.label for e in jsonl} == {"negative", "positive"}


def test_csv_with_explicit_columns(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text('review,stars\n"good, really good",5\nbad,1\n')
    examples = load_examples(path, text_column="review", label_column="stars")
    assert [e.text for e in examples] == ["good, really good", "bad"]
    with pytest.raises(ValueError, match="column 'nope' not found"):
        load_examples(path, text_column="nope", label_column="stars")


def test_bad_files_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_examples(tmp_path / "missing.tsv")
    odd = tmp_path / "data.txt"
    odd.write_text("x")
    with pytest.raises(ValueError, match="unknown data format"):
        load_examples(odd)
    unknown = tmp_path / "cols.tsv"
    unknown.write_text("a\tb\n1\t2\n")
    with pytest.raises(ValueError, match="cannot tell the text and label columns"):
        load_examples(unknown)


def test_validation_split_is_fixed_by_seed_and_disjoint() -> None:
    examples = load_examples(FIXTURES / "sentiment.tsv")
    train, validation = split_validation(examples, 0.25, seed=3)
    again_train, again_validation = split_validation(examples, 0.25, seed=3)
    assert validation == again_validation and train == again_train
    assert len(validation) == 12 and len(train) == 36
    assert split_validation(examples, 0.25, seed=4)[1] != validation


def test_shipped_recipes_parse_and_the_paper_recipe_matches_the_paper() -> None:
    assert {"obert-paper", "obert-cpu"} <= set(shipped_recipes())
    paper = load_recipe("obert-paper")
    assert paper.pruning.initial_sparsity == 0.7 and paper.pruning.final_sparsity == 0.9
    assert paper.pruning.obs.block_size == 50 and paper.pruning.obs.num_grads == 1024
    assert paper.pruning.obs.damp == 1e-7
    assert paper.distillation.hardness == 1.0 and paper.distillation.temperature == 2.0
    assert paper.training.freeze_embeddings
    for name in shipped_recipes():
        load_recipe(name)


def test_recipes_reject_unknown_keys_and_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="extra"):
        Recipe.model_validate({"pruning": {"final_sparsty": 0.9}})
    with pytest.raises(ValidationError):
        Recipe.model_validate({"pruning": {"initial_sparsity": 0.9, "final_sparsity": 0.5}})
    with pytest.raises(ValidationError):
        Recipe.model_validate({"training": {"epochs": 1}, "pruning": {"end_epoch": 2}})
    with pytest.raises(FileNotFoundError, match="shipped"):
        load_recipe("no-such-recipe")
    path = tmp_path / "r.yaml"
    path.write_text("pruning:\n  structure: 4-block\n")
    assert load_recipe(path).pruning.group == 4
