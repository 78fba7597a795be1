"""`oberta corpus`: plain sentences for label-free training (sentence embedding), gathered from labelled datasets.

Each file's texts are read by its format: SQuAD `.json` (questions, and the paragraphs cut into sentences), CoNLL
`.txt` (sentences of tokens), and `.tsv`/`.csv`/`.jsonl` (the text column and any pair column; long texts such as
IMDB reviews are cut into sentences, HTML line breaks removed; with `whole`, the long texts are also kept whole, so a
student learns texts as long as the paragraphs it will embed). A piece inside another piece of the same file is
left out, so SST-2 gives its sentences and not the phrases cut from them. Texts are deduplicated across files, kept
between a minimum and maximum number of words, sampled per file with a seed, and written one a line, shuffled.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from compression.containment import ContainmentIndex, normalise
from compression.data import format_suffix, load_texts
from compression.tasks.question_answering import load_squad
from compression.tasks.token_classification import load_conll
from service.runtime.errors import ConfigError

log = logging.getLogger(__name__)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


@dataclass(frozen=True)
class CorpusConfig:
    """Which files, how many texts of each, and the length bounds in words."""

    files: Sequence[str]
    output: str
    max_per_file: int | None = None
    min_words: int = 4
    max_words: int = 64
    seed: int = 42
    whole: bool = False  # also keep each long text (paragraph, review) whole, besides its sentences


def sentences(text: str) -> list[str]:
    """A text cut into sentences at '.', '!' or '?' followed by a capital or a digit; HTML breaks become spaces."""
    flat = " ".join(HTML_BREAK.sub(" ", text).split())
    return [part.strip() for part in SENTENCE_END.split(flat) if part.strip()]


def file_texts(path: str) -> tuple[list[str], list[str]]:
    """The texts of one file by its format: its short texts and the sentences of its long ones; and, whole, those of
    its texts that hold several sentences (SQuAD paragraphs, reviews), HTML breaks removed."""
    kind = format_suffix(Path(path))
    if kind == ".txt":
        return [sentence.text for sentence in load_conll(path)], []
    if kind == ".json":
        articles = load_squad(path)
        short = [example.question for article in articles for example in article]
        long_texts = list(dict.fromkeys(example.context for article in articles for example in article))
    else:
        short, long_texts = [], load_texts(path)
    cut = [sentences(text) for text in long_texts]
    whole = [" ".join(parts) for parts in cut if len(parts) > 1]  # texts of several sentences, e.g. paragraphs
    return short + [sentence for parts in cut for sentence in parts], whole


def outermost(texts: list[str]) -> list[str]:
    """The distinct texts inside no other text of the list (containment as in validation)."""
    forms = {text: normalise(text) for text in texts}
    index = ContainmentIndex(forms.values())
    return [text for text, form in forms.items() if not index.holds(form, strictly=True)]


def build_corpus(config: CorpusConfig) -> dict[str, int]:
    """Write the corpus; returns how many texts each file gave."""
    if not config.files:
        raise ConfigError("name at least one data file")
    rng = random.Random(config.seed)
    seen: set[str] = set()
    corpus: list[str] = []
    counts: dict[str, int] = {}
    for path in config.files:
        pieces, whole = file_texts(path)
        texts = outermost(pieces) + (whole if config.whole else [])
        texts = [t for t in dict.fromkeys(texts)
                 if config.min_words <= len(t.split()) <= config.max_words and normalise(t) not in seen]
        if config.max_per_file is not None and len(texts) > config.max_per_file:
            texts = rng.sample(texts, config.max_per_file)
        seen.update(normalise(t) for t in texts)
        corpus.extend(texts)
        counts[path] = len(texts)
        log.info("%s: %d texts", path, len(texts))
    rng.shuffle(corpus)
    output = Path(config.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("".join(f"{text}\n" for text in corpus), encoding="utf-8")
    return counts
