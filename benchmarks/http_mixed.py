"""`oberta bench http --mixed`: models sharing one server, each alone and then all at once.

One server serves every model. Each round measures each model alone with its clients, then all the models at once,
each with the same clients. A model's share is its request rate under the mixed load over its rate alone; the sum of
the shares says how much of the machine the mixed load gets (1.0: as if each model had it alone for its turn). Every
phase runs for `seconds_per_level` (no request budget, which would let a model stop early and leave the others
alone), after a warm-up of one request per client; rounds interleave alone and mixed phases, so a machine whose load
changes meanwhile disturbs both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.http import (
    HttpBenchConfig,
    check_loopback,
    endpoint_entry,
    headers,
    sample_inputs,
    served_model,
    started_server,
)
from benchmarks.http_load import Level, inference_path, merged, post_requests, request_bodies, run_level, run_load
from service.runtime.card import load_card
from service.runtime.errors import ConfigError

UNBOUNDED = sys.maxsize  # requests per phase: phases end by time only


@dataclass(frozen=True)
class MixedModel:
    """One model of the mixed load: its directory, its clients and the inputs each request carries."""

    model_dir: Path
    clients: int
    inputs_per_request: int = 1


@dataclass(frozen=True)
class _Load:
    name: str
    requests: list[bytes]
    clients: int


def parse_mixed(spec: str) -> list[MixedModel]:
    """`DIR:CLIENTS[:INPUTS],...` as MixedModels; ConfigError when malformed."""
    models = []
    for part in spec.split(","):
        fields = part.strip().split(":")
        try:
            if len(fields) not in (2, 3):
                raise ValueError
            counts = [int(field) for field in fields[1:]]
        except ValueError:
            raise ConfigError(f"--mixed takes DIR:CLIENTS[:INPUTS],...; got {part!r}") from None
        if min(counts) < 1:
            raise ConfigError(f"--mixed: clients and inputs must be at least 1; got {part!r}")
        models.append(MixedModel(Path(fields[0]), *counts))
    return models


async def _phase(url: str, loads: Sequence[_Load], seconds: float, timeout_s: float) -> list[Level]:
    """The loads at once for `seconds`, after a warm-up of one request per client."""
    await asyncio.gather(*(run_level(url, load.requests, load.clients, load.clients, seconds, timeout_s)
                           for load in loads))
    return list(await asyncio.gather(*(run_level(url, load.requests, load.clients, UNBOUNDED, seconds, timeout_s)
                                       for load in loads)))


async def _measure(
    url: str, loads: Sequence[_Load], rounds: int, seconds: float, timeout_s: float
) -> tuple[list[Level], list[Level]]:
    """Each load alone, then all at once, `rounds` times; each load's alone and mixed levels over the rounds."""
    alone: list[list[Level]] = [[] for _ in loads]
    mixed: list[list[Level]] = [[] for _ in loads]
    for _ in range(rounds):
        for index, load in enumerate(loads):
            alone[index] += await _phase(url, [load], seconds, timeout_s)
        for index, level in enumerate(await _phase(url, loads, seconds, timeout_s)):
            mixed[index].append(level)
    return [merged(levels) for levels in alone], [merged(levels) for levels in mixed]


def run_mixed_benchmark(
    config: HttpBenchConfig, models: Sequence[MixedModel], rounds: int = 1
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Measure the models alone and mixed on one server; one row per model and the run's metadata."""
    cards = [load_card(model.model_dir) for model in models]
    inputs = [sample_inputs(card.task) for card in cards]
    exit_codes: list[int] = []
    with contextlib.ExitStack() as stack:
        if config.url:
            url = check_loopback(config.url)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="oberta-bench-mixed-")))
            endpoints = [endpoint_entry(config, model.model_dir) for model in models]
            url = stack.enter_context(started_server(endpoints, config, workdir, exit_codes)).url
        served = [served_model(url, card.name, config.api_key) for card in cards]
        loads = [
            _Load(card.name, post_requests(url, inference_path(card.name, config.protocol),
                                           request_bodies(texts, model.inputs_per_request, config.protocol),
                                           headers(config.api_key)), model.clients)
            for card, model, texts in zip(cards, models, inputs, strict=True)
        ]
        alone, mixed = run_load(_measure(url, loads, rounds, config.seconds_per_level, config.timeout_s))
    results = []
    for model, card, info, solo, shared in zip(models, cards, served, alone, mixed, strict=True):
        alone_summary = solo.summary(model.inputs_per_request)
        mixed_summary = shared.summary(model.inputs_per_request)
        rate = alone_summary["requests_per_second"]
        results.append({
            "name": card.name,
            "model": str(model.model_dir),
            "engine": info["engine"],
            "clients": model.clients,
            "inputs_per_request": model.inputs_per_request,
            "alone": alone_summary,
            "mixed": mixed_summary,
            "share": mixed_summary["requests_per_second"] / rate if rate else float("nan"),
        })
    meta = {
        "title": "http-mixed",
        "command": config.command,
        "machine": report.machine(),
        "max_batch_size": config.max_batch_size,
        "max_wait_ms": config.max_wait_ms if not config.url else "as served",
        "threads": config.threads or "all",
        "protocol": config.protocol,
        "rounds": rounds,
        "seconds_per_phase": config.seconds_per_level,
        "shares_sum": sum(row["share"] for row in results),
        "server_exit_code": exit_codes[0] if exit_codes else None,
    }
    return results, meta


