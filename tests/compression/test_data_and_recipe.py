"""Data loading, validation carving and recipe parsing."""

from __future__ import annotations

import gzip
import lzma
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from compression.data import label_names, load_examples, load_texts, split_validation
from compression.recipe import Recipe, load_recipe, shipped_recipes, with_overrides
from compression.training_loop import FINETUNE_DEFAULTS, TrainingLoop, finetune_loop
from service.runtime.errors import ConfigError, MissingFile

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


@pytest.mark.parametrize(("suffix", "compress"), [(".gz", gzip.compress), (".xz", lzma.compress)])
def test_compressed_files_read_as_their_format_names_them(
    tmp_path: Path, suffix: str, compress: Callable[[bytes], bytes]
) -> None:
    packed = tmp_path / f"sentiment.tsv{suffix}"
    packed.write_bytes(compress((FIXTURES / "sentiment.tsv").read_bytes()))
    assert load_examples(packed) == load_examples(FIXTURES / "sentiment.tsv")
    texts = tmp_path / f"texts.txt{suffix}"
    texts.write_bytes(compress(b"a first text\n\nthe second one\n"))
    assert load_texts(texts) == ["a first text", "the second one"]


def test_csv_with_explicit_columns(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text('review,stars\n"good, really good",5\nbad,1\n')
    examples = load_examples(path, text_column="review", label_column="stars")
    assert [e.text for e in examples] == ["good, really good", "bad"]
    with pytest.raises(ValueError, match="column 'nope' not found"):
        load_examples(path, text_column="nope", label_column="stars")


def test_bad_files_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(MissingFile):
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
    with pytest.raises(ValidationError, match=r"student.neurons \(1022\) must be a multiple of 4"):
        Recipe.model_validate({"student": {"neurons": 1022}, "pruning": {"structure": "4-block"}})
    with pytest.raises(MissingFile, match="shipped"):
        load_recipe("no-such-recipe")
    path = tmp_path / "r.yaml"
    path.write_text("pruning:\n  structure: 4-block\n")
    assert load_recipe(path).pruning.group == 4


def test_a_recipe_file_with_a_typo_is_a_config_error_naming_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("training:\n  max_lenght: 256\npruning:\n  final_sparsity: 1.5\n")
    with pytest.raises(ConfigError) as raised:
        load_recipe(path)
    message = str(raised.value)
    assert message.startswith(f"recipe {path}: ")
    assert "training.max_lenght: Extra inputs are not permitted" in message
    assert "pruning.final_sparsity: Input should be less than 1" in message
    path.write_text("training: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(path)


def test_overrides_make_a_validated_copy_and_leave_the_recipe_alone() -> None:
    recipe = load_recipe("obert-cpu")
    overridden = with_overrides(recipe, {"training.max_length": 256, "pruning.obs.num_grads": 8})
    assert (overridden.training.max_length, overridden.pruning.obs.num_grads) == (256, 8)
    assert recipe == load_recipe("obert-cpu")
    with pytest.raises(ConfigError, match=r"no recipe setting 'training\.max_lenght'"):
        with_overrides(recipe, {"training.max_lenght": 256})
    with pytest.raises(ConfigError, match=r"training\.max_length: Input should be greater than 1"):
        with_overrides(recipe, {"training.max_length": 1})


def test_finetune_and_recipes_share_one_training_loop_with_their_own_defaults() -> None:
    recipe_loop = Recipe.model_validate({}).training
    assert recipe_loop == TrainingLoop()
    finetune = finetune_loop()
    assert {name: getattr(finetune, name) for name in FINETUNE_DEFAULTS} == {
        "epochs": 2.0, "warmup_ratio": 0.06, "weight_decay": 0.01, "save_steps": 500
    }
    assert finetune.model_dump(exclude=set(FINETUNE_DEFAULTS)) == recipe_loop.model_dump(exclude=set(FINETUNE_DEFAULTS))
    given = finetune_loop(epochs=1, max_length=64, save_steps=None)  # None: not given
    assert (given.epochs, given.max_length, given.save_steps) == (1.0, 64, 500)
    with pytest.raises(ValidationError):
        finetune_loop(batch_size=0)
