"""Shared fixtures: tiny random models exported once per session.

Helpers live in plain modules: tests/serving.py (apps, servers, bounded waits, free_port), tests/recording_engine.py
(the engine double) and tests/tiny_models.py (tiny random models).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny_models import NUM_LABELS, make_tiny_model_dir, make_tiny_sentence_embedding_dir


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT classifier with NUM_LABELS labels (inputs: input_ids, attention_mask, token_type_ids)."""
    return make_tiny_model_dir(tmp_path_factory.mktemp("bert"), arch="bert", num_labels=NUM_LABELS, name="tiny")


@pytest.fixture(scope="session")
def roberta_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny RoBERTa classifier with NUM_LABELS labels (no token_type_ids)."""
    return make_tiny_model_dir(
        tmp_path_factory.mktemp("roberta"), arch="roberta", num_labels=NUM_LABELS, name="tiny-roberta"
    )


@pytest.fixture(scope="session")
def embedding_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny mean-pooled, normalised BERT sentence encoder (sentence-embedding; max_length 32)."""
    return make_tiny_sentence_embedding_dir(tmp_path_factory.mktemp("embedding"))
