"""`oberta bench http`: throughput and latency of a served model over HTTP, against the engine alone.

By default the benchmark starts `oberta serve` for the model on a free 127.0.0.1 port, sweeps the concurrency levels
with a bounded closed-loop load generator (benchmarks/http_load.py), measuring the engine alone in-process (same
engine, threads and batch size as the server, same texts) before each round of each level, so that a shared machine
whose speed drifts moves both sides of the ratio, and stops the server with SIGTERM. With --url it
targets a running server instead, which must be on loopback. The load is texts, or questions with their contexts for
question answering. Several models sharing one server: benchmarks/http_mixed.py (`--mixed`).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple
from urllib.parse import urlsplit

import httpx
import yaml

from benchmarks.http_load import (
    Input,
    Level,
    Protocol,
    inference_path,
    merged,
    post_requests,
    request_bodies,
    run_level,
    run_load,
)
from benchmarks.process_cpu import process_cpu_seconds
from benchmarks.report import machine
from service.runtime.card import load_card
from service.runtime.config import Endpoint, EndpointConfig, Settings
from service.runtime.engines import DeferredCompilation, load_engine
from service.runtime.errors import ConfigError
from service.runtime.loading import load_model
from service.runtime.tasks import task_spec

LOOPBACK = ("127.0.0.1", "localhost", "::1")
SUBJECTS = ("the film", "this movie", "the plot", "the acting", "the soundtrack", "the director's latest work",
            "every scene", "the second half", "the lead actress", "the script")
VERDICTS = ("is a gorgeous, witty and seductive ride", "drags on without any point at all", "feels fresh and alive",
            "is dull, lifeless and far too long", "made me laugh more than once", "never quite finds its rhythm",
            "is one of the best of the year", "wastes a talented cast", "is worth seeing twice", "left me cold")
LINKS = ("and", "but", "while", "although", "because")
TextLength = Literal["short", "long"]
PARAGRAPH_SENTENCES = 6  # sample sentences in a long text: 67 to 182 tokens, median 114


@dataclass(frozen=True)
class HttpBenchConfig:
    """What to measure and how hard to push."""

    model_dir: Path
    url: str | None = None  # a running server on loopback; default: start one
    name: str | None = None  # served model name; default: the card's
    engine: str = "auto"
    threads: int | None = None
    max_batch_size: int = 16
    max_wait_ms: float = 5.0
    concurrency: tuple[int, ...] = (1, 4, 16, 64)
    requests_per_level: int = 2000
    seconds_per_level: float = 20.0
    inputs_per_request: int = 1
    protocol: Protocol = "v1"
    timeout_s: float = 30.0
    engine_seconds: float = 10.0  # engine alone, a round
    rounds: int = 1  # engine alone then the level, alternated, per level
    texts: tuple[str, ...] = field(default_factory=tuple)  # default: sample_inputs(task, text_length)
    text_length: TextLength = "short"
    api_key: str | None = None
    command: str = ""


def sample_texts(count: int = 256, seed: int = 0) -> list[str]:
    """Review-like sentences of one to three clauses (about 8 to 35 tokens), the same for every run."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        clauses = [f"{rng.choice(SUBJECTS)} {rng.choice(VERDICTS)}" for _ in range(rng.randint(1, 3))]
        texts.append(" ".join(f"{clause} {rng.choice(LINKS)}" for clause in clauses[:-1]) + f" {clauses[-1]}.")
    return [text.strip().capitalize() for text in texts]


def sample_paragraphs(count: int = 256, seed: int = 0) -> list[str]:
    """Review-like paragraphs of six sentences (67 to 182 tokens, median 114: a batch of 16 fills the shipped models'
    longest shape, 128), the same for every run."""
    rng = random.Random(seed)
    texts = sample_texts(count, seed)
    return [" ".join(rng.sample(texts, PARAGRAPH_SENTENCES)) for _ in range(count)]


def sample_questions(count: int = 256, seed: int = 0) -> list[dict[str, str]]:
    """Questions about contexts of three to six review-like sentences (about 40 to 150 tokens), the same every run."""
    rng = random.Random(seed)
    texts = sample_texts(count, seed)
    questions = []
    for _ in range(count):
        context = " ".join(rng.sample(texts, rng.randint(3, 6)))
        questions.append({"question": f"What {rng.choice(VERDICTS)}?", "context": context})
    return questions


