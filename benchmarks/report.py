"""Benchmark results as JSON, a markdown table and a PNG chart, each naming the command and the machine."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from service.runtime.cpu import cpu_name


def machine() -> dict[str, Any]:
    """CPU model (with its INT8 instruction sets, on Linux), core count and software versions of this machine."""
    versions = {}
    for package in ("onnxruntime", "deepsparse", "openvino", "nncf", "torch"):
        try:  # from the installed metadata: importing nncf alone takes seconds and imports torch
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:  # a missing engine is reported, not fatal
            versions[package] = "not installed"
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(), **versions}


BASELINE = ("dense-fp32", "onnxruntime")
"""The reference every case is compared with first: the dense FP32 model on ONNX Runtime."""
PEER_MODEL = "dense-int8"
"""The model of the peers: the best of them at a batch size is the second reference."""
SPARSE_MODEL = "sparse-int8"
"""The model measured against the references: --model's files, or a random sparse model."""
CARD_MODELS = (BASELINE[0], PEER_MODEL, SPARSE_MODEL)
"""The models whose speed --record-in-card writes into --model's card (candidates have their own directories)."""


def best_peers(results: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """The fastest dense INT8 case at each (shape, batch size)."""
    best: dict[tuple[str, int], dict[str, Any]] = {}
    for r in results:
        key = (r["shape"], r["batch_size"])
        if r["model"] == PEER_MODEL and (key not in best or r["items_per_second"] > best[key]["items_per_second"]):
            best[key] = r
    return best


def with_ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each result with its items/s over dense FP32 ONNX Runtime's and over the best dense INT8 peer's at its shape
    and batch size (``vs_dense_fp32_onnxruntime``, ``vs_best_dense_int8``; None without that reference), and the
    name of that peer (``best_dense_int8``)."""
    baselines = {(r["shape"], r["batch_size"]): r["items_per_second"] for r in results
                 if (r["model"], r["engine"]) == BASELINE}
    peers = best_peers(results)
    rows = []
    for r in results:
        key = (r["shape"], r["batch_size"])
        peer = peers.get(key)
        rows.append({
            **r,
            "vs_dense_fp32_onnxruntime": r["items_per_second"] / baselines[key] if key in baselines else None,
            "vs_best_dense_int8": r["items_per_second"] / peer["items_per_second"] if peer else None,
            "best_dense_int8": f"{peer['model']} {peer['engine']}" if peer else None,
        })
    return rows


def _times(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio:.2f}x"


def _notes(info: dict[str, Any]) -> str:
    """The facts about a case worth a glance: DeepSparse's supported ops, the optimizer's fusions, OpenVINO's hint."""
    notes = []
    if "fraction_of_supported_ops" in info:
        notes.append(f"supported ops {info['fraction_of_supported_ops']:.2f}")
    if "fused" in info:
        notes.append("fused " + ", ".join(f"{op} {count}" for op, count in info["fused"].items()))
    if "hint" in info:
        notes.append(f"{info['hint']}, {info['requests']} request{'s' if info['requests'] > 1 else ''}")
    return "; ".join(notes)


def table(results: list[dict[str, Any]], skipped: list[dict[str, Any]]) -> list[str]:
    """Markdown rows of every case (results carrying their ratios, see with_ratios) and of every skipped one."""
    lines = [
        "| shape | model | engine | batch | items/s | vs dense FP32 ORT | vs best dense INT8 | median ms | p99 ms "
        "| notes |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['shape']} | {r['model']} | {r['engine']} | {r['batch_size']} | {r['items_per_second']:.1f} | "
            f"{_times(r['vs_dense_fp32_onnxruntime'])} | {_times(r['vs_best_dense_int8'])} | {r['median_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {_notes(r['engine_info'])} |"
        )
    for note in skipped:
        case = f"| {note['shape']} | {note['model']} | {note['engine']} |"
        lines.append(f"{case} | | | | | | skipped: {note['reason']} |")
    return lines


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The table of every case with both ratios, and which dense INT8 peer was the best at each batch size."""
    lines = [
        f"# Engine benchmark ({meta['title']})",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores; onnxruntime "
        f"{meta['machine']['onnxruntime']}, deepsparse {meta['machine']['deepsparse']}, openvino "
        f"{meta['machine']['openvino']}, nncf {meta['machine']['nncf']}, torch {meta['machine']['torch']}  ",
        f"Sequence length {meta['sequence_length']}; {meta['rounds']} interleaved rounds. Ratios are items/s over "
        "those of dense FP32 on ONNX Runtime and of the fastest dense INT8 peer at the same shape and batch size, "
        "from this one run.",
        "",
        *table(results, meta.get("skipped", [])),
        "",
        "Best dense INT8 peer:",
        "",
        "| shape | batch | peer | items/s |",
        "|---|---:|---|---:|",
    ]
    for (shape, batch), peer in best_peers(results).items():
        lines.append(f"| {shape} | {batch} | {peer['model']} {peer['engine']} | {peer['items_per_second']:.1f} |")
    return "\n".join(lines) + "\n"


def chart(results: list[dict[str, Any]], meta: dict[str, Any], path: Path) -> None:
    """Grouped bars of items/s per case, one panel per shape and batch size, each bar labelled with its two ratios
    (over dense FP32 ONNX Runtime / over the best dense INT8 peer)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["shape"], r["batch_size"]) for r in results})
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5), squeeze=False)
    for axis, (shape, batch) in zip(axes[0], panels, strict=True):
        rows = [r for r in results if r["shape"] == shape and r["batch_size"] == batch]
        names = [f"{r['model']}\n{r['engine']}" for r in rows]
        colors = ["#dd8452" if r["model"] == PEER_MODEL else "#4c72b0" for r in rows]
        bars = axis.bar(names, [r["items_per_second"] for r in rows], color=colors)
        labels = [f"{_times(r['vs_dense_fp32_onnxruntime'])}\n{_times(r['vs_best_dense_int8'])}" for r in rows]
        axis.bar_label(bars, labels, fontsize=6)
        axis.margins(y=0.15)
        axis.set_title(f"{shape}, batch {batch}")
        axis.set_ylabel("items/s")
        axis.tick_params(axis="x", labelsize=7, rotation=45)
    figure.suptitle(f"{meta['title']} - {meta['machine']['cpu']}, {meta['machine']['cores']} cores\n"
                    f"{meta['command']}\nbar labels: vs dense FP32 ONNX Runtime, vs best dense INT8 peer (orange)",
                    fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def record_speed(model_dir: Path, results: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """Store the MiniLM-shape results (the shipped model, its dense references and peers; no candidate) in the model's
    card: items/s of every case and both of its ratios, keyed "MODEL ENGINE batch N"."""
    from service.runtime.card import load_card, save_card

    rows = [r for r in results if r["shape"] == "minilm" and r["model"] in CARD_MODELS]
    card = load_card(model_dir)

    def per_case(field: str, digits: int) -> dict[str, float | None]:
        return {f"{r['model']} {r['engine']} batch {r['batch_size']}":
                None if r[field] is None else round(r[field], digits) for r in rows}

    card.metrics["speed"] = {
        "command": meta["command"],
        "machine": f"{meta['machine']['cpu']}, {meta['machine']['cores']} cores",
        "sequence_length": meta["sequence_length"],
        "items_per_second": per_case("items_per_second", 1),
        "vs_dense_fp32_onnxruntime": per_case("vs_dense_fp32_onnxruntime", 2),
        "vs_best_dense_int8": per_case("vs_best_dense_int8", 2),
        "best_dense_int8": {f"batch {batch}": f"{peer['model']} {peer['engine']}"
                            for (shape, batch), peer in best_peers(rows).items()},
        "skipped": {f"{note['model']} {note['engine']}": note["reason"]
                    for note in meta.get("skipped", []) if note["shape"] == "minilm"},
    }
    save_card(card, model_dir)


def as_the_sparse_model(results: list[dict[str, Any]], candidate: str) -> list[dict[str, Any]]:
    """The results as if ``candidate`` had been the measured sparse model: its rows named ``sparse-int8``, the sparse
    model's own rows and the other candidates' left out (what record_speed writes into a candidate's card)."""
    return [{**r, "model": SPARSE_MODEL} if r["model"] == candidate else r
            for r in results if r["model"] == candidate or r["model"] in (BASELINE[0], PEER_MODEL)]


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
