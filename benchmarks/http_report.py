"""HTTP benchmark results as JSON, a markdown table and a PNG chart, each naming the command and the machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks import report


def _errors(errors: dict[str, int]) -> str:
    return ", ".join(f"{status}: {count}" for status, count in errors.items()) or "none"


def _cpu(cpu: dict[str, float], key: str) -> str:
    return f"{cpu[key]:.2f}" if key in cpu else "-"


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """A row per concurrency level: throughput, latency percentiles, errors, served over engine-only items/s and CPU
    milliseconds per request (server event loop, server other threads, load generator)."""
    machine = meta["machine"]
    lines = [
        f"# HTTP benchmark ({meta['model']})",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {machine['cpu']}, {machine['cores']} cores; onnxruntime {machine['onnxruntime']}, deepsparse "
        f"{machine['deepsparse']}  ",
        f"Server: {meta['engine']} engine, max_batch_size {meta['max_batch_size']}, max_wait_ms {meta['max_wait_ms']}, "
        f"{meta['protocol']} protocol, {meta['inputs_per_request']} input(s) per request ({meta['text_source']}), "
        "load generator and server on the same machine over loopback.  ",
        f"Engine alone: in the benchmark's process at batch {meta['max_batch_size']} on the same texts (tokenized and "
        f"padded as the server does), {meta['engine_seconds']:g} s before each of a level's {meta['rounds']} "
        "round(s), so each level is compared with the engine measured beside it.  ",
        "CPU ms per request: the server's event loop (its main thread), its other threads (engine, tokenization of "
        "large requests) and the load generator, over the level's requests (- where the benchmark did not start the "
        "server); per item: the whole server's, and the engine alone's (all its threads).",
        "",
        "| clients | requests | ok req/s | items/s | p50 ms | p95 ms | p99 ms | errors by status | engine alone "
        "items/s | served / engine | CPU ms/req: event loop | other server threads | load generator | CPU ms/item: "
        "server | engine alone |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        cpu = r.get("cpu_ms_per_request", {})
        server = (f"{(cpu['server event loop'] + cpu['server other threads']) / meta['inputs_per_request']:.2f}"
                  if "server event loop" in cpu else "-")
        lines.append(
            f"| {r['concurrency']} | {r['requests']} | {r['requests_per_second']:.1f} | {r['items_per_second']:.1f} | "
            f"{r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {_errors(r['errors'])} | "
            f"{r['engine_items_per_second']:.1f} | {r['served_over_engine']:.2f} | {_cpu(cpu, 'server event loop')} | "
            f"{_cpu(cpu, 'server other threads')} | {_cpu(cpu, 'load generator')} | {server} | "
            f"{r['engine_cpu_ms_per_item']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def chart(results: list[dict[str, Any]], meta: dict[str, Any], path: Path) -> None:
    """Items/s against the engine alone, and latency percentiles, by concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    concurrency = [r["concurrency"] for r in results]
    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(10, 4.5))
    throughput.plot(concurrency, [r["items_per_second"] for r in results], "o-", label="served")
    throughput.plot(concurrency, [r["engine_items_per_second"] for r in results], "o--", color="grey",
                    label="engine alone")
    throughput.set_ylabel("items/s")
    throughput.legend()
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        latency.plot(concurrency, [r[key] for r in results], "o-", label=key.removesuffix("_ms"))
    latency.set_ylabel("latency (ms)")
    latency.legend()
    for axis in (throughput, latency):
        axis.set_xscale("log", base=2)
        axis.set_xticks(concurrency, [str(c) for c in concurrency])
        axis.set_xlabel("concurrent clients")
    figure.suptitle(f"{meta['model']} over HTTP - {meta['machine']['cpu']}, {meta['machine']['cores']} cores\n"
                    f"{meta['command']}", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_reports(results: list[dict[str, Any]], meta: dict[str, Any], directory: Path, stem: str) -> list[Path]:
    """Write STEM.json, STEM.md and STEM.png of the HTTP benchmark under directory; returns their paths."""
    return report.write_reports(results, meta, directory, stem, render=markdown, draw=chart)