def _errors(summary: dict[str, Any]) -> str:
    return ", ".join(f"{status}: {count}" for status, count in summary["errors"].items()) or "none"


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """A row per model: requests/s and latency alone and mixed, its share; then the sum of the shares."""
    machine = meta["machine"]
    lines = [
        "# HTTP benchmark, models sharing one server",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {machine['cpu']}, {machine['cores']} cores; onnxruntime {machine['onnxruntime']}, deepsparse "
        f"{machine['deepsparse']}  ",
        f"Server: max_batch_size {meta['max_batch_size']}, max_wait_ms {meta['max_wait_ms']}, threads "
        f"{meta['threads']}, {meta['protocol']} protocol; load generator and server on the same machine over loopback. "
        f"{meta['rounds']} round(s) of each model alone then all at once, {meta['seconds_per_phase']:g} s a phase.  ",
        "Share: a model's requests/s under the mixed load over its requests/s alone.",
        "",
        "| model | engine | clients | inputs/request | alone req/s | mixed req/s | share | alone p50 / p99 ms | "
        "mixed p50 / p99 ms | errors alone | errors mixed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        alone, mixed = r["alone"], r["mixed"]
        lines.append(
            f"| {r['name']} | {r['engine']} | {r['clients']} | {r['inputs_per_request']} | "
            f"{alone['requests_per_second']:.1f} | {mixed['requests_per_second']:.1f} | {r['share']:.2f} | "
            f"{alone['p50_ms']:.1f} / {alone['p99_ms']:.1f} | {mixed['p50_ms']:.1f} / {mixed['p99_ms']:.1f} | "
            f"{_errors(alone)} | {_errors(mixed)} |"
        )
    lines += ["", f"**Sum of the shares: {meta['shares_sum']:.2f}** (1.0: no loss from sharing the machine)."]
    return "\n".join(lines) + "\n"


def chart(results: list[dict[str, Any]], meta: dict[str, Any], path: Path) -> None:
    """Requests/s of each model alone and under the mixed load, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    positions = range(len(results))
    figure, axis = plt.subplots(figsize=(7, 4.5))
    axis.bar([p - 0.2 for p in positions], [r["alone"]["requests_per_second"] for r in results], 0.4, label="alone")
    axis.bar([p + 0.2 for p in positions], [r["mixed"]["requests_per_second"] for r in results], 0.4, label="mixed")
    axis.set_xticks(list(positions), [f"{r['name']}\nshare {r['share']:.2f}" for r in results])
    axis.set_ylabel("requests/s")
    axis.legend()
    figure.suptitle(f"models sharing one server: sum of shares {meta['shares_sum']:.2f} - {meta['machine']['cpu']}, "
                    f"{meta['machine']['cores']} cores\n{meta['command']}", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def run_mixed_command(args: argparse.Namespace, config: HttpBenchConfig) -> int:
    """`oberta bench http --mixed`: run, write the reports, print a summary."""
    results, meta = run_mixed_benchmark(config, parse_mixed(args.mixed), args.rounds)
    stem = args.stem or "http-mixed"
    for path in report.write_reports(results, meta, Path(args.output), stem, render=markdown, draw=chart):
        print(f"wrote {path}")
    for r in results:
        print(f"{r['name']}: alone {r['alone']['requests_per_second']:.1f} req/s, mixed "
              f"{r['mixed']['requests_per_second']:.1f} req/s, share {r['share']:.2f}")
    print(f"sum of shares {meta['shares_sum']:.2f}")
    return 0
