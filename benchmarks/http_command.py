"""`oberta bench http`: the command's arguments as a benchmark configuration, one model (benchmarks/http.py) or
several sharing one server (benchmarks/http_mixed.py, `--mixed`), and the summary it prints."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path

from benchmarks.http import HttpBenchConfig, run_http_benchmark
from benchmarks.http_mixed import run_mixed_command
from benchmarks.http_report import write_reports


def run_command(args: argparse.Namespace) -> int:
    """`oberta bench http` with the arguments oberta/cli.py parses: run, write the reports, print a summary."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per readiness poll
    texts = tuple(line for line in Path(args.texts).read_text().splitlines() if line.strip()) if args.texts else ()
    config = HttpBenchConfig(
        model_dir=Path(args.model), url=args.url, name=args.name, engine=args.engine, threads=args.threads,
        max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
        concurrency=tuple(int(c) for c in args.concurrency.split(",")), requests_per_level=args.requests_per_level,
        seconds_per_level=args.seconds_per_level, inputs_per_request=args.inputs_per_request, protocol=args.protocol,
        timeout_s=args.timeout, engine_seconds=args.engine_seconds, rounds=args.rounds, texts=texts,
        text_length=args.text_length,
        api_key=os.environ.get("OBERTA_API_KEY"), command="oberta " + shlex.join(sys.argv[1:]),
    )
    if args.mixed:
        return run_mixed_command(args, config)
    results, meta = run_http_benchmark(config)
    for path in write_reports(results, meta, Path(args.output), args.stem or "http"):
        print(f"wrote {path}")
    for r in results:
        print(f"concurrency {r['concurrency']}: {r['items_per_second']:.1f} items/s, p50 {r['p50_ms']:.1f} ms, "
              f"p99 {r['p99_ms']:.1f} ms, errors {r['errors'] or 'none'}, served/engine {r['served_over_engine']:.2f}")
    return 0
