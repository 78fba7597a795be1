"""Validation that cannot leak: token-aligned containment, the sentence holdout and overlap counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compression.containment import ContainmentIndex, normalise
from compression.data import load_examples, split_validation
from compression.tasks import DataConfig, task_for
from compression.validation import count_overlaps, hold_out_sentences
from oberta.cli import main
from service.runtime.errors import ConfigError
from tests.tiny_models import tiny_classifier, tiny_tokenizer

FIXTURES = Path(__file__).parent.parent / "fixtures"
PHRASES = FIXTURES / "phrases.tsv"  # sentences and phrases cut from them; some phrases are in two sentences
SENTENCES = {normalise(text) for text in (
    "a gorgeous witty movie", "the film is dull and lifeless", "the plot is dull", "great fun with a witty story",
    "i love the acting", "the acting is awful", "no point at all", "boring", "a seductive movie",
)}
SHARED = {"witty", "is dull", "movie", "the acting"}  # each inside two sentences


def test_containment_is_whole_tokens_after_lowercasing_and_collapsing_whitespace() -> None:
    assert normalise("It's  GOOD.\n") == " it ' s good . " == normalise(normalise("It's  GOOD.\n"))
    index = ContainmentIndex(normalise(text) for text in ["a Funny  movie", "it's good."])
    assert all(index.holds(normalise(text)) for text in ("FUNNY movie", "it 's", "good"))
    assert not any(index.holds(normalise(text)) for text in ("fun", "a movie", "unseen"))
    assert index.holds(" a funny movie ") and not index.holds(" a funny movie ", strictly=True)


@pytest.mark.parametrize("seed", range(8))
def test_the_sentence_holdout_keeps_every_phrase_of_a_held_out_sentence_out_of_training(seed: int) -> None:
    examples = load_examples(PHRASES)
    holdout = hold_out_sentences(examples, 0.34, seed)
    held = {normalise(e.text) for e in holdout.validation}
    assert holdout.sentences == len(SENTENCES) and held <= SENTENCES and len(held) == 3
    assert [e for e in examples if normalise(e.text) in held] == holdout.validation  # copies held out too
    assert not [e for e in holdout.train if any(normalise(e.text) in sentence for sentence in held)]
    assert len(holdout.train) + len(holdout.validation) + holdout.dropped == len(examples)
    for phrase in SHARED:  # a phrase shared by two sentences trains only when neither is held out
        assert (phrase in {e.text for e in holdout.train}) == (not any(f" {phrase} " in s for s in held))
    texts = [(e.text,) for e in holdout.train], [(e.text,) for e in holdout.validation]
    assert count_overlaps(*texts) == (0, 0)


def test_a_random_split_of_the_same_file_overlaps_and_the_record_says_so() -> None:
    train, validation = split_validation(load_examples(PHRASES), 0.34, seed=42)
    validation_in_train, train_in_validation = count_overlaps([(e.text,) for e in train],
                                                              [(e.text,) for e in validation])
    assert validation_in_train > 0 and train_in_validation > 0
    task = task_for("text-classification")
    carved = task.prepare(DataConfig(str(PHRASES), validation_fraction=0.34, validation_split="random")).record
    assert (carved.method, carved.validation_in_train, carved.train_in_validation) == (
        "random", validation_in_train, train_in_validation)
    default = task.prepare(DataConfig(str(PHRASES), validation_fraction=0.34)).record
    assert default.model_dump(exclude_none=True) == {
        "method": "sentences", "fraction": 0.34, "seed": 42, "file": str(PHRASES), "sentences": 9,
        "dropped_from_train": default.dropped_from_train, "counted_on": "texts", "validation_in_train": 0,
        "train_in_validation": 0,
    }
    given = task.prepare(DataConfig(str(PHRASES), validation_file=str(FIXTURES / "sentiment.tsv"))).record
    assert (given.method, given.file, given.fraction) == ("file", str(FIXTURES / "sentiment.tsv"), None)


def test_pairs_are_carved_at_random_and_counted_on_each_side() -> None:
    task = task_for("text-classification")
    record = task.prepare(DataConfig(str(FIXTURES / "pairs.tsv"), validation_fraction=0.25)).record
    assert (record.method, record.counted_on) == ("random", "each side of a pair")
    assert record.validation_in_train is not None and record.validation_in_train > 0  # the fixture reuses premises
    with pytest.raises(ConfigError, match="for single texts"):
        task.prepare(DataConfig(str(FIXTURES / "pairs.tsv"), validation_split="sentences"))
    with pytest.raises(ConfigError, match="not with --validation-file"):
        task.prepare(DataConfig(str(PHRASES), validation_file=str(PHRASES), validation_split="random"))


def test_finetune_records_how_validation_was_made(tmp_path: Path) -> None:
    base = tmp_path / "base"
    tiny_classifier("bert").save_pretrained(base)
    tiny_tokenizer("bert").save_pretrained(base)
    run = tmp_path / "run"
    args = ["finetune", "--model", str(base), "--output", str(run), "--train-file", str(PHRASES),
            "--validation-fraction", "0.34", "--epochs", "1", "--batch-size", "8", "--max-length", "16",
            "--threads", "1"]
    assert main(args) == 0
    info = json.loads((run / "final" / "oberta_training.json").read_text())
    record = info["validation"]
    assert (record["method"], record["sentences"], record["validation_in_train"], record["train_in_validation"]) == (
        "sentences", 9, 0, 0)
    assert info["train_examples"] + info["validation_examples"] + record["dropped_from_train"] == 24