def sample_inputs(task: str, text_length: TextLength = "short") -> list[Input]:
    """Request inputs for a model of `task`: short or long texts, or questions with their contexts; ConfigError for
    other inputs."""
    if task == "question-answering":
        return list(sample_questions())
    if not task_spec(task).accepts_text:
        raise ConfigError(f"the HTTP benchmark sends texts or questions; {task} models take other inputs")
    return list(sample_paragraphs() if text_length == "long" else sample_texts())


def check_loopback(url: str) -> str:
    """`url` without a trailing slash; ValueError unless it points at this machine's loopback interface."""
    if urlsplit(url).hostname not in LOOPBACK:
        raise ValueError(f"the HTTP benchmark only targets servers on loopback ({', '.join(LOOPBACK)}), not {url}")
    return url.rstrip("/")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def endpoint_entry(config: HttpBenchConfig, model_dir: Path, name: str | None = None) -> dict[str, Any]:
    """The config-file entry serving `model_dir` with the benchmark's engine and batching settings."""
    entry: dict[str, Any] = {"model_dir": str(model_dir.resolve()), "engine": config.engine,
                             "max_batch_size": config.max_batch_size, "max_wait_ms": config.max_wait_ms}
    if name:
        entry["name"] = name
    return entry


class RunningServer(NamedTuple):
    """A server the benchmark started: its base URL and process id."""

    url: str
    pid: int


