"""`oberta bench http` on a tiny model: a bounded sweep against a server it starts, and its reports."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest

from benchmarks.http import HttpBenchConfig, check_loopback, run_http_benchmark, sample_inputs, sample_texts
from benchmarks.http_load import Level, post_requests, request_bodies, run_level
from benchmarks.http_mixed import MixedModel, chart, markdown, parse_mixed, run_mixed_benchmark
from benchmarks.http_report import write_reports
from benchmarks.process_cpu import TICKS_PER_SECOND
from benchmarks.report import write_reports as write_any_reports
from oberta.cli import build_parser
from service.runtime.errors import ConfigError
from tests.tiny_models import make_tiny_question_answering_dir


def test_a_small_sweep_against_a_started_server(bert_dir: Path, tmp_path: Path) -> None:
    config = HttpBenchConfig(
        model_dir=bert_dir, engine="onnxruntime", threads=1, max_wait_ms=1, concurrency=(1, 4),
        requests_per_level=40, seconds_per_level=20, engine_seconds=0.3, protocol="v2", command="test",
        text_length="long", rounds=2,
    )
    results, meta = run_http_benchmark(config)
    assert [r["concurrency"] for r in results] == [1, 4]
    for r in results:
        assert (r["requests"], r["ok"], r["errors"]) == (40, 40, {})
        assert r["items_per_second"] > 0 and r["engine_items_per_second"] > 0
        assert r["served_over_engine"] == r["items_per_second"] / r["engine_items_per_second"]
        assert r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
        assert set(r["cpu_ms_per_request"]) == {"server event loop", "server other threads", "load generator"}
        two_ticks_a_round = config.rounds * 2 * 1000 / TICKS_PER_SECOND / r["requests"]  # process - main thread
        assert min(r["cpu_ms_per_request"].values()) >= -two_ticks_a_round and r["engine_cpu_ms_per_item"] > 0
    assert sum(r["cpu_ms_per_request"]["server event loop"] for r in results) > 0  # /proc counts in 10 ms ticks
    assert (meta["engine"], meta["max_batch_size"], meta["server_exit_code"]) == ("onnxruntime", 16, 0)
    assert (meta["rounds"], meta["engine_seconds"]) == (2, 0.3)
    paths = write_reports(results, meta, tmp_path, "http")
    assert [path.name for path in paths] == ["http.json", "http.md", "http.png"]
    assert json.loads(paths[0].read_text())["results"] == results
    table = paths[1].read_text()
    assert "Command: `test`" in table and "| 4 | 40 |" in table and "(built-in long texts)" in table


def test_mixed_load_shares_of_two_models_on_one_server(bert_dir: Path, tmp_path: Path) -> None:
    qa_dir = make_tiny_question_answering_dir(tmp_path)
    config = HttpBenchConfig(model_dir=bert_dir, engine="onnxruntime", threads=1, max_wait_ms=1,
                             seconds_per_level=1.0, protocol="v2", command="test")
    models = [MixedModel(bert_dir, clients=2, inputs_per_request=2), MixedModel(qa_dir, clients=1)]
    results, meta = run_mixed_benchmark(config, models, rounds=1)
    assert [(r["name"], r["clients"], r["inputs_per_request"]) for r in results] == [("tiny", 2, 2), ("tiny-qa", 1, 1)]
    for r in results:
        for phase in ("alone", "mixed"):
            assert r[phase]["ok"] > 0 and r[phase]["errors"] == {}, (r["name"], phase, r[phase])
        assert r["share"] == r["mixed"]["requests_per_second"] / r["alone"]["requests_per_second"] > 0
    assert meta["shares_sum"] == sum(r["share"] for r in results)
    assert meta["server_exit_code"] == 0
    paths = write_any_reports(results, meta, tmp_path, "mixed", render=markdown, draw=chart)
    assert json.loads(paths[0].read_text())["results"] == results
    table = paths[1].read_text()
    assert "| tiny-qa | onnxruntime | 1 | 1 |" in table and f"Sum of the shares: {meta['shares_sum']:.2f}" in table


def test_mixed_specs() -> None:
    assert parse_mixed("models/a:32:2, models/b:16") == [MixedModel(Path("models/a"), 32, 2),
                                                         MixedModel(Path("models/b"), 16, 1)]
    for bad in ("models/a", "models/a:x", "models/a:0", "models/a:1:2:3"):
        with pytest.raises(ConfigError, match="--mixed"):
            parse_mixed(bad)
    args = build_parser().parse_args(["bench", "http", "--mixed", "a:1,b:2", "--rounds", "2"])
    assert (args.mixed, args.rounds, args.stem) == ("a:1,b:2", 2, None)


async def _toy_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """200 to most requests; 503 and close to "refuse", no answer to "drop", a late answer to "slow"."""
    try:
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            length = int(head.lower().split("content-length:")[1].split("\r\n")[0])
            body = await reader.readexactly(length)
            if b"drop" in body:
                break
            if b"slow" in body:
                await asyncio.sleep(1)
            status = "503 Service Unavailable\r\nconnection: close" if b"refuse" in body else "200 OK"
            writer.write(f"HTTP/1.1 {status}\r\ncontent-length: 2\r\n\r\n{{}}".encode())
            await writer.drain()
            if b"refuse" in body:
                break
    except asyncio.IncompleteReadError:
        pass
    writer.close()


def test_errors_are_counted_by_status_timeout_and_dropped_connection() -> None:
    async def main() -> Level:
        server = await asyncio.start_server(_toy_server, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with server:
            bodies = request_bodies(["fine", "refuse", "drop", "slow", "fine"], 1, "v1")
            requests = post_requests(url, "/v1/models/m/predict", bodies, {"Authorization": "Bearer k"})
            return await run_level(url, requests, 1, max_requests=10, seconds=20, timeout_s=0.2)

    level = asyncio.run(main())
    assert level.statuses == Counter({"200": 4, "503": 2, "IncompleteReadError": 2, "timeout": 2})
    summary = level.summary(inputs_per_request=1)
    assert (summary["requests"], summary["ok"]) == (10, 4)
    assert summary["errors"] == {"503": 2, "IncompleteReadError": 2, "timeout": 2}


def test_only_loopback_servers_and_the_cli_registration() -> None:
    assert check_loopback("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    assert check_loopback("http://localhost:1") == "http://localhost:1"
    with pytest.raises(ValueError, match="only targets servers on loopback"):
        check_loopback("http://10.0.0.1:8000")
    assert sample_texts(4) == sample_texts(4) and len(set(sample_texts())) > 200
    short, long = sample_inputs("text-classification"), sample_inputs("text-classification", "long")
    assert long == sample_inputs("text-classification", "long") and len(set(long)) == len(long)
    assert min(len(str(text).split()) for text in long) > 3 * max(len(str(text).split()) for text in short) / 2
    args = build_parser().parse_args(["bench", "http", "--model", "m", "--concurrency", "1,2", "--protocol", "v2",
                                      "--text-length", "long"])
    assert (args.model, args.concurrency, args.protocol, args.mixed, args.text_length) == ("m", "1,2", "v2", None,
                                                                                          "long")
    assert args.handler.__name__ == "_run_bench_http"
