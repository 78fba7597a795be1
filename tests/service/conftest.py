"""Shared fixtures: tiny random models exported once per session, and app helpers."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.app import create_app
from service.card import ModelCard
from service.config import EngineChoice, Settings
from service.engines import Engine, EngineFactory, EngineOptions, load_engine
from tests.tiny_models import make_tiny_model_dir

NUM_LABELS = 3


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT classifier with three labels (inputs: input_ids, attention_mask, token_type_ids)."""
    return make_tiny_model_dir(tmp_path_factory.mktemp("bert"), arch="bert", num_labels=NUM_LABELS, name="tiny")


@pytest.fixture(scope="session")
def roberta_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny RoBERTa classifier with three labels (no token_type_ids)."""
    return make_tiny_model_dir(
        tmp_path_factory.mktemp("roberta"), arch="roberta", num_labels=NUM_LABELS, name="tiny-roberta"
    )


class RecordingEngine:
    """Wraps a real engine, records the batch size of every call and can be told to fail the next one."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls: list[int] = []
        self.fail_next = False

    @property
    def input_names(self) -> list[str]:
        return self.inner.input_names

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        self.calls.append(len(next(iter(inputs.values()))))
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("injected engine failure")
        return self.inner.run(inputs)

    def info(self) -> dict[str, Any]:
        return self.inner.info()


class RecordingFactory:
    """An engine factory that wraps every engine it loads in a RecordingEngine, kept in load order."""

    def __init__(self) -> None:
        self.engines: list[RecordingEngine] = []

    def __call__(self, choice: EngineChoice, model_dir: Path, card: ModelCard, options: EngineOptions) -> Engine:
        engine = RecordingEngine(load_engine(choice, model_dir, card, options))
        self.engines.append(engine)
        return engine


def write_config(path: Path, endpoints: list[dict[str, Any]]) -> Path:
    """A YAML config file listing `endpoints`."""
    path.write_text(yaml.safe_dump({"endpoints": endpoints}))
    return path


def make_app(tmp_path: Path, endpoints: list[dict[str, Any]], factory: EngineFactory = load_engine) -> FastAPI:
    """An app over a config file written to tmp_path, loading engines with `factory`."""
    settings = Settings(config=write_config(tmp_path / "serve.yaml", endpoints), threads=1)
    return create_app(settings, engine_factory=factory)


def wait_ready(client: TestClient, timeout: float = 30.0) -> None:
    """Poll /health/ready until it answers 200."""
    deadline = time.monotonic() + timeout
    while client.get("/health/ready").status_code != 200:
        assert time.monotonic() < deadline, client.get("/health/ready").json()
        time.sleep(0.02)
