"""Validation that cannot leak: the sentence holdout, overlap counts, and the record of how validation was made.

SST-2's training file holds phrases cut from its sentences, so a validation carved at random is mostly phrases that
sit inside training phrases. The sentence holdout keeps whole sentences out instead: a sentence is a text contained
in no other text of the file, a seeded fraction of the sentences is held out, and every example whose text is
inside a held-out sentence (its phrases, and copies of it) leaves training. On data whose texts do not nest (IMDB)
every text is a sentence, and the holdout is a random split that also keeps duplicates out of training.

Every split is checked the same way (`count_overlaps`): how many validation examples have a text inside a training
text, and the reverse (`compression.containment` says what "inside" means).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict

from compression.containment import ContainmentIndex, normalise
from compression.data import Example
from service.runtime.errors import ConfigError

Split = Literal["sentences", "random"]  # the ways text classification carves validation from its training file
SPLITS: tuple[str, ...] = get_args(Split)
Method = Literal[Split, "articles", "file"]


class ValidationRecord(BaseModel):
    """How a run's validation was made, and how much of it overlaps training (recorded in cards and runs).

    ``method``: ``sentences`` (whole sentences held out), ``random`` (examples, or CoNLL sentences, at random),
    ``articles`` (SQuAD articles at random) or ``file`` (a validation file). The overlap counts are of examples:
    ``validation_in_train`` validation examples with a text inside some training text, ``train_in_validation``
    training examples with a text inside some validation text; ``counted_on`` says which texts (each side of a pair
    on its own), and is None where nothing was counted.
    """

    model_config = ConfigDict(extra="forbid")

    method: Method
    fraction: float | None = None
    seed: int | None = None
    file: str | None = None
    sentences: int | None = None  # sentence holdout: sentences found in the training file
    dropped_from_train: int | None = None  # sentence holdout: examples inside a held-out sentence, not trained on
    dropped_from_validation: int | None = None  # NER: validation sentences inside a training sentence, not scored
    articles: int | None = None  # articles held out (SQuAD)
    retrieval: ValidationRecord | None = None  # sentence embedding: how the retrieval queries were carved
    counted_on: str | None = None
    validation_in_train: int | None = None
    train_in_validation: int | None = None


@dataclass(frozen=True)
class Holdout:
    """A sentence holdout: the split, the sentences found and the training examples dropped."""

    train: list[Example]
    validation: list[Example]
    sentences: int
    dropped: int


def hold_out_sentences(examples: list[Example], fraction: float, seed: int) -> Holdout:
    """Hold out a seeded ``fraction`` of the distinct sentences; drop from training every text inside one of them."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError("validation fraction must be between 0 and 1")
    if any(e.text_pair is not None for e in examples):
        raise ConfigError("the sentences split is for single texts; sentence pairs use --validation-split random")
    forms = [normalise(e.text) for e in examples]
    index = ContainmentIndex(forms)
    sentences = [text for text in index.texts if not index.holds(text, strictly=True)]
    held = set(random.Random(seed).sample(sentences, max(1, round(len(sentences) * fraction))))
    held_index = ContainmentIndex(held)
    validation = [e for e, form in zip(examples, forms, strict=True) if form in held]
    train = [e for e, form in zip(examples, forms, strict=True) if not held_index.holds(form)]
    return Holdout(train, validation, len(sentences), len(examples) - len(train) - len(validation))


def inside_none(texts: Sequence[str], others: Sequence[str]) -> list[int]:
    """Positions of the texts inside none of the others (copies and fragments of another text are inside it)."""
    index = ContainmentIndex(normalise(text) for text in others)
    return [position for position, text in enumerate(texts) if not index.holds(normalise(text))]


def count_overlaps(train: Sequence[Sequence[str]], validation: Sequence[Sequence[str]]) -> tuple[int, int]:
    """(validation examples with a text inside a training text, training examples with one inside a validation
    text); each example is given as its texts, e.g. both sides of a pair."""
    train_forms = [[normalise(text) for text in texts] for texts in train]
    validation_forms = [[normalise(text) for text in texts] for texts in validation]
    train_index = ContainmentIndex(form for forms in train_forms for form in forms)
    validation_index = ContainmentIndex(form for forms in validation_forms for form in forms)
    return (
        sum(any(train_index.holds(form) for form in forms) for forms in validation_forms),
        sum(any(validation_index.holds(form) for form in forms) for forms in train_forms),
    )


def counted(
    record: ValidationRecord, train: Sequence[Sequence[str]], validation: Sequence[Sequence[str]], counted_on: str
) -> ValidationRecord:
    """The record with the overlap counts of ``count_overlaps`` on these texts, and what they were counted on."""
    validation_in_train, train_in_validation = count_overlaps(train, validation)
    return record.model_copy(update={"counted_on": counted_on, "validation_in_train": validation_in_train,
                                     "train_in_validation": train_in_validation})
