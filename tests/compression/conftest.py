"""Fixtures shared by the compression tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny_models import tiny_classifier, tiny_tokenizer


@pytest.fixture(scope="module")
def dense_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny dense BERT classifier with its tokenizer, the model and teacher of the tiny compression runs."""
    path = tmp_path_factory.mktemp("dense")
    tiny_classifier("bert").save_pretrained(path)
    tiny_tokenizer("bert").save_pretrained(path)
    return path
