"""Shared fixtures: tiny random models exported once per session, and app helpers."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.runtime.card import ModelCard
from service.runtime.config import EngineChoice, Settings
from service.runtime.engines import Engine, EngineFactory, EngineOptions, load_engine
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
    """Wraps a real engine, records the batch size of every call, can be told to fail the next one, and can be held.

    While `gate` is cleared, calls wait for it (at most 30 s); every call takes at least `delay_s`.
    """

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls: list[int] = []
        self.fail_next = False
        self.gate = threading.Event()
        self.gate.set()
        self.delay_s = 0.0

    @property
    def input_names(self) -> list[str]:
        return self.inner.input_names

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        self.calls.append(len(next(iter(inputs.values()))))
        assert self.gate.wait(timeout=30)
        time.sleep(self.delay_s)
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


def make_app(
    tmp_path: Path, endpoints: list[dict[str, Any]], factory: EngineFactory = load_engine, **settings: Any
) -> FastAPI:
    """An app over a config file written to tmp_path, loading engines with `factory`; keywords are Settings fields."""
    config = write_config(tmp_path / "serve.yaml", endpoints)
    return create_app(Settings(config=config, threads=1, **settings), engine_factory=factory)


def wait_ready(client: TestClient, timeout: float = 30.0) -> None:
    """Poll /health/ready until it answers 200."""
    deadline = time.monotonic() + timeout
    while client.get("/health/ready").status_code != 200:
        assert time.monotonic() < deadline, client.get("/health/ready").json()
        time.sleep(0.02)


@contextlib.contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """Serve `app` with uvicorn on a free 127.0.0.1 port in a thread; yields its base URL once every model is ready."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, name="oberta-test-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
            time.sleep(0.01)
        url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        while httpx.get(f"{url}/health/ready").status_code != 200:
            assert time.monotonic() < deadline, httpx.get(f"{url}/health/ready").json()
            time.sleep(0.02)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
