"""Benchmark results as JSON, a markdown table and a PNG chart, each naming the command and the machine."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """CPU model, core count and software versions of this machine."""
    cpu = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for package in ("onnxruntime", "deepsparse", "torch"):
        try:
            versions[package] = __import__(package).__version__
        except Exception:  # a missing engine is reported, not fatal
            versions[package] = "not installed"
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), **versions}


def speedups(results: list[dict[str, Any]], baseline: tuple[str, str], target: tuple[str, str]) -> list[dict[str, Any]]:
    """Items/s of ``target`` (model, engine) over ``baseline`` for each shape and batch size."""
    index = {(r["shape"], r["model"], r["engine"], r["batch_size"]): r["items_per_second"] for r in results}
    rows = []
    for shape, model, engine, batch in index:
        if (model, engine) != target or (shape, *baseline, batch) not in index:
            continue
        rows.append({"shape": shape, "batch_size": batch,
                     "speedup": index[shape, model, engine, batch] / index[shape, *baseline, batch]})
    return rows


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """A table of every case plus the sparse-INT8-DeepSparse over dense-FP32-ONNX-Runtime speedups."""
    lines = [
        f"# Engine benchmark ({meta['title']})",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores; onnxruntime "
        f"{meta['machine']['onnxruntime']}, deepsparse {meta['machine']['deepsparse']}, torch "
        f"{meta['machine']['torch']}  ",
        f"Sequence length {meta['sequence_length']}; {meta['rounds']} interleaved rounds.",
        "",
        "| shape | model | engine | batch | items/s | median ms | p99 ms | DeepSparse supported ops |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        fraction = r["engine_info"].get("fraction_of_supported_ops")
        lines.append(
            f"| {r['shape']} | {r['model']} | {r['engine']} | {r['batch_size']} | {r['items_per_second']:.1f} | "
            f"{r['median_ms']:.1f} | {r['p99_ms']:.1f} | {'' if fraction is None else f'{fraction:.2f}'} |"
        )
    lines += ["", "Speedup of sparse INT8 on DeepSparse over dense FP32 on ONNX Runtime:", "",
              "| shape | batch | speedup |", "|---|---:|---:|"]
    for row in meta["speedups"]:
        lines.append(f"| {row['shape']} | {row['batch_size']} | {row['speedup']:.1f}x |")
    return "\n".join(lines) + "\n"


def chart(results: list[dict[str, Any]], meta: dict[str, Any], path: Path) -> None:
    """Grouped bars of items/s per case, one panel per shape and batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["shape"], r["batch_size"]) for r in results})
    figure, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.5), squeeze=False)
    for axis, (shape, batch) in zip(axes[0], panels, strict=True):
        rows = [r for r in results if r["shape"] == shape and r["batch_size"] == batch]
        names = [f"{r['model']}\n{r['engine']}" for r in rows]
        axis.bar(names, [r["items_per_second"] for r in rows], color="#4c72b0")
        axis.set_title(f"{shape}, batch {batch}")
        axis.set_ylabel("items/s")
        axis.tick_params(axis="x", labelsize=7, rotation=45)
    figure.suptitle(f"{meta['title']} - {meta['machine']['cpu']}, {meta['machine']['cores']} cores\n"
                    f"{meta['command']}", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def record_speed(model_dir: Path, results: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """Store the MiniLM-shape results (the shipped model and its dense references) in the model's card."""
    from service.runtime.card import load_card, save_card

    card = load_card(model_dir)
    card.metrics["speed"] = {
        "command": meta["command"],
        "machine": f"{meta['machine']['cpu']}, {meta['machine']['cores']} cores",
        "sequence_length": meta["sequence_length"],
        "items_per_second": {
            f"{r['model']} {r['engine']} batch {r['batch_size']}": round(r["items_per_second"], 1)
            for r in results
            if r["shape"] == "minilm"
        },
        "speedup_vs_dense_fp32_onnxruntime": {
            f"batch {row['batch_size']}": round(row["speedup"], 2)
            for row in meta["speedups"]
            if row["shape"] == "minilm"
        },
    }
    save_card(card, model_dir)


Render = Callable[[list[dict[str, Any]], dict[str, Any]], str]
Draw = Callable[[list[dict[str, Any]], dict[str, Any], Path], None]


def write_reports(
    results: list[dict[str, Any]], meta: dict[str, Any], directory: Path, stem: str,
    render: Render | None = None, draw: Draw | None = None,
) -> list[Path]:
    """Write STEM.json, STEM.md and STEM.png under directory; returns their paths.

    ``render`` and ``draw`` make the markdown and the chart (default: the engine benchmark's).
    """
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{stem}.json", directory / f"{stem}.md", directory / f"{stem}.png"]
    paths[0].write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    paths[1].write_text((render or markdown)(results, meta))
    (draw or chart)(results, meta, paths[2])
    return paths