@contextlib.contextmanager
def started_server(
    endpoints: list[dict[str, Any]], config: HttpBenchConfig, workdir: Path, exit_codes: list[int]
) -> Iterator[RunningServer]:
    """`oberta serve` for the endpoints on a free loopback port until the block ends; appends its exit code.

    The block starts once the server is ready and every engine has compiled all its shapes (a DeepSparse model serves
    on its first shape while the others compile in the background; the benchmark measures the settled server).
    """
    serve_config = workdir / "serve.yaml"
    serve_config.write_text(yaml.safe_dump({"endpoints": endpoints}))
    port = _free_port()
    env = dict(os.environ)
    if config.threads:
        env["OBERTA_THREADS"] = str(config.threads)
    command = [sys.executable, "-m", "oberta.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--config", str(serve_config)]
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while not _settled(url, config.api_key):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not become ready; its log:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.2)
        yield RunningServer(url, server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            exit_codes.append(server.wait(timeout=60))
        except subprocess.TimeoutExpired:
            server.kill()
            exit_codes.append(server.wait())


def headers(api_key: str | None) -> dict[str, str]:
    """The Authorization header for an API key, if any."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _settled(url: str, api_key: str | None) -> bool:
    """Ready, and every engine has compiled all its shapes."""
    try:
        if httpx.get(f"{url}/health/ready", headers=headers(api_key), timeout=5).status_code != 200:
            return False
        models = httpx.get(f"{url}/v1/models", headers=headers(api_key), timeout=5).json()["models"]
    except httpx.TransportError:
        return False
    return all(_fully_compiled(model["engine_info"]) for model in models)


def _fully_compiled(engine_info: dict[str, Any]) -> bool:
    """Whether an engine has compiled every shape it will (engines that compile nothing ahead always have)."""
    return engine_info.get("shapes_pending", 0) == 0


def served_model(url: str, name: str, api_key: str | None) -> dict[str, Any]:
    """The model's entry in the server's GET /v1/models."""
    response = httpx.get(f"{url}/v1/models", headers=headers(api_key), timeout=30)
    response.raise_for_status()
    for model in response.json()["models"]:
        if model["name"] == name:
            info: dict[str, Any] = model
            return info
    raise ValueError(f"the server at {url} does not serve a model named {name!r}")


class EngineAlone:
    """The served model's engine in this process, on full batches of the benchmark's inputs tokenized and padded as
    the server does, every shape compiled as in the settled server."""

    def __init__(
        self, model_dir: Path, engine: str, threads: int | None, batch_size: int, texts: Sequence[Input]
    ) -> None:
        card = load_card(model_dir)
        config = EndpointConfig(model_dir=model_dir, engine=engine, max_batch_size=batch_size)  # type: ignore[arg-type]
        self._engine, task = load_model(Endpoint(card.name, model_dir, card, config), Settings(threads=threads),
                                        load_engine)
        if isinstance(self._engine, DeferredCompilation):
            while self._engine.compile_next():
                pass
        items = task.preprocess(list(texts))
        batches = [task.collate(items[start : start + batch_size]) for start in range(0, len(items), batch_size)]
        self._batches = [batch for batch in batches if len(next(iter(batch.values()))) == batch_size] or batches

    def measure(self, seconds: float) -> EngineRun:
        """Run the batches back to back for about `seconds` (at least one batch)."""
        done, start, cpu = 0, time.perf_counter(), process_cpu_seconds()
        while time.perf_counter() - start < seconds or done == 0:
            for batch in self._batches:
                self._engine.run(batch)
                done += len(next(iter(batch.values())))
        return EngineRun(done, time.perf_counter() - start, process_cpu_seconds() - cpu)


class EngineRun(NamedTuple):
    """What the engine alone did: items, wall-clock seconds and the CPU seconds of all its threads."""

    items: int
    seconds: float
    cpu_seconds: float


async def interleaved_sweep(
    url: str, requests: Sequence[bytes], config: HttpBenchConfig, engine: EngineAlone, server_pid: int | None = None
) -> list[tuple[Level, EngineRun]]:
    """Each concurrency level after a warm-up of one request per client, in `rounds` rounds of the engine alone for
    engine_seconds then the level for seconds_per_level (each round at most requests_per_level / rounds requests);
    returns each level, rounds merged, with what the engine did alone over the rounds of that level. With
    `server_pid` the levels count the server's CPU time."""
    if config.rounds < 1:
        raise ValueError(f"rounds must be at least 1, not {config.rounds}")
    budget = max(1, config.requests_per_level // config.rounds)
    results = []
    for concurrency in config.concurrency:
        await run_level(url, requests, concurrency, concurrency, config.seconds_per_level, config.timeout_s)
        levels, alone = [], []
        for _ in range(config.rounds):
            alone.append(engine.measure(config.engine_seconds))
            levels.append(await run_level(url, requests, concurrency, budget, config.seconds_per_level,
                                          config.timeout_s, server_pid))
        results.append((merged(levels), EngineRun(*(sum(column) for column in zip(*alone, strict=True)))))
    return results


def run_http_benchmark(config: HttpBenchConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Sweep the concurrency levels; returns one summary per level and the run's metadata (machine included)."""
    card = load_card(config.model_dir)
    name = config.name or card.name
    texts: list[Input] = list(config.texts) if config.texts else sample_inputs(card.task, config.text_length)
    exit_codes: list[int] = []
    server_pid: int | None = None
    with contextlib.ExitStack() as stack:
        if config.url:
            url = check_loopback(config.url)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="oberta-bench-http-")))
            endpoint = endpoint_entry(config, config.model_dir, config.name)
            url, server_pid = stack.enter_context(started_server([endpoint], config, workdir, exit_codes))
        model = served_model(url, name, config.api_key)
        engine = EngineAlone(config.model_dir, model["engine"], config.threads, model["max_batch_size"], texts)
        bodies = request_bodies(texts, config.inputs_per_request, config.protocol)
        requests = post_requests(url, inference_path(name, config.protocol), bodies, headers(config.api_key))
        levels = run_load(interleaved_sweep(url, requests, config, engine, server_pid))
    results = []
    for level, alone in levels:
        summary = level.summary(config.inputs_per_request)
        summary["engine_items_per_second"] = alone.items / alone.seconds
        summary["engine_cpu_ms_per_item"] = 1000 * alone.cpu_seconds / alone.items
        summary["served_over_engine"] = summary["items_per_second"] / summary["engine_items_per_second"]
        results.append(summary)
    meta = {
        "title": "http",
        "command": config.command,
        "machine": machine(),
        "model": str(config.model_dir),
        "name": name,
        "engine": model["engine"],
        "engine_info": model["engine_info"],
        "max_batch_size": model["max_batch_size"],
        "max_wait_ms": config.max_wait_ms if not config.url else "as served",
        "protocol": config.protocol,
        "inputs_per_request": config.inputs_per_request,
        "texts": len(texts),
        "text_source": "texts from --texts" if config.texts else f"built-in {config.text_length} texts",
        "requests_per_level": config.requests_per_level,
        "seconds_per_level": config.seconds_per_level,
        "rounds": config.rounds,
        "engine_seconds": config.engine_seconds,
        "server_exit_code": exit_codes[0] if exit_codes else None,
    }
    return results, meta
